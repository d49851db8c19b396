package loadtest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/service"
)

// ledgerFixture builds synthetic ledgers for the accountant: the run's tag,
// two apps and a clock.
type ledgerFixture struct {
	t    *testing.T
	tag  string
	t0   time.Time
	seq  uint64
	apps map[string]mockwx.App
}

func newLedgerFixture(t *testing.T) *ledgerFixture {
	return &ledgerFixture{t: t, tag: "wltest", t0: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
		apps: map[string]mockwx.App{"a": {AppID: "wx00000000000000aa"}, "b": {AppID: "wx00000000000000bb"}}}
}

func (f *ledgerFixture) acct() *accountant { return newAccountant(f.tag, f.apps, f.t0) }

// item is message n of app.
func (f *ledgerFixture) item(n int, app string) item {
	m := fmt.Sprintf("%s-%d", f.tag, n)
	return item{marker: m, app: app, touser: "oUser", key: "wxload-" + m}
}

// at is t0 plus ms milliseconds.
func (f *ledgerFixture) at(ms int) time.Time { return f.t0.Add(time.Duration(ms) * time.Millisecond) }

// entry is the next ledger entry carrying marker, as the mock records a
// send of app with errcode.
func (f *ledgerFixture) entry(marker, app string, errcode int, dedup bool, at time.Time) mockwx.LedgerEntry {
	f.seq++
	data, err := json.Marshal(map[string]service.DataValue{
		"thing1": {Value: "订单已发货"}, MarkerKey: {Value: marker},
	})
	require.NoError(f.t, err)
	return mockwx.LedgerEntry{Seq: f.seq, ReceivedAt: at, AppID: f.apps[app].AppID, ToUser: "oUser",
		TemplateID: "order_shipped", ErrCode: errcode, Deduplicated: dedup, Data: data}
}

// evicted is the next ledger entry of app whose data the mock dropped.
func (f *ledgerFixture) evicted(app string, at time.Time) mockwx.LedgerEntry {
	f.seq++
	return mockwx.LedgerEntry{Seq: f.seq, ReceivedAt: at, AppID: f.apps[app].AppID, TemplateID: "order_shipped"}
}

func (f *ledgerFixture) fill(a *accountant) Delivery {
	var d Delivery
	a.fill(&d, 7)
	return d
}

// TestAccountLost: an accepted message neither delivered nor failed after
// the drain is lost; outstanding lists exactly those without an outcome.
func TestAccountLost(t *testing.T) {
	f := newLedgerFixture(t)
	a := f.acct()
	for i := 1; i <= 4; i++ {
		a.accept(f.item(i, "a"), fmt.Sprintf("id%d", i), f.at(i), f.at(i))
	}
	a.ledger(f.entry(f.tag+"-1", "a", 0, false, f.at(50)), nil, nil)
	a.byID["id2"].status, a.byID["id2"].reason = service.StatusFailed, "user block"
	// A failed attempt (errcode) is not a delivery.
	a.ledger(f.entry(f.tag+"-3", "a", -1, false, f.at(60)), nil, nil)
	var out []string
	for _, tr := range a.outstanding() {
		out = append(out, tr.marker)
	}
	assert.ElementsMatch(t, []string{f.tag + "-3", f.tag + "-4"}, out)

	d := f.fill(a)
	assert.Equal(t, 4, d.Accepted)
	assert.Equal(t, 1, d.Delivered)
	assert.Equal(t, 1, d.Failed)
	assert.Equal(t, 2, d.Lost)
	assert.Equal(t, 0, d.Duplicates)
	assert.Equal(t, 7, d.StatusChecked)
	assert.Equal(t, d.Accepted, d.Delivered+d.Failed+d.Lost, "every accepted message is exactly one of delivered, failed, lost")
}

