package store_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

func TestPartitionPrefixesSpreadOverTheSlots(t *testing.T) {
	one := store.New(nil, store.Options{Prefix: "wxp:{wxp}:"})
	assert.Equal(t, []string{"wxp:{wxp}:"}, store.PartitionPrefixes(one), "one partition: the prefix itself, as before partitions")
	// CRC-16/XMODEM's check value, and a slot redis-cli's CLUSTER KEYSLOT gives.
	assert.Equal(t, 0x31C3, store.Slot("123456789"))
	assert.Equal(t, 12182, store.Slot("foo"))
	assert.Equal(t, store.Slot("{user1000}.following"), store.Slot("{user1000}.followers"))
	for _, n := range []int{2, 3, 6, 16} {
		s := store.New(nil, store.Options{Prefix: "wxp:{wxp}:", Partitions: n})
		prefixes := store.PartitionPrefixes(s)
		require.Len(t, prefixes, n)
		for i, p := range prefixes {
			slot := store.Slot(p + "queue")
			assert.GreaterOrEqual(t, slot, i*16384/n, "partition %d of %d: %s", i, n, p)
			assert.Less(t, slot, (i+1)*16384/n, "partition %d of %d: %s", i, n, p)
			assert.Regexp(t, `^wxp:\{wxp:p`+strconv.Itoa(i)+`(\.\d+)?\}:$`, p)
		}
	}
	untagged := store.New(nil, store.Options{Prefix: "plain:", Partitions: 2})
	for _, p := range store.PartitionPrefixes(untagged) {
		assert.Regexp(t, `^plain:\{wxp:p\d(\.\d+)?\}:$`, p)
	}
}

// TestHashPartIsFNV1a: the partition of a message is its id's 32-bit
// FNV-1a (hash/fnv) modulo the count, so every instance, of every
// version, finds a message where it was written.
func TestHashPartIsFNV1a(t *testing.T) {
	for _, n := range []int{2, 3, 6, 16, 1024} {
		s := store.New(nil, store.Options{Partitions: n})
		for _, v := range []string{"", "a", "06H4N9N90G0NM09QYZKKNEV048", "order-42-shipped", "订单"} {
			h := fnv.New32a()
			_, _ = h.Write([]byte(v))
			assert.Equal(t, int(h.Sum32()%uint32(n)), store.HashPart(s, v), "%q with %d partitions", v, n)
		}
	}
}

func TestPartitionedStore(t *testing.T) {
	for _, n := range []int{1, 4} {
		t.Run("partitions="+strconv.Itoa(n), func(t *testing.T) {
			r := redistest.New(t)
			s := store.New(r.Client, store.Options{Prefix: r.Prefix, IdempotencyTTL: time.Hour, Partitions: n,
				Apps: []string{"default"}, Events: map[string]store.EventPolicy{"default": store.EventsFinal}})
			require.NoError(t, s.CheckPartitions(t.Context()))
			exercisePartitions(t, s, r.Client)
		})
	}
}

// TestPartitionsOnCluster runs the store on a real Redis Cluster of three
// masters with six partitions: every script and pipeline must keep to one
// slot (the cluster refuses CROSSSLOT), and 10,000 messages must spread
// evenly over the masters.
func TestPartitionsOnCluster(t *testing.T) {
	cl := redistest.NewCluster(t, 3)
	ctx := t.Context()
	s := store.New(cl.Client, store.Options{Prefix: "wxp:{wxp}:", IdempotencyTTL: time.Hour, Partitions: 6,
		Apps: []string{"default"}, Events: map[string]store.EventPolicy{"default": store.EventsFinal}})
	require.NoError(t, s.CheckPartitions(ctx))
	exercisePartitions(t, s, cl.Client)

	// The API's usual request: one message, a third of them with a key.
	before := keysPerMaster(t, cl.Client)
	const total = 10000
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < total; i += 16 {
				m := partMsg(fmt.Sprintf("spread-%d", i), now.Add(time.Duration(i)*time.Millisecond))
				if i%3 == 0 {
					m.IdempotencyKey = fmt.Sprintf("spread-key-%d", i)
				}
				if _, err := s.Enqueue(ctx, []store.NewMessage{m}); !assert.NoError(t, err) {
					return
				}
			}
		})
	}
	wg.Wait()
	after := keysPerMaster(t, cl.Client)
	lo, hi := int64(1<<62), int64(0)
	for addr, n := range after {
		n -= before[addr]
		lo, hi = min(lo, n), max(hi, n)
		t.Logf("master %s: %d keys for %d messages", addr, n, total)
	}
	require.Positive(t, lo, "every master holds keys")
	ratio := float64(hi) / float64(lo)
	t.Logf("keys per master, max/min: %.3f", ratio)
	assert.LessOrEqual(t, ratio, 1.3, "keys spread evenly over the masters")
}

