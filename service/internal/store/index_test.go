package store_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// opMsg is a message of the operator tests: accepted at `at`.
type opMsg struct {
	app, touser, tpl, rid string
	at                    time.Time
}

// enqueueOp stores m and returns its id (a NewID of its time).
func enqueueOp(t *testing.T, s *store.Store, m opMsg) string {
	t.Helper()
	id := store.NewID(m.at)
	_, err := s.Enqueue(t.Context(), []store.NewMessage{{
		ID: id, App: m.app, RequestHash: "h", AcceptedAt: m.at, RequestID: m.rid,
		Request: service.SendRequest{App: m.app, ToUser: m.touser, TemplateID: m.tpl, Data: map[string]service.DataValue{"k": {Value: "v"}}},
	}})
	require.NoError(t, err)
	return id
}

// settleNext reads the next queue entry, which must be id, counts an
// attempt and settles it with st.
func settleNext(t *testing.T, s *store.Store, id string, st store.Settlement, at time.Time) {
	t.Helper()
	ctx := t.Context()
	var e store.Entry
	for {
		entries, err := s.Read(ctx, "w", 1, 10*time.Millisecond)
		require.NoError(t, err)
		require.Len(t, entries, 1, "the queue holds %s", id)
		if entries[0].MessageID == id {
			e = entries[0]
			break
		}
		require.NoError(t, s.Release(ctx, entries[0])) // another message: back to the queue's end
	}
	rec, n, err := s.Begin(ctx, id, at, store.Guard{})
	require.NoError(t, err)
	require.Positive(t, n)
	if st.App == "" {
		st.App, st.ToUser = rec.App, rec.ToUser
	}
	if st.Attempt == 0 {
		st.Attempt = n
	}
	require.NoError(t, settleErr(s.Settle(ctx, e, st, at)))
}

// fail takes a queued message id to failed with reason.
func fail(t *testing.T, s *store.Store, id, reason string, at time.Time) {
	t.Helper()
	settleNext(t, s, id, store.Settlement{Kind: store.SettleFail, Reason: reason, Called: true, HasErr: true, ErrCode: -1, ErrMsg: "system error"}, at)
}

func ids(page *service.MessagePage) []string {
	out := make([]string, len(page.Messages))
	for i, m := range page.Messages {
		out[i] = m.ID
	}
	return out
}

