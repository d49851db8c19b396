package mockwx

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"
)

// LedgerEntry is one template send as the mock saw it (the JSON of
// GET /_mock/messages).
type LedgerEntry struct {
	// Seq is 1, 2, 3... assigned by Append.
	Seq uint64 `json:"seq"`
	// ReceivedAt is when the mock received the send, kept to the
	// nanosecond (for years 1678 to 2262) and returned in UTC; a zero
	// time stays zero.
	ReceivedAt time.Time `json:"received_at"`
	// AppID is the appid of the access token the send used.
	AppID string `json:"appid"`
	// ToUser is the recipient openid.
	ToUser string `json:"touser"`
	// TemplateID is the template the send used.
	TemplateID string `json:"template_id"`
	// ClientMsgID is the client's idempotency id, if it sent one.
	ClientMsgID string `json:"client_msg_id,omitempty"`
	// MsgID is the msgid the mock answered with; 0 when the send failed.
	MsgID int64 `json:"msgid,omitempty"`
	// ErrCode is the errcode the mock answered with.
	ErrCode int `json:"errcode"`
	// Deduplicated reports that the send repeated an earlier client_msg_id.
	Deduplicated bool `json:"deduplicated"`
	// API is "" for a template send and LedgerAPICustomSend for a
	// customer-service message (whose Data is its body).
	API string `json:"api,omitempty"`
	// Data is the request's data object as compact JSON, stored as given
	// (the caller compacts it). It is kept only for the most recent
	// DataCapacity entries and is nil for older ones.
	Data json.RawMessage `json:"data,omitempty"`
}

// LedgerPage is the body of GET /_mock/messages.
type LedgerPage struct {
	// Messages are the entries of the page in seq order; never null in
	// JSON (an empty page is an empty array).
	Messages []LedgerEntry `json:"messages"`
	// NextAfter is the value to pass as ?after= to get the next page: the
	// seq of the last entry returned, or the after given when none was.
	NextAfter uint64 `json:"next_after"`
	// More reports that entries after NextAfter exist now.
	More bool `json:"more"`
	// OldestSeq is the oldest seq still held (0 when the ledger is empty).
	OldestSeq uint64 `json:"oldest_seq"`
	// Evicted counts the entries dropped because the ledger was full.
	Evicted uint64 `json:"evicted"`
}

// LedgerOptions sizes a Ledger. Zero values mean the defaults.
type LedgerOptions struct {
	// Capacity is the number of entries held; beyond it the oldest are
	// evicted, a whole segment at a time (see Ledger). Zero or negative
	// means 10_000_000.
	Capacity int
	// DataCapacity is the number of most recent entries whose Data is
	// kept. Zero means 100_000, negative means none; it is clamped to
	// Capacity.
	DataCapacity int
}

const (
	defaultLedgerCapacity     = 10_000_000
	defaultLedgerDataCapacity = 100_000

	ledgerDefaultPageLimit = 1000
	ledgerMaxPageLimit     = 10_000

	// ledgerSegmentRecords is the most records a segment holds; smaller
	// capacities use segments of about Capacity/16 records.
	ledgerSegmentRecords = 1 << 16
	// ledgerDataSegmentRecords is the most entries a data segment holds;
	// smaller data capacities use about DataCapacity/16.
	ledgerDataSegmentRecords = 1 << 12
	// ledgerSegmentParts is how many segments (at least) a full ledger
	// is cut into, so that evicting one drops at most 1/16 of it.
	ledgerSegmentParts = 16

	// ledgerFirstRecords and ledgerFirstArena size the first segment of
	// a ledger, which grows by doubling; later ones are allocated at
	// full size, since the ledger has shown it fills them.
	ledgerFirstRecords = 256
	ledgerFirstArena   = 4096

	// ledgerInternCap is the most distinct appids (and, separately,
	// template ids) given small ids; ids are uint16 and 0 means "stored
	// in the arena", so it cannot exceed 65535.
	ledgerInternCap = math.MaxUint16
	// ledgerInternMaxLen is the longest value interned; longer ones are
	// stored in the arena, so interning costs at most
	// ledgerInternCap*ledgerInternMaxLen bytes per table.
	ledgerInternMaxLen = 128
	// ledgerMaxStringLen is the longest string field stored; longer ones
	// are cut to it (at a UTF-8 boundary). Real openids, template ids
	// and client_msg_ids are well under 64 bytes.
	ledgerMaxStringLen = 1024
	// ledgerMaxArena bounds a segment's arena so that offsets fit in a
	// uint32 (and an int on 32-bit platforms); a segment whose arena
	// would pass it is closed early.
	ledgerMaxArena = math.MaxInt32
)

