package conformance_test

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
	"github.com/wxpush/wxpush/service"
)

// TestIdempotency: Idempotency-Key semantics across instances.
//   - concurrent duplicates: every key is posted several times at once,
//     spread over the instances; each key yields one message id, every
//     other answer is a replay of it, and the ledger shows exactly one
//     delivery per key;
//   - replay: the same key and body answer the original status and body
//     with Idempotent-Replayed: true, from any instance; the same key with
//     another body is 409 idempotency_conflict;
//   - batch: per-item idempotency_key replays the same ids.
func TestIdempotency(t *testing.T) {
	env := conformance.New(t, conformance.Options{})
	c := conformance.NewClient(env)
	const keys, copies = 40, 4

	var mu sync.Mutex
	idsByKey := map[string]map[string]bool{}
	created, replayed, other := 0, 0, map[int]int{}
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for k := range keys {
		key := fmt.Sprintf("conf-idem-%s-%03d", env.Backend(), k)
		for cp := range copies {
			wg.Go(func() {
				<-gate
				r, err := c.Send(t.Context(), (k+cp)%env.Instances(), conformance.Order(conformance.OpenID("idem", k)), key)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Errorf("key %s: %v", key, err)
					return
				}
				a, err := r.Accepted()
				if err != nil {
					other[r.Code]++
					return
				}
				if idsByKey[key] == nil {
					idsByKey[key] = map[string]bool{}
				}
				idsByKey[key][a.ID] = true
				if r.Replayed() {
					replayed++
				} else {
					created++
				}
			})
		}
	}
	close(gate)
	wg.Wait()
	if len(other) > 0 {
		t.Errorf("concurrent duplicates: answers other than 202: %v", other)
	}
	var ids []string
	for key, set := range idsByKey {
		if len(set) != 1 {
			t.Errorf("key %s: %d message ids, want 1", key, len(set))
		}
		for id := range set {
			ids = append(ids, id)
		}
	}
	if created != keys {
		t.Errorf("concurrent duplicates: %d answers created a message, want %d (one per key); %d replayed", created, keys, replayed)
	}

	// Replay and conflict, across instances.
	key := "conf-idem-replay-" + env.Backend()
	first, err := c.Send(t.Context(), 0, conformance.Order(conformance.OpenID("idemreplay", 1)), key)
	if err != nil || first.Code != http.StatusAccepted {
		t.Fatalf("first send: %v %d %s", err, first.Code, first.Body)
	}
	a, _ := first.Accepted()
	ids = append(ids, a.ID)
	conflicts := 0
	for i := range env.Instances() {
		again, err := c.Send(t.Context(), i, conformance.Order(conformance.OpenID("idemreplay", 1)), key)
		if err != nil {
			t.Fatal(err)
		}
		if again.Code != first.Code || !bytes.Equal(bytes.TrimSpace(again.Body), bytes.TrimSpace(first.Body)) || !again.Replayed() {
			t.Errorf("instance %d: replay answered %d %s (replayed %v), want %d %s replayed", i, again.Code, again.Body, again.Replayed(), first.Code, first.Body)
		}
		changed := conformance.Order(conformance.OpenID("idemreplay", 1))
		changed.Data["thing1"] = service.DataValue{Value: "另一个礼盒"}
		conflict, err := c.Send(t.Context(), i, changed, key)
		if err != nil {
			t.Fatal(err)
		}
		if conflict.Code != http.StatusConflict || conflict.ErrorCode() != service.CodeIdempotencyConflict {
			t.Errorf("instance %d: same key, other body: %d %s, want 409 %s", i, conflict.Code, conflict.Body, service.CodeIdempotencyConflict)
		} else {
			conflicts++
		}
	}

	// Batch items with their own keys.
	batch := service.BatchRequest{}
	for i := range 3 {
		batch.Messages = append(batch.Messages, service.BatchItem{SendRequest: conformance.Order(conformance.OpenID("idembatch", i)), IdempotencyKey: fmt.Sprintf("conf-idem-batch-%s-%d", env.Backend(), i)})
	}
	var batchIDs [2][]string
	for round := range 2 {
		br, err := c.API(round%env.Instances()).SendBatch(t.Context(), batch.Messages)
		if err != nil || br.Rejected != 0 {
			t.Fatalf("batch round %d: %v %+v", round, err, br)
		}
		for _, res := range br.Results {
			batchIDs[round] = append(batchIDs[round], res.ID)
			if res.Replayed != (round == 1) {
				t.Errorf("batch round %d item %d: replayed %v", round, res.Index, res.Replayed)
			}
		}
	}
	if fmt.Sprint(batchIDs[0]) != fmt.Sprint(batchIDs[1]) {
		t.Errorf("batch replay ids %v, want %v", batchIDs[1], batchIDs[0])
	}
	ids = append(ids, batchIDs[0]...)

	if _, err := c.Await(t.Context(), ids, 60*time.Second, sent); err != nil {
		t.Fatal(err)
	}
	ledger := readLedger(t, env)
	once := checkExactlyOnce(t, ledger, ids)
	delivered := 0
	for _, s := range ledger {
		delivered += s.Delivered
	}
	if delivered != len(ids) {
		t.Errorf("the mock delivered %d messages, want %d (one per key)", delivered, len(ids))
	}
	t.Logf("idempotency [%s]: %d keys x %d concurrent copies over %d instances -> %d created, %d replayed; replay from every instance, %d conflicts (409); batch replayed %d items; %d messages delivered exactly once, %d deliveries in all",
		env.Backend(), keys, copies, env.Instances(), created, replayed, conflicts, len(batchIDs[1]), once, delivered)
}
