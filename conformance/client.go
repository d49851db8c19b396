package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/client"
)

// callTimeout bounds every HTTP call the harness makes.
const callTimeout = 10 * time.Second

// Client calls the REST API of one deployment, spreading requests over the
// instances. It is safe for concurrent use.
type Client struct {
	env Env
	hc  *http.Client
}

// NewClient returns a client of env's service.
func NewClient(env Env) *Client {
	return &Client{env: env, hc: &http.Client{
		Timeout:   callTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
	}}
}

// Response is one answer of the API.
type Response struct {
	Code   int
	Body   []byte
	Header http.Header
}

// Replayed reports whether the answer came from an idempotency key.
func (r Response) Replayed() bool { return r.Header.Get(service.HeaderReplayed) == "true" }

// Accepted decodes a 202's body.
func (r Response) Accepted() (service.Accepted, error) {
	var a service.Accepted
	if r.Code != http.StatusAccepted {
		return a, fmt.Errorf("status %d: %s", r.Code, r.Body)
	}
	err := json.Unmarshal(r.Body, &a)
	return a, err
}

// ErrorCode returns the error code of an error answer ("" if none).
func (r Response) ErrorCode() string {
	var e service.ErrorResponse
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

// Do makes one request to instance i. body is marshalled as JSON when not nil.
func (c *Client) Do(ctx context.Context, i int, method, path string, body any, header map[string]string) (Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Response{}, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.env.ServiceURL(i)+path, rd)
	if err != nil {
		return Response{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.env.APIKey())
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return Response{Code: resp.StatusCode, Body: b, Header: resp.Header}, err
}

// API returns a client of instance i's API (service/client), with the
// deployment's API key. An instance's URL can change when it restarts, so
// each call asks for a fresh one; it costs no connection (they are
// pooled by the shared *http.Client).
func (c *Client) API(i int) *client.Client {
	api, err := client.New(c.env.ServiceURL(i), client.WithAPIKey(c.env.APIKey()), client.WithHTTPClient(c.hc))
	if err != nil {
		panic(fmt.Sprintf("conformance: instance %d: %v", i, err)) // ServiceURL is always an http URL
	}
	return api
}

// Send posts one message to instance i, with an Idempotency-Key when key
// is not empty, through the service client. Like Do it returns the
// answer whatever its status, with an error only when there was none: a
// 202 as its Accepted body (and Idempotent-Replayed), an API error as its
// {"error":...} body with its X-Request-Id and Retry-After.
func (c *Client) Send(ctx context.Context, i int, req service.SendRequest, key string) (Response, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	acc, replayed, err := c.API(i).Send(ctx, req, key)
	if e, ok := errors.AsType[*client.Error](err); ok {
		return errorResponse(e), nil
	}
	if err != nil {
		return Response{}, err
	}
	h := http.Header{}
	if replayed {
		h.Set(service.HeaderReplayed, "true")
	}
	b, err := json.Marshal(acc)
	return Response{Code: http.StatusAccepted, Body: b, Header: h}, err
}

// errorResponse is the Response of an API error.
func errorResponse(e *client.Error) Response {
	b, _ := json.Marshal(service.ErrorResponse{Error: e.API}) // strings only: cannot fail
	h := http.Header{}
	if e.RequestID != "" {
		h.Set(service.HeaderRequestID, e.RequestID)
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(e.RetryAfter.Round(time.Second)/time.Second)))
	}
	return Response{Code: e.StatusCode, Body: b, Header: h}
}

// Get reads message id through instance i. The status code is that of
// the answer (the message is set for a 200); err is set only when there
// was no answer.
func (c *Client) Get(ctx context.Context, i int, id string) (service.Message, int, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	m, err := c.API(i).Get(ctx, id)
	if e, ok := errors.AsType[*client.Error](err); ok {
		return service.Message{}, e.StatusCode, nil
	}
	if err != nil {
		return service.Message{}, 0, err
	}
	return *m, http.StatusOK, nil
}

