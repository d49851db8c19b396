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
//   - ix:all holds every message (enqueue); a day's ix:to:<yyyymmdd>
//     and ix:req:<yyyymmdd> hold the messages accepted that day (UTC) as
//     "<touser> <id>" and "<request id> <id>", so that a user's or a
//     request's messages are a range of members: no key per user or per
//     request to create and expire on the hot path, and a day's sets
//     expire whole, twice the retention after the day;
//   - ix:st:failed holds the failed messages (settle, delivery reports,
//     redrive): the dead letters, few among many. The other statuses are
//     not indexed: a search for them reads ix:all, where they are most of
//     the messages (delivered, sent) or the newest ones (queued, sending,
//     retrying), and a send, the commonest step, moves nothing.
//
// A message's history is a list (hist:<id>) of JSON events, and the
// per-minute counters are hashes (cnt:<unix minute>) with the fields
// accepted, sent, delivered, redriven and failed:<reason>. The per-user
// and per-request sets, the history and the counters expire; ix:all and
// ix:st:* are trimmed by TrimIndexes. A member whose record has expired is
// skipped by Search. (Openids and request ids hold no space, so a member's
// prefix up to its space names exactly one user or request.)

func (k keys) ixAll() string                 { return k.prefix + "ix:all" }
func (k keys) ixDay(what, day string) string { return k.prefix + "ix:" + what + ":" + day }
func (k keys) ixStatus(bucket string) string { return k.prefix + "ix:st:" + bucket }

// indexDay is the UTC day (yyyymmdd) whose sets index a message: the day
// of its id's time (its acceptance), or of at for an id that is not a
// NewID.
func (s *Store) indexDay(id string, at time.Time) string {
	if t, ok := idTime(id); ok {
		at = t
	}
	return at.UTC().Format("20060102")
}

// dayExpiry is when a day's sets expire (unix s): a Retention after
// trimAfter past the day's end, when every record they name is long gone.
func (s *Store) dayExpiry(day string) int64 {
	d, _ := time.Parse("20060102", day)
	return d.Add(24*time.Hour + s.trimAfter() + s.opts.Retention).Unix()
}
func (k keys) hist(id string) string { return k.prefix + "hist:" + id }

// counts is the per-minute counter hash of the minute t falls in.
func (k keys) counts(t time.Time) string {
	return k.prefix + "cnt:" + strconv.FormatInt(t.Unix()/60, 10)
}

// statusKeys are the status indexes' keys in the order the scripts take
// them: failed.
func (k keys) statusKeys() []string {
	return []string{k.ixStatus("failed")}
}

