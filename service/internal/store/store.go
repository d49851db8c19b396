package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wxpush/wxpush/service"
)

// Options configure a Store. Zero values take the defaults shown.
type Options struct {
	// Prefix starts every key; it must contain the {hash tag}. Default
	// "wxp:{wxp}:".
	Prefix string
	// Retention is how long a message record lives after its last update
	// (default 7 days).
	Retention time.Duration
	// IdempotencyTTL is how long an idempotency key is remembered
	// (default 24 h).
	IdempotencyTTL time.Duration
	// Group is the consumer group of the workers (default "workers").
	Group string
	// Apps are the configured app names: Stats counts their waiting
	// messages.
	Apps []string
	// Events selects, per app, the status transitions that go to the
	// status webhook outbox (absent: none).
	Events map[string]EventPolicy
	// QuotaDayTTL is how long an app's daily send counter is kept
	// (default 48 h).
	QuotaDayTTL time.Duration
	// SearchScan bounds how many index entries one Search page examines
	// (default 5000): a selective filter on a large index answers a short
	// page with a cursor rather than scanning without end.
	SearchScan int
	// WriteTimeout bounds one coalesced enqueue or settle write, which may
	// serve many callers (default 3 s): with a Redis that does not answer,
	// every call in it fails within this bound, not the caller's.
	WriteTimeout time.Duration
	// Partitions splits the queue into this many partitions, each under
	// its own hash tag, so that a Redis Cluster spreads them over its
	// masters (default 1, at most MaxPartitions; see partition.go).
	Partitions int
	// WaitReplicas, when positive, makes every write the service
	// acknowledges wait until this many replicas have it (WAIT), for at
	// most WaitTimeout (default 1 s); see durable.go.
	WaitReplicas int
	WaitTimeout  time.Duration
}

// Store is wxpushd's Redis layer. It is safe for concurrent use.
type Store struct {
	rdb  redis.UniversalClient
	opts Options
	// keys are the shared keys, under the prefix itself; the partitions'
	// keys are each partition's (partition.go). With one partition they
	// are the same.
	keys  keys
	parts []*part
	// followers coalesces the workers' follower checks (shared keys).
	followers coalescer[string, bool]
	// rotation spreads the partition a round over the partitions starts
	// with (reads, reclaims, due retries, status events).
	rotation atomic.Uint32
}

type keys struct {
	prefix, stream, delayed, dlq string
}

func (k keys) outbox() string { return k.prefix + "outbox" }

func (k keys) msg(id string) string { return k.prefix + "msg:" + id }

func (k keys) idem(key string) string {
	sum := sha256.Sum256([]byte(key))
	return k.prefix + "idem:" + hex.EncodeToString(sum[:16])
}

func (k keys) msgid(app string, msgid int64) string {
	return k.prefix + "msgid:" + app + ":" + strconv.FormatInt(msgid, 10)
}

// New returns a Store on rdb.
func New(rdb redis.UniversalClient, opts Options) *Store {
	if opts.Prefix == "" {
		opts.Prefix = "wxp:{wxp}:"
	}
	if opts.Retention <= 0 {
		opts.Retention = 7 * 24 * time.Hour
	}
	if opts.IdempotencyTTL <= 0 {
		opts.IdempotencyTTL = 24 * time.Hour
	}
	if opts.Group == "" {
		opts.Group = "workers"
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 3 * time.Second
	}
	if opts.SearchScan <= 0 {
		opts.SearchScan = 5000
	}
	if opts.WaitTimeout <= 0 {
		opts.WaitTimeout = waitTimeout
	}
	if opts.QuotaDayTTL <= 0 {
		opts.QuotaDayTTL = 48 * time.Hour
	}
	opts.Partitions = min(max(opts.Partitions, 1), MaxPartitions)
	s := &Store{rdb: rdb, opts: opts, keys: newKeys(opts.Prefix)}
	s.followers = coalescer[string, bool]{op: "check follower", timeout: opts.WriteTimeout,
		size: func(string) int { return 1 }, write: s.readFollowing}
	for i, prefix := range partitionPrefixes(opts.Prefix, opts.Partitions) {
		p := &part{n: i, keys: newKeys(prefix)}
		p.enqueues = coalescer[[]NewMessage, []EnqueueResult]{op: "enqueue", timeout: opts.WriteTimeout,
			size: func(m []NewMessage) int { return len(m) }, write: func(ctx context.Context, calls []*enqueueCall) { s.writeBatch(ctx, p, calls) }}
		p.settles = coalescer[settleCall, settleOut]{op: "settle", timeout: opts.WriteTimeout,
			size: func(settleCall) int { return 1 }, write: func(ctx context.Context, calls []*batchCall[settleCall, settleOut]) { s.writeSettles(ctx, p, calls) }}
		p.begins = coalescer[beginCall, beginOut]{op: "begin", timeout: opts.WriteTimeout,
			size: func(beginCall) int { return 1 }, write: func(ctx context.Context, calls []*batchCall[beginCall, beginOut]) { s.writeBegins(ctx, p, calls) }}
		s.parts = append(s.parts, p)
	}
	return s
}

func newKeys(p string) keys {
	return keys{prefix: p, stream: p + "queue", delayed: p + "delayed", dlq: p + "dead"}
}

// Prefix returns the key prefix, for packages that keep their own keys
// (tokens) in the same slot.
func (s *Store) Prefix() string { return s.opts.Prefix }

// Client returns the Redis client.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// NewID returns a new message id: 26 characters, time-ordered (48-bit
// milliseconds then 80 random bits, Crockford base32). It doubles as the
// WeChat client_msg_id of the message, identical on every attempt.
func NewID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return idEncoding.EncodeToString(b[:])
}

