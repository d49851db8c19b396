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
)

// Inbound pushes: every verified event or user message other than a
// delivery report.
//
// RecordPush is one script on the request path, like RecordCallback: it
// checks the replay guard, marks the push's dedup key, updates the user's
// follower state (subscribe and unsubscribe, ordered by CreateTime) and,
// when the app has an event webhook, stores the push under its delivery id
// and appends that id to the user's queue (inbound:<app>:<user>, a list in
// arrival order). A queue that was empty also gets a token in the inbound
// stream: a queue has exactly one token while it holds pushes, either in
// the stream (new, or pending at the forwarder that read it) or in the
// delayed set (waiting for a retry), so only one forwarder at a time works
// on a user's pushes and they leave in order.
//
// A forwarder reads tokens through the consumer group "forwarders"
// (ReadInbound, ReclaimInbound) and, for each, delivers the queue's head
// (NextInbound) until the queue is empty: FinishInbound removes the head
// and acknowledges the token once the queue is empty; RetryInbound moves
// the token to the delayed set with backoff (MoveDueInbound brings it
// back), or drops the head after too many attempts. A forwarder that dies
// leaves its token pending; another takes it over after the reclaim time
// and delivers the head again, under the same delivery id.

// forwardersGroup is the consumer group of the event forwarders.
const forwardersGroup = "forwarders"

func (k keys) inboundStream() string  { return k.prefix + "inbound" }
func (k keys) inboundDelayed() string { return k.prefix + "inbound:delayed" }

// inboundQueue is the queue of one user's pushes; the openid is
// sender-controlled text, so it is hashed.
func (k keys) inboundQueue(app, openid string) string {
	return k.prefix + "inbound:" + app + ":" + hashHex(openid)
}

func (k keys) inboundPush(id string) string { return k.prefix + "push:" + id }

// follower is what the service knows of whether a user follows an app.
func (k keys) follower(app, openid string) string {
	return k.prefix + "follower:" + app + ":" + hashHex(openid)
}

func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// DeliveryID returns the stable delivery id of a push: the same for
// WeChat's every retry of it (derived from the app and the push's dedup
// key), so a receiver that drops ids it has seen gets each push once.
func DeliveryID(app, dedupKey string) string {
	sum := sha256.Sum256([]byte(app + "\n" + dedupKey))
	return "evt_" + hex.EncodeToString(sum[:16])
}

// Follow changes a push makes to the follower state.
const (
	FollowNone        = ""            // no change
	FollowSubscribe   = "subscribe"   // the user follows since the push's CreateTime
	FollowUnsubscribe = "unsubscribe" // the user stopped following
)

// Push is one verified inbound push, as RecordPush records it.
type Push struct {
	App      string
	DedupKey string // wechat.Message.DedupKey
	QueryID  string // see Callback
	BodySum  string
	OpenID   string // FromUserName
	// CreateTime is the push's CreateTime (unix seconds): it orders the
	// follower state changes of one user.
	CreateTime int64
	// Type is the push's Event for events, its MsgType for user messages.
	Type string
	// Follow is the follower state change the push makes.
	Follow string
	// Forward, when true, stores Payload under the push's delivery id and
	// queues it for the event webhook.
	Forward    bool
	Payload    []byte
	ReceivedAt time.Time
}

