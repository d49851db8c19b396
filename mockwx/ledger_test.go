package mockwx

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

var ledgerT0 = time.Date(2025, 6, 1, 8, 0, 0, 123456789, time.UTC)

// ledgerEntry is a realistic entry numbered i (as appended: Seq is junk).
func ledgerEntry(i int) LedgerEntry {
	e := LedgerEntry{
		Seq:          999_999, // ignored by Append
		ReceivedAt:   ledgerT0.Add(time.Duration(i) * time.Millisecond),
		AppID:        fmt.Sprintf("wxapp%d", i%3),
		ToUser:       fmt.Sprintf("oUser-%07d", i),
		TemplateID:   fmt.Sprintf("tmpl-%d", i%5),
		ClientMsgID:  fmt.Sprintf("wxp-%026d", i),
		MsgID:        3_000_000_000_000_000_000 + int64(i),
		Deduplicated: i%7 == 0,
		Data:         json.RawMessage(fmt.Sprintf(`{"first":{"value":"n%d"}}`, i)),
	}
	if i%4 == 0 {
		e.ErrCode, e.MsgID = 45009, 0
	}
	return e
}

// ledgerWant is ledgerEntry(i) as the ledger returns it under seq.
func ledgerWant(i int, seq uint64, withData bool) LedgerEntry {
	e := ledgerEntry(i)
	e.Seq = seq
	if !withData {
		e.Data = nil
	}
	return e
}

// newLedgerForTest is NewLedger with the segment sizes overridden (when > 0).
func newLedgerForTest(opts LedgerOptions, segRecords, dataSegRecords int) *Ledger {
	l := NewLedger(opts)
	if segRecords > 0 {
		l.segRecords = segRecords
	}
	if dataSegRecords > 0 {
		l.dataSegRecords = dataSegRecords
	}
	return l
}

// ledgerFill appends ledgerEntry(1..n).
func ledgerFill(t testing.TB, l *Ledger, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		if got := l.Append(ledgerEntry(i)); got != uint64(i) {
			t.Fatalf("Append(entry %d) = seq %d, want %d", i, got, i)
		}
	}
}

// ledgerEq reports a test error when got and want differ (deeply).
func ledgerEq[T any](t testing.TB, got, want T, what string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\ngot  %+v\nwant %+v", what, got, want)
	}
}

func ledgerSeqs(p LedgerPage) []uint64 {
	seqs := []uint64{}
	for _, m := range p.Messages {
		seqs = append(seqs, m.Seq)
	}
	return seqs
}

// ledgerRange is lo..hi, empty when hi < lo.
func ledgerRange(lo, hi uint64) []uint64 {
	r := []uint64{}
	for s := lo; s <= hi && hi != 0; s++ {
		r = append(r, s)
	}
	return r
}

type ledgerPageCase struct {
	name      string
	after     uint64
	limit     int
	first     uint64 // seqs first..last expected; last 0: none
	last      uint64
	nextAfter uint64
	more      bool
}

func checkLedgerPages(t *testing.T, l *Ledger, cases []ledgerPageCase, oldest, evicted uint64) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := l.Page(tc.after, tc.limit)
			what := fmt.Sprintf("Page(%d, %d)", tc.after, tc.limit)
			ledgerEq(t, ledgerSeqs(p), ledgerRange(tc.first, tc.last), what+" seqs")
			ledgerEq(t, p.NextAfter, tc.nextAfter, what+" NextAfter")
			ledgerEq(t, p.More, tc.more, what+" More")
			ledgerEq(t, p.OldestSeq, oldest, what+" OldestSeq")
			ledgerEq(t, p.Evicted, evicted, what+" Evicted")
		})
	}
}

func TestLedgerAppendAndPage(t *testing.T) {
	l := NewLedger(LedgerOptions{})
	ledgerFill(t, l, 25)
	checkLedgerPages(t, l, []ledgerPageCase{
		{"first page", 0, 10, 1, 10, 10, true},
		{"middle page", 10, 10, 11, 20, 20, true},
		{"last partial page", 20, 10, 21, 25, 25, false},
		{"page ending at the end", 15, 10, 16, 25, 25, false},
		{"limit one", 3, 1, 4, 4, 4, true},
		{"after the last", 25, 10, 0, 0, 25, false},
		{"after beyond the last", 40, 10, 0, 0, 40, false},
		{"after max uint64", math.MaxUint64, 10, 0, 0, math.MaxUint64, false},
		{"limit 0 means 1000", 0, 0, 1, 25, 25, false},
		{"negative limit means 1000", 0, -5, 1, 25, 25, false},
	}, 1, 0)

	p := l.Page(0, 100)
	for i, got := range p.Messages {
		ledgerEq(t, got, ledgerWant(i+1, uint64(i+1), true), fmt.Sprintf("Page(0, 100) message %d", i))
	}
	ledgerEq(t, l.Len(), 25, "Len after 25 appends")
	ledgerEq(t, l.Total(), uint64(25), "Total after 25 appends")
	ledgerEq(t, l.Evicted(), uint64(0), "Evicted after 25 appends")
}

