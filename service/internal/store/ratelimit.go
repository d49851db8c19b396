package store

import (
	"context"
	"encoding/hex"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Inbound rate limits: the API's request budgets, shared by every instance.
//
// Keys (under the prefix, so in one cluster slot):
//
//	rate:key:<client>  GCRA theoretical arrival time (ms, Redis clock) of one
//	                   API key; <client> is a hash of the key, never the key
//	rate:global        the same for all requests together
//
// The outbound pacing (pacing.go) reserves a slot in the future and makes
// the message wait for it; a request over its inbound budget is refused
// instead, and told when its next slot comes.

// RequestLimit is a request rate: PerSecond requests per second (0: no
// limit) of which Burst may come at once (0: one second's worth, the rate
// rounded up).
type RequestLimit struct {
	PerSecond float64
	Burst     int
}

// Limited reports whether the limit applies.
func (l RequestLimit) Limited() bool { return l.PerSecond > 0 }

// RequestLimits are the API's inbound limits.
type RequestLimits struct {
	PerKey RequestLimit // each API key
	Global RequestLimit // all requests together
}

// Limited reports whether any of the limits applies.
func (l RequestLimits) Limited() bool { return l.PerKey.Limited() || l.Global.Limited() }

// The scopes of a refusal (RequestDecision.Scope).
const (
	ScopeKey    = "key"
	ScopeGlobal = "global"
)

// RequestDecision is what AllowRequest decided.
type RequestDecision struct {
	Allowed bool
	// Scope names the limit that refused the request (ScopeKey or
	// ScopeGlobal); empty when allowed.
	Scope string
	// RetryAfter is when the refused request would have been allowed, on
	// the Redis clock.
	RetryAfter time.Duration
}

func (k keys) rateKey(client []byte) string {
	return k.prefix + "rate:key:" + hex.EncodeToString(client[:min(len(client), 16)])
}

func (k keys) rateGlobal() string { return k.prefix + "rate:global" }

// allowScript takes one request from two GCRA buckets, or from neither:
// the request is allowed when both have room, and then both advance.
// KEYS: per-key tat, global tat. ARGV: per-key intervalMs, per-key
// toleranceMs, global intervalMs, global toleranceMs (interval 0: that
// bucket has no limit). Returns {allowed (1/0), scope ("" or the refusing
// bucket: key, global), retryAfterMs}.
var allowScript = redis.NewScript(redisNow + `
local function check(i, interval, tau)
  if interval <= 0 then return nil, 0 end
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new = tat + interval
  local early = new - tau - interval - now
  if early > 0 then return nil, early end
  return new, 0
end
local kt, kw = check(1, tonumber(ARGV[1]), tonumber(ARGV[2]))
local gt, gw = check(2, tonumber(ARGV[3]), tonumber(ARGV[4]))
if kw > 0 or gw > 0 then
  local scope, w = 'key', kw
  if gw > kw then scope, w = 'global', gw end
  return {0, scope, string.format('%.3f', w)}
end
if kt then redis.call('SET', KEYS[1], string.format('%.3f', kt), 'PX', math.ceil(kt - now) + 1000) end
if gt then redis.call('SET', KEYS[2], string.format('%.3f', gt), 'PX', math.ceil(gt - now) + 1000) end
return {1, '', '0'}
`)

// AllowRequest takes one request of client (a hash of its API key; empty:
// no key, only the global limit applies) from the inbound limits, across
// all instances. A refused request takes nothing.
func (s *Store) AllowRequest(ctx context.Context, client []byte, limits RequestLimits) (RequestDecision, error) {
	perKey := limits.PerKey
	if len(client) == 0 {
		perKey = RequestLimit{}
	}
	ki, kt := gcraMillis(perKey)
	gi, gt := gcraMillis(limits.Global)
	if !perKey.Limited() && !limits.Global.Limited() {
		return RequestDecision{Allowed: true}, nil
	}
	res, err := allowScript.Run(ctx, s.rdb, []string{s.keys.rateKey(client), s.keys.rateGlobal()},
		ki, kt, gi, gt).Slice()
	if err != nil || len(res) != 3 {
		return RequestDecision{}, unavailable("allow request", err)
	}
	allowed, _ := res[0].(int64)
	scope, _ := res[1].(string)
	wait, _ := res[2].(string)
	ms, _ := strconv.ParseFloat(wait, 64)
	return RequestDecision{Allowed: allowed == 1, Scope: scope, RetryAfter: time.Duration(ms * float64(time.Millisecond))}, nil
}

// gcraMillis returns a limit's emission interval and burst tolerance in
// ms, formatted for a script ("0": no limit).
func gcraMillis(l RequestLimit) (interval, tolerance string) {
	if !l.Limited() {
		return "0", "0"
	}
	burst := l.Burst
	if burst < 1 {
		burst = int(math.Ceil(l.PerSecond))
	}
	iv := 1000 / l.PerSecond
	return strconv.FormatFloat(iv, 'f', 6, 64), strconv.FormatFloat(iv*float64(max(burst, 1)-1), 'f', 6, 64)
}
