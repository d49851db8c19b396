package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxResponseBytes bounds how much of a response body the client reads.
const maxResponseBytes = 1 << 20

// Client calls the WeChat API. It is safe for concurrent use. It holds no
// credentials: each call takes the ones it needs, and no error it returns
// contains them (nor the request URL that carries them).
type Client struct {
	baseURL string
	http    *http.Client
}

// NewClient returns a client for the API at baseURL (DefaultBaseURL when
// empty) using hc (a client with a 10 s timeout when nil).
func NewClient(baseURL string, hc *http.Client) (*Client, error) {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("wechat: base URL %q: want http(s)://host[:port]", baseURL)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return &Client{baseURL: strings.TrimRight(baseURL, "/"), http: hc}, nil
}

// BaseURL returns the API base URL the client calls.
func (c *Client) BaseURL() string { return c.baseURL }

// Token is an access token and its remaining lifetime as WeChat stated it.
type Token struct {
	AccessToken Secret
	ExpiresIn   time.Duration
}

// Token fetches a classic access token (GET /cgi-bin/token). Every call
// mints a new token and retires the previous one after about 5 minutes:
// share its result across instances.
func (c *Client) Token(ctx context.Context, appID string, secret Secret) (*Token, error) {
	q := url.Values{}
	q.Set("grant_type", GrantTypeClientCredential)
	q.Set("appid", appID)
	q.Set("secret", secret.Reveal())
	var resp TokenResponse
	if err := c.do(ctx, APIToken, http.MethodGet, PathToken, q, nil, &resp); err != nil {
		return nil, err
	}
	return tokenFrom(APIToken, &resp)
}

// StableToken fetches a stable access token (POST /cgi-bin/stable_token).
// Without forceRefresh it returns the current token while it is valid; with
// it, WeChat mints a new one (at most 20 a day, 30 s apart).
func (c *Client) StableToken(ctx context.Context, appID string, secret Secret, forceRefresh bool) (*Token, error) {
	req := StableTokenRequest{GrantType: GrantTypeClientCredential, AppID: appID, Secret: secret.Reveal(), ForceRefresh: forceRefresh}
	var resp TokenResponse
	if err := c.do(ctx, APIStableToken, http.MethodPost, PathStableToken, nil, req, &resp); err != nil {
		return nil, err
	}
	return tokenFrom(APIStableToken, &resp)
}

func tokenFrom(api API, resp *TokenResponse) (*Token, error) {
	if err := resp.Err(api); err != nil {
		return nil, err
	}
	if resp.AccessToken == "" || resp.ExpiresIn <= 0 {
		return nil, &CallError{API: api, Kind: CallMalformed, Err: errors.New("response has no access_token or expires_in")}
	}
	return &Token{AccessToken: Secret(resp.AccessToken), ExpiresIn: time.Duration(resp.ExpiresIn) * time.Second}, nil
}

// SendTemplate sends a template message and returns WeChat's msgid. Set
// msg.ClientMsgID to the same value on every attempt of one message: WeChat
// then sends it at most once per openid within 10 minutes.
func (c *Client) SendTemplate(ctx context.Context, accessToken Secret, msg *TemplateMessage) (int64, error) {
	var resp SendResponse
	if err := c.do(ctx, APITemplateSend, http.MethodPost, PathTemplateSend, tokenQuery(accessToken), msg, &resp); err != nil {
		return 0, err
	}
	if err := resp.Err(APITemplateSend); err != nil {
		return 0, err
	}
	return resp.MsgID, nil
}

// ClearQuota resets the daily API quotas of appID (POST /cgi-bin/clear_quota;
// 10 times a month).
func (c *Client) ClearQuota(ctx context.Context, accessToken Secret, appID string) error {
	var resp Response
	if err := c.do(ctx, APIClearQuota, http.MethodPost, PathClearQuota, tokenQuery(accessToken), ClearQuotaRequest{AppID: appID}, &resp); err != nil {
		return err
	}
	return resp.Err(APIClearQuota)
}

func tokenQuery(accessToken Secret) url.Values {
	q := url.Values{}
	q.Set("access_token", accessToken.Reveal())
	return q
}

// do performs one call and decodes a 200 response into out. Every failure
// comes back as a *CallError without the URL.
func (c *Client) do(ctx context.Context, api API, method, path string, q url.Values, body, out any) error {
	u := c.baseURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := Marshal(body)
		if err != nil {
			return fmt.Errorf("wechat %s: encode request: %w", api, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return &CallError{API: api, Kind: CallTransport, Err: errors.New("cannot build request")}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return callError(ctx, api, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return callError(ctx, api, err)
	}
	if resp.StatusCode != http.StatusOK {
		return &CallError{API: api, Kind: CallHTTPStatus, StatusCode: resp.StatusCode}
	}
	if len(data) > maxResponseBytes {
		return &CallError{API: api, Kind: CallMalformed, Err: fmt.Errorf("response larger than %d bytes", maxResponseBytes)}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &CallError{API: api, Kind: CallMalformed, Err: malformedCause(data, err)}
	}
	return nil
}

// callError turns a transport failure into a *CallError whose text holds
// the cause but not the URL (url.Error prints the URL, and with it the
// access_token or secret).
func callError(ctx context.Context, api API, err error) error {
	kind := CallTransport
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		kind = CallTimeout
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = ctxErr
	}
	return &CallError{API: api, Kind: kind, Err: err}
}

// malformedCause describes why a body did not decode, quoting a short,
// safe prefix of it.
func malformedCause(data []byte, err error) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("empty response body")
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("invalid JSON at byte %d", syn.Offset)
	}
	return fmt.Errorf("unexpected JSON: %v", err)
}