// recordPushScript checks the replay guard, marks the push as seen,
// updates the follower state and queues the push for forwarding.
// KEYS: seen, query, queue, stream, push, follower.
// ARGV: ttlMs, queryTTLms, bodySum, forward ("1"/"0"), deliveryID,
// payload, atMs, createTime (s), follow (subscribe, unsubscribe or ""),
// type, pushTTLsec, app.
// Returns 1 (new), 0 (a retry already recorded) or -1 (a replay: nothing
// written), as recordCallbackScript.
var recordPushScript = redis.NewScript(`
local prev = redis.call('GET', KEYS[2])
if prev and prev ~= ARGV[3] then return -1 end
if not prev then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2]) end
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local ct = tonumber(ARGV[8])
local f = redis.call('HMGET', KEYS[6], 'ts', 'last_event_at', 'following')
if ARGV[9] ~= '' and (not f[1] or ct >= tonumber(f[1])) then
  local following = '0'
  if ARGV[9] == 'subscribe' then following = '1' end
  if f[3] ~= following then redis.call('HSET', KEYS[6], 'since', ct) end
  redis.call('HSET', KEYS[6], 'following', following, 'ts', ct, 'source', 'event')
end
if not f[2] or ct >= tonumber(f[2]) then
  redis.call('HSET', KEYS[6], 'last_event', ARGV[10], 'last_event_at', ct)
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[5], 'payload', ARGV[6], 'at', ARGV[7], 'app', ARGV[12], 'type', ARGV[10])
  redis.call('EXPIRE', KEYS[5], ARGV[11])
  if redis.call('RPUSH', KEYS[3], ARGV[5]) == 1 then
    redis.call('XADD', KEYS[4], '*', 'queue', KEYS[3])
  end
end
return 1
`)

// RecordPush records one verified push in a single round trip: the replay
// guard and the dedup key as RecordCallback, then, for a push not seen
// before, the follower state and (Forward) the push in its user's queue
// for the event webhook. The stored push lives for the store's retention.
// An error means nothing was recorded.
func (s *Store) RecordPush(ctx context.Context, p Push, ttl, queryTTL time.Duration) (Recorded, error) {
	id := DeliveryID(p.App, p.DedupKey)
	n, err := s.runDurable(ctx, recordPushScript,
		[]string{s.keys.seen(p.App, p.DedupKey), s.keys.query(p.App, p.QueryID), s.keys.inboundQueue(p.App, p.OpenID),
			s.keys.inboundStream(), s.keys.inboundPush(id), s.keys.follower(p.App, p.OpenID)},
		max(ttl.Milliseconds(), 1), max(queryTTL.Milliseconds(), 1), p.BodySum, b2s(p.Forward), id,
		p.Payload, p.ReceivedAt.UnixMilli(), p.CreateTime, p.Follow, p.Type, int64(s.opts.Retention.Seconds()), p.App,
	).Int()
	if err != nil {
		return 0, unavailable("record push", err)
	}
	switch r := Recorded(n); r {
	case RecordedNew, RecordedDuplicate, RecordedReplay:
		return r, nil
	}
	return 0, unavailable("record push", fmt.Errorf("unexpected reply %d", n))
}

// --- follower state --------------------------------------------------------

// Follower sources: what the service learnt a user's state from.
const (
	SourceEvent   = "event"   // a subscribe or unsubscribe push
	SourceErrcode = "errcode" // WeChat answered 43004 to a send
)

// Follower is what the service knows of one user of an app.
type Follower struct {
	// Known: a subscribe, an unsubscribe or a 43004 was seen; Following
	// is then whether the user follows, since Since, learnt from Source.
	Known     bool
	Following bool
	Since     time.Time
	Source    string
	// LastEvent is the type of the user's latest push (by CreateTime) and
	// LastEventAt its CreateTime; empty when no push was seen.
	LastEvent   string
	LastEventAt time.Time
}

// ReadFollower returns what the store knows of openid for app.
func (s *Store) ReadFollower(ctx context.Context, app, openid string) (Follower, error) {
	vals, err := s.rdb.HMGet(ctx, s.keys.follower(app, openid), "following", "since", "source", "last_event", "last_event_at").Result()
	if err != nil {
		return Follower{}, unavailable("read follower", err)
	}
	str := func(i int) string { v, _ := vals[i].(string); return v }
	secs := func(i int) time.Time {
		n, err := strconv.ParseInt(str(i), 10, 64)
		if err != nil {
			return time.Time{}
		}
		return time.Unix(n, 0).UTC()
	}
	f := Follower{Source: str(2), LastEvent: str(3), LastEventAt: secs(4)}
	if following := str(0); following != "" {
		f.Known, f.Following, f.Since = true, following == "1", secs(1)
	}
	return f, nil
}

