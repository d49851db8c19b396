package store

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Pacing: the per-app state every instance shares.
//
// Keys (all under the prefix, so in one cluster slot):
//
//	app:<name>:pause   hash {reason, rank, errcode, errmsg, since, until, probe_every, probe_at}
//	                   (ms; until 0: until resumed). An app is paused while
//	                   the hash exists and until is 0 or in the future;
//	                   scripts compare with Redis TIME, so no TTL is relied on.
//	app:<name>:gcra    the app's GCRA theoretical arrival time (ms, Redis clock)
//	app:<name>:wait    zset of the app's held-back messages, score = due time (ms)
//	app:<name>:sent:<day>  sends WeChat accepted in the quota day
//
// A worker admits every message it takes with Admit, one script: when the
// app is paused the message goes to the wait set (in order of due time)
// and the stream entry is acknowledged; when the app is rate limited the
// script reserves the message's GCRA slot if it is at most maxWait away,
// and otherwise (or when others already wait) queues it in the wait set.
// Feed, run by every instance a few times a second, moves waiting messages
// back to the stream: all of them when the app is not limited, or as many
// as have a GCRA slot within the horizon, each carrying its slot; nothing
// while the app is paused, except one probe message per probe interval.
// So a paused or saturated app holds no worker and blocks no other app,
// messages keep their order of due time, and the sends of all instances
// together follow one GCRA schedule.

// Admission is what Admit decided for a message.
type Admission struct {
	Kind AdmitKind
	// Wait is how long to wait before sending (Go): the time to the
	// message's rate slot, on the Redis clock.
	Wait time.Duration
}

// AdmitKind is the outcome of Admit.
type AdmitKind string

// The outcomes of Admit.
const (
	AdmitGo     AdmitKind = "go"     // send after Wait
	AdmitProbe  AdmitKind = "probe"  // the app is paused, but this message is its probe: send it
	AdmitPaused AdmitKind = "paused" // the app is paused: the message waits in the wait set (entry acknowledged)
	AdmitQueued AdmitKind = "queued" // the rate limit holds it: it waits in the wait set (entry acknowledged)
)

// Rate is the GCRA of an app, in milliseconds: Interval between sends
// (0: unlimited) and burst Tolerance.
type Rate struct {
	Interval, Tolerance float64
}

func (k keys) app(name, what string) string { return k.prefix + "app:" + name + ":" + what }

func (k keys) quota(app, day string) string { return k.prefix + "app:" + app + ":sent:" + day }

// redisNow is the script preamble that reads the Redis clock in ms.
const redisNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
`

// activePause is the script function that reports whether KEYS[1] (a
// pause hash) pauses the app now, deleting an expired one.
const activePause = `
local function active_pause()
  local u = redis.call('HGET', KEYS[1], 'until')
  if not u then return false end
  u = tonumber(u)
  if u == 0 or u > now then return true end
  redis.call('DEL', KEYS[1])
  return false
end
`

// admitScript. A message held behind a pause gets a paused event in its
// history (index.go).
// KEYS: pause, gcra, wait, stream, hist. ARGV: group, streamID, id,
// dueMs, slotMs, probe, intervalMs, toleranceMs, maxWaitMs, graceMs,
// retentionSec.
var admitScript = redis.NewScript(redisNow + activePause + `
local function hold()
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
  redis.call('XACK', KEYS[4], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[4], ARGV[2])
end
if active_pause() then
  if ARGV[6] == '1' then return {'probe', '0'} end
  hold()
  local ev = {t = math.floor(now), type = 'paused', reason = redis.call('HGET', KEYS[1], 'reason') or ''}
  if redis.call('RPUSH', KEYS[5], cjson.encode(ev)) > 64 then redis.call('LTRIM', KEYS[5], -64, -1) end
  redis.call('EXPIRE', KEYS[5], ARGV[11])
  return {'paused', '0'}
end
local slot = tonumber(ARGV[5])
if slot > 0 then
  local w = slot - now
  if w >= -tonumber(ARGV[10]) then
    if w < 0 then w = 0 end
    return {'go', string.format('%.3f', w)}
  end
  -- the slot passed while the message waited for a worker: back to the
  -- front of the wait set (its due time is old), to be fed again.
  hold()
  return {'queued', '0'}