func TestLedgerPageLimitCap(t *testing.T) {
	l := NewLedger(LedgerOptions{})
	for range 10_050 {
		l.Append(LedgerEntry{ToUser: "o"})
	}
	checkLedgerPages(t, l, []ledgerPageCase{
		{"limit above the cap", 0, 20_000, 1, 10_000, 10_000, true},
		{"limit at the cap", 0, 10_000, 1, 10_000, 10_000, true},
		{"limit 0 means 1000", 0, 0, 1, 1000, 1000, true},
		{"rest", 10_000, 20_000, 10_001, 10_050, 10_050, false},
	}, 1, 0)
}

func TestLedgerGet(t *testing.T) {
	l := NewLedger(LedgerOptions{})
	ledgerFill(t, l, 25)
	for _, tc := range []struct {
		seq uint64
		ok  bool
	}{{0, false}, {1, true}, {13, true}, {25, true}, {26, false}, {math.MaxUint64, false}} {
		t.Run(fmt.Sprint(tc.seq), func(t *testing.T) {
			got, ok := l.Get(tc.seq)
			ledgerEq(t, ok, tc.ok, fmt.Sprintf("Get(%d) ok", tc.seq))
			want := LedgerEntry{}
			if tc.ok {
				want = ledgerWant(int(tc.seq), tc.seq, true)
			}
			ledgerEq(t, got, want, fmt.Sprintf("Get(%d)", tc.seq))
		})
	}
	if _, ok := NewLedger(LedgerOptions{}).Get(1); ok {
		t.Errorf("Get(1) on an empty ledger: got ok, want not found")
	}
}

func TestLedgerEviction(t *testing.T) {
	// Capacity 10 in segments of 4: appending the 11th evicts 1-4,
	// the 15th evicts 5-8, and so on every 4 appends.
	for _, tc := range []struct {
		appends int
		len     int
		oldest  uint64
		evicted uint64
	}{
		{1, 1, 1, 0},
		{10, 10, 1, 0},
		{11, 7, 5, 4},
		{14, 10, 5, 4},
		{15, 7, 9, 8},
		{100, 8, 93, 92},
	} {
		t.Run(fmt.Sprint(tc.appends), func(t *testing.T) {
			l := newLedgerForTest(LedgerOptions{Capacity: 10}, 4, 0)
			ledgerFill(t, l, tc.appends)
			what := fmt.Sprintf("after %d appends", tc.appends)
			ledgerEq(t, l.Len(), tc.len, "Len "+what)
			ledgerEq(t, l.Page(0, 1).OldestSeq, tc.oldest, "OldestSeq "+what)
			ledgerEq(t, l.Evicted(), tc.evicted, "Evicted "+what)
			ledgerEq(t, l.Total(), uint64(tc.appends), "Total "+what)
		})
	}

	t.Run("invariants", func(t *testing.T) {
		l := newLedgerForTest(LedgerOptions{Capacity: 10}, 4, 0)
		for n := 1; n <= 200; n++ {
			l.Append(ledgerEntry(n))
			ln, ev, p := l.Len(), l.Evicted(), l.Page(0, 100)
			if ln > 10 || ln < min(n, 10-4+1) {
				t.Fatalf("after %d appends: Len %d, want within [%d, 10]", n, ln, min(n, 7))
			}
			if uint64(ln)+ev != uint64(n) {
				t.Fatalf("after %d appends: Len %d + Evicted %d != Total %d", n, ln, ev, n)
			}
			ledgerEq(t, ledgerSeqs(p), ledgerRange(uint64(n-ln+1), uint64(n)), fmt.Sprintf("Page(0, 100) after %d appends", n))
		}
	})

	t.Run("paging from an evicted after", func(t *testing.T) {
		l := newLedgerForTest(LedgerOptions{Capacity: 10}, 4, 0)
		ledgerFill(t, l, 100) // holds 93..100
		checkLedgerPages(t, l, []ledgerPageCase{
			{"after 0", 0, 5, 93, 97, 97, true},
			{"after long evicted", 50, 100, 93, 100, 100, false},
			{"after just evicted", 92, 3, 93, 95, 95, true},
			{"after the oldest", 93, 2, 94, 95, 95, true},
		}, 93, 92)
		if got, ok := l.Get(92); ok {
			t.Errorf("Get(92) after eviction: got %+v, want not found", got)
		}
		got, _ := l.Get(93)
		ledgerEq(t, got, ledgerWant(93, 93, true), "Get(93)")
	})

	t.Run("default segment sizing", func(t *testing.T) {
		for _, tc := range []struct {
			capacity, appends, minLen, maxLen int
		}{
			{1, 5, 1, 1},                      // segments of 1: exact
			{10, 25, 10, 10},                  // segments of 1: exact
			{1000, 5000, 1000 - 63 + 1, 1000}, // segments of 63
		} {
			l := NewLedger(LedgerOptions{Capacity: tc.capacity})
			for i := 1; i <= tc.appends; i++ {
				l.Append(LedgerEntry{ToUser: "o"})
			}
			if got := l.Len(); got < tc.minLen || got > tc.maxLen {
				t.Errorf("Capacity %d after %d appends: Len %d, want within [%d, %d]", tc.capacity, tc.appends, got, tc.minLen, tc.maxLen)
			}
		}
	})
}

