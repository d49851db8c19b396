package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wxpush/wxpush/service"
)

// Delivery reports: WeChat's TEMPLATESENDJOBFINISH callbacks.
//
// The callback endpoint records first and processes after. RecordCallback
// is one short script per callback: it marks the callback's dedup key
// (SET NX with a TTL) and, for a delivery report that was not seen before,
// appends the report to the callbacks stream. Nothing else happens on the
// request path, so the endpoint can answer WeChat quickly.
//
// A processor reads the stream through its own consumer group
// (ReadReports, ReclaimReports), applies each report with ApplyDelivery
// and acknowledges it (AckReports). ApplyDelivery is idempotent: a message
// moves to delivered or failed only from sent, once. A report whose msgid
// is not indexed yet (it overtook the worker's Settle) is parked under
// early:<app>:<msgid>, and Settle applies it in the same script that
// writes the msgid index, so the report is never lost whichever of the two
// writes comes first.

// DefaultEarlyTTL is how long a parked report waits for its send to be
// settled (Options.EarlyTTL).
const DefaultEarlyTTL = time.Hour

// reportsGroup is the consumer group of the report processors.
const reportsGroup = "callbacks"

// DeliveryReport is a TEMPLATESENDJOBFINISH report as recorded.
type DeliveryReport struct {
	App    string // the app name in wxpushd's config
	MsgID  int64  // WeChat's msgid of the send
	Status string // WeChat's Status, raw ("success", "failed:user block"...)
	// Delivered is the meaning of Status; Reason is the failure reason
	// (service.Reason*) when not Delivered.
	Delivered  bool
	Reason     string
	OpenID     string    // the report's FromUserName
	ReceivedAt time.Time // when wxpushd received it
}

// ReportEntry is a recorded report handed to a processor.
type ReportEntry struct {
	StreamID string // to acknowledge
	Report   DeliveryReport
}

// DeliveryOutcome is what ApplyDelivery did with a report.
type DeliveryOutcome string

// The outcomes of ApplyDelivery.
const (
	DeliveryDelivered DeliveryOutcome = "delivered" // the message moved from sent to delivered
	DeliveryFailed    DeliveryOutcome = "failed"    // the message moved from sent to failed
	DeliveryParked    DeliveryOutcome = "parked"    // no msgid index yet: kept for Settle
	DeliveryFinal     DeliveryOutcome = "final"     // the message was already delivered or failed: unchanged
	DeliveryGone      DeliveryOutcome = "gone"      // the index names a record that no longer exists
	DeliveryNotSent   DeliveryOutcome = "not_sent"  // the record is not in status sent: unchanged
	// DeliveryForged: the report's openid is not the message's touser; it
	// changes nothing.
	DeliveryForged DeliveryOutcome = "forged"
)

// DeliveryResult is the outcome of ApplyDelivery and the message it
// concerned (empty when Parked).
type DeliveryResult struct {
	Outcome   DeliveryOutcome
	MessageID string
	// RequestID is the X-Request-Id that accepted the message, for the
	// log line about the report.
	RequestID string
}

// early is where a report for msgid that names openid waits for its send
// to be recorded: one slot per openid, so a report that names another user
// (forged) can never take the place of the real one, and Settle applies
// only the report whose openid is the message's touser.
func (k keys) early(app string, msgid int64, openid string) string {
	sum := sha256.Sum256([]byte(openid))
	return k.prefix + "early:" + app + ":" + strconv.FormatInt(msgid, 10) + ":" + hex.EncodeToString(sum[:8])
}

func (k keys) reports() string { return k.prefix + "callbacks" }

// seen is the dedup key of one callback. The caller's key holds
// sender-controlled text (an openid), so it is hashed.
func (k keys) seen(app, dedupKey string) string {
	sum := sha256.Sum256([]byte(dedupKey))
	return k.prefix + "cbseen:" + app + ":" + hex.EncodeToString(sum[:16])
}

// query is the replay guard of one signed callback query: it remembers
// the digest of the body first seen with it.
func (k keys) query(app, queryID string) string {
	sum := sha256.Sum256([]byte(queryID))
	return k.prefix + "cbquery:" + app + ":" + hex.EncodeToString(sum[:16])
}

