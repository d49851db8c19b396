package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wxpush/wxpush/service"
)

// The operator's indexes. Every message is a member of sorted sets whose
// scores are all 0, so they order by member: the message id, which starts
// with its acceptance time (NewID), so the sets order by time and a time
// range is a range of ids. The scripts that write a record keep them:
//   - ix:all holds every message; ix:to:<touser> a user's messages;
//     ix:req:<request id> the messages one request accepted (enqueue);
//   - ix:st:<status> holds the messages whose status is final, by status:
//     sent, delivered, failed (settle, delivery reports, redrive). The
//     others (queued, sending, retrying) are not indexed by status: they
//     are the newest messages, found first in ix:all, and an attempt, the
//     commonest step, moves nothing.
//
// A message's history is a list (hist:<id>) of JSON events, and the
// per-minute counters are hashes (cnt:<unix minute>) with the fields
// accepted, sent, delivered, redriven and failed:<reason>. The per-user
// and per-request sets, the history and the counters expire; ix:all and
// ix:st:* are trimmed by TrimIndexes. A member whose record has expired is
// skipped by Search.

func (k keys) ixAll() string                 { return k.prefix + "ix:all" }
func (k keys) ixTo(touser string) string     { return k.prefix + "ix:to:" + touser }
func (k keys) ixReq(requestID string) string { return k.prefix + "ix:req:" + requestID }
func (k keys) ixStatus(bucket string) string { return k.prefix + "ix:st:" + bucket }
func (k keys) hist(id string) string         { return k.prefix + "hist:" + id }

// counts is the per-minute counter hash of the minute t falls in.
func (k keys) counts(t time.Time) string {
	return k.prefix + "cnt:" + strconv.FormatInt(t.Unix()/60, 10)
}

// statusKeys are the status indexes' keys in the order the scripts take
// them: sent, delivered, failed.
func (k keys) statusKeys() []string {
	return []string{k.ixStatus("sent"), k.ixStatus("delivered"), k.ixStatus("failed")}
}

// countsTTL is how long a minute's counters are kept: the console charts
// 24 hours.
const countsTTL = 25 * time.Hour

// statusLua maps a status to its index's key (KEYS from base on, in the
// order of statusKeys; nil for a status that is not indexed), moves a
// member between indexes, counts in a minute's counters and appends to a
// history.
const statusLua = `
local function bucket(base, status)
  if status == 'sent' then return KEYS[base] end
  if status == 'delivered' then return KEYS[base + 1] end
  if status == 'failed' then return KEYS[base + 2] end
  return nil
end
local function move(base, id, from, to)
  local a, b = bucket(base, from), bucket(base, to)
  if a ~= b then
    if a then redis.call('ZREM', a, id) end
    if b then redis.call('ZADD', b, 0, id) end
  end
end
local function count(key, field, n)
  if redis.call('HINCRBY', key, field, n) == n then redis.call('EXPIRE', key, 90000) end
end
local function remember(key, event, ttl)
  if event == '' then return end
  if redis.call('RPUSH', key, event) > 64 then redis.call('LTRIM', key, -64, -1) end
  redis.call('EXPIRE', key, ttl)
end
`

// idFloor is the smallest id NewID can give at t: ids at or after t sort
// at or after it.
func idFloor(t time.Time) string {
	var b [16]byte
	ms := max(t.UnixMilli(), 0)
	binary.BigEndian.PutUint64(b[:8], uint64(ms)<<16)
	return idEncoding.EncodeToString(b[:])
}

// idTime is the acceptance time an id carries; false when id is not one of
// NewID's.
func idTime(id string) (time.Time, bool) {
	if len(id) != 26 {
		return time.Time{}, false
	}
	b, err := idEncoding.DecodeString(id)
	if err != nil || len(b) != 16 {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(b[:8]) >> 16)).UTC(), true
}