// TestAccountDuplicates: a marker WeChat accepted twice (errcode 0, not
// deduplicated by client_msg_id) is one delivered message and one
// duplicate; a deduplicated repeat or a failed attempt is no duplicate.
func TestAccountDuplicates(t *testing.T) {
	f := newLedgerFixture(t)
	a := f.acct()
	for i := 1; i <= 4; i++ {
		a.accept(f.item(i, "a"), fmt.Sprintf("id%d", i), f.at(0), f.at(0))
	}
	m := func(n int) string { return fmt.Sprintf("%s-%d", f.tag, n) }
	for _, e := range []mockwx.LedgerEntry{
		f.entry(m(1), "a", 0, false, f.at(10)), // 1: delivered twice
		f.entry(m(1), "a", 0, false, f.at(20)),
		f.entry(m(2), "a", 0, false, f.at(10)), // 2: a repeat WeChat deduplicated
		f.entry(m(2), "a", 0, true, f.at(20)),
		f.entry(m(3), "a", -1, false, f.at(10)), // 3: a retry after -1
		f.entry(m(3), "a", 0, false, f.at(30)),
		f.entry(m(4), "a", 0, false, f.at(10)), // 4: delivered three times
		f.entry(m(4), "a", 0, false, f.at(11)),
		f.entry(m(4), "a", 0, false, f.at(12)),
	} {
		a.ledger(e, nil, nil)
	}
	d := f.fill(a)
	assert.Equal(t, 4, d.Delivered)
	assert.Equal(t, 2, d.Duplicates, "messages delivered more than once, not extra deliveries")
	assert.Equal(t, 0, d.Lost)
	assert.Equal(t, 2, a.byMarker[m(1)].deliveries)
	assert.Equal(t, 1, a.byMarker[m(2)].deliveries, "a deduplicated entry is not a delivery")
	assert.Equal(t, 1, a.byMarker[m(3)].deliveries, "an errcode entry is not a delivery")
	assert.Equal(t, f.at(30), a.byMarker[m(3)].firstAt, "the first delivery is the first errcode 0 entry")
}

// TestAccountLateDelivery: the ledger may show a delivery before the
// generator has processed the API's answer: the entry waits in unacked and
// is folded in when the accept arrives; a delivery whose accept never
// arrives stays unacked and is not counted.
func TestAccountLateDelivery(t *testing.T) {
	f := newLedgerFixture(t)
	a := f.acct()
	m1, m2 := f.tag+"-1", f.tag+"-2"
	var receipts []string
	receipt := func(tr *tracked, _ time.Time) { receipts = append(receipts, tr.marker) }
	a.ledger(f.entry(m1, "a", 0, false, f.at(5)), nil, receipt)
	a.ledger(f.entry(m2, "a", 0, false, f.at(6)), nil, receipt)
	assert.Equal(t, map[string]int{m1: 1, m2: 1}, a.unacked)
	assert.Empty(t, receipts, "no receipt before the message is known")
	a.accept(f.item(1, "a"), "id1", f.at(8), f.at(8))
	assert.Equal(t, map[string]int{m2: 1}, a.unacked, "folded in on accept")
	assert.Equal(t, 1, a.byMarker[m1].deliveries)
	assert.Empty(t, a.outstanding(), "a late-acknowledged delivered message is not outstanding")
	// A second delivery of the late message is a duplicate.
	a.ledger(f.entry(m1, "a", 0, false, f.at(9)), nil, receipt)
	d := f.fill(a)
	assert.Equal(t, 1, d.Accepted, "a delivery never acknowledged is not an accepted message")
	assert.Equal(t, 1, d.Delivered)
	assert.Equal(t, 0, d.Lost)
	assert.Equal(t, 1, d.Duplicates)
	assert.Equal(t, 0, d.Unattributed)
}