func TestSearchEveryFilter(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	t0 := time.Now().Truncate(time.Second).Add(-time.Hour)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	m := []opMsg{
		{"shop", "oUserA-000000001", "tplA", "req-1", at(0)},
		{"shop", "oUserB-000000001", "tplA", "req-1", at(1)},
		{"shop", "oUserA-000000001", "tplB", "req-2", at(2)},
		{"crm", "oUserA-000000001", "tplA", "req-3", at(3)},
		{"crm", "oUserC-000000001", "tplB", "req-3", at(4)},
		{"shop", "oUserC-000000001", "tplA", "", at(5)},
	}
	id := make([]string, len(m))
	for i := range m {
		id[i] = enqueueOp(t, s, m[i])
	}
	// 0 sent, 1 failed attempts_exhausted, 2 delivered, 3 failed
	// permanent_errcode, 4 retrying, 5 queued.
	settleNext(t, s, id[0], store.Settlement{Kind: store.SettleSent, MsgID: 100, Called: true}, at(10))
	fail(t, s, id[1], service.ReasonAttemptsExhausted, at(10))
	settleNext(t, s, id[2], store.Settlement{Kind: store.SettleSent, MsgID: 102, Called: true}, at(10))
	res, err := s.ApplyDelivery(ctx, store.DeliveryReport{App: "shop", MsgID: 102, Status: "success", Delivered: true, OpenID: m[2].touser, ReceivedAt: at(11)}, 0)
	require.NoError(t, err)
	require.Equal(t, store.DeliveryDelivered, res.Outcome)
	fail(t, s, id[3], service.ReasonPermanentErrcode, at(10))
	settleNext(t, s, id[4], store.Settlement{Kind: store.SettleRetry, Due: at(20), Called: true, HasErr: true, ErrCode: -1, ErrMsg: "busy"}, at(10))

	tests := []struct {
		name string
		q    service.MessageQuery
		want []int // indexes into id, newest first
	}{
		{"everything", service.MessageQuery{}, []int{5, 4, 3, 2, 1, 0}},
		{"app", service.MessageQuery{App: "shop"}, []int{5, 2, 1, 0}},
		{"touser", service.MessageQuery{ToUser: "oUserA-000000001"}, []int{3, 2, 0}},
		{"touser and app", service.MessageQuery{ToUser: "oUserA-000000001", App: "shop"}, []int{2, 0}},
		{"status queued", service.MessageQuery{Status: service.StatusQueued}, []int{5}},
		{"status retrying", service.MessageQuery{Status: service.StatusRetrying}, []int{4}},
		{"status sent", service.MessageQuery{Status: service.StatusSent}, []int{0}},
		{"status delivered", service.MessageQuery{Status: service.StatusDelivered}, []int{2}},
		{"status failed", service.MessageQuery{Status: service.StatusFailed}, []int{3, 1}},
		{"status failed and app", service.MessageQuery{Status: service.StatusFailed, App: "crm"}, []int{3}},
		{"reason", service.MessageQuery{Reason: service.ReasonAttemptsExhausted}, []int{1}},
		{"reason and touser", service.MessageQuery{Reason: service.ReasonPermanentErrcode, ToUser: "oUserA-000000001"}, []int{3}},
		{"template", service.MessageQuery{TemplateID: "tplB"}, []int{4, 2}},
		{"template and app", service.MessageQuery{TemplateID: "tplA", App: "shop"}, []int{5, 1, 0}},
		{"request id", service.MessageQuery{RequestID: "req-3"}, []int{4, 3}},
		{"request id and status", service.MessageQuery{RequestID: "req-1", Status: service.StatusFailed}, []int{1}},
		{"since", service.MessageQuery{Since: at(3)}, []int{5, 4, 3}},
		{"until", service.MessageQuery{Until: at(2)}, []int{1, 0}},
		{"since and until", service.MessageQuery{Since: at(1), Until: at(4)}, []int{3, 2, 1}},
		{"since, until, touser", service.MessageQuery{Since: at(1), Until: at(4), ToUser: "oUserA-000000001"}, []int{3, 2}},
		{"nothing matches", service.MessageQuery{App: "nope"}, nil},
		{"limit", service.MessageQuery{Limit: 2}, []int{5, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := s.Search(ctx, tt.q)
			require.NoError(t, err)
			want := []string{}
			for _, i := range tt.want {
				want = append(want, id[i])
			}
			assert.Equal(t, want, ids(page))
			for _, got := range page.Messages {
				assert.Empty(t, got.History, "search leaves the history out")
			}
		})
	}

	// The records a search returns carry what GET does.
	page, err := s.Search(ctx, service.MessageQuery{RequestID: "req-2"})
	require.NoError(t, err)
	require.Len(t, page.Messages, 1)
	got := page.Messages[0]
	assert.Equal(t, service.StatusDelivered, got.Status)
	assert.Equal(t, "req-2", got.RequestID)
	assert.Equal(t, int64(102), got.MsgID)
}

func TestSearchPagesWhileMessagesArrive(t *testing.T) {
	s, _ := newStore(t)
	t0 := time.Now().Add(-time.Hour)
	var all []string
	for i := range 130 {
		all = append(all, enqueueOp(t, s, opMsg{"shop", "oUserP-000000001", "tpl", "", t0.Add(time.Duration(i) * time.Millisecond)}))
	}
	slices.Reverse(all)
	var seen []string
	q := service.MessageQuery{ToUser: "oUserP-000000001", Limit: 25}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10, "the pages end")
		page, err := s.Search(t.Context(), q)
		require.NoError(t, err)
		seen = append(seen, ids(page)...)
		// Newer messages arrive between pages: they sort before the
		// cursor, so they neither repeat nor push a message out.
		enqueueOp(t, s, opMsg{"shop", "oUserP-000000001", "tpl", "", time.Now().Add(time.Duration(pages) * time.Millisecond)})
		if page.NextCursor == "" {
			break
		}
		q.Cursor = page.NextCursor
	}
	assert.Equal(t, all, seen, "every message once, newest first")
}

