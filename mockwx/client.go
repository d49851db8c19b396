package mockwx

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Client drives a running mockwx's admin API. It is safe for concurrent use.
type Client struct {
	baseURL string
	token   string
	http    *http.Client
}

// NewClient returns a client for the mock at baseURL (e.g.
// "http://127.0.0.1:9000"). adminToken is MOCKWX_ADMIN_TOKEN, or "" when
// the admin API is unguarded; hc nil is http.DefaultClient.
func NewClient(baseURL, adminToken string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{baseURL: strings.TrimRight(baseURL, "/"), token: adminToken, http: hc}
}

// BaseURL returns the mock's base URL: also the WeChat API base URL to give
// a client under test.
func (c *Client) BaseURL() string { return c.baseURL }

// APIError is an admin API error answer.
type APIError struct {
	StatusCode int
	AdminErrorBody
}

// Error implements error.
func (e *APIError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("mockwx admin: %d %s (%s): %s", e.StatusCode, e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("mockwx admin: %d %s: %s", e.StatusCode, e.Code, e.Message)
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("mockwx admin: encode: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, rd)
	if err != nil {
		return fmt.Errorf("mockwx admin: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("mockwx admin %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("mockwx admin %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var ae AdminError
		if json.Unmarshal(data, &ae) != nil || ae.Error.Code == "" {
			ae.Error = AdminErrorBody{Code: "http_" + strconv.Itoa(resp.StatusCode), Message: strings.TrimSpace(string(data))}
		}
		return &APIError{StatusCode: resp.StatusCode, AdminErrorBody: ae.Error}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("mockwx admin %s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

// Reset forgets the ledger, faults, counters, tokens and quotas.
func (c *Client) Reset(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/_mock/reset", nil, nil)
}

// Apps returns the configured apps with their credentials and templates.
func (c *Client) Apps(ctx context.Context) ([]App, error) {
	var apps []App
	return apps, c.do(ctx, http.MethodGet, "/_mock/apps", nil, &apps)
}

// Stats returns the mock's counters.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	return st, c.do(ctx, http.MethodGet, "/_mock/stats", nil, &st)
}

// Messages returns one page of the ledger: entries after seq after, at
// most limit (1..10000; 0 means 1000).
func (c *Client) Messages(ctx context.Context, after uint64, limit int) (LedgerPage, error) {
	q := url.Values{}
	q.Set("after", strconv.FormatUint(after, 10))
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var p LedgerPage
	return p, c.do(ctx, http.MethodGet, "/_mock/messages?"+q.Encode(), nil, &p)
}

// AllMessages pages through the whole ledger after seq after and calls fn
// for each entry in order, stopping at the first error fn returns.
func (c *Client) AllMessages(ctx context.Context, after uint64, fn func(LedgerEntry) error) error {
	for {
		p, err := c.Messages(ctx, after, 10000)
		if err != nil {
			return err
		}
		for _, e := range p.Messages {
			if err := fn(e); err != nil {
				return err
			}
		}
		if !p.More || p.NextAfter == after {
			return nil
		}
		after = p.NextAfter
	}
}

// AddFault adds a fault rule and returns its id.
func (c *Client) AddFault(ctx context.Context, r Rule) (string, error) {
	var resp AddFaultResponse
	return resp.ID, c.do(ctx, http.MethodPost, "/_mock/faults", r, &resp)
}

// Faults lists the rules with their counters.
func (c *Client) Faults(ctx context.Context) ([]RuleStatus, error) {
	var rules []RuleStatus
	return rules, c.do(ctx, http.MethodGet, "/_mock/faults", nil, &rules)
}

// DeleteFault removes one rule.
func (c *Client) DeleteFault(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/_mock/faults/"+url.PathEscape(id), nil, nil)
}

// ClearFaults removes every rule.
func (c *Client) ClearFaults(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "/_mock/faults", nil, nil)
}

// ExpireTokens makes every current token of appID (all apps when "")
// answer 42001, and returns how many it expired.
func (c *Client) ExpireTokens(ctx context.Context, appID string) (int, error) {
	var resp ExpireResponse
	return resp.Expired, c.do(ctx, http.MethodPost, "/_mock/tokens/expire", ExpireRequest{AppID: appID}, &resp)
}

// PushEvent makes a simulated user act (POST /_mock/events): the mock
// pushes the event or message to the app's callback URL and returns its
// id. A bad request is an *APIError whose Field names the field.
func (c *Client) PushEvent(ctx context.Context, ev EventRequest) (string, error) {
	var resp EventCreated
	return resp.ID, c.do(ctx, http.MethodPost, "/_mock/events", ev, &resp)
}

// PushEvents makes simulated users act in one request (the batch form of
// POST /_mock/events, up to 1000): all are accepted, in order, or none.
func (c *Client) PushEvents(ctx context.Context, evs []EventRequest) ([]string, error) {
	var resp EventsCreated
	return resp.IDs, c.do(ctx, http.MethodPost, "/_mock/events", EventBatch{Events: evs}, &resp)
}

// Events returns one page of the event log: records after seq after, at
// most limit (1..10000; 0 means 1000), each with its push's outcome and
// decoded reply.
func (c *Client) Events(ctx context.Context, after uint64, limit int) (EventPage, error) {
	q := url.Values{}
	q.Set("after", strconv.FormatUint(after, 10))
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var p EventPage
	return p, c.do(ctx, http.MethodGet, "/_mock/events?"+q.Encode(), nil, &p)
}

// User returns a user's follow state and last interaction in appID (the
// first app when "").
func (c *Client) User(ctx context.Context, appID, openID string) (UserState, error) {
	path := "/_mock/users/" + url.PathEscape(openID)
	if appID != "" {
		path += "?appid=" + url.QueryEscape(appID)
	}
	var u UserState
	return u, c.do(ctx, http.MethodGet, path, nil, &u)
}
