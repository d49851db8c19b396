package mockwx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
)

func addRule(t *testing.T, e *env, js string) string {
	t.Helper()
	r, err := mockwx.ParseRule([]byte(js))
	require.NoError(t, err, js)
	id, err := e.Admin.AddFault(t.Context(), r)
	require.NoError(t, err)
	return id
}

func TestFaultKindsOnTemplateSend(t *testing.T) {
	tests := []struct {
		name      string
		rule      string
		wantKind  wechat.CallKind // for call failures
		wantCode  int             // for errcode answers
		delivered bool            // whether the mock accepted the send anyway
	}{
		{"errcode -1", `{"endpoint":"template_send","errcode":-1}`, "", -1, false},
		{"errcode with errmsg", `{"endpoint":"*","errcode":45011,"errmsg":"api minute-quota reach limit"}`, "", 45011, false},
		{"http 502", `{"endpoint":"template_send","http_status":502}`, wechat.CallHTTPStatus, 0, false},
		{"reset after processing", `{"endpoint":"template_send","fault":"reset"}`, wechat.CallTransport, 0, true},
		{"timeout after processing", `{"endpoint":"template_send","fault":"timeout"}`, wechat.CallTimeout, 0, true},
		{"malformed body", `{"endpoint":"template_send","fault":"malformed"}`, wechat.CallMalformed, 0, true},
		{"empty body", `{"endpoint":"template_send","fault":"empty"}`, wechat.CallMalformed, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, mockwx.Config{})
			tok := e.token(t)
			addRule(t, e, tt.rule)
			ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer cancel()
			msg := validOrder("oUser-fault-000001")
			msg.ClientMsgID = "cm-fault"
			_, err := e.wc.SendTemplate(ctx, tok, msg)
			require.Error(t, err)
			if tt.wantCode != 0 {
				assert.Equal(t, tt.wantCode, codeOf(err), "%v", err)
				if tt.name == "errcode with errmsg" {
					assert.Contains(t, err.Error(), "api minute-quota reach limit rid: ")
				}
			} else {
				var ce *wechat.CallError
				require.True(t, errors.As(err, &ce), "%T %v", err, err)
				assert.Equal(t, tt.wantKind, ce.Kind, "%v", err)
			}
			st, err := e.Admin.Stats(t.Context())
			require.NoError(t, err)
			assert.Equal(t, int64(1), st.FaultsFired)
			if tt.delivered {
				assert.Equal(t, int64(1), st.Delivered, "a lost answer does not undo the send")
				// The client's retry with the same client_msg_id is deduplicated.
				require.NoError(t, e.Admin.ClearFaults(t.Context()))
				_, err := e.wc.SendTemplate(t.Context(), tok, msg)
				require.NoError(t, err)
				st, _ = e.Admin.Stats(t.Context())
				assert.Equal(t, int64(1), st.Delivered, "the retry must not deliver twice")
				assert.Equal(t, int64(1), st.Deduplicated)
			} else {
				assert.Equal(t, int64(0), st.Delivered)
			}
		})
	}
}

func TestFaultActivation(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	tok := e.token(t)
	addRule(t, e, `{"endpoint":"template_send","match":{"touser":"oUser-target-000001"},"errcode":-1,"skip":1,"times":2}`)
	send := func(openid string) int {
		_, err := e.wc.SendTemplate(t.Context(), tok, validOrder(openid))
		return codeOf(err)
	}
	var got []int
	for range 4 {
		got = append(got, send("oUser-target-000001"))
	}
	assert.Equal(t, []int{0, -1, -1, 0}, got, "skip 1, then fire twice, then exhausted")
	assert.Equal(t, 0, send("oUser-other-0000001"), "match.touser filters")

	// after_ms / for_ms windows follow the mock's clock.
	addRule(t, e, `{"endpoint":"template_send","errcode":45011,"after_ms":60000,"for_ms":60000}`)
	assert.Equal(t, 0, send("oUser-window-000001"))
	e.clock.Advance(time.Minute)
	assert.Equal(t, 45011, send("oUser-window-000001"))
	e.clock.Advance(time.Minute)
	assert.Equal(t, 0, send("oUser-window-000001"))

	rules, err := e.Admin.Faults(t.Context())
	require.NoError(t, err)
	require.Len(t, rules, 2)
	assert.Equal(t, 2, rules[0].Fired)
	assert.True(t, rules[0].Exhausted)
	assert.False(t, rules[1].Active)
	require.NoError(t, e.Admin.DeleteFault(t.Context(), rules[0].ID))
	var ae *mockwx.APIError
	require.ErrorAs(t, e.Admin.DeleteFault(t.Context(), rules[0].ID), &ae)
	assert.Equal(t, http.StatusNotFound, ae.StatusCode)
}