func TestLedgerSegSize(t *testing.T) {
	for _, tc := range []struct{ n, limit, want int }{
		{0, 1 << 16, 1},
		{1, 1 << 16, 1},
		{10, 1 << 16, 1},
		{17, 1 << 16, 2},
		{1000, 1 << 16, 63},
		{10_000_000, 1 << 16, 1 << 16},
		{100_000, 1 << 12, 1 << 12},
	} {
		ledgerEq(t, ledgerSegSize(tc.n, tc.limit), tc.want, fmt.Sprintf("ledgerSegSize(%d, %d)", tc.n, tc.limit))
	}
}

func TestLedgerData(t *testing.T) {
	for _, tc := range []struct {
		name          string
		opts          LedgerOptions
		dataSeg       int
		appends       int
		firstWithData int // 0: none
		maxDataSegs   int
	}{
		{"window of 5 in segments of 2", LedgerOptions{Capacity: 100, DataCapacity: 5}, 2, 20, 16, 4},
		{"window of 37, default segments", LedgerOptions{Capacity: 1000, DataCapacity: 37}, 0, 200, 164, 37/3 + 2},
		{"window larger than appended", LedgerOptions{Capacity: 100, DataCapacity: 50}, 0, 20, 1, 20},
		{"negative keeps none", LedgerOptions{Capacity: 100, DataCapacity: -1}, 0, 20, 0, 0},
		{"clamped to capacity", LedgerOptions{Capacity: 10, DataCapacity: 1000}, 0, 30, 21, 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLedgerForTest(tc.opts, 0, tc.dataSeg)
			ledgerFill(t, l, tc.appends)
			for seq := uint64(1); seq <= uint64(tc.appends); seq++ {
				got, ok := l.Get(seq)
				if !ok {
					continue // evicted
				}
				var want json.RawMessage
				if tc.firstWithData > 0 && seq >= uint64(tc.firstWithData) {
					want = ledgerEntry(int(seq)).Data
				}
				ledgerEq(t, string(got.Data), string(want), fmt.Sprintf("Get(%d).Data", seq))
				if (got.Data == nil) != (want == nil) {
					t.Errorf("Get(%d).Data nil: got %v, want %v", seq, got.Data == nil, want == nil)
				}
			}
			for _, m := range l.Page(0, 1000).Messages {
				g, _ := l.Get(m.Seq)
				ledgerEq(t, string(m.Data), string(g.Data), fmt.Sprintf("Page message %d Data", m.Seq))
			}
			if got := len(l.dsegs); got > tc.maxDataSegs {
				t.Errorf("data segments held after %d appends: got %d, want at most %d", tc.appends, got, tc.maxDataSegs)
			}
		})
	}

	t.Run("copied in and out", func(t *testing.T) {
		l := NewLedger(LedgerOptions{})
		buf := []byte(`{"a":1}`)
		seq := l.Append(LedgerEntry{ToUser: "o", Data: buf})
		buf[1] = 'X'
		got, _ := l.Get(seq)
		ledgerEq(t, string(got.Data), `{"a":1}`, "Data after the caller changed its buffer")
		got.Data[1] = 'Y'
		_ = append(got.Data, '!')
		again, _ := l.Get(seq)
		ledgerEq(t, string(again.Data), `{"a":1}`, "Data after changing a returned copy")
	})

	t.Run("empty data is nil", func(t *testing.T) {
		l := NewLedger(LedgerOptions{})
		l.Append(LedgerEntry{ToUser: "o", Data: json.RawMessage{}})
		l.Append(LedgerEntry{ToUser: "o", Data: json.RawMessage(`{}`)})
		p := l.Page(0, 10)
		if p.Messages[0].Data != nil {
			t.Errorf("Data appended empty: got %q, want nil", p.Messages[0].Data)
		}
		ledgerEq(t, string(p.Messages[1].Data), "{}", "Data appended as {}")
	})
}