// idEncoding is Crockford's base32: its alphabet is in ASCII order, so ids
// sort by time.
var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// unavailable wraps a Redis error as ErrUnavailable.
func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Record is a message as stored, with the request the worker sends.
type Record struct {
	service.Message
	Request service.SendRequest
	// AmbiguousAt is when the message's earliest attempt whose outcome is
	// unknown began (WeChat may have sent it; see Guard); zero: none.
	AmbiguousAt time.Time
	// AttemptAt is when its latest attempt began; zero: none yet.
	AttemptAt time.Time
	// AttemptBase is where the attempt count of the message's current run
	// starts: the attempts made before its latest redrive. Message.Attempts
	// counts this run's; the attempt numbers that Begin and MarkSending
	// give, and that fence a settlement, count them all (they never go
	// back, so an attempt begun before a redrive stays stale).
	AttemptBase int
	// ClientMsgID is the client_msg_id its sends carry: its id, or after a
	// redrive of a message WeChat had accepted (and then failed in its
	// delivery report), its id and the redrive's number, so that WeChat's
	// dedup does not swallow the resend.
	ClientMsgID string
}

// Unconfirmed returns when the message's earliest attempt with an unknown
// outcome began, counting an attempt that began and never settled (the
// record is still sending: its worker died or stalled); zero: none. The
// guard of Begin and MarkSending decides the same way, atomically.
func (r *Record) Unconfirmed() time.Time {
	t := r.AmbiguousAt
	if r.Status == service.StatusSending {
		began := r.AttemptAt
		if began.IsZero() {
			began = r.UpdatedAt
		}
		if t.IsZero() || began.Before(t) {
			t = began
		}
	}
	return t
}

// Get returns the public view of a message, with its history.
func (s *Store) Get(ctx context.Context, id string) (*service.Message, error) {
	r, err := s.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.History, err = s.history(ctx, r); err != nil {
		return nil, err
	}
	return &r.Message, nil
}

// Load returns a message record with its request.
func (s *Store) Load(ctx context.Context, id string) (*Record, error) {
	h, err := s.rdb.HGetAll(ctx, s.part(id).keys.msg(id)).Result()
	if err != nil {
		return nil, unavailable("load", err)
	}
	if len(h) == 0 {
		return nil, ErrNotFound
	}
	return decodeRecord(id, h)
}

func decodeRecord(id string, h map[string]string) (*Record, error) {
	ms := func(k string) time.Time {
		n, err := strconv.ParseInt(h[k], 10, 64)
		if err != nil || n == 0 {
			return time.Time{}
		}
		return time.UnixMilli(n).UTC()
	}
	optional := func(k string) *time.Time {
		if t := ms(k); !t.IsZero() {
			return &t
		}
		return nil
	}
	r := &Record{}
	if err := json.Unmarshal([]byte(h["req"]), &r.Request); err != nil {
		return nil, fmt.Errorf("store: message %s: corrupt request: %w", id, err)
	}
	r.ID, r.App, r.ToUser, r.TemplateID = id, r.Request.App, r.Request.ToUser, r.Request.TemplateID
	r.Status, r.Reason, r.DeliveryStatus = service.Status(h["status"]), h["reason"], h["delivery_status"]
	r.Attempts, _ = strconv.Atoi(h["attempts"])
	r.AttemptBase, _ = strconv.Atoi(h["attempt_base"])
	r.Attempts -= r.AttemptBase
	r.MsgID, _ = strconv.ParseInt(h["msgid"], 10, 64)
	if code, ok := h["last_errcode"]; ok {
		n, _ := strconv.Atoi(code)
		r.LastError = &service.SendError{ErrCode: n, ErrMsg: h["last_errmsg"]}
	}
	r.CreatedAt = ms("created_at")
	if r.UpdatedAt = ms("updated_at"); r.UpdatedAt.IsZero() {
		r.UpdatedAt = r.CreatedAt
	}
	r.SentAt, r.DeliveredAt = optional("sent_at"), optional("delivered_at")
	r.AmbiguousAt, r.AttemptAt = ms("ambiguous_at"), ms("attempt_at")
	r.RequestID, r.TraceParent = h["request_id"], h["traceparent"]
	r.Redrives, _ = strconv.Atoi(h["redrives"])
	if r.ClientMsgID = h["cmid"]; r.ClientMsgID == "" {
		r.ClientMsgID = id
	}
	return r, nil
}

// --- the queue ----------------------------------------------------------------

// Entry is one stream entry handed to a worker.
type Entry struct {
	StreamID  string // the stream entry id, to acknowledge
	MessageID string
	// Due is when the message became due: the time it was queued, or the
	// due time it waited for (the order of an app's wait set).
	Due time.Time
	// DueScore is Due as the wait-set score: ms, with the stream entry's
	// sequence number as the fraction (seq/1000, up to 999), so entries
	// queued in the same millisecond keep their order.
	DueScore float64
	// Slot, when not zero, is the GCRA slot (ms, Redis clock) the feeder
	// reserved for the message.
	Slot float64
	// Probe marks the one message a paused app may send to see whether
	// the cause of the pause has gone.
	Probe bool
	// RequestID is the message's request id, for the log line of a
	// reclaim (Reclaim sets it; Read does not).
	RequestID string
}

func isNoGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOGROUP") }

// EnsureGroup creates the stream and its consumer group if missing. After
// a Redis restart without persistence both are gone; workers call this on
// NOGROUP and carry on.
func (s *Store) EnsureGroup(ctx context.Context) error {
	for _, p := range s.parts {
		if err := s.queue(p).ensure(ctx); err != nil {
			return err
		}
	}
	return nil
}

// consumerGroup is a stream read through a consumer group: the message
// queue, or the delivery reports. what names it in errors.
type consumerGroup struct {
	rdb                 redis.UniversalClient
	stream, group, what string
}

func (s *Store) queue(p *part) consumerGroup {
	return consumerGroup{rdb: s.rdb, stream: p.keys.stream, group: s.opts.Group, what: "queue"}
}

// ensure creates the stream and the group if missing.
func (g consumerGroup) ensure(ctx context.Context) error {
	err := g.rdb.XGroupCreateMkStream(ctx, g.stream, g.group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return unavailable("create "+g.what+" group", err)
	}
	return nil
}