// trimCutoff is the id below which index members are dropped: their
// records have expired (a record lives Retention after its last update;
// twice Retention after its acceptance is long past any update).
func (s *Store) trimCutoff(now time.Time) string { return idFloor(now.Add(-2 * s.opts.Retention)) }

// TrimIndexes drops the members of the shared indexes (all messages, by
// status) whose records have long expired. Every instance may run it; it
// is cheap when there is nothing to drop.
func (s *Store) TrimIndexes(ctx context.Context, now time.Time) error {
	cut := "(" + s.trimCutoff(now)
	pipe := s.rdb.Pipeline()
	for _, k := range append(s.keys.statusKeys(), s.keys.ixAll()) {
		pipe.ZRemRangeByLex(ctx, k, "-", cut)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return unavailable("trim indexes", err)
	}
	return nil
}

// searchScan bounds how many index members one Search examines: a
// selective filter on a large index returns a short page with a cursor
// rather than scanning without end.
const searchScan = 5000

// ValidStatus reports whether s is a message status.
func ValidStatus(s service.Status) bool {
	switch s {
	case service.StatusQueued, service.StatusSending, service.StatusRetrying, service.StatusSent, service.StatusDelivered, service.StatusFailed:
		return true
	}
	return false
}

// Search lists the messages that match q, newest first, one page. The
// most selective index the filters allow is read (request id, user,
// status), and the other filters are applied to the records. A bad filter
// or cursor is a *QueryError.
func (s *Store) Search(ctx context.Context, q service.MessageQuery) (*service.MessagePage, error) {
	if q.Limit == 0 {
		q.Limit = service.DefaultSearchLimit
	}
	if q.Limit < 1 || q.Limit > service.MaxSearchLimit {
		return nil, &QueryError{Field: "limit", Message: fmt.Sprintf("must be 1 to %d", service.MaxSearchLimit)}
	}
	if q.Status != "" && !ValidStatus(q.Status) {
		return nil, &QueryError{Field: "status", Message: "must be one of queued, sending, retrying, sent, delivered, failed"}
	}
	if q.Reason != "" {
		if q.Status != "" && q.Status != service.StatusFailed {
			return nil, &QueryError{Field: "reason", Message: "only a failed message has a reason; status must be failed or absent"}
		}
		q.Status = service.StatusFailed
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return nil, &QueryError{Field: "until", Message: "must be after since"}
	}
	hi := "+"
	if q.Cursor != "" {
		if _, ok := idTime(q.Cursor); !ok {
			return nil, &QueryError{Field: "cursor", Message: "not a cursor this service gave"}
		}
		hi = "(" + q.Cursor
	}
	if !q.Until.IsZero() {
		if u := idFloor(q.Until); hi == "+" || u < hi[1:] {
			hi = "(" + u
		}
	}
	lo := "-"
	if !q.Since.IsZero() {
		lo = "[" + idFloor(q.Since)
	}
	key := s.keys.ixAll()
	switch {
	case q.RequestID != "":
		key = s.keys.ixReq(q.RequestID)
	case q.ToUser != "":
		key = s.keys.ixTo(q.ToUser)
	case q.Status.Terminal():
		key = s.keys.ixStatus(string(q.Status))
	}
	page := &service.MessagePage{Messages: []service.Message{}}
	scanned := 0
	for scanned < searchScan {
		chunk := min(max(2*(q.Limit-len(page.Messages)), 64), searchScan-scanned)
		ids, err := s.rdb.ZRevRangeByLex(ctx, key, &redis.ZRangeBy{Max: hi, Min: lo, Count: int64(chunk)}).Result()
		if err != nil {
			return nil, unavailable("search", err)
		}
		recs, err := s.loadMany(ctx, ids)
		if err != nil {
			return nil, err
		}
		for i, id := range ids {
			scanned++
			hi = "(" + id
			if r := recs[i]; r != nil && matches(&r.Message, q) {
				page.Messages = append(page.Messages, r.Message)
				if len(page.Messages) == q.Limit {
					page.NextCursor = id
					return page, nil
				}
			}
		}
		if len(ids) < chunk {
			return page, nil // the index is exhausted
		}
	}
	page.NextCursor = hi[1:]
	return page, nil
}