// recordCallbackScript checks a callback against the replay guard, marks
// it as seen and records its report.
// KEYS: seen, reports, query. ARGV: ttlMs, queryTTLms, bodySum, hasReport,
// then the report's fields.
// Returns 1 when the callback is new, 0 for a retry already recorded, -1
// when its signed query was seen before with another body (a replay):
// then nothing is written.
var recordCallbackScript = redis.NewScript(`
local prev = redis.call('GET', KEYS[3])
if prev and prev ~= ARGV[3] then return -1 end
if not prev then redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[2]) end
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
if ARGV[4] == '1' then
  redis.call('XADD', KEYS[2], '*', 'app', ARGV[5], 'msgid', ARGV[6], 'status', ARGV[7],
    'delivered', ARGV[8], 'reason', ARGV[9], 'openid', ARGV[10], 'at', ARGV[11])
end
return 1
`)

// Callback is one verified push, as RecordCallback records it.
type Callback struct {
	App string
	// DedupKey is the key WeChat's retries of the push share
	// (wechat.Message.DedupKey).
	DedupKey string
	// QueryID identifies the signed query the push came with (its
	// timestamp and nonce, what the URL signature covers); BodySum is a
	// digest of its body.
	// The same query with another body is a replay.
	QueryID string
	BodySum string
	// Report is the delivery report the push carries, or nil.
	Report *DeliveryReport
}

// Recorded is what RecordCallback did with a push.
type Recorded int

// The outcomes of RecordCallback.
const (
	RecordedNew       Recorded = 1  // first seen: marked, and its report appended
	RecordedDuplicate Recorded = 0  // a retry of a push already recorded: nothing written
	RecordedReplay    Recorded = -1 // its signed query came before with another body: refused, nothing written
)

// RecordCallback records one verified callback in a single round trip.
// A push whose signed query was already recorded with another body within
// queryTTL is a replay and changes nothing. Otherwise the query is
// remembered with the body's digest, and a push whose DedupKey was already
// recorded for the app within ttl is a duplicate (WeChat's retry); a new
// one is marked and, when it carries a report, the report is appended to
// the reports stream. An error means nothing was recorded.
func (s *Store) RecordCallback(ctx context.Context, cb Callback, ttl, queryTTL time.Duration) (Recorded, error) {
	args := []any{max(ttl.Milliseconds(), 1), max(queryTTL.Milliseconds(), 1), cb.BodySum, "0"}
	if rep := cb.Report; rep != nil {
		args = append(args[:3], "1", rep.App, rep.MsgID, rep.Status, b2s(rep.Delivered), rep.Reason, rep.OpenID, rep.ReceivedAt.UnixMilli())
	}
	n, err := s.runDurable(ctx, recordCallbackScript, []string{s.keys.seen(cb.App, cb.DedupKey), s.keys.reports(), s.keys.query(cb.App, cb.QueryID)}, args...).Int()
	if err != nil {
		return 0, unavailable("record callback", err)
	}
	switch r := Recorded(n); r {
	case RecordedNew, RecordedDuplicate, RecordedReplay:
		return r, nil
	}
	return 0, unavailable("record callback", fmt.Errorf("unexpected reply %d", n))
}

// recordQueryScript is the replay guard alone. KEYS: query. ARGV: digest,
// ttlMs. Returns 1 for a query first seen, 0 for one seen with the same
// digest, -1 for one seen with another digest (then nothing changes).
var recordQueryScript = redis.NewScript(`
local prev = redis.call('GET', KEYS[1])
if not prev then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if prev == ARGV[1] then return 0 end
return -1
`)

// RecordQuery records a signed query in the replay guard with the digest
// of what came with it, as RecordCallback does for a push: a URL
// verification's query, recorded this way, is refused when it comes back
// as a push.
func (s *Store) RecordQuery(ctx context.Context, app, queryID, digest string, ttl time.Duration) (Recorded, error) {
	n, err := recordQueryScript.Run(ctx, s.rdb, []string{s.keys.query(app, queryID)}, digest, max(ttl.Milliseconds(), 1)).Int()
	if err != nil {
		return 0, unavailable("record query", err)
	}
	return Recorded(n), nil
}

// EnsureReportsGroup creates the reports stream and its consumer group if
// missing.
func (s *Store) EnsureReportsGroup(ctx context.Context) error { return s.reportsQueue().ensure(ctx) }

func (s *Store) reportsQueue() consumerGroup {
	return consumerGroup{rdb: s.rdb, stream: s.keys.reports(), group: reportsGroup, what: "reports"}
}