// TestAccountFailedByReason: statuses decide failures, whatever the
// ledger says; a failure without a reason counts as "unknown".
func TestAccountFailedByReason(t *testing.T) {
	f := newLedgerFixture(t)
	a := f.acct()
	reasons := []string{"user block", "user block", "system failed", ""}
	for i, r := range reasons {
		id := fmt.Sprintf("id%d", i)
		a.accept(f.item(i, "a"), id, f.at(0), f.at(0))
		a.byID[id].status, a.byID[id].reason = service.StatusFailed, r
	}
	// WeChat accepted the first one, but the report said it failed.
	a.ledger(f.entry(f.tag+"-0", "a", 0, false, f.at(10)), nil, nil)
	a.accept(f.item(9, "a"), "id9", f.at(0), f.at(0))
	a.ledger(f.entry(f.tag+"-9", "a", 0, false, f.at(10)), nil, nil)
	a.byID["id9"].status = service.StatusDelivered
	d := f.fill(a)
	assert.Equal(t, 4, d.Failed)
	assert.Equal(t, map[string]int{"user block": 2, "system failed": 1, "unknown": 1}, d.FailedByReason)
	assert.Equal(t, 1, d.Delivered, "a failed message is failed, not delivered")
	assert.Equal(t, 1, d.Confirmed)
	assert.Equal(t, 0, d.Lost)
}

// TestAccountUnattributed: entries whose data the mock evicted cannot be
// attributed; they count as unattributed when they belong to the run's
// apps and time, and not otherwise.
func TestAccountUnattributed(t *testing.T) {
	f := newLedgerFixture(t)
	a := f.acct()
	a.accept(f.item(1, "a"), "id1", f.at(0), f.at(0))
	a.ledger(f.evicted("a", f.at(10)), nil, nil)
	a.ledger(f.evicted("b", f.at(10)), nil, nil)
	a.ledger(f.evicted("a", f.t0), nil, nil)                        // at the start: ours
	a.ledger(f.evicted("a", f.t0.Add(-time.Millisecond)), nil, nil) // before the run
	other := f.evicted("a", f.at(10))
	other.AppID = "wx0000000000000099" // an app of another deployment
	a.ledger(other, nil, nil)
	d := f.fill(a)
	assert.Equal(t, 3, d.Unattributed)
	assert.Equal(t, 1, d.Lost, "the evicted entries are not attributed to the message")
	assert.Equal(t, f.seq, a.lastSeq)
}

// TestAccountOtherRun: entries of another run (another tag, a tag that is
// a prefix of ours, no marker, data that is not JSON) are ignored, and do
// not reach the entry callback.
func TestAccountOtherRun(t *testing.T) {
	f := newLedgerFixture(t)
	a := f.acct()
	a.accept(f.item(1, "a"), "id1", f.at(0), f.at(0))
	var seen []uint64
	entry := func(e mockwx.LedgerEntry) { seen = append(seen, e.Seq) }
	ours := f.entry(f.tag+"-1", "a", 0, false, f.at(5))
	for _, e := range []mockwx.LedgerEntry{
		f.entry("wlother-1", "a", 0, false, f.at(1)),
		f.entry(f.tag+"x-1", "a", 0, false, f.at(2)),    // tag + suffix: another run
		f.entry("x"+f.tag+"-1", "a", 0, false, f.at(3)), // tag inside another marker
		ours,
	} {
		a.ledger(e, entry, nil)
	}
	noMarker := f.entry("", "a", 0, false, f.at(6))
	noMarker.Data = json.RawMessage(`{"thing1":{"value":"` + f.tag + `"}}`)
	a.ledger(noMarker, entry, nil)
	garbage := f.entry("", "a", 0, false, f.at(7))
	garbage.Data = json.RawMessage(`{"` + f.tag + ``)
	a.ledger(garbage, entry, nil)
	assert.Equal(t, []uint64{ours.Seq}, seen)
	assert.Empty(t, a.unacked, "another run's markers are not unacked deliveries of ours")
	d := f.fill(a)
	assert.Equal(t, 1, d.Delivered)
	assert.Equal(t, 0, d.Duplicates)
	assert.Equal(t, 0, d.Unattributed, "entries with data are never unattributed")
	assert.Equal(t, garbage.Seq, a.lastSeq, "lastSeq follows every entry read")
}

