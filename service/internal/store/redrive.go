package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wxpush/wxpush/service"
)

// forceReasons lists the failure reasons a redrive needs force for
// (service.NeedsForce), as the script matches them: ",a,b,".
var forceReasons = func() string {
	var b strings.Builder
	b.WriteString(",")
	for _, r := range []string{service.ReasonUnconfirmed, service.ReasonNotFollowing, service.ReasonPermanentErrcode, service.ReasonUserBlock} {
		if !service.NeedsForce(r) {
			panic("store: forceReasons disagrees with service.NeedsForce on " + r)
		}
		b.WriteString(r + ",")
	}
	return b.String()
}()

// redriveScript puts a failed message back in the queue: status queued,
// its attempts counted from 0 again, its failure fields cleared, a new
// stream entry, the redrive in its history and counters, and out of the
// failed index. The attempt counter itself never goes back (attempt_base
// records where this run's count starts): it fences settlements, and an
// attempt begun before the redrive must stay stale. A message that WeChat
// had accepted (it has a msgid: a delivery report failed it) gets a new
// client_msg_id (its id and the redrive's number) and loses its msgid
// index entry, so that WeChat's dedup does not swallow the resend and a
// late report for the old msgid cannot touch it; an earlier attempt's
// unknown outcome no longer matters then (WeChat's accepted send settled
// it), so ambiguous_at goes. Without force, a message whose reason is in
// ARGV[5] is refused. Force clears ambiguous_at only for an unconfirmed
// failure (the operator was told a resend may reach the user twice); a
// forced redrive of another failure keeps the guard, which refuses a
// resend past WeChat's dedup window of an attempt that may have reached
// the user.
// KEYS: msg, stream, msgidx (of the msgid the caller read), hist, counts,
// then the status indexes (statusKeys).
// ARGV: nowMs, force (0/1), retentionSec, requestID, forceReasons,
// expected msgid ("" none), id.
// Returns {n, reason}: n > 0 the redrive's number; 0 gone; -1 not failed
// (reason: its status); -2 force required; -3 the msgid changed since the
// caller read it (read again).
var redriveScript = redis.NewScript(statusLua + `
local f = redis.call('HMGET', KEYS[1], 'status', 'reason', 'msgid')
if not f[1] then return {0, ''} end
if f[1] ~= 'failed' then return {-1, f[1]} end
if (f[3] or '') ~= ARGV[6] then return {-3, ''} end
local reason = f[2] or ''
if ARGV[2] ~= '1' and string.find(ARGV[5], ',' .. reason .. ',', 1, true) then return {-2, reason} end
local n = redis.call('HINCRBY', KEYS[1], 'redrives', 1)
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempt_base', redis.call('HGET', KEYS[1], 'attempts') or '0', 'updated_at', ARGV[1])
redis.call('HDEL', KEYS[1], 'reason', 'delivery_status', 'attempt_at', 'sent_at', 'delivered_at', 'msgid')
if ARGV[2] == '1' and reason == 'unconfirmed' then redis.call('HDEL', KEYS[1], 'ambiguous_at') end
if ARGV[6] ~= '' then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[1], 'cmid', ARGV[7] .. '-' .. n)
  redis.call('HDEL', KEYS[1], 'ambiguous_at')
end
move(6, ARGV[7], 'failed', 'queued')
redis.call('XADD', KEYS[2], '*', 'id', ARGV[7])
local ev = {t = tonumber(ARGV[1]), type = 'redrive', reason = reason}
if ARGV[4] ~= '' then ev['request_id'] = ARGV[4] end
if ARGV[2] == '1' then ev['forced'] = true end
remember(KEYS[4], cjson.encode(ev), ARGV[3])
count(KEYS[5], 'redriven', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {n, reason}
`)