// NotFollowing reports whether the store knows that openid does not
// follow app: the check a worker makes before a send. Concurrent checks
// share one script call (a coalescer, as Begin's): one command for many
// sends, not one each.
func (s *Store) NotFollowing(ctx context.Context, app, openid string) (bool, error) {
	return s.followers.do(ctx, s.keys.follower(app, openid))
}

// followingScript reads the following field of every follower hash in
// KEYS (empty for none).
var followingScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGET', KEYS[i], 'following') or '' end
return out
`)

// readFollowing answers a batch of NotFollowing calls, each a follower
// key, with one script call.
func (s *Store) readFollowing(ctx context.Context, calls []*batchCall[string, bool]) {
	keys := make([]string, len(calls))
	for i, call := range calls {
		keys[i] = call.in
	}
	vals, err := followingScript.Run(ctx, s.rdb, keys).StringSlice()
	if err == nil && len(vals) != len(calls) {
		err = fmt.Errorf("unexpected reply of %d values for %d users", len(vals), len(calls))
	}
	for i, call := range calls {
		if err != nil {
			call.err = unavailable("check follower", err)
			continue
		}
		call.out = vals[i] == "0"
	}
}

// markNotFollowingScript records a 43004 answer. KEYS: follower. ARGV: at
// (unix seconds). A state set by a push with a later CreateTime stands, and
// so does a follow in the same second (CreateTime has one-second
// resolution, and a tie goes to following: a send withheld from a follower
// is lost, one to a non-follower costs a 43004). Returns 1 when the state
// changed.
var markNotFollowingScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'ts', 'following')
if f[1] and (tonumber(ARGV[1]) < tonumber(f[1]) or (tonumber(ARGV[1]) == tonumber(f[1]) and f[2] == '1')) then return 0 end
if f[2] ~= '0' then redis.call('HSET', KEYS[1], 'since', ARGV[1]) end
redis.call('HSET', KEYS[1], 'following', '0', 'ts', ARGV[1], 'source', 'errcode')
return 1
`)

// MarkNotFollowing records that WeChat answered 43004 (the user does not
// follow) to a send to openid that began at at; a subscribe push with a
// later CreateTime clears it, an older one does not.
func (s *Store) MarkNotFollowing(ctx context.Context, app, openid string, at time.Time) error {
	if err := markNotFollowingScript.Run(ctx, s.rdb, []string{s.keys.follower(app, openid)}, at.Unix()).Err(); err != nil {
		return unavailable("mark not following", err)
	}
	return nil
}

// --- forwarding --------------------------------------------------------------

// InboundToken is a user's queue handed to a forwarder.
type InboundToken struct {
	StreamID string // to acknowledge
	Queue    string // the user's queue key
}

// InboundPush is the head of a user's queue.
type InboundPush struct {
	ID      string // the delivery id
	App     string
	Type    string
	Payload []byte
	// Attempts is the number of failed deliveries so far.
	Attempts int
}

// EnsureInboundGroup creates the inbound stream and its consumer group if
// missing.
func (s *Store) EnsureInboundGroup(ctx context.Context) error { return s.inboundGroup().ensure(ctx) }

func (s *Store) inboundGroup() consumerGroup {
	return consumerGroup{rdb: s.rdb, stream: s.keys.inboundStream(), group: forwardersGroup, what: "inbound"}
}

func inboundTokens(msgs []redis.XMessage) []InboundToken {
	out := make([]InboundToken, 0, len(msgs))
	for _, m := range msgs {
		q, _ := m.Values["queue"].(string)
		out = append(out, InboundToken{StreamID: m.ID, Queue: q})
	}
	return out
}

// ReadInbound takes up to count new tokens for consumer, blocking up to
// block (negative: no wait).
func (s *Store) ReadInbound(ctx context.Context, consumer string, count int, block time.Duration) ([]InboundToken, error) {
	msgs, err := s.inboundGroup().read(ctx, consumer, count, block)
	return inboundTokens(msgs), err
}