// LedgerAPICustomSend is the API of a ledger entry recording
// POST /cgi-bin/message/custom/send.
const LedgerAPICustomSend = "custom_send"

const (
	ledgerFlagDeduplicated = 1 << iota
	ledgerFlagZeroTime
	ledgerFlagCustomSend
)

// ledgerRecord is the fixed part of one entry: 29 bytes of fields, 32 with
// alignment. The strings live in the segment arena, in the range that
// ends at end and starts where the previous record's range ends (0 for the
// first record): uvarint length + bytes of touser, then client_msg_id,
// then appid if appID is 0, then template_id if tmplID is 0.
type ledgerRecord struct {
	at      int64  // ReceivedAt as Unix nanoseconds
	msgID   int64  // MsgID
	errCode int32  // ErrCode, clamped to int32
	end     uint32 // end of this record's strings in the arena
	appID   uint16 // 1 + index into the appid intern table; 0: in the arena
	tmplID  uint16 // 1 + index into the template intern table; 0: in the arena
	flags   uint8  // ledgerFlag*
}

// ledgerSeg holds consecutive records and their strings.
type ledgerSeg struct {
	first uint64 // seq of recs[0]
	recs  []ledgerRecord
	arena []byte
}

func (s *ledgerSeg) bytes() int64 {
	return int64(unsafe.Sizeof(*s)) + int64(cap(s.recs))*int64(unsafe.Sizeof(ledgerRecord{})) + int64(cap(s.arena))
}

// ledgerDataSeg holds the Data of consecutive entries: entry first+i has
// arena[ends[i-1]:ends[i]] (from 0 for i == 0); empty means nil.
type ledgerDataSeg struct {
	first uint64
	ends  []uint32
	arena []byte
}

func (s *ledgerDataSeg) bytes() int64 {
	return int64(unsafe.Sizeof(*s)) + int64(cap(s.ends))*4 + int64(cap(s.arena))
}

// ledgerMapEntryBytes estimates what one entry of a map[string]uint16
// costs: a 24-byte slot (string header + value, padded) and a control
// byte, at the map's 7/8 maximum load and with room left by growth.
const ledgerMapEntryBytes = 40

// ledgerIntern gives small ids to the first internCap distinct short
// values it sees. It only ever appends to names, so a copy of the names
// slice taken under the ledger lock stays valid after the lock is released.
type ledgerIntern struct {
	ids   map[string]uint16
	names []string
	size  int64 // bytes of the interned strings
}

// id returns the id of s (1-based), interning it if there is room, or 0
// when s is not interned and must be stored in the arena.
func (t *ledgerIntern) id(s string, internCap int) uint16 {
	if id, ok := t.ids[s]; ok {
		return id
	}
	if len(s) > ledgerInternMaxLen || len(t.names) >= internCap {
		return 0
	}
	if t.ids == nil {
		t.ids = make(map[string]uint16)
	}
	s = strings.Clone(s) // do not pin the caller's buffer
	t.names = append(t.names, s)
	id := uint16(len(t.names))
	t.ids[s] = id
	t.size += int64(len(s))
	return id
}

func (t *ledgerIntern) bytes() int64 {
	return int64(cap(t.names))*int64(unsafe.Sizeof("")) + t.size + int64(len(t.ids))*ledgerMapEntryBytes
}