func TestFaultOnTokenEndpointAfterProcessing(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	first := e.token(t)
	// Not times:1: Go's transport retries an idempotent GET once on a reset
	// reused connection, which would absorb a single fault.
	id := addRule(t, e, `{"endpoint":"token","fault":"reset"}`)
	_, err := e.wc.Token(t.Context(), e.App.AppID, e.secret())
	require.Error(t, err)
	require.NoError(t, e.Admin.DeleteFault(t.Context(), id))
	// The lost call minted a token anyway: the first one is now superseded
	// and dies after the grace period, like real WeChat.
	e.clock.Advance(301 * time.Second)
	_, err = e.wc.SendTemplate(t.Context(), first, validOrder("oUser-token-000001"))
	assert.Equal(t, 40001, codeOf(err))
}

func TestLatencyFault(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	tok := e.token(t)
	addRule(t, e, `{"endpoint":"template_send","latency":{"fixed_ms":2000}}`)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := e.wc.SendTemplate(ctx, tok, validOrder("oUser-latency-00001"))
	var ce *wechat.CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, wechat.CallTimeout, ce.Kind, "a 2 s latency outlasts a 100 ms deadline")
}

func TestBadAdminInput(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	tests := []struct {
		name, method, path, body string
		status                   int
		field                    string
	}{
		{"unknown rule field", "POST", "/_mock/faults", `{"endpoint":"token","errcode":1,"bogus":1}`, 400, ""},
		{"bad endpoint", "POST", "/_mock/faults", `{"endpoint":"nope","errcode":1}`, 400, "endpoint"},
		{"bad probability", "POST", "/_mock/faults", `{"endpoint":"token","errcode":1,"probability":2}`, 400, "probability"},
		{"bad latency", "POST", "/_mock/faults", `{"endpoint":"token","latency":{"fixed_ms":-1}}`, 400, "latency.fixed_ms"},
		{"bad after", "GET", "/_mock/messages?after=-1", "", 400, "after"},
		{"bad limit", "GET", "/_mock/messages?limit=0", "", 400, "limit"},
		{"bad expire body", "POST", "/_mock/tokens/expire", `{"app":"x"}`, 400, ""},
		{"unknown route", "GET", "/_mock/nope", "", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, e.URL+tt.path, strings.NewReader(tt.body))
			require.NoError(t, err)
			resp, err := e.HTTP.Client().Do(req)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, tt.status, resp.StatusCode, "%s %s %s: %s", tt.method, tt.path, tt.body, b)
			assert.Contains(t, string(b), `"error":{"code":`)
			if tt.field != "" {
				assert.Contains(t, string(b), `"field":"`+tt.field+`"`)
			}
		})
	}
	rules, err := e.Admin.Faults(t.Context())
	require.NoError(t, err)
	assert.Empty(t, rules, "bad input changes nothing")
}

func TestAdminTokenGuard(t *testing.T) {
	s := mockwxtest.NewServer(t, mockwxtest.Options{AdminToken: "letmein"})
	_, err := s.Admin.Stats(t.Context())
	require.NoError(t, err, "the client sends the token")
	unauth := mockwx.NewClient(s.URL, "wrong", s.HTTP.Client())
	_, err = unauth.Stats(t.Context())
	var ae *mockwx.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, http.StatusUnauthorized, ae.StatusCode)
	// The WeChat API itself is not guarded.
	_, err = s.WeChat().Token(t.Context(), s.App.AppID, wechat.Secret(s.App.Secret))
	assert.NoError(t, err)
}