func TestLedgerStringsSurviveEviction(t *testing.T) {
	// Segments of 2 with capacity 4: evicted segments are reused for new
	// entries, so any string aliasing the arena would change.
	l := newLedgerForTest(LedgerOptions{Capacity: 4, DataCapacity: 4}, 2, 1)
	ledgerFill(t, l, 4)
	page := l.Page(0, 10)
	got1, _ := l.Get(1)
	for i := 5; i <= 1000; i++ {
		e := ledgerEntry(i)
		e.ToUser = strings.Repeat("Z", len(e.ToUser))
		e.ClientMsgID = strings.Repeat("Z", len(e.ClientMsgID))
		e.Data = json.RawMessage(strings.Repeat("Z", len(e.Data)))
		l.Append(e)
	}
	ledgerEq(t, l.Page(0, 1).OldestSeq, uint64(997), "OldestSeq after 1000 appends")
	for i, m := range page.Messages {
		ledgerEq(t, m, ledgerWant(i+1, uint64(i+1), true), fmt.Sprintf("page message %d after its eviction", i+1))
	}
	ledgerEq(t, got1, ledgerWant(1, 1, true), "Get(1) result after its eviction")
}

func TestLedgerMemoryBounded(t *testing.T) {
	l := newLedgerForTest(LedgerOptions{Capacity: 1000, DataCapacity: 100}, 64, 16)
	ledgerFill(t, l, 10_000)
	before := l.MemoryBytes()
	for i := 10_001; i <= 100_000; i++ {
		l.Append(ledgerEntry(i))
	}
	after := l.MemoryBytes()
	if after > before+before/10 {
		t.Errorf("MemoryBytes at capacity: got %d after 100000 appends, want about %d as after 10000", after, before)
	}
	if l.Len() > 1000 {
		t.Errorf("Len after 100000 appends: got %d, want at most 1000", l.Len())
	}

	empty := NewLedger(LedgerOptions{})
	if got := empty.MemoryBytes(); got > 1024 {
		t.Errorf("MemoryBytes of an empty 10M ledger: got %d, want under 1 KiB (lazy)", got)
	}
	empty.Append(ledgerEntry(1))
	if got := empty.MemoryBytes(); got > 64<<10 {
		t.Errorf("MemoryBytes of a 10M ledger holding one entry: got %d, want under 64 KiB", got)
	}
}

func TestLedgerAppendDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	l := newLedgerForTest(LedgerOptions{Capacity: 4096, DataCapacity: 512}, 256, 64)
	entries := make([]LedgerEntry, 1024)
	for i := range entries {
		entries[i] = ledgerEntry(i)
	}
	for i := range 3 * 4096 { // reach the steady state: full, recycling segments
		l.Append(entries[i%len(entries)])
	}
	i := 0
	got := testing.AllocsPerRun(10_000, func() {
		l.Append(entries[i%len(entries)])
		i++
	})
	ledgerEq(t, got, 0.0, "allocations per Append at capacity")
}

