package loadtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/wxpush/wxpush/scenarios"
)

// Shard is one share of a run split over several generators (wxload run
// --shard I/N): shard Index of Count, all of them started with the same
// RunID. The shards need not talk to each other: each derives its share
// of the load and its markers from (RunID, Index, Count) alone, so N
// processes started independently (a Kubernetes indexed Job) agree.
//
// Request n (0-based) of the scenario's load belongs to shard n mod
// Count and leaves when the unsharded run would send it: every shard
// offers RateAt/Count at every moment, and the shards' request counts
// sum to the scenario's exactly (the first total mod Count shards send
// one more).
type Shard struct {
	RunID string
	Index int
	Count int
}

// maxShards bounds --shard's N (each shard is a generator process).
const maxShards = 10_000

// ParseShard reads "I/N": shard I (0-based) of N.
func ParseShard(s string) (Shard, error) {
	is, ns, ok := strings.Cut(s, "/")
	if !ok {
		return Shard{}, fmt.Errorf("%w: --shard %q: want I/N, e.g. 0/4 (shard I of N, from 0)", ErrUsage, s)
	}
	i, err1 := strconv.Atoi(strings.TrimSpace(is))
	n, err2 := strconv.Atoi(strings.TrimSpace(ns))
	switch {
	case err1 != nil || err2 != nil:
		return Shard{}, fmt.Errorf("%w: --shard %q: I and N must be integers (I/N, e.g. 0/4)", ErrUsage, s)
	case n < 1 || n > maxShards:
		return Shard{}, fmt.Errorf("%w: --shard %q: N must be 1 to %d", ErrUsage, s, maxShards)
	case i < 0 || i >= n:
		return Shard{}, fmt.Errorf("%w: --shard %q: I must be 0 to %d (shards count from 0)", ErrUsage, s, n-1)
	}
	return Shard{Index: i, Count: n}, nil
}

// runIDPattern is what a run id may hold: a Kubernetes uid, a job name, a
// timestamp.
var runIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// CheckRunID reports whether id can name a sharded run.
func CheckRunID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: --shard needs --run-id ID, the same for every shard of the run and new for each run (e.g. the Kubernetes Job's uid, or $(date +%%s)): the shards' markers and idempotency keys derive from it", ErrUsage)
	}
	if !runIDPattern.MatchString(id) {
		return fmt.Errorf("%w: --run-id %q: use 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit", ErrUsage, id)
	}
	return nil
}

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// sharded reports whether s splits a run (its zero value does not).
func (s Shard) sharded() bool { return s.Count > 0 }

// runPrefix is the part of every shard's tag that the run id determines:
// the markers of one sharded run all start with it.
func runPrefix(runID string) string {
	h := sha256.Sum256([]byte("wxload-run:" + runID))
	return "wl" + hex.EncodeToString(h[:5]) + "s"
}

// shardTag is the tag of this shard's markers: the run's prefix, the
// shard's index and a nonce of this process, so that a shard started
// again (a retried pod) never reuses the idempotency keys of an attempt
// whose answers it did not see. Tags hold no '-': a marker is its tag,
// '-' and a message number.
func shardTag(runID string, index int) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; the clock is
		// a fine nonce too.
		v := uint32(time.Now().UnixNano())
		b = [3]byte{byte(v), byte(v >> 8), byte(v >> 16)}
	}
	return runPrefix(runID) + strconv.Itoa(index) + "r" + hex.EncodeToString(b[:])
}

// tagOf is the tag of a marker: what precedes its last '-'.
func tagOf(marker string) string {
	i := strings.LastIndexByte(marker, '-')
	if i < 0 {
		return ""
	}
	return marker[:i]
}

// share is the part of the load one generator offers: requests
// index, index+count, index+2*count... of the scenario's. Its zero value
// is the whole load.
type share struct{ index, count uint64 }

func (s Shard) share() share {
	if !s.sharded() {
		return share{}
	}
	return share{index: uint64(s.Index), count: uint64(s.Count)}
}

func (s share) n() uint64 { return max(s.count, 1) }

// global is the scenario's request number of this share's request k.
func (s share) global(k uint64) uint64 { return k*s.n() + s.index }

// requests is how many requests the share offers of a load: the whole
// load offers ceil(TotalHits) (its pacer stops once TotalHits is
// reached), and the shares sum to that exactly.
func (s share) requests(l scenarios.Load) uint64 {
	total := uint64(ceilHits(l.TotalHits()))
	if total <= s.index {
		return 0
	}
	return (total-s.index-1)/s.n() + 1
}

// ceilHits is the number of requests a load of total hits sends: request
// n goes while n < total.
func ceilHits(total float64) float64 {
	if total <= 0 {
		return 0
	}
	c := float64(uint64(total))
	if c < total {
		c++
	}
	return c
}

// rateAt is the share's offered rate at t.
func (s share) rateAt(l scenarios.Load, t time.Duration) float64 {
	return l.RateAt(t) / float64(s.n())
}

// hitTime is when the share's request k is due.
func (s share) hitTime(l scenarios.Load, k uint64) time.Duration {
	return l.HitTime(s.global(k))
}