// ReadReports takes up to count new reports for consumer, blocking up to
// block (a negative block does not block). The call is bounded by block
// plus two seconds.
func (s *Store) ReadReports(ctx context.Context, consumer string, count int, block time.Duration) ([]ReportEntry, error) {
	msgs, err := s.reportsQueue().read(ctx, consumer, count, block)
	return reportEntries(msgs), err
}

// ReclaimReports takes over up to count reports that other consumers
// received more than minIdle ago and never acknowledged.
func (s *Store) ReclaimReports(ctx context.Context, consumer string, minIdle time.Duration, count int) ([]ReportEntry, error) {
	msgs, err := s.reportsQueue().reclaim(ctx, consumer, minIdle, count)
	return reportEntries(msgs), err
}

// AckReports acknowledges processed reports and deletes them from the
// stream.
func (s *Store) AckReports(ctx context.Context, streamIDs ...string) error {
	if len(streamIDs) == 0 {
		return nil
	}
	pipe := s.rdb.TxPipeline()
	pipe.XAck(ctx, s.keys.reports(), reportsGroup, streamIDs...)
	pipe.XDel(ctx, s.keys.reports(), streamIDs...)
	if _, err := pipe.Exec(ctx); err != nil {
		return unavailable("ack reports", err)
	}
	return nil
}

func reportEntries(msgs []redis.XMessage) []ReportEntry {
	if len(msgs) == 0 {
		return nil
	}
	out := make([]ReportEntry, 0, len(msgs))
	for _, m := range msgs {
		str := func(k string) string { v, _ := m.Values[k].(string); return v }
		msgid, _ := strconv.ParseInt(str("msgid"), 10, 64)
		at, _ := strconv.ParseInt(str("at"), 10, 64)
		out = append(out, ReportEntry{StreamID: m.ID, Report: DeliveryReport{
			App: str("app"), MsgID: msgid, Status: str("status"), Delivered: str("delivered") == "1",
			Reason: str("reason"), OpenID: str("openid"), ReceivedAt: time.UnixMilli(at).UTC(),
		}})
	}
	return out
}

// applyDeliveryScript applies a report to the message its msgid names.
// It keeps the message's history, its status index and the minute's
// counters (index.go).
// KEYS: msgidx, early (the report's openid's slot), msg (the record the
// caller read from msgidx; any key when the index was empty), outbox,
// hist, counts, then the status indexes (statusKeys).
// ARGV: expectedID, result ("delivered" or "failed"), reason, status,
// atMs, earlyTTLSec, retentionSec, events (the app's EventPolicy), nowMs,
// openid (the report's FromUserName), history event.
// Returns {an outcome, or "moved" when the index no longer names
// expectedID (the caller reads it again); the message's request id}. A report whose openid is not the message's
// touser is "forged" and changes nothing.
var applyDeliveryScript = redis.NewScript(statusLua + `
local id = redis.call('GET', KEYS[1])
if not id then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('HSET', KEYS[2], 'result', ARGV[2], 'reason', ARGV[3], 'status', ARGV[4], 'at', ARGV[5])
    redis.call('EXPIRE', KEYS[2], ARGV[6])
  end
  return {'parked', ''}
end
if id ~= ARGV[1] then return {'moved', ''} end
local rec = redis.call('HMGET', KEYS[3], 'status', 'req', 'request_id')
local status = rec[1]
if not status then return {'gone', ''} end
local rid = rec[3] or ''
local ok, req = pcall(cjson.decode, rec[2] or '')
if not ok or type(req) ~= 'table' or req['touser'] ~= ARGV[10] then return {'forged', rid} end
if status == 'delivered' or status == 'failed' then return {'final', rid} end
if status ~= 'sent' then return {'not_sent', rid} end
if ARGV[2] == 'delivered' then
  redis.call('HSET', KEYS[3], 'status', 'delivered', 'delivered_at', ARGV[5], 'delivery_status', ARGV[4], 'updated_at', ARGV[5])
  count(KEYS[6], 'delivered', 1)
else
  redis.call('HSET', KEYS[3], 'status', 'failed', 'reason', ARGV[3], 'delivery_status', ARGV[4], 'updated_at', ARGV[5])
  count(KEYS[6], 'failed:' .. ARGV[3], 1)
end
move(7, ARGV[1], 'sent', ARGV[2])
remember(KEYS[5], ARGV[11], ARGV[7])
redis.call('EXPIRE', KEYS[3], ARGV[7])
if ARGV[8] ~= '0' then redis.call('ZADD', KEYS[4], 'NX', ARGV[9], ARGV[1]) end
return {ARGV[2], rid}
`)