func TestLedgerReset(t *testing.T) {
	l := newLedgerForTest(LedgerOptions{Capacity: 10}, 4, 0)
	ledgerFill(t, l, 30)
	l.Reset()
	ledgerEq(t, l.Len(), 0, "Len after Reset")
	ledgerEq(t, l.Total(), uint64(0), "Total after Reset")
	ledgerEq(t, l.Evicted(), uint64(0), "Evicted after Reset")
	ledgerEq(t, l.Page(0, 10), LedgerPage{Messages: []LedgerEntry{}}, "Page(0, 10) after Reset")
	if got, ok := l.Get(1); ok {
		t.Errorf("Get(1) after Reset: got %+v, want not found", got)
	}
	ledgerEq(t, l.MemoryBytes(), NewLedger(LedgerOptions{}).MemoryBytes(), "MemoryBytes after Reset")

	e := ledgerEntry(7)
	ledgerEq(t, l.Append(e), uint64(1), "first seq after Reset")
	got, _ := l.Get(1)
	ledgerEq(t, got, ledgerWant(7, 1, true), "Get(1) after Reset and Append")
	ledgerEq(t, len(l.apps.names), 1, "interned appids after Reset and one Append")
}

func TestLedgerConcurrent(t *testing.T) {
	const writers, perWriter = 8, 1500
	l := newLedgerForTest(LedgerOptions{}, 64, 32)

	var wg sync.WaitGroup
	var done atomic.Bool
	seqs := make([][]uint64, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				id := fmt.Sprintf("w%d-%d", w, i)
				seqs[w] = append(seqs[w], l.Append(LedgerEntry{
					ToUser:      "o-" + id,
					ClientMsgID: "c-" + id,
					AppID:       fmt.Sprintf("app%d", w%3),
					TemplateID:  "tpl",
					Data:        json.RawMessage(`"` + id + `"`),
				}))
			}
		})
	}

	check := func(m LedgerEntry) error {
		id := strings.TrimPrefix(m.ToUser, "o-")
		if m.ClientMsgID != "c-"+id || string(m.Data) != `"`+id+`"` {
			return fmt.Errorf("seq %d: inconsistent entry %+v", m.Seq, m)
		}
		return nil
	}
	var readers sync.WaitGroup
	readErrs := make(chan error, 4)
	for range 2 {
		readers.Go(func() {
			var after uint64
			for {
				finished := done.Load()
				p := l.Page(after, 97)
				for _, m := range p.Messages {
					if m.Seq != after+1 {
						readErrs <- fmt.Errorf("Page after %d: got seq %d, want %d", after, m.Seq, after+1)
						return
					}
					if err := check(m); err != nil {
						readErrs <- err
						return
					}
					after = m.Seq
				}
				if finished && !p.More {
					if after != writers*perWriter {
						readErrs <- fmt.Errorf("reader drained at seq %d, want %d", after, writers*perWriter)
					}
					return
				}
			}
		})
	}
	readers.Go(func() {
		for !done.Load() {
			_ = l.Len()
			_ = l.MemoryBytes()
			if m, ok := l.Get(l.Total()); ok {
				if err := check(m); err != nil {
					readErrs <- err
					return
				}
			}
		}
	})
	wg.Wait()
	done.Store(true)
	readers.Wait()
	close(readErrs)
	for err := range readErrs {
		t.Error(err)
	}

	ledgerEq(t, l.Total(), uint64(writers*perWriter), "Total after concurrent appends")
	ledgerEq(t, l.Len(), writers*perWriter, "Len after concurrent appends")
	seen := make(map[uint64]bool)
	for w, ss := range seqs {
		for i, s := range ss {
			if seen[s] {
				t.Fatalf("seq %d returned twice", s)
			}
			seen[s] = true
			got, _ := l.Get(s)
			ledgerEq(t, got.ToUser, fmt.Sprintf("o-w%d-%d", w, i), fmt.Sprintf("Get(%d).ToUser", s))
		}
	}

	t.Run("with eviction and reset", func(t *testing.T) {
		l := newLedgerForTest(LedgerOptions{Capacity: 100, DataCapacity: 10}, 8, 2)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 2000 {
					l.Append(ledgerEntry(w*10_000 + i))
				}
			})
		}
		wg.Go(func() {
			for range 20 {
				l.Reset()
				time.Sleep(time.Millisecond)
			}
		})
		wg.Go(func() {
			for range 500 {
				p := l.Page(0, 1000)
				if len(p.Messages) > 100 {
					t.Errorf("Page(0, 1000) while evicting: got %d messages, want at most 100", len(p.Messages))
					return
				}
				for i := 1; i < len(p.Messages); i++ {
					if p.Messages[i].Seq != p.Messages[i-1].Seq+1 {
						t.Errorf("Page(0, 1000) while evicting: seq %d follows %d", p.Messages[i].Seq, p.Messages[i-1].Seq)
						return
					}
				}
			}
		})
		wg.Wait()
		if got := l.Len(); got > 100 {
			t.Errorf("Len after concurrent appends with capacity 100: got %d", got)
		}
	})
}