// matches reports whether m satisfies every filter of q.
func matches(m *service.Message, q service.MessageQuery) bool {
	switch {
	case q.App != "" && m.App != q.App,
		q.ToUser != "" && m.ToUser != q.ToUser,
		q.Status != "" && m.Status != q.Status,
		q.Reason != "" && m.Reason != q.Reason,
		q.TemplateID != "" && m.TemplateID != q.TemplateID,
		q.RequestID != "" && m.RequestID != q.RequestID,
		!q.Since.IsZero() && m.CreatedAt.Before(q.Since),
		!q.Until.IsZero() && !m.CreatedAt.Before(q.Until):
		return false
	}
	return true
}

// loadMany reads records in one pipeline; a missing or undecodable one is
// nil.
func (s *Store) loadMany(ctx context.Context, ids []string) ([]*Record, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, s.keys.msg(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("search", err)
	}
	out := make([]*Record, len(ids))
	for i, c := range cmds {
		if h := c.Val(); len(h) > 0 {
			out[i], _ = decodeRecord(ids[i], h)
		}
	}
	return out, nil
}

// history reads a message's timeline: its accepted event (from the record)
// then the stored events.
func (s *Store) history(ctx context.Context, r *Record) ([]service.HistoryEvent, error) {
	raw, err := s.rdb.LRange(ctx, s.keys.hist(r.ID), 0, -1).Result()
	if err != nil {
		return nil, unavailable("history", err)
	}
	out := make([]service.HistoryEvent, 0, len(raw)+1)
	out = append(out, service.HistoryEvent{At: r.CreatedAt, Type: service.HistoryAccepted, RequestID: r.RequestID, TraceParent: r.TraceParent})
	for _, e := range raw {
		// Events written by a script carry their time as "t" (ms).
		var ev struct {
			service.HistoryEvent
			T int64 `json:"t"`
		}
		if json.Unmarshal([]byte(e), &ev) == nil {
			if ev.T > 0 {
				ev.At = time.UnixMilli(ev.T).UTC()
			}
			out = append(out, ev.HistoryEvent)
		}
	}
	return out, nil
}

// historyJSON encodes a history event for a script ("" for none).
func historyJSON(ev *service.HistoryEvent) string {
	if ev == nil {
		return ""
	}
	b, _ := json.Marshal(ev) // a struct of strings and numbers: cannot fail
	return string(b)
}

// Counts returns the per-minute counters of the minutes from..to (both
// included, at most 1,441 minutes), oldest first; minutes without traffic
// are zero.
func (s *Store) Counts(ctx context.Context, from, to time.Time) ([]service.Counts, error) {
	first, last := from.Unix()/60, to.Unix()/60
	if last < first {
		return nil, nil
	}
	if last-first > 1440 {
		first = last - 1440
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, 0, last-first+1)
	for m := first; m <= last; m++ {
		cmds = append(cmds, pipe.HGetAll(ctx, s.keys.prefix+"cnt:"+strconv.FormatInt(m, 10)))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("counts", err)
	}
	out := make([]service.Counts, len(cmds))
	for i, c := range cmds {
		out[i].Minute = time.Unix((first+int64(i))*60, 0).UTC()
		for f, v := range c.Val() {
			n, _ := strconv.ParseInt(v, 10, 64)
			switch f {
			case "accepted":
				out[i].Accepted = n
			case "sent":
				out[i].Sent = n
			case "delivered":
				out[i].Delivered = n
			case "redriven":
				out[i].Redriven = n
			default:
				if reason, ok := strings.CutPrefix(f, "failed:"); ok {
					if out[i].Failed == nil {
						out[i].Failed = map[string]int64{}
					}
					out[i].Failed[reason] = n
				}
			}
		}
	}
	return out, nil
}