// Ledger records every template send the mock sees, in bounded memory.
//
// Entries are held in segments of consecutive records (65536 at most, or
// about Capacity/16 for small capacities). A record is a 32-byte struct;
// appid and template_id, which have few distinct values, are interned to
// 16-bit ids, while touser and client_msg_id go into a byte arena per
// segment, so an entry costs about 32 bytes plus its unique strings. When
// appending would exceed Capacity the oldest whole segment is dropped, so
// Len stays between Capacity minus one segment and Capacity; Len,
// OldestSeq, Evicted and Total are exact with respect to what is held.
//
// Data is kept in a separate ring of small segments covering the most
// recent DataCapacity entries (plus at most one data segment still being
// released, which is never returned).
//
// Strings longer than 1 KiB are cut to 1 KiB. All methods are safe for
// concurrent use.
type Ledger struct {
	mu sync.Mutex

	capacity       int
	dataCap        int
	segRecords     int // records per segment
	dataSegRecords int // entries per data segment
	internCap      int // distinct values per intern table

	total   uint64 // entries appended since the last Reset; the last seq
	held    int
	evicted uint64

	segs      []*ledgerSeg // oldest first, consecutive seqs
	spare     *ledgerSeg   // an evicted full-size segment kept for reuse
	lastArena int          // arena bytes of the last segment filled

	dsegs         []*ledgerDataSeg
	dspare        *ledgerDataSeg
	lastDataArena int

	apps  ledgerIntern
	tmpls ledgerIntern
}

// NewLedger returns an empty ledger. It allocates no records until the
// first Append.
func NewLedger(opts LedgerOptions) *Ledger {
	capacity := opts.Capacity
	if capacity <= 0 {
		capacity = defaultLedgerCapacity
	}
	dataCap := opts.DataCapacity
	switch {
	case dataCap == 0:
		dataCap = defaultLedgerDataCapacity
	case dataCap < 0:
		dataCap = 0
	}
	dataCap = min(dataCap, capacity)
	return &Ledger{
		capacity:       capacity,
		dataCap:        dataCap,
		segRecords:     ledgerSegSize(capacity, ledgerSegmentRecords),
		dataSegRecords: ledgerSegSize(dataCap, ledgerDataSegmentRecords),
		internCap:      ledgerInternCap,
	}
}

// ledgerSegSize is the segment size for a capacity of n: about n/16, at
// least 1 and at most limit.
func ledgerSegSize(n, limit int) int {
	return max(1, min(limit, (n+ledgerSegmentParts-1)/ledgerSegmentParts))
}

// Append records e, ignoring e.Seq, and returns the seq it assigned.
func (l *Ledger) Append(e LedgerEntry) uint64 {
	toUser := ledgerClip(e.ToUser)
	client := ledgerClip(e.ClientMsgID)
	var flags uint8
	if e.Deduplicated {
		flags |= ledgerFlagDeduplicated
	}
	if e.API == LedgerAPICustomSend {
		flags |= ledgerFlagCustomSend
	}
	var at int64
	if e.ReceivedAt.IsZero() {
		flags |= ledgerFlagZeroTime
	} else {
		at = e.ReceivedAt.UnixNano()
	}
	errCode := int32(max(math.MinInt32, min(math.MaxInt32, e.ErrCode)))

	l.mu.Lock()
	defer l.mu.Unlock()

	appID := l.apps.id(e.AppID, l.internCap)
	tmplID := l.tmpls.id(e.TemplateID, l.internCap)
	var appStr, tmpl string
	need := ledgerStrLen(toUser) + ledgerStrLen(client)
	if appID == 0 {
		appStr = ledgerClip(e.AppID)
		need += ledgerStrLen(appStr)
	}
	if tmplID == 0 {
		tmpl = ledgerClip(e.TemplateID)
		need += ledgerStrLen(tmpl)
	}

	s := l.tailWithRoom(need)
	l.total++
	seq := l.total
	if len(s.recs) == 0 {
		s.first = seq
	}
	a := binary.AppendUvarint(s.arena, uint64(len(toUser)))
	a = append(a, toUser...)
	a = binary.AppendUvarint(a, uint64(len(client)))
	a = append(a, client...)
	if appID == 0 {
		a = binary.AppendUvarint(a, uint64(len(appStr)))
		a = append(a, appStr...)
	}
	if tmplID == 0 {
		a = binary.AppendUvarint(a, uint64(len(tmpl)))
		a = append(a, tmpl...)
	}
	s.arena = a
	s.recs = append(s.recs, ledgerRecord{
		at:      at,
		msgID:   e.MsgID,
		errCode: errCode,
		end:     uint32(len(a)),
		appID:   appID,
		tmplID:  tmplID,
		flags:   flags,
	})
	l.held++
	if l.dataCap > 0 {
		l.appendData(seq, e.Data)
	}
	return seq
}