func keysPerMaster(t *testing.T, c *redis.ClusterClient) map[string]int64 {
	t.Helper()
	var mu sync.Mutex
	out := map[string]int64{}
	require.NoError(t, c.ForEachMaster(t.Context(), func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		mu.Lock()
		out[m.Options().Addr] = n
		mu.Unlock()
		return err
	}))
	return out
}

func partMsg(key string, at time.Time) store.NewMessage {
	return store.NewMessage{
		ID: store.NewID(at), App: "default", RequestHash: "h-" + key, AcceptedAt: at,
		Request: service.SendRequest{App: "default", ToUser: "oUser-" + key, TemplateID: "tpl"},
	}
}

// exercisePartitions takes messages through every store operation that
// spans partitions and checks that the store answers as one.
func exercisePartitions(t *testing.T, s *store.Store, rdb redis.UniversalClient) {
	ctx := t.Context()
	n := s.Partitions()
	// 30 messages alone (10 with a key), then a batch of 10 (4 keyed).
	var ids []string
	for i := range 30 {
		m := partMsg(fmt.Sprintf("single-%d", i), now.Add(time.Duration(i)*time.Second))
		if i%3 == 0 {
			m.IdempotencyKey = fmt.Sprintf("key-%d", i)
		}
		res, err := s.Enqueue(ctx, []store.NewMessage{m})
		require.NoError(t, err)
		require.Equal(t, store.Created, res[0].Outcome)
		ids = append(ids, res[0].ID)
		if m.IdempotencyKey != "" {
			m.ID = store.NewID(now)
			again, err := s.Enqueue(ctx, []store.NewMessage{m})
			require.NoError(t, err)
			assert.Equal(t, store.EnqueueResult{Outcome: store.Replayed, ID: res[0].ID}, again[0], "a replay finds the first message in its key's partition")
		}
	}
	var batch []store.NewMessage
	for i := range 10 {
		m := partMsg(fmt.Sprintf("batch-%d", i), now.Add(time.Minute+time.Duration(i)*time.Second))
		if i%2 == 0 && i < 8 {
			m.IdempotencyKey = fmt.Sprintf("batch-key-%d", i)
		}
		batch = append(batch, m)
	}
	res, err := s.Enqueue(ctx, batch)
	require.NoError(t, err)
	require.Len(t, res, 10)
	for i, r := range res {
		require.Equal(t, store.Created, r.Outcome)
		assert.Equal(t, batch[i].ID[:9], r.ID[:9], "a chosen id keeps its time")
		ids = append(ids, r.ID)
	}
	// Concurrent requests with one key meet in one slot: one message.
	var wg sync.WaitGroup
	created := make(chan string, 20)
	for range 20 {
		wg.Go(func() {
			m := partMsg("racing", now.Add(2*time.Minute))
			m.IdempotencyKey = "racing-key"
			res, err := s.Enqueue(ctx, []store.NewMessage{m})
			if assert.NoError(t, err) && res[0].Outcome == store.Created {
				created <- res[0].ID
			}
		})
	}
	wg.Wait()
	close(created)
	require.Len(t, created, 1, "one of the racing requests creates the message")
	ids = append(ids, <-created)
	total := len(ids)

	for _, id := range ids {
		m, err := s.Get(ctx, id)
		require.NoError(t, err, id)
		assert.Equal(t, service.StatusQueued, m.Status)
	}
	if n > 1 {
		for _, p := range store.PartitionPrefixes(s) {
			l, err := rdb.XLen(ctx, p+"queue").Result()
			require.NoError(t, err)
			assert.Positive(t, l, "partition %s holds messages", p)
		}
	}
	st, err := s.Stats(ctx, now)
	require.NoError(t, err)
	assert.Equal(t, int64(total), st.Backlog)

	// Search: newest first across partitions, page by page.
	var found []string
	cursor := ""
	for {
		page, err := s.Search(ctx, service.MessageQuery{Limit: 7, Cursor: cursor})
		require.NoError(t, err)
		for _, m := range page.Messages {
			found = append(found, m.ID)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	want := slices.Clone(ids)
	slices.Sort(want)
	slices.Reverse(want)
	assert.Equal(t, want, found, "every message once, newest first")
	page, err := s.Search(ctx, service.MessageQuery{ToUser: "oUser-single-4"})
	require.NoError(t, err)
	require.Len(t, page.Messages, 1)
	assert.Equal(t, ids[4], page.Messages[0].ID)

	// Read every entry: Read sweeps the partitions; ReadPartition reads one.
	var entries []store.Entry
	got, err := s.ReadPartition(ctx, n-1, "c1", 5, -1)
	require.NoError(t, err)
	entries = append(entries, got...)
	for len(entries) < total {
		got, err := s.Read(ctx, "c1", 16, -1)
		require.NoError(t, err)
		require.NotEmpty(t, got, "read %d of %d", len(entries), total)
		entries = append(entries, got...)
	}
	got, err = s.Read(ctx, "c1", 16, 10*time.Millisecond)
	require.NoError(t, err)
	require.Empty(t, got)

	// A report that comes before the send is recorded waits for it, in
	// whichever partition the message is.
	early := entries[0]
	earlyRec, err := s.Load(ctx, early.MessageID)
	require.NoError(t, err)
	rep := store.DeliveryReport{App: "default", MsgID: 900000, Status: "success", Delivered: true, OpenID: earlyRec.ToUser, ReceivedAt: now}
	dr, err := s.ApplyDelivery(ctx, rep, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, store.DeliveryParked, dr.Outcome)

	// Send all but the last four, which fail.
	for i, e := range entries {
		rec, attempt, err := s.Begin(ctx, e.MessageID, now, store.Guard{})
		require.NoError(t, err)
		require.Equal(t, 1, attempt)
		stl := store.Settlement{Kind: store.SettleSent, App: "default", ToUser: rec.ToUser, MsgID: 900000 + int64(i), Attempt: attempt}
		if i >= total-4 {
			stl = store.Settlement{Kind: store.SettleFail, App: "default", Reason: "invalid_openid", Attempt: attempt, HasErr: true, ErrCode: 40003}
		}
		settled, err := s.Settle(ctx, e, stl, now)
		require.NoError(t, err)
		if i == 0 {
			assert.Equal(t, store.DeliveryDelivered, settled.Early, "the parked report is applied with the send")
		}
	}
	for i, e := range entries[1:4] {
		rec, err := s.Load(ctx, e.MessageID)
		require.NoError(t, err)
		id, err := s.MessageByMsgID(ctx, "default", 900001+int64(i))
		require.NoError(t, err)
		assert.Equal(t, e.MessageID, id)
		dr, err := s.ApplyDelivery(ctx, store.DeliveryReport{App: "default", MsgID: 900001 + int64(i), Status: "success", Delivered: true, OpenID: rec.ToUser, ReceivedAt: now}, time.Hour)
		require.NoError(t, err)
		assert.Equal(t, store.DeliveryDelivered, dr.Outcome)
		assert.Equal(t, e.MessageID, dr.MessageID)
	}
	st, err = s.Stats(ctx, now)
	require.NoError(t, err)
	assert.Equal(t, store.QueueStats{}, st, "every entry acknowledged")
	dead, err := s.DeadLetters(ctx, 100)
	require.NoError(t, err)
	assert.Len(t, dead, 4)
	failed, err := s.Search(ctx, service.MessageQuery{Status: service.StatusFailed})
	require.NoError(t, err)
	assert.Len(t, failed.Messages, 4)
	m, err := s.Redrive(ctx, failed.Messages[0].ID, false, "req-redrive", now)
	require.NoError(t, err)
	assert.Equal(t, service.StatusQueued, m.Status)
	st, err = s.Stats(ctx, now)
	require.NoError(t, err)
	assert.Equal(t, int64(1), st.Backlog, "the redriven message is queued in its partition")

	// Enqueue and reports count in the minute they happen, settles in the
	// one they are given.
	var accepted, sent, delivered int64
	for _, at := range []time.Time{time.Now(), now} {
		counts, err := s.Counts(ctx, at.Add(-time.Minute), at.Add(time.Minute))
		require.NoError(t, err)
		for _, c := range counts {
			accepted, sent, delivered = accepted+c.Accepted, sent+c.Sent, delivered+c.Delivered
		}
	}
	assert.Equal(t, int64(total), accepted)
	assert.Equal(t, int64(total-4), sent)
	assert.Equal(t, int64(4), delivered)
	events, err := s.PendingEvents(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(8), events, "4 delivered, 4 failed: the final-status events of every partition")
	claimed, err := s.ClaimEvents(ctx, time.Now(), time.Minute, 100)
	require.NoError(t, err)
	assert.Len(t, claimed, 8)
	for _, id := range claimed {
		require.NoError(t, s.AckEvent(ctx, id))
	}
	events, err = s.PendingEvents(ctx)
	require.NoError(t, err)
	assert.Zero(t, events)

	// A pause reaches every partition; a resume ends it in every one.
	started, err := s.PauseApp(ctx, "default", store.Pause{Reason: "app_error", Rank: 3, ErrCode: 40164}, time.Now())
	require.NoError(t, err)
	assert.True(t, started)
	fr, err := s.Feed(ctx, "default", store.Rate{}, time.Second, 100, "20261123")
	require.NoError(t, err)
	assert.True(t, fr.Paused)
	assert.Equal(t, int64(total-4), fr.QuotaUsed, "the partitions' quota-day counters add up")
	as, err := s.ReadAppState(ctx, "default", "20261123", time.Now())
	require.NoError(t, err)
	assert.True(t, as.Pause.Paused)
	assert.Equal(t, int64(total-4), as.QuotaUsed)
	reason, err := s.ResumeApp(ctx, "default")
	require.NoError(t, err)
	assert.Equal(t, "app_error", reason)
	fr, err = s.Feed(ctx, "default", store.Rate{}, time.Second, 100, "20261123")
	require.NoError(t, err)
	assert.False(t, fr.Paused, "no partition is still paused")
}

func TestCheckPartitionsRefusesAChangedCount(t *testing.T) {
	r := redistest.New(t)
	ctx := t.Context()
	newStore := func(n int) *store.Store {
		return store.New(r.Client, store.Options{Prefix: r.Prefix, Partitions: n})
	}
	require.NoError(t, newStore(4).CheckPartitions(ctx))
	require.NoError(t, newStore(4).CheckPartitions(ctx), "the same count starts again")
	for _, n := range []int{1, 2, 8} {
		err := newStore(n).CheckPartitions(ctx)
		require.ErrorIs(t, err, store.ErrPartitions, "partitions=%d", n)
		assert.Contains(t, err.Error(), "holds a queue of 4 partitions")
		assert.Contains(t, err.Error(), "--partitions is "+strconv.Itoa(n))
		assert.Contains(t, err.Error(), "Changing the partition count")
	}
	// The record does not expire: a start a month later with another
	// count is refused as well.
	ttl, err := r.Client.TTL(ctx, r.Prefix+"partitions").Result()
	require.NoError(t, err)
	assert.Equal(t, time.Duration(-1), ttl, "the count is kept without expiry")
	if r.Mini != nil {
		r.Mini.FastForward(31 * 24 * time.Hour)
		require.ErrorIs(t, newStore(2).CheckPartitions(ctx), store.ErrPartitions, "a month on")
	}

	// A store written before the count was recorded has one partition.
	old := strings.Replace(r.Prefix, "{", "old:{", 1)
	one := store.New(r.Client, store.Options{Prefix: old})
	_, err = one.Enqueue(ctx, []store.NewMessage{partMsg("old", now)})
	require.NoError(t, err)
	err = store.New(r.Client, store.Options{Prefix: old, Partitions: 3}).CheckPartitions(ctx)
	require.ErrorIs(t, err, store.ErrPartitions)
	assert.Contains(t, err.Error(), "a queue of 1 partition")
	require.NoError(t, one.CheckPartitions(ctx), "the refusal recorded nothing: one partition still starts")
	err = store.New(r.Client, store.Options{Prefix: old, Partitions: 3}).CheckPartitions(ctx)
	require.ErrorIs(t, err, store.ErrPartitions)
}

// TestMsgIDLookupReportsALaterPartitionsError: a partition without the
// msgid (redis.Nil) must not hide another partition's error as "not
// found".
func TestMsgIDLookupReportsALaterPartitionsError(t *testing.T) {
	r := redistest.New(t)
	s := store.New(r.Client, store.Options{Prefix: r.Prefix, Partitions: 2})
	last := store.PartitionPrefixes(s)[1]
	require.NoError(t, r.Client.HSet(t.Context(), last+"msgid:default:77", "not", "a string").Err())
	_, err := s.MessageByMsgID(t.Context(), "default", 77)
	require.ErrorIs(t, err, store.ErrUnavailable)
	assert.NotErrorIs(t, err, store.ErrNotFound)
	_, err = s.MessageByMsgID(t.Context(), "default", 78)
	assert.ErrorIs(t, err, store.ErrNotFound, "absent from every partition")
}
