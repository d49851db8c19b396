package wxpushd

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

func addRule(t *testing.T, mock *mockwxtest.Server, js string) string {
	t.Helper()
	r, err := mockwx.ParseRule([]byte(js))
	require.NoError(t, err, js)
	id, err := mock.Admin.AddFault(t.Context(), r)
	require.NoError(t, err)
	return id
}

func TestSendEndToEnd(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	in := startInstance(t, testConfig(mock, redistest.New(t)))
	a := api{t: t, base: in.URL(), key: testAPIKey}

	id := a.send(order(openid(1)), "")
	m := a.waitStatus(id, service.StatusSent, 10*time.Second)
	assert.Equal(t, 1, m.Attempts)
	assert.Greater(t, m.MsgID, int64(1)<<53)
	assert.NotNil(t, m.SentAt)
	assert.Nil(t, m.LastError)

	delivered, calls := deliveries(t, mock)
	assert.Equal(t, map[string]int{id: 1}, delivered, "client_msg_id is the message id")
	assert.Equal(t, map[string]int{id: 1}, calls)
	page, err := mock.Admin.Messages(t.Context(), 0, 10)
	require.NoError(t, err)
	assert.Equal(t, m.MsgID, page.Messages[0].MsgID)
}

func TestErrcodeMatrix(t *testing.T) {
	tests := []struct {
		name      string
		rule      string // on template_send
		openid    string
		status    service.Status
		reason    string
		attempts  int
		lastCode  int
		delivered int // real deliveries at the mock
		dedups    int // resends WeChat deduplicated
	}{
		{"-1 twice then ok", `{"endpoint":"template_send","errcode":-1,"times":2}`, "", service.StatusSent, "", 3, -1, 1, 0},
		{"-1 always", `{"endpoint":"template_send","errcode":-1}`, "", service.StatusFailed, service.ReasonAttemptsExhausted, 4, -1, 0, 0},
		{"HTTP 502 twice", `{"endpoint":"template_send","http_status":502,"times":2}`, "", service.StatusSent, "", 3, 0, 1, 0},
		{"40001 refresh and retry", `{"endpoint":"template_send","errcode":40001,"times":1}`, "", service.StatusSent, "", 2, 40001, 1, 0},
		{"42001 refresh and retry", `{"endpoint":"template_send","errcode":42001,"times":1}`, "", service.StatusSent, "", 2, 42001, 1, 0},
		{"40014 refresh and retry", `{"endpoint":"template_send","errcode":40014,"times":1}`, "", service.StatusSent, "", 2, 40014, 1, 0},
		{"45011 paces without spending attempts", `{"endpoint":"template_send","errcode":45011,"times":2}`, "", service.StatusSent, "", 1, 45011, 1, 0},
		{"45009 waits without failing", `{"endpoint":"template_send","errcode":45009,"times":2}`, "", service.StatusSent, "", 1, 45009, 1, 0},
		{"48001 app-level waits", `{"endpoint":"template_send","errcode":48001,"times":1}`, "", service.StatusSent, "", 1, 48001, 1, 0},
		{"43004 permanent", "", mockwx.DemoNotFollowing, service.StatusFailed, service.ReasonPermanentErrcode, 1, 43004, 0, 0},
		{"40037 permanent", `{"endpoint":"template_send","errcode":40037}`, "", service.StatusFailed, service.ReasonPermanentErrcode, 1, 40037, 0, 0},
		{"unknown errcode permanent", `{"endpoint":"template_send","errcode":61999}`, "", service.StatusFailed, service.ReasonPermanentErrcode, 1, 61999, 0, 0},
		{"lost answer: reset", `{"endpoint":"template_send","fault":"reset","times":1}`, "", service.StatusSent, "", 2, 0, 1, 1},
		{"lost answer: malformed", `{"endpoint":"template_send","fault":"malformed","times":1}`, "", service.StatusSent, "", 2, 0, 1, 1},
		{"lost answer: empty", `{"endpoint":"template_send","fault":"empty","times":1}`, "", service.StatusSent, "", 2, 0, 1, 1},
		{"lost answer: timeout", `{"endpoint":"template_send","fault":"timeout","times":1}`, "", service.StatusSent, "", 2, 0, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mock := mockwxtest.NewServer(t, mockwxtest.Options{Seed: 3})
			cfg := testConfig(mock, redistest.New(t))
			cfg.SendTimeout = 500 * time.Millisecond
			in := startInstance(t, cfg)
			a := api{t: t, base: in.URL(), key: testAPIKey}
			if tt.rule != "" {
				addRule(t, mock, tt.rule)
			}
			to := tt.openid
			if to == "" {
				to = openid(7)
			}
			id := a.send(order(to), "")
			m := a.waitStatus(id, tt.status, 15*time.Second)
			assert.Equal(t, tt.reason, m.Reason)
			assert.Equal(t, tt.attempts, m.Attempts, "attempts")
			if tt.lastCode != 0 {
				require.NotNil(t, m.LastError, "last_error")
				assert.Equal(t, tt.lastCode, m.LastError.ErrCode)
			}
			delivered, calls := deliveries(t, mock)
			assert.Equal(t, tt.delivered, delivered[id], "real deliveries at the mock")
			st, err := mock.Admin.Stats(t.Context())
			require.NoError(t, err)
			assert.Equal(t, int64(tt.dedups), st.Deduplicated, "resends deduplicated by client_msg_id")
			for cmid := range calls {
				assert.Equal(t, id, cmid, "every attempt carries the same client_msg_id")
			}
		})
	}
}