// ledgerClip cuts s to ledgerMaxStringLen bytes at a UTF-8 boundary.
func ledgerClip(s string) string {
	if len(s) <= ledgerMaxStringLen {
		return s
	}
	n := ledgerMaxStringLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ledgerStrLen is the arena bytes s takes: its uvarint length and itself.
func ledgerStrLen(s string) int {
	n := len(s)
	k := 1
	for v := uint64(n); v >= 0x80; v >>= 7 {
		k++
	}
	return k + n
}

// tailWithRoom evicts as needed to make room for one more entry and
// returns the segment it goes into, with room for one record and need
// arena bytes (past which the arena may still grow).
func (l *Ledger) tailWithRoom(need int) *ledgerSeg {
	for l.held >= l.capacity && len(l.segs) > 0 {
		l.evictOldest()
	}
	if n := len(l.segs); n > 0 {
		s := l.segs[n-1]
		if len(s.recs) < l.segRecords && len(s.arena)+need <= ledgerMaxArena {
			if len(s.recs) == cap(s.recs) {
				recs := make([]ledgerRecord, len(s.recs), min(l.segRecords, 2*cap(s.recs)))
				copy(recs, s.recs)
				s.recs = recs
			}
			return s
		}
		l.seal(s)
	}
	s := l.newSeg()
	l.segs = append(l.segs, s)
	return s
}

// seal is called on the tail segment when a new one follows it: it notes
// the arena size for sizing the next segment (1/64 above it: strings of a
// load run have steady lengths, and when the guess is short the arena
// grows by append and is trimmed here) and gives back slack.
func (l *Ledger) seal(s *ledgerSeg) {
	if len(s.recs) == l.segRecords {
		l.lastArena = len(s.arena)
	} else if cap(s.recs) > len(s.recs) { // closed early for arena room
		s.recs = append([]ledgerRecord(nil), s.recs...)
	}
	if cap(s.arena)-len(s.arena) > len(s.arena)/8+ledgerFirstArena {
		s.arena = append([]byte(nil), s.arena...)
	}
}

func (l *Ledger) newSeg() *ledgerSeg {
	if s := l.spare; s != nil {
		l.spare = nil
		return s
	}
	if l.lastArena == 0 {
		return &ledgerSeg{
			recs:  make([]ledgerRecord, 0, min(l.segRecords, ledgerFirstRecords)),
			arena: make([]byte, 0, ledgerFirstArena),
		}
	}
	return &ledgerSeg{
		recs:  make([]ledgerRecord, 0, l.segRecords),
		arena: make([]byte, 0, l.lastArena+l.lastArena/64),
	}
}

func (l *Ledger) evictOldest() {
	s := l.segs[0]
	n := copy(l.segs, l.segs[1:])
	l.segs[n] = nil
	l.segs = l.segs[:n]
	l.held -= len(s.recs)
	l.evicted += uint64(len(s.recs))
	// Keep a full-size segment for the next one, unless it holds an
	// unusually large arena.
	if l.spare == nil && cap(s.recs) == l.segRecords && cap(s.arena) <= 2*max(l.lastArena, ledgerFirstArena) {
		s.recs = s.recs[:0]
		s.arena = s.arena[:0]
		l.spare = s
	}
}

// appendData records the Data of entry seq and releases data segments
// that hold only entries older than the most recent dataCap.
func (l *Ledger) appendData(seq uint64, d []byte) {
	if len(d) > ledgerMaxArena {
		d = nil
	}
	var s *ledgerDataSeg
	if n := len(l.dsegs); n > 0 {
		s = l.dsegs[n-1]
		if len(s.ends) >= l.dataSegRecords || len(s.arena)+len(d) > ledgerMaxArena {
			if len(s.ends) == l.dataSegRecords {
				l.lastDataArena = len(s.arena)
			}
			s = nil
		}
	}
	if s == nil {
		s = l.newDataSeg()
		s.first = seq
		l.dsegs = append(l.dsegs, s)
	}
	s.arena = append(s.arena, d...)
	s.ends = append(s.ends, uint32(len(s.arena)))

	for len(l.dsegs) > 1 {
		old := l.dsegs[0]
		if old.first+uint64(len(old.ends))-1+uint64(l.dataCap) > seq {
			break // its newest entry is still among the most recent dataCap
		}
		n := copy(l.dsegs, l.dsegs[1:])
		l.dsegs[n] = nil
		l.dsegs = l.dsegs[:n]
		if l.dspare == nil && cap(old.ends) == l.dataSegRecords && cap(old.arena) <= 2*max(l.lastDataArena, ledgerFirstArena) {
			old.ends = old.ends[:0]
			old.arena = old.arena[:0]
			l.dspare = old
		}
	}
}

func (l *Ledger) newDataSeg() *ledgerDataSeg {
	if s := l.dspare; s != nil {
		l.dspare = nil
		return s
	}
	arena := ledgerFirstArena
	if l.lastDataArena > 0 {
		arena = l.lastDataArena + l.lastDataArena/16
	}
	return &ledgerDataSeg{
		ends:  make([]uint32, 0, l.dataSegRecords),
		arena: make([]byte, 0, arena),
	}
}

// dataLocked returns the Data of entry seq, or nil when it is not kept.
func (l *Ledger) dataLocked(seq uint64) []byte {
	if l.dataCap == 0 || seq+uint64(l.dataCap) <= l.total {
		return nil
	}
	i := sort.Search(len(l.dsegs), func(i int) bool {
		s := l.dsegs[i]
		return s.first+uint64(len(s.ends)) > seq
	})
	if i == len(l.dsegs) || l.dsegs[i].first > seq {
		return nil
	}
	s := l.dsegs[i]
	k := int(seq - s.first)
	lo := uint32(0)
	if k > 0 {
		lo = s.ends[k-1]
	}
	return s.arena[lo:s.ends[k]]
}

// oldestLocked is the oldest seq held, 0 when empty.
func (l *Ledger) oldestLocked() uint64 {
	if l.held == 0 {
		return 0
	}
	return l.segs[0].first
}

// ledgerRaw is one entry copied out under the lock, decoded after it.
type ledgerRaw struct {
	seq            uint64
	rec            ledgerRecord
	strLo, strHi   int // its strings in the copied string bytes
	dataLo, dataHi int // its Data in the copied data bytes
}

// ledgerCopy is a run of entries copied out under the lock.
type ledgerCopy struct {
	raws        []ledgerRaw
	strs, data  []byte
	apps, tmpls []string
}

// copyLocked copies out up to n entries from seq start, which is held.
// It only copies bytes, so the lock is held briefly; decoding (and its
// allocations) happens after.
func (l *Ledger) copyLocked(start uint64, n int) ledgerCopy {
	c := ledgerCopy{raws: make([]ledgerRaw, 0, n), apps: l.apps.names, tmpls: l.tmpls.names}
	i := sort.Search(len(l.segs), func(i int) bool {
		s := l.segs[i]
		return s.first+uint64(len(s.recs)) > start
	})
	seq := start
	for ; n > 0 && i < len(l.segs); i++ {
		s := l.segs[i]
		k := int(seq - s.first)
		m := min(n, len(s.recs)-k)
		lo := 0
		if k > 0 {
			lo = int(s.recs[k-1].end)
		}
		base := len(c.strs) - lo
		c.strs = append(c.strs, s.arena[lo:s.recs[k+m-1].end]...)
		for _, r := range s.recs[k : k+m] {
			raw := ledgerRaw{seq: seq, rec: r, strLo: base + lo, strHi: base + int(r.end)}
			lo = int(r.end)
			if d := l.dataLocked(seq); len(d) > 0 {
				raw.dataLo = len(c.data)
				c.data = append(c.data, d...)
				raw.dataHi = len(c.data)
			}
			c.raws = append(c.raws, raw)
			seq++
		}
		n -= m
	}
	return c
}

// entry decodes the i'th copied entry. Its strings and Data are fresh
// copies that the ledger never touches again.
func (c *ledgerCopy) entry(i int) LedgerEntry {
	raw := &c.raws[i]
	r := raw.rec
	e := LedgerEntry{
		Seq:          raw.seq,
		MsgID:        r.msgID,
		ErrCode:      int(r.errCode),
		Deduplicated: r.flags&ledgerFlagDeduplicated != 0,
	}
	if r.flags&ledgerFlagCustomSend != 0 {
		e.API = LedgerAPICustomSend
	}
	if r.flags&ledgerFlagZeroTime == 0 {
		e.ReceivedAt = time.Unix(0, r.at).UTC()
	}
	b := c.strs[raw.strLo:raw.strHi]
	e.ToUser, b = ledgerTake(b)
	e.ClientMsgID, b = ledgerTake(b)
	if r.appID != 0 {
		e.AppID = c.apps[r.appID-1]
	} else {
		e.AppID, b = ledgerTake(b)
	}
	if r.tmplID != 0 {
		e.TemplateID = c.tmpls[r.tmplID-1]
	} else {
		e.TemplateID, _ = ledgerTake(b)
	}
	if raw.dataHi > raw.dataLo {
		e.Data = json.RawMessage(c.data[raw.dataLo:raw.dataHi:raw.dataHi])
	}
	return e
}

// ledgerTake reads one uvarint-prefixed string from b.
func ledgerTake(b []byte) (string, []byte) {
	n, k := binary.Uvarint(b)
	b = b[k:]
	return string(b[:n]), b[n:]
}

// Page returns the entries with Seq > after in seq order, at most limit
// of them (limit <= 0 means 1000; it is capped at 10000). When after is
// older than OldestSeq-1 the page starts at the oldest entry held.
func (l *Ledger) Page(after uint64, limit int) LedgerPage {
	if limit <= 0 {
		limit = ledgerDefaultPageLimit
	}
	limit = min(limit, ledgerMaxPageLimit)

	l.mu.Lock()
	p := LedgerPage{NextAfter: after, OldestSeq: l.oldestLocked(), Evicted: l.evicted}
	last := l.total
	if l.held == 0 || after >= last {
		l.mu.Unlock()
		p.Messages = []LedgerEntry{}
		return p
	}
	start := max(after+1, p.OldestSeq)
	c := l.copyLocked(start, int(min(uint64(limit), last-start+1)))
	l.mu.Unlock()

	p.Messages = make([]LedgerEntry, len(c.raws))
	for i := range c.raws {
		p.Messages[i] = c.entry(i)
	}
	if n := len(p.Messages); n > 0 {
		p.NextAfter = p.Messages[n-1].Seq
	}
	p.More = last > p.NextAfter
	return p
}

// Get returns the entry with the given seq, if it is still held.
func (l *Ledger) Get(seq uint64) (LedgerEntry, bool) {
	l.mu.Lock()
	if l.held == 0 || seq < l.oldestLocked() || seq > l.total {
		l.mu.Unlock()
		return LedgerEntry{}, false
	}
	c := l.copyLocked(seq, 1)
	l.mu.Unlock()
	return c.entry(0), true
}

// Len returns the number of entries held.
func (l *Ledger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held
}

// Total returns the number of entries appended since the last Reset
// (exact; it is also the last seq assigned).
func (l *Ledger) Total() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Evicted returns the number of entries dropped because the ledger was
// full, since the last Reset.
func (l *Ledger) Evicted() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.evicted
}

// Reset forgets every entry and interned value and releases their
// memory; seq restarts at 1.
func (l *Ledger) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total, l.held, l.evicted = 0, 0, 0
	l.segs, l.spare, l.lastArena = nil, nil, 0
	l.dsegs, l.dspare, l.lastDataArena = nil, nil, 0
	l.apps, l.tmpls = ledgerIntern{}, ledgerIntern{}
}

// MemoryBytes estimates the bytes the ledger currently holds: record
// slices and string arenas at their allocated capacity, Data segments,
// intern tables (map entries estimated) and bookkeeping. Divided by Len
// it gives the cost of an entry.
func (l *Ledger) MemoryBytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	const ptr = int64(unsafe.Sizeof(uintptr(0)))
	n := int64(unsafe.Sizeof(*l))
	n += int64(cap(l.segs)) * ptr
	for _, s := range l.segs {
		n += s.bytes()
	}
	if l.spare != nil {
		n += l.spare.bytes()
	}
	n += int64(cap(l.dsegs)) * ptr
	for _, s := range l.dsegs {
		n += s.bytes()
	}
	if l.dspare != nil {
		n += l.dspare.bytes()
	}
	return n + l.apps.bytes() + l.tmpls.bytes()
}
