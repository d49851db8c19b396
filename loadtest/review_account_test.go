package loadtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestAccountLateDeliveryReachesTheSeries: a delivery the ledger shows
// before the generator processed the API's answer (folded in on accept)
// counts in the summary's delivered figure and e2e latency; it must count
// in the per-second delivered series and the app's receipts (its
// max-per-second) too, or the chart and the summary disagree.
func TestAccountLateDeliveryReachesTheSeries(t *testing.T) {
	f := newLedgerFixture(t)
	a := f.acct()
	m1 := f.tag + "-1"
	var receipts []string
	receipt := func(tr *tracked, _ time.Time) { receipts = append(receipts, tr.marker) }
	// Sent at 0 ms, received by the mock at 5 ms, the answer processed at 8 ms.
	a.ledger(f.entry(m1, "a", 0, false, f.at(5)), nil, receipt)
	a.accept(f.item(1, "a"), "id1", f.at(0), f.at(8))
	d := f.fill(a)
	assert.Equal(t, 1, d.Delivered)
	assert.InDelta(t, 5.0, d.E2ELatencyMS.P50, 0.01, "the summary's e2e counts it")
	assert.Len(t, a.receipts["a"], 1, "the app's receipts miss the delivery")
	assert.Equal(t, 1, d.Apps["a"].MaxPerSecond, "the app's max per second misses the delivery")
	assert.Equal(t, []string{m1}, receipts, "the series (fed by receipts) misses the delivery")
}
