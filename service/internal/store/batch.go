package store

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxPipeline bounds how many messages one Redis pipeline carries.
const maxPipeline = 256

// batchCall is one call waiting in a coalescer: its input, and its output
// or error once its batch is written.
type batchCall[In, Out any] struct {
	in   In
	out  Out
	err  error
	wake chan struct{} // closed when out/err are set, or when this call must lead
	lead bool
}

// coalescer turns concurrent calls into shared script calls, without a
// goroutine of its own: the first caller leads a batch made of every call
// pending at that moment, then hands the lead to the next waiting caller.
// Under light load a call goes alone and waits for nothing; under heavy
// load one round trip carries many calls. Enqueue, Begin and Settle use
// one per partition; the follower checks one.
type coalescer[In, Out any] struct {
	op      string       // for errors: "enqueue", "settle"
	size    func(In) int // how many messages a call carries
	write   func(context.Context, []*batchCall[In, Out])
	timeout time.Duration // bounds one write, which may serve many callers

	mu      sync.Mutex
	pending []*batchCall[In, Out]
	busy    bool
}

// do adds a call and returns its output once a batch carrying it is
// written (by this caller or another). A call cancelled before its batch
// is written is withdrawn (ErrUnavailable); one already being written
// finishes, bounded by c.timeout.
func (c *coalescer[In, Out]) do(ctx context.Context, in In) (Out, error) {
	if err := ctx.Err(); err != nil {
		// Given up already: not even an idle coalescer's lead may write it.
		var zero Out
		return zero, fmt.Errorf("%w: %s: %v", ErrUnavailable, c.op, err)
	}
	call := &batchCall[In, Out]{in: in, wake: make(chan struct{})}
	c.mu.Lock()
	c.pending = append(c.pending, call)
	if c.busy {
		c.mu.Unlock()
		select {
		case <-call.wake:
		case <-ctx.Done():
			c.mu.Lock()
			if i := slices.Index(c.pending, call); i >= 0 && !call.lead {
				// Not written yet: withdraw it.
				c.pending = slices.Delete(c.pending, i, i+1)
				c.mu.Unlock()
				var zero Out
				return zero, fmt.Errorf("%w: %s: %v", ErrUnavailable, c.op, ctx.Err())
			}
			c.mu.Unlock()
			// Already in a batch being written, or chosen to lead: finish
			// the protocol (bounded by the batch timeout).
			<-call.wake
		}
		if !call.lead {
			return call.out, call.err
		}
		c.mu.Lock()
	}
	c.busy = true
	if len(c.pending) == 1 {
		// Alone so far: yield once so that calls already under way can
		// join this batch (no timer: an idle service adds no delay).
		c.mu.Unlock()
		runtime.Gosched()
		c.mu.Lock()
	}
	c.lead()
	return call.out, call.err
}

// lead writes one batch: the calls pending now, up to maxPipeline
// messages (a larger single call goes alone). Then it wakes the next
// waiting call to lead, or marks the coalescer idle. c.mu is held on entry
// and released on return.
func (c *coalescer[In, Out]) lead() {
	var batch []*batchCall[In, Out]
	n := 0
	for len(c.pending) > 0 && (n == 0 || n+c.size(c.pending[0].in) <= maxPipeline) {
		batch = append(batch, c.pending[0])
		n += c.size(c.pending[0].in)
		c.pending = c.pending[1:]
	}
	c.mu.Unlock()

	// The batch serves many callers: it must not fail because the leader's
	// own request was cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	c.write(ctx, batch)
	cancel()

	c.mu.Lock()
	if len(c.pending) > 0 {
		next := c.pending[0]
		next.lead = true
		close(next.wake)
	} else {
		c.busy = false
	}
	c.mu.Unlock()
	for _, call := range batch {
		if !call.lead {
			close(call.wake)
		}
	}
}

// enqueueCall is one Enqueue call waiting to be written.
type enqueueCall = batchCall[[]NewMessage, []EnqueueResult]

