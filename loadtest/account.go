package loadtest

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/wxpush/wxpush/internal/window"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/scenarios"
	"github.com/wxpush/wxpush/service"
)

// tracked is one accepted message as the accounting follows it.
type tracked struct {
	id, marker, app, touser string
	// sentAt is when the first request carrying the message was due to
	// leave the generator (its scheduled send time); acceptedAt is when
	// the API's answer arrived.
	sentAt, acceptedAt time.Time
	deliveries         int       // ledger entries with errcode 0 that were not deduplicated
	firstAt            time.Time // mock receipt of the first delivery (the mock's clock)
	status             service.Status
	reason             string
	updatedAt          time.Time // of the status
	// confirmedAt is when the service applied WeChat's delivery report
	// (the message's delivered_at, or updated_at of a failure the report
	// caused): zero until a status read saw it.
	confirmedAt time.Time
}

func (t *tracked) failed() bool { return t.status == service.StatusFailed }

// accountant attributes the mock's ledger entries to accepted messages by
// their marker. It is used from one goroutine.
type accountant struct {
	// tag is the run's tag: every marker of the run starts with it. tags,
	// when set (a merge of shards), are the tags a marker's own tag must
	// be one of; tag is then the prefix they share.
	tag      string
	tags     map[string]bool
	appIDs   map[string]bool // the run's appids, to count unattributed entries
	since    time.Time
	byMarker map[string]*tracked
	byID     map[string]*tracked
	// unacked counts deliveries of markers the API never acknowledged (the
	// answer was lost: a timeout, or an instance killed mid-request).
	unacked      map[string]int
	unackedFirst map[string]time.Time // their first receipt
	idConflicts  int                  // a repeat answered with a different id than its original
	unattributed int
	startSeq     uint64 // the ledger's end before the run
	lastSeq      uint64
	receipts     map[string][]time.Time // first deliveries by app
	// lateReceipts is the receipts function of the ledger call that
	// parked a delivery in unacked: accept calls it when it folds the
	// delivery in.
	lateReceipts func(t *tracked, at time.Time)
}

func newAccountant(tag string, apps map[string]mockwx.App, since time.Time) *accountant {
	a := &accountant{tag: tag, appIDs: map[string]bool{}, since: since, byMarker: map[string]*tracked{},
		byID: map[string]*tracked{}, unacked: map[string]int{}, unackedFirst: map[string]time.Time{}, receipts: map[string][]time.Time{}}
	for _, app := range apps {
		a.appIDs[app.AppID] = true
	}
	return a
}

// accept records an acknowledged message: sent is the scheduled send time
// of the request that carried it, at the arrival of the API's answer. A
// repeat with the same marker keeps the first acknowledgement, and the
// earliest send time. A delivery the ledger showed before the answer
// is folded in here, and reaches the app's receipts and the receipts
// function that ledger call was given: the caller must not hold a lock
// that function takes.
func (a *accountant) accept(it item, id string, sent, at time.Time) {
	if t, ok := a.byMarker[it.marker]; ok {
		if t.id != id {
			a.idConflicts++
		}
		if sent.Before(t.sentAt) {
			t.sentAt = sent
		}
		return
	}
	t := &tracked{id: id, marker: it.marker, app: it.app, touser: it.touser, sentAt: sent, acceptedAt: at}
	a.byMarker[it.marker] = t
	a.byID[id] = t
	if n := a.unacked[it.marker]; n > 0 { // the ledger saw it before the answer was processed
		t.deliveries = n
		a.firstDelivery(t, a.unackedFirst[it.marker], a.lateReceipts)
		delete(a.unacked, it.marker)
		delete(a.unackedFirst, it.marker)
	}
}

// firstDelivery records t's first delivery, received at at.
func (a *accountant) firstDelivery(t *tracked, at time.Time, receipts func(t *tracked, at time.Time)) {
	t.firstAt = at
	a.receipts[t.app] = append(a.receipts[t.app], at)
	if receipts != nil {
		receipts(t, at)
	}
}

// ledgerData is the part of a ledger entry's data the accounting reads.
type ledgerData map[string]struct {
	Value string `json:"value"`
}

// markerOf returns the entry's marker if it belongs to this run.
func (a *accountant) markerOf(e mockwx.LedgerEntry) (string, bool) {
	if len(e.Data) == 0 {
		return "", false
	}
	// A cheap check before decoding: most entries of a shared mock that
	// are not ours do not contain the tag at all.
	if !strings.Contains(string(e.Data), a.tag) {
		return "", false
	}
	var d ledgerData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return "", false
	}
	m := d[MarkerKey].Value
	if !a.ours(m) {
		return "", false
	}
	return m, true
}

// ours reports whether a marker is one of the run's.
func (a *accountant) ours(marker string) bool {
	if a.tags != nil {
		return a.tags[tagOf(marker)]
	}
	return strings.HasPrefix(marker, a.tag+"-")
}

// ledger applies one ledger entry. entry, when set, sees every entry of
// this run; receipts sees each message's first delivery (one seen before
// its accept when accept folds it in).
func (a *accountant) ledger(e mockwx.LedgerEntry, entry func(mockwx.LedgerEntry), receipts func(t *tracked, at time.Time)) {
	if e.Seq > a.lastSeq {
		a.lastSeq = e.Seq
	}
	marker, ok := a.markerOf(e)
	if !ok {
		if len(e.Data) == 0 && a.appIDs[e.AppID] && !e.ReceivedAt.Before(a.since) {
			a.unattributed++
		}
		return
	}
	a.marked(e, marker, entry, receipts)
}