// ReclaimInbound takes over up to count tokens other forwarders read more
// than minIdle ago and never acknowledged (they died or stalled).
func (s *Store) ReclaimInbound(ctx context.Context, consumer string, minIdle time.Duration, count int) ([]InboundToken, error) {
	msgs, err := s.inboundGroup().reclaim(ctx, consumer, minIdle, count)
	return inboundTokens(msgs), err
}

// nextInboundScript returns the head of a queue, dropping heads whose
// stored push expired. KEYS: queue. ARGV: push key prefix.
// Returns {} for an empty queue, else {id, payload, attempts, app, type, dropped}.
var nextInboundScript = redis.NewScript(`
local dropped = 0
while true do
  local id = redis.call('LINDEX', KEYS[1], 0)
  if not id then return {} end
  local h = redis.call('HMGET', ARGV[1] .. id, 'payload', 'attempts', 'app', 'type')
  if h[1] then return {id, h[1], h[2] or '0', h[3] or '', h[4] or '', dropped} end
  redis.call('LPOP', KEYS[1])
  dropped = dropped + 1
end
`)

// NextInbound returns the head of a user's queue, or nil when it is
// empty. Heads whose stored push expired (past retention) are dropped;
// dropped counts them.
func (s *Store) NextInbound(ctx context.Context, queue string) (p *InboundPush, dropped int, err error) {
	vals, err := nextInboundScript.Run(ctx, s.rdb, []string{queue}, s.keys.inboundPush("")).Slice()
	if err != nil {
		return nil, 0, unavailable("next inbound", err)
	}
	if len(vals) < 6 {
		return nil, 0, nil
	}
	str := func(i int) string { v, _ := vals[i].(string); return v }
	attempts, _ := strconv.Atoi(str(2))
	d, _ := vals[5].(int64)
	return &InboundPush{ID: str(0), Payload: []byte(str(1)), Attempts: attempts, App: str(3), Type: str(4)}, int(d), nil
}

// finishInboundScript removes a delivered head. KEYS: queue, stream, push.
// ARGV: group, streamID, id. Returns the pushes left in the queue (the
// token is acknowledged at 0), or -1 when id is no longer the head (another
// forwarder took the queue over): then nothing changes.
var finishInboundScript = redis.NewScript(`
if redis.call('LINDEX', KEYS[1], 0) == ARGV[3] then
  redis.call('LPOP', KEYS[1])
  redis.call('DEL', KEYS[3])
elseif redis.call('LLEN', KEYS[1]) > 0 then
  return -1
end
local left = redis.call('LLEN', KEYS[1])
if left == 0 then
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[2], ARGV[2])
end
return left
`)

// ErrMoved is what FinishInbound and RetryInbound answer when the push is
// no longer its queue's head: another forwarder took the queue over and
// handled it. The caller leaves the queue to that forwarder.
var ErrMoved = errors.New("store: the queue was taken over by another forwarder")

// FinishInbound removes the delivered push id from the head of tok's
// queue and returns how many pushes are left; the token is acknowledged
// when none is.
func (s *Store) FinishInbound(ctx context.Context, tok InboundToken, id string) (int, error) {
	n, err := finishInboundScript.Run(ctx, s.rdb, []string{tok.Queue, s.keys.inboundStream(), s.keys.inboundPush(id)},
		forwardersGroup, tok.StreamID, id).Int()
	if err != nil {
		return 0, unavailable("finish inbound", err)
	}
	if n < 0 {
		return 0, ErrMoved
	}
	return n, nil
}

