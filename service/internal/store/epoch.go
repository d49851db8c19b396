package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The store epoch is one key, written once and never expired, whose random
// value names the store's lifetime. A Redis that comes back empty (a
// restart without persistence, FLUSHALL, a failover to an empty replica)
// has lost it with the messages and the idempotency keys: every instance
// checks it (CheckEpoch) on reconnect and periodically, so that loss is
// noticed instead of repeats of lost idempotency keys silently becoming new
// messages.

func (k keys) epoch() string { return k.prefix + "epoch" }

// EpochEvent is what CheckEpoch found.
type EpochEvent int

// The epoch events. EpochVanished and EpochChanged are store resets.
const (
	// EpochSame: the epoch is the one the caller knew, or the caller knew
	// none and adopted the existing one (an instance starting or
	// restarting on a store that kept its data).
	EpochSame EpochEvent = iota
	// EpochCreated: there was no epoch and the caller knew none, so it was
	// created. This is the first start on this store, an upgrade from a
	// version without epochs, or a reset that happened while no instance
	// was running: nothing tells these apart.
	EpochCreated
	// EpochVanished: the epoch the caller knew was gone; it was written
	// again with a new value. The store lost its data.
	EpochVanished
	// EpochChanged: the epoch differs from the one the caller knew:
	// another instance found it gone and wrote a new one first. The store
	// lost its data.
	EpochChanged
)

// String names the event, as in logs.
func (e EpochEvent) String() string {
	switch e {
	case EpochSame:
		return "same"
	case EpochCreated:
		return "created"
	case EpochVanished:
		return "vanished"
	case EpochChanged:
		return "changed"
	}
	return fmt.Sprintf("EpochEvent(%d)", int(e))
}

// Reset reports whether the event means the store lost its data.
func (e EpochEvent) Reset() bool { return e == EpochVanished || e == EpochChanged }

// Epoch is the result of CheckEpoch.
type Epoch struct {
	// Value is the store's epoch now: the caller remembers it and passes
	// it to the next CheckEpoch.
	Value string
	// Event is what the check found.
	Event EpochEvent
}

// epochScript reads the store epoch, writing it (without expiry) when it is
// missing, in one step: of several instances that find it missing at once,
// one writes it and the others see a changed epoch.
// KEYS: epoch. ARGV: the epoch the caller knows (empty: none), a new epoch.
// Returns {epoch now, event}: 0 same (or adopted: nothing known), 1 created
// (nothing known, nothing there), 2 vanished (the known one was gone and
// ARGV[2] replaced it), 3 changed (another value than the known one).
var epochScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  if ARGV[1] == '' or cur == ARGV[1] then return {cur, 0} end
  return {cur, 3}
end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[1] == '' then return {ARGV[2], 1} end
return {ARGV[2], 2}
`)

// CheckEpoch compares the store epoch with known (the value the caller's
// last check returned; "" on the first), writing a new epoch when it is
// missing. One round trip; safe to call from many instances at once.
func (s *Store) CheckEpoch(ctx context.Context, known string, now time.Time) (Epoch, error) {
	vals, err := epochScript.Run(ctx, s.rdb, []string{s.keys.epoch()}, known, newEpoch(now)).Slice()
	if err != nil {
		return Epoch{}, unavailable("check epoch", err)
	}
	if len(vals) != 2 {
		return Epoch{}, unavailable("check epoch", fmt.Errorf("unexpected reply of %d values", len(vals)))
	}
	v, ok1 := vals[0].(string)
	ev, ok2 := vals[1].(int64)
	if !ok1 || !ok2 || v == "" || ev < int64(EpochSame) || ev > int64(EpochChanged) {
		return Epoch{}, unavailable("check epoch", fmt.Errorf("unexpected reply %v", vals))
	}
	return Epoch{Value: v, Event: EpochEvent(ev)}, nil
}

// newEpoch returns a fresh epoch value: when it was written (for the
// operator reading logs) and 64 random bits (so a rewritten epoch always
// differs).
func newEpoch(now time.Time) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}