func TestResetReplaysIdentically(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	run := func() []string {
		tok := e.token(t)
		addRule(t, e, `{"endpoint":"template_send","errcode":-1,"probability":0.5}`)
		out := []string{tok.Reveal()}
		for i := range 20 {
			id, err := e.wc.SendTemplate(t.Context(), tok, validOrder("oUser-replay-"+strings.Repeat("0", 5)+string(rune('a'+i))))
			out = append(out, strings.TrimSpace(errString(err))+"|"+itoa64(id))
		}
		return out
	}
	a := run()
	require.NoError(t, e.Admin.Reset(t.Context()))
	b := run()
	assert.Equal(t, a, b, "after a reset the same requests get the same answers")
	st, err := e.Admin.Stats(t.Context())
	require.NoError(t, err)
	assert.Equal(t, int64(20), st.SendCalls, "reset zeroes the counters")
}

func TestSameSeedSameAnswers(t *testing.T) {
	transcript := func(seed int64) []string {
		s := mockwxtest.NewServer(t, mockwxtest.Options{Seed: seed, Now: newClock().Now})
		e := &env{Server: s, clock: nil, wc: s.WeChat()}
		addRule(t, e, `{"endpoint":"*","errcode":-1,"probability":0.3}`)
		addRule(t, e, `{"endpoint":"template_send","errcode":45011,"probability":0.1,"latency":{"min_ms":0,"max_ms":1}}`)
		var out []string
		for i := range 40 {
			tok, err := s.WeChat().Token(t.Context(), s.App.AppID, wechat.Secret(s.App.Secret))
			if err != nil {
				out = append(out, errString(err))
				continue
			}
			id, err := e.wc.SendTemplate(t.Context(), tok.AccessToken, validOrder("oUser-seed-0000"+itoa64(int64(i))))
			out = append(out, tok.AccessToken.Reveal()[:12]+"|"+itoa64(id)+"|"+errString(err))
		}
		return out
	}
	a, b, c := transcript(42), transcript(42), transcript(43)
	assert.Equal(t, a, b, "same seed, same requests: same answers")
	assert.NotEqual(t, a, c, "another seed answers differently")
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

// concurrency: many clients at once stay consistent.
func TestConcurrentSends(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	tok := e.token(t)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				m := validOrder("oUser-conc-" + itoa64(int64(w*1000+i)) + "xx")
				m.ClientMsgID = "c" + itoa64(int64(i%10))
				_, err := e.wc.SendTemplate(context.Background(), tok, m)
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	st, err := e.Admin.Stats(t.Context())
	require.NoError(t, err)
	assert.Equal(t, int64(400), st.SendCalls)
	assert.Equal(t, int64(400), st.Delivered+st.Deduplicated)
	assert.Equal(t, uint64(400), st.Ledger.Total)
}

// An injected errcode is in the ledger by the time the client has its
// answer, like every other answer: a test that reads the ledger once its
// client saw the last answer counts every call (conformance's TestRetry
// once counted 4 of 5 sends because the ledger was written after). The
// writer below looks at the ledger at the moment the answer is written.
func TestInjectedErrcodeIsInTheLedgerBeforeTheAnswer(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	tok := e.token(t)
	addRule(t, e, `{"endpoint":"template_send","errcode":-1}`)
	body, err := json.Marshal(validOrder("oUser-ledger-000001"))
	require.NoError(t, err)
	for _, path := range []string{wechat.PathTemplateSend, mockwx.PathCustomSend} {
		if path == mockwx.PathCustomSend {
			addRule(t, e, `{"endpoint":"custom_send","errcode":-1}`)
			body = []byte(`{"touser":"oUser-ledger-000001","msgtype":"text","text":{"content":"hi"}}`)
		}
		before := e.Mock.Ledger().Total()
		w := &ledgerWatcher{ResponseRecorder: httptest.NewRecorder(), ledger: e.Mock.Ledger()}
		r := httptest.NewRequest(http.MethodPost, path+"?access_token="+tok.Reveal(), bytes.NewReader(body))
		e.Mock.ServeHTTP(w, r)
		require.Contains(t, w.Body.String(), `"errcode":-1`, path)
		assert.Equal(t, before+1, w.atWrite, "%s: the call was not in the ledger when its answer was written", path)
	}
}

// ledgerWatcher notes the ledger's total when the answer is first written.
type ledgerWatcher struct {
	*httptest.ResponseRecorder
	ledger  *mockwx.Ledger
	atWrite uint64
	wrote   bool
}

func (w *ledgerWatcher) Write(b []byte) (int, error) {
	if !w.wrote {
		w.wrote, w.atWrite = true, w.ledger.Total()
	}
	return w.ResponseRecorder.Write(b)
}