// Enqueue stores and queues messages: one atomic script each, written in
// calls shared with concurrent callers. It fails (ErrUnavailable) only
// when Redis could not be reached; then none of these messages may be
// acknowledged.
//
// With several partitions, a message with an idempotency key goes to its
// key's partition (its id is chosen to match: the results carry the ids
// stored), and the messages without one all go to one partition, written
// in one atomic step only after every keyed message was: so on an error a
// retry of the same call replays the keyed messages that were stored and
// duplicates none of the others.
func (s *Store) Enqueue(ctx context.Context, msgs []NewMessage) ([]EnqueueResult, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	if len(s.parts) == 1 {
		return s.parts[0].enqueues.do(ctx, msgs)
	}
	msgs = slices.Clone(msgs)
	type group struct {
		at   []int // the messages' places in msgs
		msgs []NewMessage
	}
	keyed := map[int]*group{}
	var free group
	freePart := -1
	for i := range msgs {
		m := &msgs[i]
		if m.IdempotencyKey == "" {
			if freePart < 0 {
				freePart = s.hashPart(m.ID)
			}
			m.ID = s.idIn(m.ID, freePart, m.AcceptedAt)
			free.at, free.msgs = append(free.at, i), append(free.msgs, *m)
			continue
		}
		p := s.hashPart(m.IdempotencyKey)
		m.ID = s.idIn(m.ID, p, m.AcceptedAt)
		g := keyed[p]
		if g == nil {
			g = &group{}
			keyed[p] = g
		}
		g.at, g.msgs = append(g.at, i), append(g.msgs, *m)
	}
	out := make([]EnqueueResult, len(msgs))
	write := func(p int, g *group) error {
		res, err := s.parts[p].enqueues.do(ctx, g.msgs)
		if err == nil && len(res) != len(g.msgs) {
			err = fmt.Errorf("store: enqueue: %d results for %d messages", len(res), len(g.msgs))
		}
		if err != nil {
			return err
		}
		for j, r := range res {
			out[g.at[j]] = r
		}
		return nil
	}
	errs := make(chan error, len(keyed))
	for p, g := range keyed {
		go func() { errs <- write(p, g) }()
	}
	var first error
	for range keyed {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return nil, first
	}
	if freePart >= 0 {
		if err := write(freePart, &free); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// batchScript stores a batch of messages in one atomic step. For each
// message it writes the record, the stream entry and the index entries
// (all messages; by user and by request, in its day's sets: see index.go);
// a message with
// an idempotency key is first checked against it (replay or conflict) and
// the key is set with it. The created messages count in the minute's
// counters. KEYS: stream, ix:all, counts, then per message its record key,
// when keyed its idempotency key, its day's user index and request index.
// ARGV: retentionSec, idemTTLms, then per message: keyed (0/1), id, hash,
// nowMs, request JSON, request id, traceparent, touser, the day indexes'
// expiry (unix s). Returns a flat list of
// {outcome, id} pairs in order: 1 created, 2 replayed, 3 conflict.
var batchScript = redis.NewScript(`
local out = {}
local created = 0
local dated = {} -- the day sets whose expiry this call has set
local k, a = 4, 3
while a <= #ARGV do
  local keyed, id, hash, now, req, rid, tp, to, exp = ARGV[a], ARGV[a+1], ARGV[a+2], ARGV[a+3], ARGV[a+4], ARGV[a+5], ARGV[a+6], ARGV[a+7], ARGV[a+8]
  a = a + 9
  local msg = KEYS[k]
  k = k + 1
  local done = false
  if keyed == '1' then
    local idem = KEYS[k]
    k = k + 1
    local v = redis.call('GET', idem)
    if v then
      local sep = string.find(v, ' ', 1, true)
      local oid = string.sub(v, sep + 1)
      if string.sub(v, 1, sep - 1) == hash then
        out[#out+1] = 2
      else
        out[#out+1] = 3
      end
      out[#out+1] = oid
      done = true
    else
      redis.call('SET', idem, hash .. ' ' .. id, 'PX', ARGV[2])
    end
  end
  local tok, rk = KEYS[k], KEYS[k + 1]
  k = k + 2
  if not done then
    if tp ~= '' then
      redis.call('HSET', msg, 'req', req, 'status', 'queued', 'created_at', now, 'request_id', rid, 'traceparent', tp)
    else
      redis.call('HSET', msg, 'req', req, 'status', 'queued', 'created_at', now, 'request_id', rid)
    end
    redis.call('EXPIRE', msg, ARGV[1])
    redis.call('XADD', KEYS[1], '*', 'id', id)
    redis.call('ZADD', KEYS[2], 0, id)
    redis.call('ZADD', tok, 0, to .. ' ' .. id)
    if not dated[tok] then
      redis.call('EXPIREAT', tok, exp)
      dated[tok] = true
    end
    if rid ~= '' then
      redis.call('ZADD', rk, 0, rid .. ' ' .. id)
      if not dated[rk] then
        redis.call('EXPIREAT', rk, exp)
        dated[rk] = true
      end
    end
    created = created + 1
    out[#out+1] = 1
    out[#out+1] = id
  end
end
if created > 0 and redis.call('HINCRBY', KEYS[3], 'accepted', created) == created then
  redis.call('EXPIRE', KEYS[3], 90000)
end
return out
`)

// writeBatch writes every message of the calls with one script call and
// fills in each call's results. One command means one reply: Script.Run's
// fallback from EVALSHA to EVAL on NOSCRIPT cannot apply anything twice.
func (s *Store) writeBatch(ctx context.Context, p *part, calls []*enqueueCall) {
	now := time.Now()
	k := p.keys
	keys := []string{k.stream, k.ixAll(), k.counts(now)}
	args := []any{int64(s.opts.Retention.Seconds()), s.opts.IdempotencyTTL.Milliseconds()}
	var written []*enqueueCall
	for _, call := range calls {
		var ks []string
		var as []any
		for i := range call.in {
			m := &call.in[i]
			req := m.RequestJSON
			if req == nil {
				var err error
				if req, err = json.Marshal(m.Request); err != nil {
					call.err = fmt.Errorf("store: encode request: %w", err)
					break
				}
			}
			keyed := "0"
			ks = append(ks, k.msg(m.ID))
			if m.IdempotencyKey != "" {
				keyed = "1"
				ks = append(ks, k.idem(m.IdempotencyKey))
			}
			day := s.indexDay(m.ID, m.AcceptedAt)
			ks = append(ks, k.ixDay("to", day), k.ixDay("req", day))
			as = append(as, keyed, m.ID, m.RequestHash, m.AcceptedAt.UnixMilli(), req, m.RequestID, m.TraceParent, m.Request.ToUser, s.dayExpiry(day))
		}
		if call.err == nil {
			keys, args = append(keys, ks...), append(args, as...)
			written = append(written, call)
		}
	}
	if len(written) == 0 {
		return
	}
	vals, err := s.runDurable(ctx, batchScript, keys, args...).Slice()
	n := 0
	for _, call := range written {
		n += len(call.in)
	}
	if err == nil && len(vals) != 2*n {
		err = fmt.Errorf("unexpected reply of %d values for %d messages", len(vals), n)
	}
	if err != nil {
		for _, call := range written {
			call.err = unavailable("enqueue", err)
		}
		return
	}
	i := 0
	for _, call := range written {
		res := make([]EnqueueResult, len(call.in))
		for j := range res {
			code, _ := vals[i].(int64)
			id, _ := vals[i+1].(string)
			i += 2
			if code < int64(Created) || code > int64(Conflict) {
				call.err = unavailable("enqueue", fmt.Errorf("unexpected outcome %d", code))
				break
			}
			res[j] = EnqueueResult{Outcome: Outcome(code), ID: id}
		}
		if call.err == nil {
			call.out = res
		}
	}
}