// statusLua maps a status to its index's key (KEYS from base on, in the
// order of statusKeys; nil for a status that is not indexed), moves a
// member between indexes, counts in a minute's counters (kept 25 hours:
// the overview charts 24) and appends to a history.
const statusLua = `
local function bucket(base, status)
  if status == 'failed' then return KEYS[base] end
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
	b := idFloorBytes(t)
	return idEncoding.EncodeToString(b[:])
}

// idFloorBytes is idFloor(t) before its encoding: t's milliseconds in the
// first 48 bits, the rest zero.
func idFloorBytes(t time.Time) [16]byte {
	var b [16]byte
	ms := max(t.UnixMilli(), 0)
	binary.BigEndian.PutUint64(b[:8], uint64(ms)<<16)
	return b
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

// trimAfter is how long after its acceptance a message's index entries
// are kept at least: a record lives Retention after its last update, and
// almost every message is last updated within a Retention of its
// acceptance (redrives and long pauses can stretch it; TrimIndexes checks
// the records it would drop, and a day's sets live a Retention longer).
func (s *Store) trimAfter() time.Duration { return 2 * s.opts.Retention }

// TrimIndexes drops the members of the shared indexes (all messages, the
// failed ones) accepted more than trimAfter ago whose records have
// expired; a record still alive (redriven late, paused long) keeps its
// entries. Every instance may run it; it is cheap when there is nothing
// old.
func (s *Store) TrimIndexes(ctx context.Context, now time.Time) error {
	for _, p := range s.parts {
		if err := s.trimIndexes(ctx, p.keys, now); err != nil {
			return err
		}
	}
	return nil
}

// trimIndexes is TrimIndexes for one partition's keys.
func (s *Store) trimIndexes(ctx context.Context, pk keys, now time.Time) error {
	cut := s.trimCutoff(now)
	for _, k := range append(pk.statusKeys(), pk.ixAll()) {
		lo := "-"
		for {
			ids, err := s.rdb.ZRangeByLex(ctx, k, &redis.ZRangeBy{Min: lo, Max: "(" + cut, Count: 500}).Result()
			if err != nil {
				return unavailable("trim indexes", err)
			}
			if len(ids) == 0 {
				break
			}
			pipe := s.rdb.Pipeline()
			exists := make([]*redis.IntCmd, len(ids))
			for i, id := range ids {
				exists[i] = pipe.Exists(ctx, pk.msg(id))
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return unavailable("trim indexes", err)
			}
			var gone []any
			for i, id := range ids {
				if exists[i].Val() == 0 {
					gone = append(gone, id)
				}
			}
			if len(gone) > 0 {
				if err := s.rdb.ZRem(ctx, k, gone...).Err(); err != nil {
					return unavailable("trim indexes", err)
				}
			}
			if len(ids) < 500 {
				break
			}
			lo = "(" + ids[len(ids)-1]
		}
	}
	return nil
}

// trimCutoff is the id below which index members may be dropped.
func (s *Store) trimCutoff(now time.Time) string { return idFloor(now.Add(-s.trimAfter())) }

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
	var sc scan
	if q.Cursor != "" {
		if _, ok := idTime(q.Cursor); !ok {
			return nil, &QueryError{Field: "cursor", Message: "not a cursor this service gave"}
		}
		sc.hi = q.Cursor
	}
	if !q.Until.IsZero() {
		if u := idFloor(q.Until); sc.hi == "" || u < sc.hi {
			sc.hi = u
		}
	}
	if !q.Since.IsZero() {
		sc.lo = idFloor(q.Since)
	}
	// The sets to read in each partition.
	var sets func(k keys) []string
	switch {
	case q.RequestID != "" || q.ToUser != "":
		// The day sets of the days the range spans, newest first.
		what, prefix := "to", q.ToUser
		if q.RequestID != "" {
			what, prefix = "req", q.RequestID
		}
		sc.prefix = prefix + " "
		newest, oldest := time.Now().Add(24*time.Hour), time.Now().Add(-s.trimAfter()-s.opts.Retention-24*time.Hour)
		if t, ok := idTime(sc.hi); ok && t.Before(newest) {
			newest = t
		}
		if t, ok := idTime(sc.lo); ok && t.After(oldest) {
			oldest = t
		}
		sets = func(k keys) (out []string) {
			for d := newest.UTC().Truncate(24 * time.Hour); !d.Before(oldest.UTC().Truncate(24 * time.Hour)); d = d.Add(-24 * time.Hour) {
				out = append(out, k.ixDay(what, d.Format("20060102")))
			}
			return out
		}
	case q.Status == service.StatusFailed:
		sets = func(k keys) []string { return []string{k.ixStatus(string(q.Status))} }
	default:
		sets = func(k keys) []string { return []string{k.ixAll()} }
	}
	ms := &mergeScan{hi: sc.hi}
	for _, p := range s.parts {
		psc := sc
		psc.keys = sets(p.keys)
		ms.parts = append(ms.parts, &partScan{scan: psc})
	}
	page := &service.MessagePage{Messages: []service.Message{}}
	scanned := 0
	for scanned < s.opts.SearchScan {
		chunk := min(max(2*(q.Limit-len(page.Messages)), 64), s.opts.SearchScan-scanned)
		ids, err := ms.next(ctx, s.rdb, chunk)
		if err != nil {
			return nil, unavailable("search", err)
		}
		if len(ids) == 0 {
			return page, nil // every index is exhausted
		}
		recs, err := s.loadMany(ctx, ids)
		if err != nil {
			return nil, err
		}
		for i, id := range ids {
			scanned++
			if r := recs[i]; r != nil && matches(&r.Message, q) {
				page.Messages = append(page.Messages, r.Message)
				if len(page.Messages) == q.Limit {
					page.NextCursor = id
					return page, nil
				}
			}
		}
	}
	page.NextCursor = ms.hi
	return page, nil
}

// mergeScan reads message ids, newest first, from the same scan in every
// partition: ids order by time across partitions, so merging the
// partitions' newest-first lists gives the whole store's. hi is the last
// id it returned (the initial bound before that): a search that stops
// there goes on from it in every partition.
type mergeScan struct {
	parts []*partScan
	hi    string
}

// partScan is one partition's scan and the ids it read ahead.
type partScan struct {
	scan
	buf  []string
	done bool // the scan is exhausted (buf may still hold ids)
}

// next returns up to count more ids; none when every partition is
// exhausted. It returns only ids it knows to be the newest left: it stops
// at the end of a partition's read-ahead while that partition may hold
// more.
func (ms *mergeScan) next(ctx context.Context, rdb redis.UniversalClient, count int) ([]string, error) {
	for _, p := range ms.parts {
		if len(p.buf) == 0 && !p.done {
			ids, err := p.scan.next(ctx, rdb, count)
			if err != nil {
				return nil, err
			}
			p.buf, p.done = ids, len(ids) == 0
		}
	}
	var out []string
	for len(out) < count {
		var best *partScan
		for _, p := range ms.parts {
			if len(p.buf) == 0 {
				if !p.done {
					best = nil // its next id may be the newest: read it first
					break
				}
				continue
			}
			if best == nil || p.buf[0] > best.buf[0] {
				best = p
			}
		}
		if best == nil {
			break
		}
		out = append(out, best.buf[0])
		best.buf = best.buf[1:]
	}
	if len(out) > 0 {
		ms.hi = out[len(out)-1]
	}
	return out, nil
}

// scan reads message ids, newest first, from a list of sorted sets read
// one after the other (newest set first), whose members are prefix and an
// id; hi (exclusive) and lo (inclusive) bound the ids ("" for none), and
// hi moves down as ids are read.
type scan struct {
	keys   []string
	prefix string
	hi, lo string
}

// next returns up to count more ids; none when every set is exhausted.
func (sc *scan) next(ctx context.Context, rdb redis.UniversalClient, count int) ([]string, error) {
	for len(sc.keys) > 0 {
		max, min := "+", "-"
		if sc.prefix != "" {
			// Openids and request ids hold no space and "!" follows " ":
			// the prefix's members are exactly [prefix, prefix-with-"!").
			max, min = "("+sc.prefix[:len(sc.prefix)-1]+"!", "["+sc.prefix
		}
		if sc.hi != "" {
			max = "(" + sc.prefix + sc.hi
		}
		if sc.lo != "" {
			min = "[" + sc.prefix + sc.lo
		}
		members, err := rdb.ZRevRangeByLex(ctx, sc.keys[0], &redis.ZRangeBy{Max: max, Min: min, Count: int64(count)}).Result()
		if err != nil {
			return nil, err
		}
		if len(members) < count {
			sc.keys = sc.keys[1:] // this set is exhausted: the next (older) one follows
		}
		if len(members) == 0 {
			continue
		}
		ids := make([]string, len(members))
		for i, m := range members {
			ids[i] = strings.TrimPrefix(m, sc.prefix)
		}
		sc.hi = ids[len(ids)-1]
		return ids, nil
	}
	return nil, nil
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
		!q.Since.IsZero() && acceptedAt(m).Before(q.Since),
		!q.Until.IsZero() && !acceptedAt(m).Before(q.Until):
		return false
	}
	return true
}

// acceptedAt is the time since and until compare: the one the message's id
// carries (the indexes' order; the API makes the id just after it takes
// created_at), or created_at for an id that is not a NewID.
func acceptedAt(m *service.Message) time.Time {
	if t, ok := idTime(m.ID); ok {
		return t
	}
	return m.CreatedAt
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
		cmds[i] = pipe.HGetAll(ctx, s.part(id).keys.msg(id))
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
	raw, err := s.rdb.LRange(ctx, s.part(r.ID).keys.hist(r.ID), 0, -1).Result()
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
	// Every partition counts its own messages: the sums are the store's.
	pipe := s.rdb.Pipeline()
	minutes := int(last - first + 1)
	cmds := make([]*redis.MapStringStringCmd, 0, minutes*len(s.parts))
	for _, p := range s.parts {
		for m := first; m <= last; m++ {
			cmds = append(cmds, pipe.HGetAll(ctx, p.keys.prefix+"cnt:"+strconv.FormatInt(m, 10)))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("counts", err)
	}
	out := make([]service.Counts, minutes)
	for j, c := range cmds {
		i := j % minutes
		out[i].Minute = time.Unix((first+int64(i))*60, 0).UTC()
		for f, v := range c.Val() {
			n, _ := strconv.ParseInt(v, 10, 64)
			switch f {
			case "accepted":
				out[i].Accepted += n
			case "sent":
				out[i].Sent += n
			case "delivered":
				out[i].Delivered += n
			case "redriven":
				out[i].Redriven += n
			default:
				if reason, ok := strings.CutPrefix(f, "failed:"); ok {
					if out[i].Failed == nil {
						out[i].Failed = map[string]int64{}
					}
					out[i].Failed[reason] += n
				}
			}
		}
	}
	return out, nil
}