// retryInboundScript records a failed delivery of the head. KEYS: queue,
// stream, push, delayed. ARGV: group, streamID, id, nowMs, baseMs, capMs,
// maxAttempts, jitter (0..1).
// Returns {attempts, dueMs} when the queue waits for the retry (its token
// moved to the delayed set), {-attempts, left} when the push was given up
// (dropped from the queue; the token is acknowledged when none is left),
// or {0, 0} when id is no longer the head.
var retryInboundScript = redis.NewScript(`
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[3] then return {0, 0} end
local n = redis.call('HINCRBY', KEYS[3], 'attempts', 1)
if n >= tonumber(ARGV[7]) then
  redis.call('LPOP', KEYS[1])
  redis.call('DEL', KEYS[3])
  local left = redis.call('LLEN', KEYS[1])
  if left == 0 then
    redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
    redis.call('XDEL', KEYS[2], ARGV[2])
  end
  return {-n, left}
end
local d = tonumber(ARGV[5]) * math.pow(2, n - 1)
if d > tonumber(ARGV[6]) then d = tonumber(ARGV[6]) end
d = d * (0.5 + tonumber(ARGV[8]) / 2)
local due = math.floor(tonumber(ARGV[4]) + d)
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[4], due, KEYS[1])
return {n, due}
`)

// InboundRetry is what RetryInbound did.
type InboundRetry struct {
	Attempts int       // failed deliveries of the push so far
	GaveUp   bool      // the push was dropped after maxAttempts
	Left     int       // GaveUp: pushes left in the queue (the caller goes on with them)
	Due      time.Time // not GaveUp: when the queue is tried again
}

// RetryInbound records a failed delivery of push id, the head of tok's
// queue: the queue waits base * 2^(n-1) (capped at cap, times a jitter in
// [0.5, 1)) in the delayed set, keeping its order, or after maxAttempts
// the push is given up and the caller goes on with the rest.
func (s *Store) RetryInbound(ctx context.Context, tok InboundToken, id string, now time.Time, base, cap time.Duration, maxAttempts int, jitter float64) (InboundRetry, error) {
	vals, err := retryInboundScript.Run(ctx, s.rdb,
		[]string{tok.Queue, s.keys.inboundStream(), s.keys.inboundPush(id), s.keys.inboundDelayed()},
		forwardersGroup, tok.StreamID, id, now.UnixMilli(), base.Milliseconds(), cap.Milliseconds(), maxAttempts,
		strconv.FormatFloat(jitter, 'f', 4, 64)).Int64Slice()
	if err == nil && len(vals) != 2 {
		err = fmt.Errorf("unexpected reply of %d values", len(vals))
	}
	if err != nil {
		return InboundRetry{}, unavailable("retry inbound", err)
	}
	switch {
	case vals[0] == 0:
		return InboundRetry{}, ErrMoved
	case vals[0] < 0:
		return InboundRetry{Attempts: int(-vals[0]), GaveUp: true, Left: int(vals[1])}, nil
	}
	return InboundRetry{Attempts: int(vals[0]), Due: time.UnixMilli(vals[1]).UTC()}, nil
}

// moveDueInboundScript puts queues whose retry is due back in the stream.
// KEYS: delayed, stream. ARGV: nowMs, limit. Returns how many it moved.
var moveDueInboundScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, q in ipairs(due) do
  redis.call('ZREM', KEYS[1], q)
  redis.call('XADD', KEYS[2], '*', 'queue', q)
end
return #due
`)

// MoveDueInbound puts up to limit queues whose retry time has come back
// in the inbound stream and returns how many it moved.
func (s *Store) MoveDueInbound(ctx context.Context, now time.Time, limit int) (int, error) {
	n, err := moveDueInboundScript.Run(ctx, s.rdb, []string{s.keys.inboundDelayed(), s.keys.inboundStream()}, now.UnixMilli(), limit).Int()
	if err != nil {
		return 0, unavailable("move due inbound", err)
	}
	return n, nil
}

// PendingInbound counts the pushes waiting to be forwarded in a user's
// queue (tests and the inspector).
func (s *Store) PendingInbound(ctx context.Context, app, openid string) (int64, error) {
	n, err := s.rdb.LLen(ctx, s.keys.inboundQueue(app, openid)).Result()
	if err != nil {
		return 0, unavailable("pending inbound", err)
	}
	return n, nil
}
