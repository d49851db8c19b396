package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wxpush/wxpush/service"
)

// maxPipeline bounds how many messages one Redis pipeline carries.
const maxPipeline = 256

// enqueueCall is one Enqueue call waiting to be written.
type enqueueCall struct {
	msgs []NewMessage
	res  []EnqueueResult
	err  error
	wake chan struct{} // closed when res/err are set, or when this call must lead
	lead bool
}

// coalescer turns concurrent Enqueue calls into shared pipelines, without
// a goroutine of its own: the first caller leads a batch made of every call
// pending at that moment, then hands the lead to the next waiting caller.
// Under light load a call goes alone and waits for nothing; under heavy load
// one round trip carries many messages.
type coalescer struct {
	mu      sync.Mutex
	pending []*enqueueCall
	busy    bool
}

// Enqueue stores and queues messages: one atomic script each, written in
// pipelines shared with concurrent callers. It fails (ErrUnavailable) only
// when Redis could not be reached; then none of these messages may be
// acknowledged.
func (s *Store) Enqueue(ctx context.Context, msgs []NewMessage) ([]EnqueueResult, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	call := &enqueueCall{msgs: msgs, wake: make(chan struct{})}
	c := &s.batch
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
				return nil, fmt.Errorf("%w: enqueue: %v", ErrUnavailable, ctx.Err())
			}
			c.mu.Unlock()
			// Already in a batch being written, or chosen to lead: finish
			// the protocol (bounded by the batch timeout).
			<-call.wake
		}
		if !call.lead {
			return call.res, call.err
		}
		c.mu.Lock()
	}
	c.busy = true
	if len(c.pending) == 1 {
		// Alone so far: yield once so that requests already being handled
		// can join this pipeline (no timer: an idle service adds no delay).
		c.mu.Unlock()
		runtime.Gosched()
		c.mu.Lock()
	}
	s.leadBatches(c)
	return call.res, call.err
}

// leadBatches runs one batch: the calls pending now, up to maxPipeline
// messages (a larger single call goes alone). Then it wakes the next
// waiting call to lead, or marks the coalescer idle. c.mu is held on entry
// and released on return.
func (s *Store) leadBatches(c *coalescer) {
	var batch []*enqueueCall
	n := 0
	for len(c.pending) > 0 && (n == 0 || n+len(c.pending[0].msgs) <= maxPipeline) {
		batch = append(batch, c.pending[0])
		n += len(c.pending[0].msgs)
		c.pending = c.pending[1:]
	}
	c.mu.Unlock()

	// The batch serves many callers: it must not fail because the leader's
	// own request was cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	s.writeBatch(ctx, batch)
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

// writeBatch writes every message of the calls in one MULTI/EXEC: keyless
// messages as HSET+EXPIRE+XADD, keyed ones through enqueueScript, and fills
// in each call's results.
func (s *Store) writeBatch(ctx context.Context, calls []*enqueueCall) {
	type item struct {
		msg    *NewMessage
		keys   []string
		args   []any
		script *redis.Cmd       // keyed messages
		xadd   *redis.StringCmd // keyless messages: the last command of the three
	}
	var items [][]item
	pipe := s.rdb.TxPipeline()
	for _, call := range calls {
		its := make([]item, len(call.msgs))
		for i := range call.msgs {
			m := &call.msgs[i]
			req := m.RequestJSON
			if req == nil {
				var err error
				if req, err = json.Marshal(m.Request); err != nil {
					call.err = fmt.Errorf("store: encode request: %w", err)
					break
				}
			}
			it := &its[i]
			it.msg = m
			if m.IdempotencyKey == "" {
				key := s.keys.msg(m.ID)
				pipe.HSet(ctx, key, "req", req, "status", string(service.StatusQueued), "created_at", m.AcceptedAt.UnixMilli())
				pipe.Expire(ctx, key, s.opts.Retention)
				it.xadd = pipe.XAdd(ctx, &redis.XAddArgs{Stream: s.keys.stream, Values: []any{"id", m.ID}})
				continue
			}
			it.keys = []string{s.keys.msg(m.ID), s.keys.stream, s.keys.idem(m.IdempotencyKey)}
			it.args = []any{m.ID, m.RequestHash, s.opts.IdempotencyTTL.Milliseconds(), int64(s.opts.Retention.Seconds()), m.AcceptedAt.UnixMilli(), req}
			it.script = enqueueScript.EvalSha(ctx, pipe, it.keys, it.args...)
		}
		items = append(items, its)
	}
	_, _ = pipe.Exec(ctx) // errors are read per command below

	for ci, call := range calls {
		if call.err != nil {
			continue
		}
		res := make([]EnqueueResult, len(call.msgs))
		for i, it := range items[ci] {
			var r EnqueueResult
			var err error
			if it.xadd != nil {
				if err = it.xadd.Err(); err != nil {
					err = unavailable("enqueue", err)
				}
				r = EnqueueResult{Outcome: Created, ID: it.msg.ID}
			} else {
				cmd := it.script
				if err := cmd.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
					// NOSCRIPT: this script did not run (Redis restarted and
					// lost its script cache), so running it now cannot apply
					// a message twice. Script.Run loads and runs it.
					cmd = enqueueScript.Run(ctx, s.rdb, it.keys, it.args...)
				}
				r, err = enqueueResult(cmd)
			}
			if err != nil {
				call.err = err
				break
			}
			res[i] = r
		}
		if call.err == nil {
			call.res = res
		}
	}
}

func enqueueResult(cmd *redis.Cmd) (EnqueueResult, error) {
	vals, err := cmd.Slice()
	if err != nil || len(vals) != 2 {
		if err == nil {
			err = errors.New("unexpected reply")
		}
		return EnqueueResult{}, unavailable("enqueue", err)
	}
	code, _ := vals[0].(int64)
	id, _ := vals[1].(string)
	if code < int64(Created) || code > int64(Conflict) {
		return EnqueueResult{}, unavailable("enqueue", fmt.Errorf("unexpected outcome %d", code))
	}
	return EnqueueResult{Outcome: Outcome(code), ID: id}, nil
}