func TestSearchScansABoundedNumberPerPage(t *testing.T) {
	r := redistest.New(t)
	s := store.New(r.Client, store.Options{Prefix: r.Prefix, SearchScan: 500})
	t0 := time.Now().Add(-time.Hour)
	match := enqueueOp(t, s, opMsg{"shop", "oUserS-000000001", "rare", "", t0})
	for i := 1; i <= 600; i += 100 {
		msgs := make([]store.NewMessage, 0, 100)
		for j := range 100 {
			at := t0.Add(time.Duration(i+j) * time.Millisecond)
			msgs = append(msgs, store.NewMessage{ID: store.NewID(at), App: "shop", RequestHash: "h", AcceptedAt: at,
				Request: service.SendRequest{App: "shop", ToUser: "oUserS-000000001", TemplateID: "common", Data: map[string]service.DataValue{"k": {Value: "v"}}}})
		}
		_, err := s.Enqueue(t.Context(), msgs)
		require.NoError(t, err)
	}
	q := service.MessageQuery{TemplateID: "rare"}
	var found []string
	pages := 0
	for {
		page, err := s.Search(t.Context(), q)
		require.NoError(t, err)
		pages++
		found = append(found, ids(page)...)
		if page.NextCursor == "" {
			break
		}
		q.Cursor = page.NextCursor
	}
	assert.Equal(t, []string{match}, found)
	assert.Equal(t, 2, pages, "601 messages to scan, 500 a page: the first page stops at the bound with a cursor")
}

func TestSearchRefusesBadFilters(t *testing.T) {
	s, _ := newStore(t)
	for _, tt := range []struct {
		q     service.MessageQuery
		field string
	}{
		{service.MessageQuery{Limit: 501}, "limit"},
		{service.MessageQuery{Limit: -1}, "limit"},
		{service.MessageQuery{Status: "lost"}, "status"},
		{service.MessageQuery{Reason: "x", Status: service.StatusSent}, "reason"},
		{service.MessageQuery{Cursor: "not-a-cursor"}, "cursor"},
		{service.MessageQuery{Since: now, Until: now}, "until"},
	} {
		_, err := s.Search(t.Context(), tt.q)
		var qe *store.QueryError
		require.ErrorAs(t, err, &qe, "%+v", tt.q)
		assert.Equal(t, tt.field, qe.Field)
	}
}

func TestHistoryIsTheMessagesTimeline(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	t0 := time.Now().Truncate(time.Millisecond).Add(-time.Hour)
	id := enqueueOp(t, s, opMsg{"shop", "oUserH-000000001", "tpl", "req-h", t0})
	settleNext(t, s, id, store.Settlement{Kind: store.SettleRetry, Due: t0, Called: true, Latency: 1500 * time.Microsecond, Instance: "i1",
		HasErr: true, ErrCode: -1, ErrMsg: "system error"}, t0.Add(time.Second))
	_, err := s.MoveDue(ctx, t0.Add(time.Minute), 10)
	require.NoError(t, err)
	settleNext(t, s, id, store.Settlement{Kind: store.SettleSent, MsgID: 77, Called: true, Latency: 2 * time.Millisecond, Instance: "i2"}, t0.Add(2*time.Second))
	_, err = s.ApplyDelivery(ctx, store.DeliveryReport{App: "shop", MsgID: 77, Status: "failed:user block", Reason: service.ReasonUserBlock, OpenID: "oUserH-000000001", ReceivedAt: t0.Add(3 * time.Second)}, 0)
	require.NoError(t, err)

	m, err := s.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, "req-h", m.RequestID)
	require.Len(t, m.History, 4)
	h := m.History
	assert.Equal(t, service.HistoryAccepted, h[0].Type)
	assert.Equal(t, "req-h", h[0].RequestID)
	assert.True(t, h[0].At.Equal(t0))

	assert.Equal(t, service.HistoryAttempt, h[1].Type)
	assert.Equal(t, 1, h[1].Attempt)
	assert.Equal(t, "i1", h[1].Instance)
	assert.Equal(t, service.OutcomeRetry, h[1].Outcome)
	require.NotNil(t, h[1].ErrCode)
	assert.Equal(t, -1, *h[1].ErrCode)
	assert.Equal(t, "system error", h[1].Error)
	require.NotNil(t, h[1].LatencyMS)
	assert.InDelta(t, 1.5, *h[1].LatencyMS, 0.001)
	assert.True(t, h[1].At.Equal(t0.Add(time.Second-1500*time.Microsecond)), "an attempt is dated when its send began: %v", h[1].At)

	assert.Equal(t, service.OutcomeSent, h[2].Outcome)
	assert.Equal(t, 2, h[2].Attempt)
	assert.Equal(t, int64(77), h[2].MsgID)
	assert.Nil(t, h[2].ErrCode)

	assert.Equal(t, service.HistoryDeliveryReport, h[3].Type)
	assert.Equal(t, "failed:user block", h[3].Status)
	assert.Equal(t, service.ReasonUserBlock, h[3].Reason)
	assert.True(t, h[3].At.Equal(t0.Add(3*time.Second)))
}