// TestAccountPerApp: the per-app figures add up to the totals.
func TestAccountPerApp(t *testing.T) {
	f := newLedgerFixture(t)
	a := f.acct()
	apps := []string{"a", "a", "a", "b", "b"}
	for i, app := range apps {
		a.accept(f.item(i, app), fmt.Sprintf("id%d", i), f.at(0), f.at(0))
	}
	a.ledger(f.entry(f.tag+"-0", "a", 0, false, f.at(1)), nil, nil)
	a.ledger(f.entry(f.tag+"-1", "a", 0, false, f.at(1)), nil, nil)
	a.byID["id2"].status = service.StatusFailed
	a.ledger(f.entry(f.tag+"-3", "b", 0, false, f.at(1)), nil, nil)
	d := f.fill(a)
	assert.Equal(t, map[string]AppFlow{
		"a": {Accepted: 3, Delivered: 2, Failed: 1, MaxPerSecond: 2}, // both receipts in the same second
		"b": {Accepted: 2, Delivered: 1, Lost: 1, MaxPerSecond: 1},
	}, d.Apps)
}

// TestAccountE2ELatency: on a synthetic ledger with known times, end-to-end
// latency runs from each message's scheduled send to the mock's receipt of
// its first delivery, and confirmed latency from the same send to the
// delivery report's application, in milliseconds, over the messages that
// have them, unclamped: a receipt before the API's answer (the usual case
// on loopback) counts in full, and one stamped before the send (a remote
// clock behind this one) is left out and counted, never recorded as zero.
func TestAccountE2ELatency(t *testing.T) {
	f := newLedgerFixture(t)
	a := f.acct()
	for i := 1; i <= 100; i++ {
		m := fmt.Sprintf("%s-%d", f.tag, i)
		// Sent at i ms; the mock receives it i*10 ms later, before the
		// API's answer arrives (at i ms + 2 s); the report is applied
		// 1 s after the receipt.
		sent := f.at(i)
		a.accept(f.item(i, "a"), fmt.Sprintf("id%d", i), sent, sent.Add(2*time.Second))
		a.ledger(f.entry(m, "a", 0, false, sent.Add(time.Duration(i*10)*time.Millisecond)), nil, nil)
		// A later duplicate does not move the first receipt.
		a.ledger(f.entry(m, "a", 0, false, sent.Add(time.Duration(i*10+5000)*time.Millisecond)), nil, nil)
		a.byMarker[m].confirmedAt = sent.Add(time.Duration(i*10+1000) * time.Millisecond)
	}
	a.accept(f.item(1000, "a"), "lost", f.at(0), f.at(1)) // no delivery: not in the percentiles
	d := f.fill(a)
	// hdrhistogram keeps 3 significant digits.
	for _, tc := range []struct {
		name      string
		got       Percentiles
		p50, p99  float64
		max, mean float64
	}{
		{"e2e", d.E2ELatencyMS, 500, 990, 1000, 505},
		{"confirmed", d.ConfirmedLatencyMS, 1500, 1990, 2000, 1505},
	} {
		assert.InDelta(t, tc.p50, tc.got.P50, 1, tc.name)
		assert.InDelta(t, tc.p99, tc.got.P99, 2, tc.name)
		assert.InDelta(t, tc.max, tc.got.Max, 2, tc.name)
		assert.InDelta(t, tc.mean, tc.got.Mean, 2, tc.name)
	}
	assert.Equal(t, 100, d.Duplicates)
	assert.Zero(t, d.ReceiptsBeforeSend)

	// Sub-millisecond latencies are kept to the microsecond: no floor.
	b := f.acct()
	b.accept(f.item(1, "a"), "id1", f.at(0), f.at(5))
	b.ledger(f.entry(f.tag+"-1", "a", 0, false, f.at(0).Add(250*time.Microsecond)), nil, nil)
	// A receipt stamped before its send is left out, and counted.
	b.accept(f.item(2, "a"), "id2", f.at(100), f.at(105))
	b.ledger(f.entry(f.tag+"-2", "a", 0, false, f.at(50)), nil, nil)
	assert.Equal(t, Percentiles{}, percentiles(newHist()), "no deliveries: zero percentiles")
	d = f.fill(b)
	assert.InDelta(t, 0.25, d.E2ELatencyMS.P50, 0.001)
	assert.InDelta(t, 0.25, d.E2ELatencyMS.Max, 0.001)
	assert.Equal(t, 1, d.ReceiptsBeforeSend)
	assert.Equal(t, 2, d.Delivered)
	assert.Equal(t, Percentiles{}, d.ConfirmedLatencyMS, "no report applied: no confirmed latency")
}