// Redrive puts a failed message back in the queue under the same id, with
// its attempts reset and the redrive (with requestID) in its history, and
// returns it as it is now. A message that has not failed is ErrNotFailed;
// one whose reason needs force (service.NeedsForce) is ErrForceRequired
// without force; an unknown one ErrNotFound.
func (s *Store) Redrive(ctx context.Context, id string, force bool, requestID string, now time.Time) (*service.Message, error) {
	for range 3 {
		r, err := s.Load(ctx, id)
		if err != nil {
			return nil, err
		}
		if r.Status != service.StatusFailed {
			return nil, fmt.Errorf("%w: message %s is %s", ErrNotFailed, id, r.Status)
		}
		msgid := ""
		if r.MsgID != 0 {
			msgid = fmt.Sprint(r.MsgID)
		}
		k := s.part(id).keys
		keys := append([]string{k.msg(id), k.stream, k.msgid(r.App, r.MsgID), k.hist(id), k.counts(now)}, k.statusKeys()...)
		vals, err := redriveScript.Run(ctx, s.rdb, keys, now.UnixMilli(), b2s(force), int64(s.opts.Retention.Seconds()),
			requestID, forceReasons, msgid, id).Slice()
		if err == nil && len(vals) != 2 {
			err = fmt.Errorf("unexpected reply of %d values", len(vals))
		}
		if err != nil {
			return nil, unavailable("redrive", err)
		}
		n, _ := vals[0].(int64)
		detail, _ := vals[1].(string)
		switch {
		case n == 0:
			return nil, ErrNotFound
		case n == -1:
			return nil, fmt.Errorf("%w: message %s is %s", ErrNotFailed, id, detail)
		case n == -2:
			return nil, fmt.Errorf("%w: message %s failed as %s", ErrForceRequired, id, detail)
		case n == -3:
			continue
		}
		return s.Get(ctx, id)
	}
	return nil, fmt.Errorf("store: redrive %s: the message keeps changing", id)
}

// RedriveBulk redrives the failed messages that match req's app and
// reason, newest first, up to its limit, and reports what it did. The
// messages whose reason needs force are skipped without it. One call
// scans at most one search page's bound of the failed index (SearchScan):
// when that runs out first, NextCursor says where to go on. On a Redis
// error it returns what it did so far with the error; calling again is
// safe (a redriven message is no longer failed).
func (s *Store) RedriveBulk(ctx context.Context, req service.BulkRedriveRequest, requestID string, now time.Time) (*service.BulkRedriveResult, error) {
	if req.Limit == 0 {
		req.Limit = service.DefaultBulkRedrive
	}
	if req.Limit < 1 || req.Limit > service.MaxBulkRedrive {
		return nil, &QueryError{Field: "limit", Message: fmt.Sprintf("must be 1 to %d", service.MaxBulkRedrive)}
	}
	page, err := s.Search(ctx, service.MessageQuery{App: req.App, Status: service.StatusFailed, Reason: req.Reason, Limit: min(req.Limit, service.MaxSearchLimit), Cursor: req.Cursor})
	out := &service.BulkRedriveResult{Skipped: map[string]int{}, IDs: []string{}}
	for err == nil {
		for _, m := range page.Messages {
			out.Matched++
			if !req.Force && service.NeedsForce(m.Reason) {
				out.Skipped[service.CodeForceRequired]++
				continue
			}
			_, rerr := s.Redrive(ctx, m.ID, req.Force, requestID, now)
			switch {
			case rerr == nil:
				out.Redriven++
				out.IDs = append(out.IDs, m.ID)
			case errorsIsAny(rerr, ErrNotFailed, ErrNotFound):
				out.Skipped[service.CodeNotFailed]++
			case errorsIsAny(rerr, ErrForceRequired):
				out.Skipped[service.CodeForceRequired]++
			default:
				return out, rerr
			}
		}
		out.NextCursor = page.NextCursor
		// A page shorter than asked with a cursor: the search stopped at
		// its scan bound. So does this call.
		if page.NextCursor == "" || out.Matched >= req.Limit || len(page.Messages) < min(req.Limit-(out.Matched-len(page.Messages)), service.MaxSearchLimit) {
			return out, nil
		}
		page, err = s.Search(ctx, service.MessageQuery{App: req.App, Status: service.StatusFailed, Reason: req.Reason, Limit: min(req.Limit-out.Matched, service.MaxSearchLimit), Cursor: page.NextCursor})
	}
	return out, err
}
