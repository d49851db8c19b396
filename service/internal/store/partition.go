package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Partitions. The queue is split into Options.Partitions partitions, each
// a complete queue of its own under its own hash tag: stream, retries,
// dead letters, status outbox, message records, idempotency keys, msgid
// index, early reports, history, indexes, minute counters and the apps'
// pacing keys (pause, GCRA, wait set, quota-day counter). Every script
// touches one partition only, so each stays in one Redis Cluster slot, and
// the partitions' tags are chosen so that their slots spread evenly over
// the slot space: on a cluster whose masters hold equal slot ranges (as
// redis-cli --cluster create makes them), P partitions on M masters put
// P/M partitions on each master when M divides P.
//
// A message's partition is a hash of its id; a message with an
// idempotency key gets an id whose hash names the partition of its key's
// hash, so two instances racing on one key meet in one slot, and the id
// alone still finds the record. The keys that are not about one message
// (access tokens, clocks, the store's epoch, the console's secret, the
// callback and inbound streams, follower state, the inbound rate limits,
// the partition count) stay under the prefix itself, in its slot.
//
// An app's pause is written to every partition (PauseApp, ResumeApp); its
// GCRA rate is split evenly (each partition paces at Rate/P, with the
// same burst tolerance), which the hash's even spread makes the app's rate
// overall; its quota-day sends are the sum of the partitions' counters.
//
// With one partition (the default) every key is under the prefix, exactly
// as before partitions existed. The count cannot change while the store
// holds messages: CheckPartitions refuses a start with another count.

// MaxPartitions bounds Options.Partitions.
const MaxPartitions = 1024

// part is one partition: its keys and the coalescers of its writes.
type part struct {
	n        int
	keys     keys
	enqueues coalescer[[]NewMessage, []EnqueueResult]
	settles  coalescer[settleCall, settleOut]
	begins   coalescer[beginCall, beginOut]
}

// partitionPrefixes returns the key prefix of each of n partitions of
// prefix: prefix itself when n is 1; otherwise prefix with its hash tag
// {T} replaced by {T:pI} (or {T:pI.K}, the first K whose slot falls in
// the I-th n-th of the slot space), so that the partitions spread over a
// cluster's masters. A prefix without a hash tag gets one appended.
func partitionPrefixes(prefix string, n int) []string {
	if n <= 1 {
		return []string{prefix}
	}
	before, tag, after := splitTag(prefix)
	out := make([]string, n)
	for i := range n {
		lo, hi := i*clusterSlots/n, (i+1)*clusterSlots/n
		t := tag + ":p" + strconv.Itoa(i)
		for k := 1; ; k++ {
			if s := int(crc16(t)) % clusterSlots; s >= lo && s < hi {
				break
			}
			t = tag + ":p" + strconv.Itoa(i) + "." + strconv.Itoa(k)
		}
		out[i] = before + "{" + t + "}" + after
	}
	return out
}

// splitTag splits prefix around its hash tag as Redis Cluster reads one:
// the text between the first "{" and the first "}" after it, when not
// empty. Without one, the tag is "wxp" and it goes at the end.
func splitTag(prefix string) (before, tag, after string) {
	if i := strings.IndexByte(prefix, '{'); i >= 0 {
		if j := strings.IndexByte(prefix[i+1:], '}'); j > 0 {
			return prefix[:i], prefix[i+1 : i+1+j], prefix[i+2+j:]
		}
	}
	return prefix, "wxp", ":"
}

// clusterSlots is the number of Redis Cluster hash slots.
const clusterSlots = 16384

// crc16 is Redis Cluster's key hash (CRC-16/XMODEM); a key's slot is its
// hash tag's crc16 modulo 16384.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// Partitions returns the number of partitions.
func (s *Store) Partitions() int { return len(s.parts) }

// hashPart is the partition a string hashes to: its 32-bit FNV-1a
// (hash/fnv's New32a, written out: this runs for every message operation,
// and the hasher would be allocated each time) modulo the count.
func (s *Store) hashPart(v string) int {
	if len(s.parts) == 1 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(v); i++ {
		h ^= uint32(v[i])
		h *= 16777619
	}
	return int(h % uint32(len(s.parts)))
}

// part returns the partition of message id.
func (s *Store) part(id string) *part { return s.parts[s.hashPart(id)] }

// idIn returns id, or when it is not in partition p, an id with the same
// time whose hash names p (about Partitions tries, each a few hundred ns).
func (s *Store) idIn(id string, p int, at time.Time) string {
	if s.hashPart(id) == p {
		return id
	}
	b, err := idEncoding.DecodeString(id)
	if len(id) != 26 || err != nil || len(b) != 16 {
		floor := idFloorBytes(at)
		b = floor[:]
	}
	for {
		_, _ = rand.Read(b[6:])
		if c := idEncoding.EncodeToString(b); s.hashPart(c) == p {
			return c
		}
	}
}

// start returns where a round over the partitions begins.
func (s *Store) start() int {
	if len(s.parts) == 1 {
		return 0
	}
	return int(s.rotation.Add(1) % uint32(len(s.parts)))
}

// ErrPartitions is what CheckPartitions answers when the store was written
// with another partition count.
var ErrPartitions = errors.New("store: partition count changed")

func (k keys) partitions() string { return k.prefix + "partitions" }

// checkPartitionsScript records or reads the partition count in one step,
// so that instances starting at once over a queue of the one-partition
// layout cannot see a count that one of them is about to take back.
// KEYS: the count, then the one-partition layout's queue, ix:all and
// delayed (all under the prefix's own tag). ARGV: the count to record.
// Returns the recorded count (this one when it records it), or "" when
// nothing is recorded and a count above 1 meets a queue of the
// one-partition layout (then nothing is written).
var checkPartitionsScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
if ARGV[1] ~= '1' and redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4]) > 0 then return '' end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
`)

// CheckPartitions records the partition count in Redis, or checks it
// against the recorded one: a store written with another count (or, for a
// count above 1, a queue written before partitions were recorded) is
// refused, since its messages would not be found where the new count looks
// for them. The check and the record are one atomic step. The error says
// how to change the count safely.
func (s *Store) CheckPartitions(ctx context.Context) error {
	n := len(s.parts)
	k := s.keys
	v, err := checkPartitionsScript.Run(ctx, s.rdb, []string{k.partitions(), k.prefix + "queue", k.prefix + "ix:all", k.prefix + "delayed"}, n).Text()
	if err != nil {
		return unavailable("check partitions", err)
	}
	switch v {
	case strconv.Itoa(n):
		return nil
	case "":
		return fmt.Errorf("%w: Redis holds a queue of 1 partition under %q but --partitions is %d; %s", ErrPartitions, k.prefix, n, drainHint)
	}
	return fmt.Errorf("%w: Redis holds a queue of %s partitions (key %s) but --partitions is %d; %s", ErrPartitions, v, k.partitions(), n, drainHint)
}

const drainHint = "start with the recorded count, or change it as the README's \"Changing the partition count\" says (drain the queue, stop every instance, delete the key, start them all with the new count)"