// TestConfirmedAt: the confirmation is delivered_at for a delivered
// message, updated_at for a failure a delivery report caused, and none
// otherwise.
func TestConfirmedAt(t *testing.T) {
	at := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	later := at.Add(time.Second)
	for _, tc := range []struct {
		name string
		m    service.Message
		want time.Time
	}{
		{"delivered", service.Message{Status: service.StatusDelivered, DeliveredAt: &at, UpdatedAt: later}, at},
		{"failed by a report", service.Message{Status: service.StatusFailed, DeliveryStatus: "failed:user block", UpdatedAt: later}, later},
		{"failed by WeChat's answer", service.Message{Status: service.StatusFailed, UpdatedAt: later}, time.Time{}},
		{"sent", service.Message{Status: service.StatusSent, UpdatedAt: later}, time.Time{}},
	} {
		assert.Equal(t, tc.want, confirmedAt(&tc.m), tc.name)
	}
}

// TestAccountReceipts: receipts sees each message's first delivery once;
// entry sees every entry of the run, errcodes and repeats included.
func TestAccountReceipts(t *testing.T) {
	f := newLedgerFixture(t)
	a := f.acct()
	a.accept(f.item(1, "a"), "id1", f.at(0), f.at(0))
	var entries int
	var receipts []time.Time
	entry := func(mockwx.LedgerEntry) { entries++ }
	receipt := func(tr *tracked, at time.Time) {
		assert.Equal(t, "id1", tr.id)
		receipts = append(receipts, at)
	}
	a.ledger(f.entry(f.tag+"-1", "a", -1, false, f.at(1)), entry, receipt)
	a.ledger(f.entry(f.tag+"-1", "a", 0, false, f.at(2)), entry, receipt)
	a.ledger(f.entry(f.tag+"-1", "a", 0, true, f.at(3)), entry, receipt)
	a.ledger(f.entry(f.tag+"-1", "a", 0, false, f.at(4)), entry, receipt)
	assert.Equal(t, 4, entries)
	assert.Equal(t, []time.Time{f.at(2)}, receipts)
}

// TestAccountRepeatedAccept: a repeated request (same marker) keeps the
// first acknowledgement; a different id for it is an id conflict.
func TestAccountRepeatedAccept(t *testing.T) {
	f := newLedgerFixture(t)
	a := f.acct()
	a.accept(f.item(1, "a"), "id1", f.at(0), f.at(0))
	a.accept(f.item(1, "a"), "id1", f.at(5), f.at(5))
	assert.Equal(t, 0, a.idConflicts)
	a.accept(f.item(1, "a"), "other", f.at(6), f.at(6))
	assert.Equal(t, 1, a.idConflicts)
	assert.Len(t, a.byMarker, 1)
	assert.Equal(t, f.at(0), a.byMarker[f.tag+"-1"].acceptedAt)
	assert.NotContains(t, a.byID, "other")
}

// TestAccountUnconfirmed: delivered messages whose status is not final are
// unconfirmed; delivered or failed statuses are final.
func TestAccountUnconfirmed(t *testing.T) {
	f := newLedgerFixture(t)
	a := f.acct()
	for i := 1; i <= 3; i++ {
		a.accept(f.item(i, "a"), fmt.Sprintf("id%d", i), f.at(0), f.at(0))
		a.ledger(f.entry(fmt.Sprintf("%s-%d", f.tag, i), "a", 0, false, f.at(1)), nil, nil)
	}
	a.accept(f.item(4, "a"), "id4", f.at(0), f.at(0)) // not delivered: not unconfirmed
	a.byID["id1"].status = service.StatusSent
	a.byID["id2"].status = service.StatusDelivered
	a.byID["id3"].status = service.StatusFailed
	var ids []string
	for _, tr := range a.unconfirmed() {
		ids = append(ids, tr.id)
	}
	assert.Equal(t, []string{"id1"}, ids)
}
