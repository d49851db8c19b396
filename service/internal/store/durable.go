package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Durable writes. Redis replicates asynchronously: a write a master
// acknowledged can be lost when a replica without it takes over. With
// Options.WaitReplicas, the writes the service acknowledges to someone
// else (an accepted message: the API's 202; a recorded callback or push:
// WeChat's success) are followed by WAIT on the same connection, and count
// as done only when that many replicas confirm them within WaitTimeout.
// Otherwise the caller gets ErrUnavailable, although the master has the
// write: a client retry with the same idempotency key replays it, and
// WeChat's retry of a callback is deduplicated.

// ErrNotReplicated wraps the error of a write that the master made but
// too few replicas confirmed in time (it is also ErrUnavailable).
var ErrNotReplicated = errors.New("write not confirmed by enough replicas")

// runDurable runs script as Script.Run does (EVALSHA, then EVAL on
// NOSCRIPT) and, with Options.WaitReplicas, WAITs after it on the same
// connection: on the master of keys[0]'s slot.
func (s *Store) runDurable(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	if s.opts.WaitReplicas <= 0 {
		return script.Run(ctx, s.rdb, keys, args...)
	}
	fail := func(err error) *redis.Cmd {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(err)
		return cmd
	}
	var node *redis.Client
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		var err error
		if node, err = c.MasterForKey(ctx, keys[0]); err != nil {
			return fail(err)
		}
	case *redis.Client:
		node = c
	default:
		return fail(fmt.Errorf("store: waiting for replicas needs a standalone, Sentinel or Cluster client, not %T", s.rdb))
	}
	for try := 0; ; try++ {
		pipe := node.Pipeline()
		var cmd *redis.Cmd
		if try == 0 {
			cmd = script.EvalSha(ctx, pipe, keys, args...)
		} else {
			cmd = script.Eval(ctx, pipe, keys, args...)
		}
		wait := pipe.Do(ctx, "WAIT", s.opts.WaitReplicas, max(s.opts.WaitTimeout.Milliseconds(), 1))
		_, _ = pipe.Exec(ctx)
		err := cmd.Err()
		switch {
		case err != nil && try == 0 && redis.HasErrorPrefix(err, "NOSCRIPT"):
			continue
		case err != nil && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK")):
			// The slot moved (a failover): the cluster client learns the
			// new layout, and the caller's retry goes there.
			if c, ok := s.rdb.(*redis.ClusterClient); ok {
				c.ReloadState(ctx)
			}
			return cmd
		case err != nil:
			return cmd
		}
		n, werr := wait.Int64()
		if werr == nil && n < int64(s.opts.WaitReplicas) {
			werr = fmt.Errorf("%d of %d replicas within %s", n, s.opts.WaitReplicas, s.opts.WaitTimeout)
		}
		if werr != nil {
			return fail(fmt.Errorf("%w: %v", ErrNotReplicated, werr))
		}
		return cmd
	}
}

// waitTimeout is Options.WaitTimeout's default.
const waitTimeout = time.Second
