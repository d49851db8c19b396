package store

// PendingCalls tells how many Begin and Settle calls wait in their
// coalescers, so that tests can build a batch of a known make-up.
func PendingCalls(s *Store) (begins, settles int) {
	s.begins.mu.Lock()
	begins = len(s.begins.pending)
	s.begins.mu.Unlock()
	s.settles.mu.Lock()
	settles = len(s.settles.pending)
	s.settles.mu.Unlock()
	return begins, settles
}