func TestHistoryOfAnEarlyReport(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	t0 := time.Now().Truncate(time.Millisecond).Add(-time.Hour)
	id := enqueueOp(t, s, opMsg{"shop", "oUserE-000000001", "tpl", "", t0})
	// The report arrives before the send is recorded: it is parked, then
	// applied with the send.
	res, err := s.ApplyDelivery(ctx, store.DeliveryReport{App: "shop", MsgID: 5, Status: "success", Delivered: true, OpenID: "oUserE-000000001", ReceivedAt: t0.Add(time.Second)}, 0)
	require.NoError(t, err)
	require.Equal(t, store.DeliveryParked, res.Outcome)
	settleNext(t, s, id, store.Settlement{Kind: store.SettleSent, MsgID: 5, Called: true}, t0.Add(2*time.Second))
	m, err := s.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, service.StatusDelivered, m.Status)
	require.Len(t, m.History, 3)
	assert.Equal(t, service.HistoryDeliveryReport, m.History[2].Type)
	assert.Equal(t, "success", m.History[2].Status)
	assert.True(t, m.History[2].At.Equal(t0.Add(time.Second)), "the report's own time: %v", m.History[2].At)
	page, err := s.Search(ctx, service.MessageQuery{Status: service.StatusDelivered})
	require.NoError(t, err)
	assert.Equal(t, []string{id}, ids(page), "an early report makes it delivered for search too")
}

func TestHistoryIsBounded(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	t0 := time.Now().Add(-time.Hour)
	id := enqueueOp(t, s, opMsg{"shop", "oUserB-000000009", "tpl", "", t0})
	for i := range 100 {
		settleNext(t, s, id, store.Settlement{Kind: store.SettleRetry, Due: t0, Called: true, HasErr: true, ErrCode: -1, ErrMsg: fmt.Sprint("try ", i)}, t0.Add(time.Duration(i)*time.Second))
		_, err := s.MoveDue(ctx, t0.Add(time.Hour), 10)
		require.NoError(t, err)
	}
	m, err := s.Get(ctx, id)
	require.NoError(t, err)
	require.Len(t, m.History, service.MaxHistory+1, "accepted and the latest 64")
	assert.Equal(t, service.HistoryAccepted, m.History[0].Type)
	assert.Equal(t, "try 99", m.History[len(m.History)-1].Error)
	assert.Equal(t, "try 36", m.History[1].Error)
}