// ApplyDelivery applies a report: a message in status sent becomes
// delivered (delivered_at = the report's ReceivedAt) or failed with the
// report's reason, keeping WeChat's raw status in delivery_status. It is
// idempotent and never changes a delivered or failed message, nor a
// message whose touser is not the report's openid (DeliveryForged). When
// the msgid is not indexed yet the report is parked for Settle, under its
// openid (the first parked report of a msgid and openid wins), for
// earlyTTL (0: DefaultEarlyTTL); Settle applies only the one that names
// the message's touser.
func (s *Store) ApplyDelivery(ctx context.Context, rep DeliveryReport, earlyTTL time.Duration) (DeliveryResult, error) {
	if earlyTTL <= 0 {
		earlyTTL = DefaultEarlyTTL
	}
	result := string(DeliveryFailed)
	if rep.Delivered {
		result = string(DeliveryDelivered)
	}
	// The partition whose msgid index names the message applies it; when
	// none does yet, each partition in turn applies or parks it
	// atomically, so the Settle that indexes the msgid later (in whichever
	// partition) finds it parked, and one that indexed it meanwhile has it
	// applied. (Reports parked in the other partitions expire with
	// earlyTTL.)
	id, p, err := s.findMsgID(ctx, rep.App, rep.MsgID)
	switch {
	case err == nil:
		return s.applyDelivery(ctx, p, rep, result, earlyTTL, id)
	case !errors.Is(err, ErrNotFound):
		return DeliveryResult{}, err // ErrUnavailable already, naming the msgid index
	}
	for _, p := range s.parts {
		res, err := s.applyDelivery(ctx, p, rep, result, earlyTTL, "")
		if err != nil || res.Outcome != DeliveryParked {
			return res, err
		}
	}
	return DeliveryResult{Outcome: DeliveryParked}, nil
}

// applyDelivery applies a report in partition p; id is the message id its
// msgid index was just read to name ("": none).
func (s *Store) applyDelivery(ctx context.Context, p *part, rep DeliveryReport, result string, earlyTTL time.Duration, id string) (DeliveryResult, error) {
	k := p.keys
	idx := k.msgid(rep.App, rep.MsgID)
	early := k.early(rep.App, rep.MsgID, rep.OpenID)
	// The index can only go from absent to one id (it is written once, by
	// the Settle that records the send), so one re-read is enough; the loop
	// bound is a guard.
	for try := range 3 {
		if try > 0 { // the index changed since it was read
			var err error
			if id, err = s.rdb.Get(ctx, idx).Result(); err != nil && !errors.Is(err, redis.Nil) {
				return DeliveryResult{}, unavailable("apply delivery", err)
			}
		}
		now := time.Now()
		ev := &service.HistoryEvent{At: rep.ReceivedAt.UTC(), Type: service.HistoryDeliveryReport, Status: rep.Status, Outcome: result, MsgID: rep.MsgID}
		if !rep.Delivered {
			ev.Reason = rep.Reason
		}
		keys := append([]string{idx, early, k.msg(id), k.outbox(), k.hist(id), k.counts(now)}, k.statusKeys()...)
		vals, err := applyDeliveryScript.Run(ctx, s.rdb, keys,
			id, result, rep.Reason, rep.Status, rep.ReceivedAt.UnixMilli(),
			max(int64(earlyTTL.Seconds()), 1), int64(s.opts.Retention.Seconds()),
			s.events(rep.App), now.UnixMilli(), rep.OpenID, historyJSON(ev),
		).StringSlice()
		if err == nil && len(vals) != 2 {
			err = fmt.Errorf("unexpected reply of %d values", len(vals))
		}
		if err != nil {
			return DeliveryResult{}, unavailable("apply delivery", err)
		}
		out := vals[0]
		switch out {
		case "moved":
			continue
		case string(DeliveryParked):
			return DeliveryResult{Outcome: DeliveryParked}, nil
		}
		return DeliveryResult{Outcome: DeliveryOutcome(out), MessageID: id, RequestID: vals[1]}, nil
	}
	return DeliveryResult{}, fmt.Errorf("store: apply delivery: msgid %d of app %s: index keeps changing", rep.MsgID, rep.App)
}

func b2s(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