// read takes up to count new entries for consumer, blocking up to block (a
// negative block does not block), and recreates the group once on NOGROUP.
// The call is bounded by block plus two seconds even if the server never
// answers (a half-open connection, a server restarting).
func (g consumerGroup) read(ctx context.Context, consumer string, count int, block time.Duration) ([]redis.XMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, max(block, 0)+2*time.Second)
	defer cancel()
	for try := 0; ; try++ {
		res, err := g.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: g.group, Consumer: consumer, Streams: []string{g.stream, ">"}, Count: int64(count), Block: block,
		}).Result()
		switch {
		case errors.Is(err, redis.Nil):
			return nil, nil
		case isNoGroup(err) && try == 0:
			if err := g.ensure(ctx); err != nil {
				return nil, err
			}
			continue
		case err != nil:
			return nil, unavailable("read "+g.what, err)
		}
		var out []redis.XMessage
		for _, st := range res {
			out = append(out, st.Messages...)
		}
		return out, nil
	}
}

// reclaim takes over up to count entries that other consumers received
// more than minIdle ago and never acknowledged; on NOGROUP it recreates
// the group (there is nothing to take over).
func (g consumerGroup) reclaim(ctx context.Context, consumer string, minIdle time.Duration, count int) ([]redis.XMessage, error) {
	msgs, _, err := g.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: g.stream, Group: g.group, Consumer: consumer, MinIdle: minIdle, Start: "0-0", Count: int64(count),
	}).Result()
	if isNoGroup(err) {
		return nil, g.ensure(ctx)
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("reclaim "+g.what, err)
	}
	return msgs, nil
}

func entries(msgs []redis.XMessage) []Entry {
	if len(msgs) == 0 {
		return nil
	}
	out := make([]Entry, 0, len(msgs))
	for _, m := range msgs {
		str := func(k string) string { v, _ := m.Values[k].(string); return v }
		e := Entry{StreamID: m.ID, MessageID: str("id"), Probe: str("probe") == "1"}
		if due, err := strconv.ParseFloat(str("due"), 64); err == nil && due > 0 {
			e.DueScore = due
		} else {
			msPart, seqPart, _ := strings.Cut(m.ID, "-")
			ms, _ := strconv.ParseInt(msPart, 10, 64)
			seq, _ := strconv.ParseInt(seqPart, 10, 64)
			e.DueScore = float64(ms) + float64(min(seq, 999))/1000
		}
		e.Due = time.UnixMilli(int64(e.DueScore)).UTC()
		e.Slot, _ = strconv.ParseFloat(str("slot"), 64)
		out = append(out, e)
	}
	return out
}

// ReadPartition takes up to count new entries of partition p (0 to
// Partitions-1) for consumer, blocking up to block. The call is bounded by
// block plus two seconds even if the server never answers (a half-open
// connection, a server restarting). A worker reads each partition in a
// loop of its own. A p out of range is an error.
func (s *Store) ReadPartition(ctx context.Context, p int, consumer string, count int, block time.Duration) ([]Entry, error) {
	if p < 0 || p >= len(s.parts) {
		return nil, fmt.Errorf("store: read partition %d of %d", p, len(s.parts))
	}
	msgs, err := s.queue(s.parts[p]).read(ctx, consumer, count, block)
	return entries(msgs), err
}