func TestCounts(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	start := time.Now()
	t0 := start.Add(-time.Hour)
	a := enqueueOp(t, s, opMsg{"shop", "oUserK-000000001", "tpl", "", t0})
	b := enqueueOp(t, s, opMsg{"shop", "oUserK-000000002", "tpl", "", t0.Add(time.Millisecond)})
	c := enqueueOp(t, s, opMsg{"shop", "oUserK-000000003", "tpl", "", t0.Add(2 * time.Millisecond)})
	settleNext(t, s, a, store.Settlement{Kind: store.SettleSent, MsgID: 1, Called: true}, start)
	settleNext(t, s, b, store.Settlement{Kind: store.SettleSent, MsgID: 2, Called: true}, start)
	fail(t, s, c, service.ReasonAttemptsExhausted, start)
	_, err := s.ApplyDelivery(ctx, store.DeliveryReport{App: "shop", MsgID: 1, Status: "success", Delivered: true, OpenID: "oUserK-000000001", ReceivedAt: start}, 0)
	require.NoError(t, err)
	_, err = s.Redrive(ctx, c, false, "r", start)
	require.NoError(t, err)

	counts, err := s.Counts(ctx, start.Add(-2*time.Minute), time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.Len(t, counts, 4, "one per minute, both ends included")
	var sum service.Counts
	for _, m := range counts {
		sum.Accepted += m.Accepted
		sum.Sent += m.Sent
		sum.Delivered += m.Delivered
		sum.Redriven += m.Redriven
		for r, n := range m.Failed {
			if sum.Failed == nil {
				sum.Failed = map[string]int64{}
			}
			sum.Failed[r] += n
		}
	}
	assert.Equal(t, service.Counts{Accepted: 3, Sent: 2, Delivered: 1, Redriven: 1, Failed: map[string]int64{service.ReasonAttemptsExhausted: 1}}, sum)
	ttl, err := s.Client().TTL(ctx, s.Prefix()+fmt.Sprintf("cnt:%d", start.Unix()/60)).Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, 24*time.Hour, "a minute's counters outlive the overview's 24 hours")
}

func TestTrimIndexes(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	old := enqueueOp(t, s, opMsg{"shop", "oUserT-000000001", "tpl", "", time.Now().Add(-15 * 24 * time.Hour)})
	recent := enqueueOp(t, s, opMsg{"shop", "oUserT-000000002", "tpl", "", time.Now().Add(-time.Hour)})
	fail(t, s, old, service.ReasonAttemptsExhausted, time.Now())
	fail(t, s, recent, service.ReasonAttemptsExhausted, time.Now())
	require.NoError(t, s.Client().Del(ctx, s.Prefix()+"msg:"+old).Err()) // its record expired
	require.NoError(t, s.TrimIndexes(ctx, time.Now()))
	all, err := s.Client().ZRange(ctx, s.Prefix()+"ix:all", 0, -1).Result()
	require.NoError(t, err)
	assert.Equal(t, []string{recent}, all, "twice the 7-day retention after its acceptance, %s is dropped", old)
	failed, err := s.Client().ZRange(ctx, s.Prefix()+"ix:st:failed", 0, -1).Result()
	require.NoError(t, err)
	assert.Equal(t, []string{recent}, failed)
}

func TestSearchAUserAcrossDays(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	var want []string
	for d := 6; d >= 0; d-- {
		for i := range 3 {
			at := time.Now().Add(-time.Duration(d)*24*time.Hour - time.Duration(i)*time.Minute)
			want = append(want, enqueueOp(t, s, opMsg{"shop", "oUserD-000000001", "tpl", "req-days", at}))
			enqueueOp(t, s, opMsg{"shop", "oUserD-0000000011", "tpl", "req-days-1", at}) // a longer id with the same start
		}
	}
	slices.Sort(want)
	slices.Reverse(want)
	for _, q := range []service.MessageQuery{{ToUser: "oUserD-000000001", Limit: 4}, {RequestID: "req-days", Limit: 4}} {
		var got []string
		for pages := 0; ; pages++ {
			require.Less(t, pages, 20)
			page, err := s.Search(ctx, q)
			require.NoError(t, err)
			got = append(got, ids(page)...)
			if page.NextCursor == "" {
				break
			}
			q.Cursor = page.NextCursor
		}
		assert.Equal(t, want, got, "%+v: seven days of messages, newest first, pages crossing the days", q)
	}
	day := time.Now().UTC().Format("20060102")
	ttl, err := s.Client().TTL(ctx, s.Prefix()+"ix:to:"+day).Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, 21*24*time.Hour, "a day's sets outlive every record they name")
	assert.Less(t, ttl, 23*24*time.Hour)
}