// marked applies a ledger entry of the run whose marker is known (read
// from the entry's data, or from a run directory's ledger.jsonl).
func (a *accountant) marked(e mockwx.LedgerEntry, marker string, entry func(mockwx.LedgerEntry), receipts func(t *tracked, at time.Time)) {
	if e.Seq > a.lastSeq {
		a.lastSeq = e.Seq
	}
	if entry != nil {
		entry(e)
	}
	if e.ErrCode != 0 || e.Deduplicated {
		return
	}
	t, ok := a.byMarker[marker]
	if !ok {
		if a.unacked[marker] == 0 {
			a.unackedFirst[marker] = e.ReceivedAt
		}
		a.unacked[marker]++
		a.lateReceipts = receipts
		return
	}
	t.deliveries++
	if t.deliveries == 1 {
		a.firstDelivery(t, e.ReceivedAt, receipts)
	}
}

// outstanding lists the messages with no final outcome yet.
func (a *accountant) outstanding() []*tracked {
	var out []*tracked
	for _, t := range a.byMarker {
		if t.deliveries == 0 && !t.failed() {
			out = append(out, t)
		}
	}
	return out
}

// delivered counts the messages delivered at least once.
func (a *accountant) delivered() int {
	n := 0
	for _, t := range a.byMarker {
		if t.deliveries > 0 {
			n++
		}
	}
	return n
}

// unconfirmed lists delivered messages whose status is not final yet
// (their delivery report has not been applied).
func (a *accountant) unconfirmed() []*tracked {
	var out []*tracked
	for _, t := range a.byMarker {
		if t.deliveries > 0 && t.status != service.StatusDelivered && !t.failed() {
			out = append(out, t)
		}
	}
	return out
}

// reportingApps names the apps whose delivery reports the mock sends to
// the service (callback_mode other than off).
func reportingApps(apps []scenarios.App) map[string]bool {
	out := map[string]bool{}
	for _, a := range apps {
		if a.CallbackMode != "off" {
			out[a.Name] = true
		}
	}
	return out
}

// awaitingReports lists the messages of ts a delivery report can still
// make final: delivered, not final yet, of an app in reporting.
func awaitingReports(ts []*tracked, reporting map[string]bool) []*tracked {
	var out []*tracked
	for _, t := range ts {
		if reporting[t.app] && t.deliveries > 0 && t.status != service.StatusDelivered && !t.failed() {
			out = append(out, t)
		}
	}
	return out
}

// fill computes the delivery figures. Every accepted message is exactly
// one of delivered, failed (the service says so, whatever WeChat did) and
// lost.
func (a *accountant) fill(d *Delivery, statusChecked int) {
	d.Accepted = len(a.byMarker)
	d.FailedByReason = map[string]int{}
	d.Apps = map[string]AppFlow{}
	lat := a.latencies()
	for _, t := range a.byMarker {
		f := d.Apps[t.app]
		f.Accepted++
		switch {
		case t.failed():
			d.Failed++
			f.Failed++
			reason := t.reason
			if reason == "" {
				reason = "unknown"
			}
			d.FailedByReason[reason]++
		case t.deliveries > 0:
			d.Delivered++
			f.Delivered++
		default:
			d.Lost++
			f.Lost++
		}
		if t.deliveries > 1 {
			d.Duplicates++
		}
		if t.status == service.StatusDelivered {
			d.Confirmed++
		}
		d.Apps[t.app] = f
	}
	for app, times := range a.receipts {
		if f, ok := d.Apps[app]; ok {
			f.MaxPerSecond = window.MaxIn(times, time.Second)
			d.Apps[app] = f
		}
	}
	d.E2ELatencyMS = percentiles(lat.e2e)
	d.ConfirmedLatencyMS = percentiles(lat.confirmed)
	d.ReceiptsBeforeSend = lat.beforeSend
	d.Unattributed = a.unattributed
	d.StatusChecked = statusChecked
}

// runLatencies are the run's delivery latencies, in microseconds.
type runLatencies struct {
	// e2e runs from each delivered message's scheduled send to the
	// mock's receipt of its first delivery; confirmed from the same send
	// to the service applying its delivery report.
	e2e, confirmed *hdrhistogram.Histogram
	// beforeSend counts receipts or confirmations stamped before their
	// send: another machine's clock behind this one. They are left out
	// of the histograms rather than counted as zero.
	beforeSend int
}

// latencies measures every tracked message's delivery latencies. Nothing
// is clamped: a latency is recorded as measured, to the microsecond.
func (a *accountant) latencies() runLatencies {
	l := runLatencies{e2e: newHist(), confirmed: newHist()}
	record := func(h *hdrhistogram.Histogram, from, to time.Time) {
		if from.IsZero() || to.IsZero() {
			return
		}
		d := to.Sub(from)
		if d < 0 {
			l.beforeSend++
			return
		}
		_ = h.RecordValue(d.Microseconds())
	}
	for _, t := range a.byMarker {
		if t.deliveries > 0 {
			record(l.e2e, t.sentAt, t.firstAt)
		}
		record(l.confirmed, t.sentAt, t.confirmedAt)
	}
	return l
}

// newHist is a histogram of microseconds up to two hours (0 included), at three
// significant digits.
func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(2*time.Hour/time.Microsecond), 3)
}

// percentiles reads a histogram of microseconds as milliseconds.
func percentiles(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		Max: ms(h.Max()), Mean: h.Mean() / 1000,
	}
}