end
local interval = tonumber(ARGV[7])
if interval <= 0 then return {'go', '0'} end
if redis.call('ZCARD', KEYS[3]) > 0 then
  hold()
  return {'queued', '0'}
end
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
if tat < now then tat = now end
local at = tat - tonumber(ARGV[8])
if at < now then at = now end
local w = at - now
if w > tonumber(ARGV[9]) then
  hold()
  return {'queued', '0'}
end
tat = tat + interval
redis.call('SET', KEYS[2], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 60000)
return {'go', string.format('%.3f', w)}
`)

// Admit decides whether the worker may send entry e of app now. See the
// pacing notes above. maxWait is the longest a worker waits for a slot;
// grace is how late a fed message may still use its slot.
func (s *Store) Admit(ctx context.Context, e Entry, app string, rate Rate, maxWait, grace time.Duration) (Admission, error) {
	k := s.part(e.MessageID).keys
	rate = s.partRate(rate)
	res, err := admitScript.Run(ctx, s.rdb,
		[]string{k.app(app, "pause"), k.app(app, "gcra"), k.app(app, "wait"), k.stream, k.hist(e.MessageID)},
		s.opts.Group, e.StreamID, e.MessageID, dueScore(e), strconv.FormatFloat(e.Slot, 'f', 3, 64), b2s(e.Probe),
		strconv.FormatFloat(rate.Interval, 'f', 6, 64), strconv.FormatFloat(rate.Tolerance, 'f', 6, 64),
		maxWait.Milliseconds(), grace.Milliseconds(), int64(s.opts.Retention.Seconds()),
	).StringSlice()
	if err != nil || len(res) != 2 {
		return Admission{}, unavailable("admit", err)
	}
	ms, _ := strconv.ParseFloat(res[1], 64)
	return Admission{Kind: AdmitKind(res[0]), Wait: time.Duration(ms * float64(time.Millisecond))}, nil
}

// feedScript. KEYS: pause, gcra, wait, stream, quota. ARGV: intervalMs,
// toleranceMs, horizonMs, limit. Returns {moved, reason, until, waiting,
// quotaUsed}.
var feedScript = redis.NewScript(redisNow + activePause + `
local moved = 0
local function state(reason, u)
  return {moved, reason, u, redis.call('ZCARD', KEYS[3]), redis.call('GET', KEYS[5]) or '0'}
end
if active_pause() then
  local p = redis.call('HMGET', KEYS[1], 'reason', 'until', 'probe_at', 'probe_every')
  local pa = tonumber(p[3] or '0')
  if pa > 0 and now >= pa then
    local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    if #first > 0 then
      redis.call('HSET', KEYS[1], 'probe_at', string.format('%.0f', now + tonumber(p[4] or '0')))
      redis.call('ZREM', KEYS[3], first[1])
      redis.call('XADD', KEYS[4], '*', 'id', first[1], 'due', first[2], 'probe', '1')
      moved = 1
    end
  end
  return state(p[1] or '', p[2] or '0')
end
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[4])
if interval <= 0 then
  local ids = redis.call('ZRANGE', KEYS[3], 0, limit - 1, 'WITHSCORES')
  for i = 1, #ids, 2 do
    redis.call('ZREM', KEYS[3], ids[i])
    redis.call('XADD', KEYS[4], '*', 'id', ids[i], 'due', ids[i + 1])
    moved = moved + 1
  end
  return state('', '0')
end
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
if tat < now then tat = now end
local tau = tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
while moved < limit do
  local at = tat - tau
  if at < now then at = now end
  if at - now > horizon then break end
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #first == 0 then break end
  redis.call('ZREM', KEYS[3], first[1])
  redis.call('XADD', KEYS[4], '*', 'id', first[1], 'due', first[2], 'slot', string.format('%.3f', at))
  tat = tat + interval
  moved = moved + 1
end
if moved > 0 then
  redis.call('SET', KEYS[2], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 60000)