// Read takes up to count new entries of any partition for consumer: what
// the partitions have at once, in turn from a rotating first one, or else
// what that first one gets within block.
func (s *Store) Read(ctx context.Context, consumer string, count int, block time.Duration) ([]Entry, error) {
	first := s.start()
	if len(s.parts) == 1 {
		return s.ReadPartition(ctx, first, consumer, count, block)
	}
	var out []Entry
	for i := range s.parts {
		got, err := s.ReadPartition(ctx, (first+i)%len(s.parts), consumer, count-len(out), -1)
		if out = append(out, got...); err != nil || len(out) == count {
			return out, err
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	return s.ReadPartition(ctx, first, consumer, count, block)
}

// Reclaim takes over up to count entries that other consumers received
// more than minIdle ago and never acknowledged (their worker died), from
// every partition in turn.
func (s *Store) Reclaim(ctx context.Context, consumer string, minIdle time.Duration, count int) ([]Entry, error) {
	var out []Entry
	first := s.start()
	for i := range s.parts {
		msgs, err := s.queue(s.parts[(first+i)%len(s.parts)]).reclaim(ctx, consumer, minIdle, count-len(out))
		out = append(out, entries(msgs)...)
		if err != nil {
			return out, err
		}
		if len(out) >= count {
			break
		}
	}
	if len(out) == 0 {
		return out, nil
	}
	// Reclaims are rare: one more round trip gives their log lines the
	// messages' request ids.
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(out))
	for i, e := range out {
		cmds[i] = pipe.HGet(ctx, s.part(e.MessageID).keys.msg(e.MessageID), "request_id")
	}
	_, _ = pipe.Exec(ctx) // a missing id only leaves the log line without it
	for i := range out {
		out[i].RequestID = cmds[i].Val()
	}
	return out, nil
}

// Attempt numbers that Begin and MarkSending answer instead of a count.
const (
	// AttemptGone: the record no longer exists (MarkSending; Begin answers
	// ErrNotFound).
	AttemptGone = 0
	// AttemptFinal: the record is final already (another worker finished
	// it); nothing changed.
	AttemptFinal = -1
	// AttemptRefused: an earlier attempt's outcome is unknown (WeChat may
	// have sent the message) and Guard.Window has passed since it began, so
	// WeChat no longer dedups a resend: no attempt is counted and the
	// message must not be sent again.
	AttemptRefused = -2
)

// Guard is what Begin and MarkSending check before they count an attempt.
type Guard struct {
	// Window is how long after the earliest attempt whose outcome is
	// unknown a resend may still begin: WeChat's client_msg_id dedup
	// window less a safety margin. 0: no limit.
	Window time.Duration
	// Held is the attempt number the caller holds already for this message
	// (a second send within one attempt, after a token refresh), so that
	// its own unsettled attempt is not taken for an abandoned one; 0: none.
	Held int
}

// guardLua decides, inside Begin and MarkSending, whether an attempt may
// start. A message's ambiguous_at field is the start (ms) of its earliest
// attempt whose outcome is unknown: one settled with an ambiguous error
// (Settlement.AmbiguousAt), or one that began and never settled (the
// record is still 'sending' under an attempt number the caller does not
// hold: its worker died or stalled; attempt_at, or updated_at for a record
// written before attempt_at existed, is when it began). The earliest time
// is kept, never a later one. guard returns that time (a string, or nil)
// and whether a resend now (ARGV[1]) falls at or past the window (ARGV[2],
// ms; '0': no limit). It persists a newly found time.
// Its arguments are the record's status, attempts, ambiguous_at,
// attempt_at and updated_at fields (nil or false when missing); ARGV[3] is
// Guard.Held.
const guardLua = `
local function guardOf(key, nowMs, windowMs, held, status, attempts, amb, began, updated)
  if not amb then amb = nil end
  local found = amb
  if status == 'sending' and (attempts or '0') ~= held then
    local b = began or updated
    if b and tonumber(b) and (not found or tonumber(b) < tonumber(found)) then found = b end
  end
  if found and found ~= amb then redis.call('HSET', key, 'ambiguous_at', found) end
  local refused = found ~= nil and windowMs ~= '0' and tonumber(nowMs) - tonumber(found) >= tonumber(windowMs)
  return found, refused
end
local function guard(status, attempts, amb, began, updated)
  return guardOf(KEYS[1], ARGV[1], ARGV[2], ARGV[3], status, attempts, amb, began, updated)
end
`

// markSendingScript counts one more attempt, unless the guard refuses it.
// KEYS: msg. ARGV: nowMs, windowMs, held.
// Returns {the attempt number (AttemptGone, AttemptFinal, AttemptRefused:
// nothing counted; never regress a final status), ambiguous_at (ms, 0:
// none)}.
var markSendingScript = redis.NewScript(guardLua + `
local f = redis.call('HMGET', KEYS[1], 'status', 'attempts', 'ambiguous_at', 'attempt_at', 'updated_at')
local status = f[1]
if not status then return {0, 0} end
if status == 'sent' or status == 'delivered' or status == 'failed' then return {-1, 0} end
local amb, refused = guard(status, f[2], f[3], f[4], f[5])
if refused then return {-2, amb} end
redis.call('HSET', KEYS[1], 'status', 'sending', 'updated_at', ARGV[1], 'attempt_at', ARGV[1])
return {redis.call('HINCRBY', KEYS[1], 'attempts', 1), amb or 0}
`)

// MarkSending records that an attempt starts and returns its number
// (AttemptGone: the record no longer exists; AttemptFinal: it is already
// final; AttemptRefused: g refuses a resend, nothing counted) and the
// start of the message's earliest attempt whose outcome is unknown (zero:
// none), as the guard saw it.
func (s *Store) MarkSending(ctx context.Context, id string, now time.Time, g Guard) (int, time.Time, error) {
	vals, err := markSendingScript.Run(ctx, s.rdb, []string{s.part(id).keys.msg(id)}, now.UnixMilli(), g.Window.Milliseconds(), g.Held).Slice()
	if err == nil && len(vals) != 2 {
		err = fmt.Errorf("unexpected reply of %d values", len(vals))
	}
	if err != nil {
		return 0, time.Time{}, unavailable("mark sending", err)
	}
	n, ok := vals[0].(int64)
	if !ok {
		return 0, time.Time{}, unavailable("mark sending", fmt.Errorf("unexpected reply %v", vals[0]))
	}
	return int(n), replyTime(vals[1]), nil
}

// replyTime reads a script's ms reply (an integer or a string; 0: none).
func replyTime(v any) time.Time {
	if n, ok := v.(int64); ok {
		v = strconv.FormatInt(n, 10)
	}
	s, _ := v.(string)
	return msTime(s)
}

// beginScript is Load followed by MarkSending, in one step, for each of
// several messages (concurrent Begin calls share one call of it: see
// coalescer; each message is begun exactly as if alone). Per message it
// returns {attempt, field, value, ...} with the record's fields as they
// were before the attempt, except ambiguous_at, which is as the guard
// found it (see guardLua). attempt is AttemptFinal or AttemptRefused when
// nothing was counted, and the reply is {0} when the record is gone.
// KEYS: one msg key per message. ARGV: per message nowMs, windowMs, held.
var beginScript = redis.NewScript(guardLua + luaErrorLua + `
local function begin(key, nowMs, windowMs, held)
  local h = redis.call('HGETALL', key)
  local status, attempts, amb, began, updated
  for i = 1, #h, 2 do
    local k = h[i]
    if k == 'status' then status = h[i + 1]
    elseif k == 'attempts' then attempts = h[i + 1]
    elseif k == 'ambiguous_at' then amb = h[i + 1]
    elseif k == 'attempt_at' then began = h[i + 1]
    elseif k == 'updated_at' then updated = h[i + 1] end
  end
  if not status then return {0} end
  if status == 'sent' or status == 'delivered' or status == 'failed' then
    table.insert(h, 1, -1)
    return h
  end
  local found, refused = guardOf(key, nowMs, windowMs, held, status, attempts, amb, began, updated)
  if found and found ~= amb then
    table.insert(h, 'ambiguous_at')
    table.insert(h, found)
  end
  if refused then
    table.insert(h, 1, -2)
    return h
  end
  local n = tonumber(attempts or '0') + 1
  redis.call('HSET', key, 'status', 'sending', 'updated_at', nowMs, 'attempt_at', nowMs, 'attempts', n)
  table.insert(h, 1, n)
  return h
end
local out = {}
for i = 1, #KEYS do
  -- One message's error (a record written by something else) is its own:
  -- {-9, error}; the others in the call are begun as if alone.
  local ok, r = pcall(begin, KEYS[i], ARGV[3*i - 2], ARGV[3*i - 1], ARGV[3*i])
  if ok then out[i] = r else out[i] = {-9, luaError(r)} end
end
return out
`)

// Begin loads a message record and, unless it is already final or g
// refuses a resend, records that an attempt starts: Load then MarkSending
// in one round trip, shared with concurrent callers. It returns the record
// as it was before the attempt (with AmbiguousAt as the guard found it)
// and the attempt's number (AttemptFinal or AttemptRefused: nothing
// changed but AmbiguousAt); ErrNotFound when the record is gone. A request
// that cannot be decoded (only a record written by something else) is an
// error as with Load, but its attempt is counted already.
func (s *Store) Begin(ctx context.Context, id string, now time.Time, g Guard) (*Record, int, error) {
	out, err := s.part(id).begins.do(ctx, beginCall{id: id, now: now, g: g})
	if err != nil {
		return nil, 0, err
	}
	return out.rec, out.attempt, out.err
}

// luaErrorLua turns what pcall caught into text: a failed redis.call's
// error table, or a Lua runtime error's message.
const luaErrorLua = `
local function luaError(e)
  if type(e) == 'table' and e.err then return e.err end
  return tostring(e)
end
`

// replyError is what a batched script answers for one message whose step
// raised an error (that message only: the others are done as if alone).
// Writes made for it before the error stay, as with any Redis script.
const replyError = -9

// beginCall is one Begin call; beginOut its result.
type beginCall struct {
	id  string
	now time.Time
	g   Guard
}

type beginOut struct {
	rec     *Record
	attempt int
	err     error // ErrNotFound, or a record that cannot be decoded
}

// writeBegins begins every call's attempt with one script call.
func (s *Store) writeBegins(ctx context.Context, p *part, calls []*batchCall[beginCall, beginOut]) {
	keys := make([]string, 0, len(calls))
	args := make([]any, 0, 3*len(calls))
	for _, call := range calls {
		keys = append(keys, p.keys.msg(call.in.id))
		args = append(args, call.in.now.UnixMilli(), call.in.g.Window.Milliseconds(), call.in.g.Held)
	}
	vals, err := beginScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err == nil && len(vals) != len(calls) {
		err = fmt.Errorf("unexpected reply of %d values for %d messages", len(vals), len(calls))
	}
	for i, call := range calls {
		if err != nil {
			call.err = unavailable("begin", err)
			continue
		}
		call.out, call.err = decodeBegin(call.in.id, vals[i])
	}
}

// decodeBegin reads one message's part of beginScript's reply.
func decodeBegin(id string, v any) (beginOut, error) {
	vals, ok := v.([]any)
	if !ok || len(vals)%2 != 1 {
		return beginOut{}, unavailable("begin", fmt.Errorf("unexpected reply %T", v))
	}
	attempt, ok := vals[0].(int64)
	if !ok {
		return beginOut{}, unavailable("begin", fmt.Errorf("unexpected reply of %d values", len(vals)))
	}
	if attempt == 0 {
		return beginOut{err: ErrNotFound}, nil
	}
	if attempt == replyError {
		msg, _ := vals[1].(string)
		return beginOut{}, unavailable("begin", errors.New(msg))
	}
	h := make(map[string]string, len(vals)/2)
	for i := 1; i < len(vals); i += 2 {
		k, _ := vals[i].(string)
		v, _ := vals[i+1].(string)
		h[k] = v
	}
	rec, err := decodeRecord(id, h)
	if err != nil {
		return beginOut{err: err}, nil
	}
	return beginOut{rec: rec, attempt: int(attempt)}, nil
}

// SettleKind is what a worker decided for a message.
type SettleKind string

// The kinds of settlement.
const (
	SettleSent  SettleKind = "sent"  // WeChat accepted it
	SettleRetry SettleKind = "retry" // send again at Due
	SettleFail  SettleKind = "fail"  // final failure, to the dead-letter stream
	SettleDrop  SettleKind = "drop"  // the record is gone or already final: just acknowledge
	// SettlePark puts the message in its app's wait set at the entry's
	// due time (to keep its place): the app is paused.
	SettlePark SettleKind = "park"
)

// Settlement is the outcome of one attempt.
type Settlement struct {
	Kind    SettleKind
	App     string    // the message's app (keys the msgid index)
	ToUser  string    // the message's touser: SettleSent applies only a parked report for this openid
	MsgID   int64     // SettleSent
	Due     time.Time // SettleRetry
	Reason  string    // SettleFail
	ErrCode int       // the attempt's errcode (0 for transport errors)
	ErrMsg  string    // the attempt's error text, without secrets
	Refund  bool      // SettleRetry, SettlePark, SettleFail: the attempt does not count (pacing, quota, app stopped, no call made)
	// Attempt is the number MarkSending gave this attempt; when set, the
	// settlement applies only if no other attempt has begun since
	// (ErrStale otherwise). 0: unfenced.
	Attempt int
	HasErr  bool // ErrCode/ErrMsg are set
	// QuotaDay names the app's quota day (pacing.Reset.Day) whose send
	// counter a SettleSent increments; empty: the Asia/Shanghai date.
	QuotaDay string
	// AmbiguousAt, when not zero, is when this attempt began, and says
	// that its outcome is unknown (WeChat may have sent the message): the
	// record keeps the earliest such time (see Guard).
	AmbiguousAt time.Time
	// Called says that the attempt called WeChat (the history records an
	// attempt, at the start of its sends, with Latency, the time they
	// took); without it a failure is recorded as one without an attempt,
	// and a retry or park as a wait.
	Called  bool
	Latency time.Duration
	// AttemptBase is the record's AttemptBase: the history numbers the
	// attempt within the message's current run (Attempt - AttemptBase).
	AttemptBase int
	// Instance names the settling instance in the history.
	Instance string
	// PauseReason is the app's pause that parks the message (SettlePark),
	// for the history.
	PauseReason string
}

// event is the history event st records; nil for none.
func (st Settlement) event(now time.Time) *service.HistoryEvent {
	ev := &service.HistoryEvent{At: now.UTC(), Instance: st.Instance}
	switch {
	case st.Kind == SettleDrop:
		return nil
	case st.Called:
		// An attempt is dated when its sends began, so that a delivery
		// report that came before the send was recorded (applied with it)
		// follows it in time as in the list.
		ev.At = now.Add(-st.Latency).UTC()
		ev.Type, ev.Attempt = service.HistoryAttempt, st.Attempt-st.AttemptBase
		ms := float64(st.Latency.Microseconds()) / 1000
		ev.LatencyMS = &ms
		switch st.Kind {
		case SettleSent:
			ev.Outcome, ev.MsgID = service.OutcomeSent, st.MsgID
		case SettleRetry:
			ev.Outcome = service.OutcomeRetry
		case SettlePark:
			ev.Outcome, ev.Reason = service.OutcomePaused, st.PauseReason
		case SettleFail:
			ev.Outcome, ev.Reason = service.OutcomeFailed, st.Reason
		}
	case st.Kind == SettleFail:
		ev.Type, ev.Reason = service.HistoryFailed, st.Reason
	case st.Kind == SettlePark:
		ev.Type, ev.Reason = service.HistoryPaused, st.PauseReason
	case st.Kind == SettleRetry && st.HasErr:
		ev.Type, ev.Outcome = service.HistoryAttempt, service.OutcomeRetry
	default:
		return nil
	}
	if st.HasErr && ev.Outcome != service.OutcomeSent {
		code := st.ErrCode
		ev.ErrCode, ev.Error = &code, st.ErrMsg
	}
	return ev
}

// settleScript records attempts' outcomes, each with the acknowledgement
// of its stream entry in the same step, so an entry is never acknowledged
// without its outcome recorded. Concurrent Settle calls share one call of
// it (see coalescer); each message in it is settled on its own, exactly
// as if alone.
// When it records a send it also applies a delivery report that arrived
// before it for the message's touser (parked by ApplyDelivery under the
// message's early key), in the same step that writes the msgid index: see
// delivery.go. A send counts in the app's daily counter (quota); a final
// status goes to the webhook outbox (KEYS[4]) when the app's event policy
// (events) asks for it. An attempt whose outcome is unknown (ambiguousMs,
// its start; 0: the outcome is known) sets the record's ambiguous_at
// unless it holds an earlier time.
// The attempt number (attempt, 0: none) fences a settlement: when the
// record's attempts differ, another worker has taken the message over
// since (it was reclaimed after the visibility timeout and attempted
// again), so this outcome is stale and nothing of it is written, not even
// the acknowledgement, which now belongs to the new owner.
// It keeps the operator's indexes, counters and the message's history
// (index.go): the attempt's event, the status indexes (KEYS[5] on), the
// minute's counters.
// KEYS: stream, delayed, dlq, outbox, then the status indexes
// (statusKeys), then per message: msg, msgidx, early, wait, quota, hist,
// counts.
// ARGV: group, retentionSec, quotaTTLSec, the index of the first
// per-message key, then per message: streamID, kind, nowMs, msgid, dueMs,
// reason, hasErr, errcode, errmsg, refund, id, events, attempt,
// ambiguousMs, history event.
// Returns per message {recorded (0 stale, 1), the early report applied
// ("delivered", "failed" or ""), its failure reason}, flat.
var settleScript = redis.NewScript(statusLua + luaErrorLua + `
local group, retention, quotaTTL = ARGV[1], ARGV[2], ARGV[3]
local function settle(msg, msgidx, earlyKey, wait, quota, hist, counts,
    sid, kind, now, msgid, due, reason, hasErr, errcode, errmsg, refund, id, events, attempt, ambMs, event)
  local f = redis.call('HMGET', msg, 'status', 'attempts', 'ambiguous_at')
  local status = f[1]
  if attempt ~= '0' and kind ~= 'drop' then
    if f[2] and f[2] ~= attempt then return 0, '', '' end
  end
  local applied, appliedReason = '', ''
  -- Every record has a status; EXISTS only for one that lost it.
  local exists = status or redis.call('EXISTS', msg) == 1
  if exists and kind ~= 'drop' and status ~= 'sent' and status ~= 'delivered' and status ~= 'failed' then
    local final = false
    -- The record's changes, written by one HSET at the end.
    local h = {'updated_at', now}
    local function set(k, v) h[#h + 1] = k; h[#h + 1] = v end
    if hasErr == '1' then
      set('last_errcode', errcode)
      set('last_errmsg', errmsg)
    end
    if ambMs ~= '0' then
      local amb = f[3]
      if not amb or tonumber(ambMs) < tonumber(amb) then set('ambiguous_at', ambMs) end
    end
    if refund == '1' and kind ~= 'sent' then set('attempts', tonumber(f[2] or '0') - 1) end
    remember(hist, event, retention)
    if kind == 'sent' then
      set('msgid', msgid)
      set('sent_at', now)
      move(5, id, status, 'sent')
      count(counts, 'sent', 1)
      redis.call('SET', msgidx, id, 'EX', retention)
      if redis.call('INCR', quota) == 1 then redis.call('EXPIRE', quota, quotaTTL) end
      local early = redis.call('HMGET', earlyKey, 'result', 'reason', 'status', 'at')
      if early[1] == 'delivered' then
        set('status', 'delivered')
        set('delivered_at', early[4])
        set('delivery_status', early[3])
        applied = 'delivered'
        final = true
      elseif early[1] == 'failed' then
        set('status', 'failed')
        set('reason', early[2])
        set('delivery_status', early[3])
        applied, appliedReason = 'failed', early[2]
        final = true
      else
        set('status', 'sent')
        if events == '2' then final = true end
      end
      if early[1] then
        redis.call('DEL', earlyKey)
        move(5, id, 'sent', applied)
        if applied == 'delivered' then count(counts, 'delivered', 1) else count(counts, 'failed:' .. appliedReason, 1) end
        local ev = {t = tonumber(early[4]), type = 'delivery_report', status = early[3], outcome = applied}
        if appliedReason ~= '' then ev['reason'] = appliedReason end
        remember(hist, cjson.encode(ev), retention)
      end
    elseif kind == 'retry' then
      set('status', 'retrying')
      redis.call('ZADD', KEYS[2], due, id)
    elseif kind == 'park' then
      if status == 'sending' then set('status', 'retrying') end
      redis.call('ZADD', wait, due, id)
    elseif kind == 'fail' then
      set('status', 'failed')
      set('reason', reason)
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'id', id, 'reason', reason, 'errcode', errcode, 'errmsg', errmsg)
      move(5, id, status, 'failed')
      count(counts, 'failed:' .. reason, 1)
      final = true
    end
    redis.call('HSET', msg, unpack(h))
    if final and events ~= '0' then
      redis.call('ZADD', KEYS[4], 'NX', now, id)
    end
    redis.call('EXPIRE', msg, retention)
  end
  redis.call('XACK', KEYS[1], group, sid)
  redis.call('XDEL', KEYS[1], sid)
  return 1, applied, appliedReason
end
local out = {}
local k, a = tonumber(ARGV[4]), 5
while a <= #ARGV do
  -- One message's error (a record written by something else) is its own:
  -- {-9, error, ''}; the others in the call are settled as if alone.
  local ok, r, applied, reason = pcall(settle, KEYS[k], KEYS[k+1], KEYS[k+2], KEYS[k+3], KEYS[k+4], KEYS[k+5], KEYS[k+6],
    ARGV[a], ARGV[a+1], ARGV[a+2], ARGV[a+3], ARGV[a+4], ARGV[a+5], ARGV[a+6], ARGV[a+7], ARGV[a+8], ARGV[a+9],
    ARGV[a+10], ARGV[a+11], ARGV[a+12], ARGV[a+13], ARGV[a+14])
  if not ok then r, applied, reason = -9, luaError(r), '' end
  out[#out + 1] = r
  out[#out + 1] = applied
  out[#out + 1] = reason
  k, a = k + 7, a + 15
end
return out
`)

// Settled tells what a recorded settlement did besides recording its kind.
type Settled struct {
	// Early is the delivery report parked before the send was recorded and
	// applied with it: DeliveryDelivered, DeliveryFailed, or "" for none.
	Early DeliveryOutcome
	// EarlyReason is the failure reason of an early DeliveryFailed report.
	EarlyReason string
}

// Settle records an attempt's outcome for entry and acknowledges it,
// atomically. A record that is already final is left as it is. Recording a
// send also applies a delivery report parked before it (which Settled
// reports, so the caller can count a message that ended there) and counts
// the send in the app's quota day. Concurrent calls share one script call.
func (s *Store) Settle(ctx context.Context, e Entry, st Settlement, now time.Time) (Settled, error) {
	out, err := s.part(e.MessageID).settles.do(ctx, settleCall{e: e, st: st, now: now})
	if err != nil {
		return Settled{}, err
	}
	if out.stale {
		return Settled{}, ErrStale
	}
	return out.Settled, nil
}

// settleCall is one Settle call; settleOut its result.
type settleCall struct {
	e   Entry
	st  Settlement
	now time.Time
}

type settleOut struct {
	Settled
	stale bool
}

// writeSettles records every call's settlement with one script call.
func (s *Store) writeSettles(ctx context.Context, p *part, calls []*batchCall[settleCall, settleOut]) {
	k := p.keys
	status := k.statusKeys()
	keys := append([]string{k.stream, k.delayed, k.dlq, k.outbox()}, status...)
	args := []any{s.opts.Group, int64(s.opts.Retention.Seconds()), int64(s.opts.QuotaDayTTL.Seconds()), len(keys) + 1}
	for _, call := range calls {
		e, st, now := call.in.e, call.in.st, call.in.now
		day := st.QuotaDay
		if day == "" {
			day = now.In(shanghai).Format("20060102")
		}
		due := strconv.FormatInt(st.Due.UnixMilli(), 10)
		if st.Kind == SettlePark {
			due = dueScore(e)
		}
		keys = append(keys, k.msg(e.MessageID), k.msgid(st.App, st.MsgID), k.early(st.App, st.MsgID, st.ToUser),
			k.app(st.App, "wait"), k.quota(st.App, day), k.hist(e.MessageID), k.counts(now))
		args = append(args, e.StreamID, string(st.Kind), now.UnixMilli(), st.MsgID, due, st.Reason,
			b2s(st.HasErr), st.ErrCode, st.ErrMsg, b2s(st.Refund), e.MessageID,
			s.events(st.App), st.Attempt, msArg(st.AmbiguousAt), historyJSON(st.event(now)))
	}
	vals, err := settleScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err == nil && len(vals) != 3*len(calls) {
		err = fmt.Errorf("unexpected reply of %d values for %d settlements", len(vals), len(calls))
	}
	for i, call := range calls {
		if err != nil {
			call.err = unavailable("settle", err)
			continue
		}
		recorded, ok := vals[3*i].(int64)
		if !ok {
			call.err = unavailable("settle", fmt.Errorf("unexpected reply %v", vals[3*i]))
			continue
		}
		early, _ := vals[3*i+1].(string)
		reason, _ := vals[3*i+2].(string)
		if recorded == replyError {
			call.err = unavailable("settle", errors.New(early))
			continue
		}
		call.out = settleOut{Settled: Settled{Early: DeliveryOutcome(early), EarlyReason: reason}, stale: recorded == 0}
	}
}

// msArg is t in ms as a script argument; 0 for the zero time.
func msArg(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// ErrStale is what Settle answers when another worker took the message
// over after this attempt began (see Settlement.Attempt): nothing was
// recorded, and the other worker's outcome stands.
var ErrStale = errors.New("store: the message was taken over by another worker; this outcome is stale")

// dueScore is e's wait-set score.
func dueScore(e Entry) string {
	if e.DueScore > 0 {
		return strconv.FormatFloat(e.DueScore, 'f', 3, 64)
	}
	return strconv.FormatInt(e.Due.UnixMilli(), 10)
}

// shanghai is WeChat's quota clock (UTC+8, no daylight saving).
var shanghai = time.FixedZone("Asia/Shanghai", 8*3600)

// moveDueScript moves retries whose time has come back to the stream.
// KEYS: delayed, stream. ARGV: nowMs, limit. Returns how many moved.
var moveDueScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('XADD', KEYS[2], '*', 'id', id)
end
return #ids
`)

// MoveDue moves up to limit due retries back to the stream, from every
// partition in turn. Every instance runs it; the script makes each move
// happen once.
func (s *Store) MoveDue(ctx context.Context, now time.Time, limit int) (int, error) {
	moved, first := 0, s.start()
	for i := range s.parts {
		k := s.parts[(first+i)%len(s.parts)].keys
		n, err := moveDueScript.Run(ctx, s.rdb, []string{k.delayed, k.stream}, now.UnixMilli(), limit-moved).Int()
		if err != nil {
			return moved, unavailable("move due", err)
		}
		if moved += n; moved >= limit {
			break
		}
	}
	return moved, nil
}

// releaseScript hands an entry back to the queue at once (graceful
// shutdown of a worker that received but did not start it).
// KEYS: stream. ARGV: group, streamID, id.
var releaseScript = redis.NewScript(`
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[1], '*', 'id', ARGV[3])
return 1
`)

// Release hands an entry back to the queue for another worker.
func (s *Store) Release(ctx context.Context, e Entry) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{s.part(e.MessageID).keys.stream}, s.opts.Group, e.StreamID, e.MessageID).Err(); err != nil {
		return unavailable("release", err)
	}
	return nil
}

// QueueStats describes the queue for metrics.
type QueueStats struct {
	// Waiting counts the messages held back in the apps' wait sets (pause
	// or rate limit).
	Backlog, Pending, Delayed, Waiting int64
	OldestAge                          time.Duration
}

// Stats reads the queue's size: entries not yet delivered to a worker,
// delivered but unacknowledged, and waiting for a retry time.
// Every partition counts; the oldest age is the oldest partition's.
func (s *Store) Stats(ctx context.Context, now time.Time) (QueueStats, error) {
	type partStats struct {
		xlen, delayed *redis.IntCmd
		pending       *redis.XPendingCmd
		waits         []*redis.IntCmd
		first         *redis.XMessageSliceCmd
	}
	pipe := s.rdb.Pipeline()
	ps := make([]partStats, len(s.parts))
	for i, p := range s.parts {
		k := p.keys
		ps[i] = partStats{xlen: pipe.XLen(ctx, k.stream), pending: pipe.XPending(ctx, k.stream, s.opts.Group), delayed: pipe.ZCard(ctx, k.delayed)}
		for _, a := range s.opts.Apps {
			ps[i].waits = append(ps[i].waits, pipe.ZCard(ctx, k.app(a, "wait")))
		}
		ps[i].first = pipe.XRangeN(ctx, k.stream, "-", "+", 1)
	}
	_, _ = pipe.Exec(ctx)
	var st QueueStats
	for _, p := range ps {
		if err := p.xlen.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return QueueStats{}, unavailable("stats", err)
		}
		st.Delayed += p.delayed.Val()
		for _, w := range p.waits {
			st.Waiting += w.Val()
		}
		var pending int64
		if x, err := p.pending.Result(); err == nil {
			pending = x.Count
		}
		st.Pending += pending
		st.Backlog += max(p.xlen.Val()-pending, 0)
		if msgs := p.first.Val(); len(msgs) > 0 {
			if ms, err := strconv.ParseInt(strings.SplitN(msgs[0].ID, "-", 2)[0], 10, 64); err == nil {
				st.OldestAge = max(now.Sub(time.UnixMilli(ms)), st.OldestAge)
			}
		}
	}
	return st, nil
}

// DeadLetters returns up to count entries of the dead-letter streams,
// oldest first across the partitions.
func (s *Store) DeadLetters(ctx context.Context, count int64) ([]map[string]any, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(s.parts))
	for i, p := range s.parts {
		cmds[i] = pipe.XRangeN(ctx, p.keys.dlq, "-", "+", count)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("dead letters", err)
	}
	var msgs []redis.XMessage
	for _, c := range cmds {
		msgs = append(msgs, c.Val()...)
	}
	slices.SortStableFunc(msgs, func(a, b redis.XMessage) int { return compareStreamIDs(a.ID, b.ID) })
	out := make([]map[string]any, 0, min(int64(len(msgs)), count))
	for _, m := range msgs[:min(int64(len(msgs)), count)] {
		out = append(out, m.Values)
	}
	return out, nil
}

// compareStreamIDs orders two stream entry ids ("ms-seq") by time.
func compareStreamIDs(a, b string) int {
	num := func(id string) (int64, int64) {
		ms, seq, _ := strings.Cut(id, "-")
		m, _ := strconv.ParseInt(ms, 10, 64)
		n, _ := strconv.ParseInt(seq, 10, 64)
		return m, n
	}
	am, as := num(a)
	bm, bs := num(b)
	return cmp.Or(cmp.Compare(am, bm), cmp.Compare(as, bs))
}

// MessageByMsgID returns the message id that WeChat's msgid belongs to.
func (s *Store) MessageByMsgID(ctx context.Context, app string, msgid int64) (string, error) {
	id, _, err := s.findMsgID(ctx, app, msgid)
	return id, err
}

// findMsgID looks app's msgid up in every partition's index at once and
// returns the message id and its partition; ErrNotFound when no partition
// has it (yet).
func (s *Store) findMsgID(ctx context.Context, app string, msgid int64) (string, *part, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(s.parts))
	for i, p := range s.parts {
		cmds[i] = pipe.Get(ctx, p.keys.msgid(app, msgid))
	}
	_, _ = pipe.Exec(ctx)
	// Each reply on its own: Exec's error is the first command's that
	// failed, and a partition without the msgid (redis.Nil) would hide a
	// later partition's real error.
	for i, c := range cmds {
		id, err := c.Result()
		switch {
		case err == nil:
			return id, s.parts[i], nil
		case !errors.Is(err, redis.Nil):
			return "", nil, unavailable("msgid index", err)
		}
	}
	return "", nil, ErrNotFound
}