func TestIdempotencyThroughTheAPI(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	r := redistest.New(t)
	in1 := startInstance(t, testConfig(mock, r))
	in2 := startInstance(t, testConfig(mock, r))
	a1 := api{t: t, base: in1.URL(), key: testAPIKey}
	a2 := api{t: t, base: in2.URL(), key: testAPIKey}

	// Many concurrent requests with one key, across two instances.
	ids := make(chan string, 40)
	replays := make(chan bool, 40)
	done := make(chan struct{})
	for i := range 40 {
		go func() {
			defer func() { done <- struct{}{} }()
			a := a1
			if i%2 == 1 {
				a = a2
			}
			code, body, hdr := a.do(http.MethodPost, "/v1/messages", order(openid(42)), map[string]string{service.HeaderIdempotencyKey: "order-42-shipped"})
			if !assert.Equal(t, http.StatusAccepted, code, "%s", body) {
				return
			}
			var acc service.Accepted
			assert.NoError(t, json.Unmarshal(body, &acc))
			ids <- acc.ID
			replays <- hdr.Get(service.HeaderReplayed) == "true"
		}()
	}
	for range 40 {
		<-done
	}
	close(ids)
	close(replays)
	unique := map[string]bool{}
	for id := range ids {
		unique[id] = true
	}
	require.Len(t, unique, 1, "one message for one key")
	nReplayed := 0
	for r := range replays {
		if r {
			nReplayed++
		}
	}
	assert.Equal(t, 39, nReplayed, "all but the first are replays")

	var id string
	for k := range unique {
		id = k
	}
	a1.waitStatus(id, service.StatusSent, 10*time.Second)
	delivered, _ := deliveries(t, mock)
	assert.Equal(t, 1, delivered[id], "exactly one delivery per key")

	other := order(openid(42))
	other.Data["thing1"] = service.DataValue{Value: "另一个商品"}
	code, body, _ := a2.do(http.MethodPost, "/v1/messages", other, map[string]string{service.HeaderIdempotencyKey: "order-42-shipped"})
	assert.Equal(t, http.StatusConflict, code)
	assert.Contains(t, string(body), service.CodeIdempotencyConflict)
}

func TestBatchEndToEnd(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	in := startInstance(t, testConfig(mock, redistest.New(t)))
	a := api{t: t, base: in.URL(), key: testAPIKey}
	var req service.BatchRequest
	for i := range 50 {
		req.Messages = append(req.Messages, service.BatchItem{SendRequest: order(openid(100 + i)), IdempotencyKey: "batch-" + strings.Repeat("x", i%3) + openid(i)})
	}
	bad := order("bad openid!")
	req.Messages = append(req.Messages, service.BatchItem{SendRequest: bad})
	code, body, _ := a.do(http.MethodPost, "/v1/messages/batch", req, nil)
	require.Equal(t, http.StatusMultiStatus, code, "%s", body)
	var resp service.BatchResponse
	require.NoError(t, json.Unmarshal(body, &resp))
	assert.Equal(t, 50, resp.Accepted)
	assert.Equal(t, 1, resp.Rejected)
	require.Len(t, resp.Results, 51)
	assert.Equal(t, http.StatusBadRequest, resp.Results[50].StatusCode)
	for _, r := range resp.Results[:50] {
		a.waitStatus(r.ID, service.StatusSent, 15*time.Second)
	}
	delivered, _ := deliveries(t, mock)
	assert.Len(t, delivered, 50)
}