end
return state('', '0')
`)

// FeedResult is what one Feed did and saw.
type FeedResult struct {
	Moved     int    // messages moved back to the stream
	Paused    bool   // the app is paused
	Reason    string // the pause reason
	Until     time.Time
	Waiting   int64 // messages still in the wait set
	QuotaUsed int64 // sends accepted in quotaDay
}

// Feed moves up to limit of app's waiting messages back to the stream, as
// its pause and rate allow (slots at most horizon ahead), and reports the
// app's state. quotaDay names the current quota day (pacing.Reset.Day).
// Each partition is fed in turn (up to limit each): the counts are the
// sums, the pause the first paused partition's.
func (s *Store) Feed(ctx context.Context, app string, rate Rate, horizon time.Duration, limit int, quotaDay string) (FeedResult, error) {
	rate = s.partRate(rate)
	var sum FeedResult
	for _, p := range s.parts {
		k := p.keys
		res, err := feedScript.Run(ctx, s.rdb,
			[]string{k.app(app, "pause"), k.app(app, "gcra"), k.app(app, "wait"), k.stream, k.quota(app, quotaDay)},
			strconv.FormatFloat(rate.Interval, 'f', 6, 64), strconv.FormatFloat(rate.Tolerance, 'f', 6, 64), horizon.Milliseconds(), limit,
		).Slice()
		if err != nil || len(res) != 5 {
			return FeedResult{}, unavailable("feed", err)
		}
		sum.Moved += int(toInt(res[0]))
		if reason, _ := res[1].(string); reason != "" && !sum.Paused {
			sum.Paused, sum.Reason = true, reason
			if u := toInt(res[2]); u > 0 {
				sum.Until = time.UnixMilli(u).UTC()
			}
		}
		sum.Waiting += toInt(res[3])
		sum.QuotaUsed += toInt(res[4])
	}
	return sum, nil
}

// partRate is one partition's share of an app's rate: the partitions
// each pace at Rate/Partitions with the same burst tolerance.
func (s *Store) partRate(r Rate) Rate {
	r.Interval *= float64(len(s.parts))
	return r
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

// Pause is a pause to set on an app.
type Pause struct {
	Reason string
	// Rank orders reasons: a pause never replaces an active one of higher
	// rank (app errors outrank quota, which outranks the minute limit).
	Rank    int
	ErrCode int
	ErrMsg  string
	// Until ends the pause by itself; zero: only Resume (or a probe) ends it.
	Until time.Time
	// ProbeEvery, when positive, lets one waiting message through this
	// often to see whether the cause has gone.
	ProbeEvery time.Duration
}

// pauseScript. KEYS: pause. ARGV: reason, rank, errcode, errmsg, nowMs,
// untilMs, probeEveryMs. Returns 1 when the app was not paused before (or
// the pause changed reason), 0 when an active pause was kept or extended.
var pauseScript = redis.NewScript(redisNow + activePause + `
local rank = tonumber(ARGV[2])
local untilv = tonumber(ARGV[6])
local every = tonumber(ARGV[7])
local function probe()
  if every > 0 then
    redis.call('HSET', KEYS[1], 'probe_every', ARGV[7], 'probe_at', string.format('%.0f', now + every))
  end
end
if active_pause() then
  local cur = redis.call('HMGET', KEYS[1], 'rank', 'until')
  local crank, cuntil = tonumber(cur[1] or '0'), tonumber(cur[2] or '0')
  if crank > rank then return 0 end
  if crank == rank then
    if cuntil ~= 0 and (untilv == 0 or untilv > cuntil) then
      redis.call('HSET', KEYS[1], 'until', ARGV[6])
    end
    redis.call('HSET', KEYS[1], 'errcode', ARGV[3], 'errmsg', ARGV[4])
    probe()
    return 0
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'rank', ARGV[2], 'errcode', ARGV[3], 'errmsg', ARGV[4],
  'since', ARGV[5], 'until', ARGV[6], 'probe_every', ARGV[7], 'probe_at', '0')