func TestLedgerPageJSON(t *testing.T) {
	l := NewLedger(LedgerOptions{})
	for _, tc := range []struct {
		name  string
		after uint64
		want  string
	}{
		{"empty ledger", 0, `{"messages":[],"next_after":0,"more":false,"oldest_seq":0,"evicted":0}`},
		{"empty ledger after 5", 5, `{"messages":[],"next_after":5,"more":false,"oldest_seq":0,"evicted":0}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(l.Page(tc.after, 10))
			if err != nil {
				t.Fatalf("Marshal(Page(%d, 10)): %v", tc.after, err)
			}
			ledgerEq(t, string(b), tc.want, fmt.Sprintf("JSON of Page(%d, 10)", tc.after))
		})
	}

	l.Append(LedgerEntry{ReceivedAt: ledgerT0, AppID: "wxa", ToUser: "o1", TemplateID: "t1", ErrCode: 43101})
	l.Append(LedgerEntry{ReceivedAt: ledgerT0, AppID: "wxa", ToUser: "o2", TemplateID: "t1", ClientMsgID: "c2",
		MsgID: 1234567890123, Deduplicated: true, Data: json.RawMessage(`{"k":{"value":"v"}}`)})
	for _, tc := range []struct {
		name         string
		after, limit int
		want         string
	}{
		{"failed send", 0, 1, `{"messages":[{"seq":1,"received_at":"2025-06-01T08:00:00.123456789Z","appid":"wxa","touser":"o1","template_id":"t1","errcode":43101,"deduplicated":false}],"next_after":1,"more":true,"oldest_seq":1,"evicted":0}`},
		{"deduplicated send", 1, 1, `{"messages":[{"seq":2,"received_at":"2025-06-01T08:00:00.123456789Z","appid":"wxa","touser":"o2","template_id":"t1","client_msg_id":"c2","msgid":1234567890123,"errcode":0,"deduplicated":true,"data":{"k":{"value":"v"}}}],"next_after":2,"more":false,"oldest_seq":1,"evicted":0}`},
		{"past the end", 2, 1, `{"messages":[],"next_after":2,"more":false,"oldest_seq":1,"evicted":0}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(l.Page(uint64(tc.after), tc.limit))
			if err != nil {
				t.Fatalf("Marshal(Page(%d, %d)): %v", tc.after, tc.limit, err)
			}
			ledgerEq(t, string(b), tc.want, fmt.Sprintf("JSON of Page(%d, %d)", tc.after, tc.limit))
		})
	}
}

func TestLedgerIntern(t *testing.T) {
	t.Run("small cap", func(t *testing.T) {
		l := NewLedger(LedgerOptions{})
		l.internCap = 3
		for i := range 10 {
			l.Append(LedgerEntry{AppID: fmt.Sprintf("app-%d", i), TemplateID: fmt.Sprintf("tpl-%d", i), ToUser: "o"})
		}
		ledgerEq(t, len(l.apps.names), 3, "interned appids with cap 3")
		ledgerEq(t, len(l.tmpls.names), 3, "interned template ids with cap 3")
		for i, m := range l.Page(0, 100).Messages {
			ledgerEq(t, []string{m.AppID, m.TemplateID}, []string{fmt.Sprintf("app-%d", i), fmt.Sprintf("tpl-%d", i)}, fmt.Sprintf("message %d appid, template_id", m.Seq))
		}
	})

	t.Run("default cap fits uint16 ids", func(t *testing.T) {
		l := NewLedger(LedgerOptions{})
		const n = 70_000
		for i := range n {
			l.Append(LedgerEntry{AppID: "wxa", TemplateID: fmt.Sprintf("tpl-%d", i)})
		}
		ledgerEq(t, len(l.tmpls.names), math.MaxUint16, "interned template ids after 70000 distinct")
		for _, seq := range []uint64{1, math.MaxUint16, math.MaxUint16 + 1, n} {
			got, _ := l.Get(seq)
			ledgerEq(t, got.TemplateID, fmt.Sprintf("tpl-%d", seq-1), fmt.Sprintf("Get(%d).TemplateID", seq))
			ledgerEq(t, got.AppID, "wxa", fmt.Sprintf("Get(%d).AppID", seq))
		}
	})

	t.Run("long values are not interned", func(t *testing.T) {
		l := NewLedger(LedgerOptions{})
		long := strings.Repeat("t", ledgerInternMaxLen+1)
		seq := l.Append(LedgerEntry{AppID: long, TemplateID: long})
		ledgerEq(t, len(l.tmpls.names)+len(l.apps.names), 0, "interned values after a long one")
		got, _ := l.Get(seq)
		ledgerEq(t, []string{got.AppID, got.TemplateID}, []string{long, long}, "Get of long appid, template_id")
	})
}

