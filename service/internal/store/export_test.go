package store

import "strings"

// PendingCalls tells how many Begin and Settle calls wait in their
// coalescers (every partition's), so that tests can build a batch of a
// known make-up.
func PendingCalls(s *Store) (begins, settles int) {
	for _, p := range s.parts {
		p.begins.mu.Lock()
		begins += len(p.begins.pending)
		p.begins.mu.Unlock()
		p.settles.mu.Lock()
		settles += len(p.settles.pending)
		p.settles.mu.Unlock()
	}
	return begins, settles
}

// PartitionPrefixes returns the key prefix of each of s's partitions.
func PartitionPrefixes(s *Store) []string {
	out := make([]string, len(s.parts))
	for i, p := range s.parts {
		out[i] = p.keys.prefix
	}
	return out
}

// Slot is the Redis Cluster slot of a key: its hash tag's, or without
// one the whole key's.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key)) % clusterSlots
}

// HashPart is the partition v hashes to in s.
func HashPart(s *Store, v string) int { return s.hashPart(v) }
