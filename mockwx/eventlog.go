package mockwx

import (
	"sort"
	"strconv"
	"sync"
	"time"
)

// eventLogCapacity is how many event records the log holds; beyond it the
// oldest sixteenth is dropped.
const eventLogCapacity = 1 << 20

// EventRecord is one simulated user event or message and what became of
// its push (an item of GET /_mock/events).
type EventRecord struct {
	// Seq is 1, 2, 3... in the order the events were accepted.
	Seq uint64 `json:"seq"`
	// ID is the id POST /_mock/events answered ("e<seq>").
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	AppID     string    `json:"appid"`
	OpenID    string    `json:"openid"`
	Type      string    `json:"type"`
	// MsgID is the MsgId of a text or image message (exceeds 2^53); events
	// have none and are deduplicated by FromUserName + CreateTime.
	MsgID int64 `json:"msg_id,omitempty"`
	// CreateTime is the push's CreateTime (Unix seconds).
	CreateTime int64 `json:"create_time"`
	// Attempts is the HTTP requests made, known once settled (0 while
	// pending).
	Attempts int `json:"attempts"`
	// Outcome is pending, acked, replied, reply_invalid or failed.
	Outcome string `json:"outcome"`
	// Reason says why for reply_invalid and failed.
	Reason string `json:"reason,omitempty"`
	// Reply is the decoded passive reply, for replied.
	Reply *Reply `json:"reply,omitempty"`
	// SettledAt is when the outcome was decided.
	SettledAt *time.Time `json:"settled_at,omitempty"`
}

// EventPage is the body of GET /_mock/events.
type EventPage struct {
	// Events are in seq order; never null in JSON.
	Events []EventRecord `json:"events"`
	// NextAfter is the ?after= of the next page: the last seq returned, or
	// the after given when none was.
	NextAfter uint64 `json:"next_after"`
	// More reports that records after NextAfter exist now.
	More bool `json:"more"`
}

// eventLog holds the event records in seq order. Safe for concurrent use.
type eventLog struct {
	now func() time.Time

	mu   sync.Mutex
	recs []*EventRecord // ascending seq, contiguous
	seq  uint64
}

func (l *eventLog) add(r EventRecord) *EventRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recs) >= eventLogCapacity {
		l.recs = append(l.recs[:0:0], l.recs[eventLogCapacity/16:]...)
	}
	l.seq++
	r.Seq = l.seq
	r.ID = "e" + strconv.FormatUint(l.seq, 10)
	rec := &r
	l.recs = append(l.recs, rec)
	return rec
}

// settle records a push's result on its record.
func (l *eventLog) settle(rec *EventRecord, res PushResult) {
	at := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	rec.Outcome, rec.Attempts, rec.Reason, rec.Reply, rec.SettledAt = res.Outcome, res.Attempts, res.Reason, res.Reply, &at
}

func (l *eventLog) page(after uint64, limit int) EventPage {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := sort.Search(len(l.recs), func(i int) bool { return l.recs[i].Seq > after })
	p := EventPage{Events: []EventRecord{}, NextAfter: after}
	for ; i < len(l.recs) && len(p.Events) < limit; i++ {
		r := *l.recs[i]
		if r.Reply != nil {
			rep := *r.Reply
			r.Reply = &rep
		}
		p.Events = append(p.Events, r)
		p.NextAfter = r.Seq
	}
	p.More = i < len(l.recs)
	return p
}

func (l *eventLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs, l.seq = nil, 0
}