func TestLedgerFieldRoundTrip(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	for _, tc := range []struct {
		name string
		in   LedgerEntry
		want LedgerEntry
	}{
		{"zero entry", LedgerEntry{}, LedgerEntry{}},
		{"time in another zone comes back in UTC",
			LedgerEntry{ReceivedAt: time.Date(2025, 6, 1, 16, 0, 0, 1, cst)},
			LedgerEntry{ReceivedAt: time.Date(2025, 6, 1, 8, 0, 0, 1, time.UTC)}},
		{"extreme codes",
			LedgerEntry{MsgID: math.MaxInt64, ErrCode: math.MinInt32},
			LedgerEntry{MsgID: math.MaxInt64, ErrCode: math.MinInt32}},
		{"negative msgid", LedgerEntry{MsgID: -5, ErrCode: -1}, LedgerEntry{MsgID: -5, ErrCode: -1}},
		{"unicode", LedgerEntry{ToUser: "用户", ClientMsgID: "消息-1", AppID: "应用", TemplateID: "模板"},
			LedgerEntry{ToUser: "用户", ClientMsgID: "消息-1", AppID: "应用", TemplateID: "模板"}},
		{"long strings are cut to 1 KiB",
			LedgerEntry{ToUser: strings.Repeat("a", 5000), ClientMsgID: strings.Repeat("c", 1025), AppID: strings.Repeat("p", 2000)},
			LedgerEntry{ToUser: strings.Repeat("a", 1024), ClientMsgID: strings.Repeat("c", 1024), AppID: strings.Repeat("p", 1024)}},
		{"cut at a UTF-8 boundary",
			LedgerEntry{ToUser: strings.Repeat("a", 1023) + "é"},
			LedgerEntry{ToUser: strings.Repeat("a", 1023)}},
		{"string of exactly 1 KiB is kept",
			LedgerEntry{ToUser: strings.Repeat("a", 1022) + "é"},
			LedgerEntry{ToUser: strings.Repeat("a", 1022) + "é"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLedger(LedgerOptions{})
			seq := l.Append(tc.in)
			got, _ := l.Get(seq)
			tc.want.Seq = seq
			ledgerEq(t, got, tc.want, "Get after Append")
		})
	}
}