probe()
return 1
`)

// PauseApp pauses app for all instances. It reports whether this started
// a pause (the app was active, or paused for a lesser reason); an active
// pause of the same reason is extended to the later Until and its probe
// rescheduled.
func (s *Store) PauseApp(ctx context.Context, app string, p Pause, now time.Time) (bool, error) {
	until := int64(0)
	if !p.Until.IsZero() {
		until = p.Until.UnixMilli()
	}
	// Every partition holds its own copy of the pause: each one's scripts
	// see it atomically.
	started := false
	for _, part := range s.parts {
		n, err := pauseScript.Run(ctx, s.rdb, []string{part.keys.app(app, "pause")},
			p.Reason, p.Rank, p.ErrCode, p.ErrMsg, now.UnixMilli(), until, max(p.ProbeEvery.Milliseconds(), 0),
		).Int()
		if err != nil {
			return false, unavailable("pause app", err)
		}
		started = started || n == 1
	}
	return started, nil
}

// resumeScript. KEYS: pause. Returns the reason of the pause it ended, or
// false when the app was not paused.
var resumeScript = redis.NewScript(redisNow + activePause + `
if not active_pause() then return false end
local r = redis.call('HGET', KEYS[1], 'reason')
redis.call('DEL', KEYS[1])
return r
`)

// ResumeApp ends app's pause, if any, and returns its reason ("" when the
// app was not paused). The feeders then move the waiting messages back.
func (s *Store) ResumeApp(ctx context.Context, app string) (string, error) {
	reason := ""
	for _, p := range s.parts {
		r, err := resumeScript.Run(ctx, s.rdb, []string{p.keys.app(app, "pause")}).Text()
		if err != nil && !errors.Is(err, redis.Nil) {
			return "", unavailable("resume app", err)
		}
		if reason == "" {
			reason = r
		}
	}
	return reason, nil
}

// PauseState is an app's pause as stored.
type PauseState struct {
	Paused     bool
	Reason     string
	ErrCode    int
	ErrMsg     string
	Since      time.Time
	Until      time.Time // zero: until resumed
	NextProbe  time.Time // zero: no probe
	ProbeEvery time.Duration
}

// AppState is an app's shared pacing state, for the status API.
type AppState struct {
	Pause     PauseState
	Waiting   int64
	QuotaUsed int64
}

// ReadAppState reads app's pause, wait set size and the sends counted in
// quotaDay. now decides whether a stored pause is still active.
// With several partitions the counts are their sums, and the pause the
// first partition's that has one.
func (s *Store) ReadAppState(ctx context.Context, app, quotaDay string, now time.Time) (AppState, error) {
	hs := make([]*redis.MapStringStringCmd, len(s.parts))
	waiting := make([]*redis.IntCmd, len(s.parts))
	quota := make([]*redis.StringCmd, len(s.parts))
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range s.parts {
			hs[i] = pipe.HGetAll(ctx, p.keys.app(app, "pause"))
			waiting[i] = pipe.ZCard(ctx, p.keys.app(app, "wait"))
			quota[i] = pipe.Get(ctx, p.keys.quota(app, quotaDay))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return AppState{}, unavailable("app state", err)
	}
	// A missing quota counter answers redis.Nil, which Exec reports in
	// place of a later partition's real error: each command is checked.
	for i := range s.parts {
		for _, err := range []error{hs[i].Err(), waiting[i].Err(), quota[i].Err()} {
			if err != nil && !errors.Is(err, redis.Nil) {
				return AppState{}, unavailable("app state", err)
			}
		}
	}
	var st AppState
	var m map[string]string
	for i := range s.parts {
		st.Waiting += waiting[i].Val()
		q, _ := strconv.ParseInt(quota[i].Val(), 10, 64)
		st.QuotaUsed += q
		if h := hs[i].Val(); m == nil && len(h) > 0 {
			m = h
		}
	}
	if u, ok := m["until"]; ok {
		until, _ := strconv.ParseInt(u, 10, 64)
		if until == 0 || until > now.UnixMilli() {
			ps := &st.Pause
			ps.Paused, ps.Reason, ps.ErrMsg = true, m["reason"], m["errmsg"]
			ps.ErrCode, _ = strconv.Atoi(m["errcode"])
			ps.Since = msTime(m["since"])
			if until > 0 {
				ps.Until = time.UnixMilli(until).UTC()
			}
			ps.NextProbe = msTime(m["probe_at"])
			every, _ := strconv.ParseInt(m["probe_every"], 10, 64)
			ps.ProbeEvery = time.Duration(every) * time.Millisecond
		}
	}
	return st, nil
}

func msTime(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

// --- status webhook outbox -------------------------------------------------

// EventPolicy selects which transitions of an app's messages put a status
// event in the webhook outbox.
type EventPolicy int

// The event policies.
const (
	EventsNone EventPolicy = iota // no status webhook
	// EventsFinal: delivered and failed (the app has delivery reports).
	EventsFinal
	// EventsFinalOrSent: also sent, which is final for an app without a
	// callback endpoint (no delivery report will come).
	EventsFinalOrSent
)

func (s *Store) events(app string) string {
	return strconv.Itoa(int(s.opts.Events[app]))
}

// claimEventsScript leases due outbox entries. KEYS: outbox. ARGV: nowMs,
// leaseUntilMs, limit.
var claimEventsScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
`)