// Await polls the status API (through whichever instance answers) until
// every message in ids is in a terminal state accepted by done, or within
// passes. Instances that are down or answer 503 are passed over. It
// returns the last status read for each id, and an error naming the ids
// that did not get there.
func (c *Client) Await(ctx context.Context, ids []string, within time.Duration, done func(service.Message) bool) (map[string]service.Message, error) {
	if done == nil {
		done = func(m service.Message) bool { return m.Status.Terminal() }
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	out := make(map[string]service.Message, len(ids))
	var mu sync.Mutex
	pending := make(chan string, len(ids))
	for _, id := range ids {
		pending <- id
	}
	close(pending)
	var wg sync.WaitGroup
	var missing []string
	for w := range 8 {
		wg.Go(func() {
			for id := range pending {
				m, ok := c.awaitOne(ctx, w, id, done)
				mu.Lock()
				out[id] = m
				if !ok {
					missing = append(missing, id)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(missing) > 0 {
		ex := missing[0]
		return out, fmt.Errorf("%d of %d messages not done within %s (e.g. %s: status %q attempts %d last_error %+v)",
			len(missing), len(ids), within, ex, out[ex].Status, out[ex].Attempts, out[ex].LastError)
	}
	return out, nil
}

func (c *Client) awaitOne(ctx context.Context, w int, id string, done func(service.Message) bool) (service.Message, bool) {
	var last service.Message
	for try := w; ; try++ {
		m, code, err := c.Get(ctx, try%c.env.Instances(), id)
		if err == nil && code == http.StatusOK {
			last = m
			if done(m) {
				return m, true
			}
		}
		select {
		case <-ctx.Done():
			return last, false
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Order is a valid message for the demo app's order_shipped template.
func Order(openid string) service.SendRequest {
	return service.SendRequest{ToUser: openid, TemplateID: "order_shipped", Data: map[string]service.DataValue{
		"thing1": {Value: "巧克力礼盒"}, "character_string2": {Value: "SO-2026-000123"},
		"time3": {Value: "2026年11月23日 15:01"}, "phrase4": {Value: "已发货"},
	}}
}

// OpenID makes a well-formed openid unique to a suite and a number.
func OpenID(suite string, n int) string {
	s := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, suite)
	if len(s) > 10 {
		s = s[:10]
	}
	return fmt.Sprintf("oConf-%s-%010d", s, n)
}

// Sends is what the mock's ledger says about one client_msg_id.
type Sends struct {
	Calls        int   // template sends that carried it
	Delivered    int   // accepted and not deduplicated: what reached the user
	Deduplicated int   // resends the mock absorbed by client_msg_id
	ErrCodes     []int // every answer, in order
	ToUsers      map[string]bool
}

// Ledger reads the mock's whole ledger and groups it by client_msg_id.
func Ledger(ctx context.Context, mock *mockwx.Client) (map[string]*Sends, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out := map[string]*Sends{}
	err := mock.AllMessages(ctx, 0, func(e mockwx.LedgerEntry) error {
		s := out[e.ClientMsgID]
		if s == nil {
			s = &Sends{ToUsers: map[string]bool{}}
			out[e.ClientMsgID] = s
		}
		s.Calls++
		s.ErrCodes = append(s.ErrCodes, e.ErrCode)
		s.ToUsers[e.ToUser] = true
		switch {
		case e.ErrCode == 0 && e.Deduplicated:
			s.Deduplicated++
		case e.ErrCode == 0:
			s.Delivered++
		}
		return nil
	})
	return out, err
}

// Duplicates counts the client_msg_ids the ledger shows delivered more than once.
func Duplicates(ledger map[string]*Sends) int {
	n := 0
	for _, s := range ledger {
		if s.Delivered > 1 {
			n++
		}
	}
	return n
}

// Stats reads the mock's counters with a deadline.
func Stats(ctx context.Context, mock *mockwx.Client) (mockwx.Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return mock.Stats(ctx)
}

// AddFault adds a rule to the mock, failing the test on error.
func AddFault(t testing.TB, mock *mockwx.Client, r mockwx.Rule) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	id, err := mock.AddFault(ctx, r)
	if err != nil {
		t.Fatalf("mock rule %+v: %v", r, err)
	}
	return id
}

// Reset clears the mock's ledger, faults and counters.
func Reset(t testing.TB, env Env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := env.Mock().Reset(ctx); err != nil {
		t.Fatalf("mock reset: %v", err)
	}
}

// Eventually polls cond every 50 ms until it holds or within passes.
func Eventually(ctx context.Context, within time.Duration, cond func(ctx context.Context) bool) bool {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		if cond(ctx) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Ready reports whether instance i answers /readyz with 200.
func (c *Client) Ready(ctx context.Context, i int) bool {
	r, err := c.Do(ctx, i, http.MethodGet, "/readyz", nil, nil)
	return err == nil && r.Code == http.StatusOK
}

// HasRoute reports whether instance i serves path for method: anything
// but a 404 answer counts.
func (c *Client) HasRoute(ctx context.Context, i int, method, path string) (bool, error) {
	r, err := c.Do(ctx, i, method, path, nil, nil)
	if err != nil {
		return false, err
	}
	return r.Code != http.StatusNotFound, nil
}