// TestLedgerTenMillionEntries fills a default-sized ledger and measures
// what an entry costs.
func TestLedgerTenMillionEntries(t *testing.T) {
	if testing.Short() {
		t.Skip("appends 10M entries")
	}
	if raceEnabled {
		t.Skip("too slow under the race detector")
	}
	const n = 10_000_000
	apps := []string{"wx1a2b3c4d5e6f7a8b", "wx2b3c4d5e6f7a8b9c", "wx3c4d5e6f7a8b9c0d"}
	tmpls := make([]string, 5)
	for i := range tmpls {
		tmpls[i] = fmt.Sprintf("Xk3mP9qLr2TnW8vYz4bC6dF1gH5jK7%013d", i) // 43 chars, like WeChat's
	}
	users := make([]string, 100_000)
	for i := range users {
		users[i] = fmt.Sprintf("oUser-%07d", i)
	}
	datas := make([]json.RawMessage, 64)
	for i := range datas {
		datas[i] = json.RawMessage(fmt.Sprintf(`{"thing1":{"value":"订单已发货"},"number2":{"value":"%08d"},"time3":{"value":"2025-06-01"}}`, i))
	}
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	idBuf := []byte("wxp-01JXQ8Z3K4" + strings.Repeat("0", 16)) // "wxp-" + 26 chars
	clientID := func(i int) string {
		for k, v := len(idBuf)-1, uint64(i); k >= len(idBuf)-16; k, v = k-1, v>>5 {
			idBuf[k] = crockford[v&31]
		}
		return string(idBuf)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	l := NewLedger(LedgerOptions{})
	start := time.Now()
	for i := range n {
		e := LedgerEntry{
			ReceivedAt:  ledgerT0.Add(time.Duration(i) * time.Microsecond),
			AppID:       apps[i%len(apps)],
			ToUser:      users[(i*7919)%len(users)],
			TemplateID:  tmpls[i%len(tmpls)],
			ClientMsgID: clientID(i),
			MsgID:       4_000_000_000_000_000_000 + int64(i)*7,
			Data:        datas[i%len(datas)],
		}
		if seq := l.Append(e); seq != uint64(i+1) {
			t.Fatalf("Append(entry %d) = seq %d, want %d", i, seq, i+1)
		}
	}
	elapsed := time.Since(start)

	runtime.GC()
	runtime.ReadMemStats(&after)
	mem := l.MemoryBytes()
	perEntry := float64(mem) / n
	heapDelta := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("appended %d entries in %v (%.0f ns/append incl. building the entry)", n, elapsed.Round(time.Millisecond), float64(elapsed.Nanoseconds())/n)
	t.Logf("MemoryBytes %d = %.1f bytes/entry; heap in use after GC %d MiB (HeapAlloc grew %d MiB = %.1f bytes/entry)",
		mem, perEntry, after.HeapInuse>>20, heapDelta>>20, float64(heapDelta)/n)

	ledgerEq(t, l.Len(), n, "Len after 10M appends")
	ledgerEq(t, l.Total(), uint64(n), "Total after 10M appends")
	ledgerEq(t, l.Evicted(), uint64(0), "Evicted after 10M appends")

	// An entry costs its 32-byte record plus its unique strings with a
	// 1-byte length each: touser 12+1, client_msg_id 30+1, so 76 bytes.
	// On top: arena capacity sized 1/64 above the previous segment's
	// (< 1 byte), Data for the last 100k entries only (~92 bytes * 104k
	// / 10M ~ 1 byte), segment bookkeeping (~0): about 78. 85 bytes
	// leaves a margin for arena growth when the estimate is short.
	recordAndStrings := float64(unsafe.Sizeof(ledgerRecord{})) + 13 + 31
	const bound = 85.0
	if recordAndStrings != 76 || perEntry > bound {
		t.Errorf("bytes/entry for 10M entries: got %.1f (record+strings %.0f), want at most %.0f", perEntry, recordAndStrings, bound)
	}
	// MemoryBytes must be honest: within 10% of what the heap grew by.
	if d := float64(heapDelta-mem) / float64(mem); d > 0.10 || d < -0.10 {
		t.Errorf("MemoryBytes %d vs heap growth %d: off by %.1f%%, want within 10%%", mem, heapDelta, 100*d)
	}

	p := l.Page(n-3, 10)
	ledgerEq(t, ledgerSeqs(p), ledgerRange(n-2, n), "Page(n-3, 10) seqs")
	for _, m := range p.Messages {
		i := int(m.Seq - 1)
		ledgerEq(t, []string{m.ToUser, m.ClientMsgID, string(m.Data)}, []string{users[(i*7919)%len(users)], clientID(i), string(datas[i%len(datas)])}, fmt.Sprintf("message %d", m.Seq))
	}
	old, _ := l.Get(1)
	ledgerEq(t, []string{old.AppID, old.TemplateID, old.ToUser, old.ClientMsgID, string(old.Data)}, []string{apps[0], tmpls[0], users[0], clientID(0), ""}, "Get(1)")
	runtime.KeepAlive(l)
}

func BenchmarkLedgerAppend(b *testing.B) {
	entries := make([]LedgerEntry, 4096)
	for i := range entries {
		entries[i] = ledgerEntry(i)
	}
	full := func() *Ledger {
		l := NewLedger(LedgerOptions{Capacity: 1 << 20})
		for i := range 1<<20 + 1 {
			l.Append(entries[i%len(entries)])
		}
		return l
	}

	b.Run("growing", func(b *testing.B) {
		l := NewLedger(LedgerOptions{})
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			l.Append(entries[i%len(entries)])
		}
		b.ReportMetric(float64(l.MemoryBytes())/float64(max(l.Len(), 1)), "ledger-B/entry")
	})
	b.Run("at-capacity", func(b *testing.B) {
		l := full()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			l.Append(entries[i%len(entries)])
		}
	})
	b.Run("at-capacity-parallel", func(b *testing.B) {
		l := full()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				l.Append(entries[i%len(entries)])
				i++
			}
		})
	})
}