// ClaimEvents leases up to limit status events that are due: each is
// handed to no other caller until now+lease, after which it is due again
// (the caller died). The events are message ids. The partitions' outboxes
// are read in turn from a rotating first one.
func (s *Store) ClaimEvents(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]string, error) {
	var out []string
	first := s.start()
	for i := range s.parts {
		k := s.parts[(first+i)%len(s.parts)].keys
		ids, err := claimEventsScript.Run(ctx, s.rdb, []string{k.outbox()}, now.UnixMilli(), now.Add(lease).UnixMilli(), limit-len(out)).StringSlice()
		if err != nil && !errors.Is(err, redis.Nil) {
			return out, unavailable("claim events", err)
		}
		if out = append(out, ids...); len(out) >= limit {
			break
		}
	}
	return out, nil
}

// AckEvent removes a delivered status event from the outbox.
func (s *Store) AckEvent(ctx context.Context, id string) error {
	if err := s.rdb.ZRem(ctx, s.part(id).keys.outbox(), id).Err(); err != nil {
		return unavailable("ack event", err)
	}
	return nil
}

// retryEventScript. KEYS: outbox, msg. ARGV: id, nowMs, baseMs, capMs,
// maxAttempts, jitter (0..1). Returns the attempts made so far, negated
// when the event was given up.
var retryEventScript = redis.NewScript(`
local n = redis.call('HINCRBY', KEYS[2], 'webhook_attempts', 1)
if n >= tonumber(ARGV[5]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return -n
end
local d = tonumber(ARGV[3]) * math.pow(2, n - 1)
if d > tonumber(ARGV[4]) then d = tonumber(ARGV[4]) end
d = d * (0.5 + tonumber(ARGV[6]) / 2)
redis.call('ZADD', KEYS[1], string.format('%.0f', tonumber(ARGV[2]) + d), ARGV[1])
return n
`)

// RetryEvent records a failed delivery of id's status event and schedules
// the next one with exponential backoff (base * 2^(n-1), capped, with
// jitter in [0.5, 1)), or gives up after maxAttempts. It returns the
// number of failed attempts and whether it gave up.
func (s *Store) RetryEvent(ctx context.Context, id string, now time.Time, base, cap time.Duration, maxAttempts int, jitter float64) (int, bool, error) {
	k := s.part(id).keys
	n, err := retryEventScript.Run(ctx, s.rdb, []string{k.outbox(), k.msg(id)},
		id, now.UnixMilli(), base.Milliseconds(), cap.Milliseconds(), maxAttempts, strconv.FormatFloat(jitter, 'f', 4, 64)).Int()
	if err != nil {
		return 0, false, unavailable("retry event", err)
	}
	if n < 0 {
		return -n, true, nil
	}
	return n, false, nil
}

// PendingEvents counts the status events not yet delivered.
func (s *Store) PendingEvents(ctx context.Context) (int64, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(s.parts))
	for i, p := range s.parts {
		cmds[i] = pipe.ZCard(ctx, p.keys.outbox())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, unavailable("pending events", err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}
