package store_test

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"context"
	"sync/atomic"
	"testing"

	"github.com/wxpush/wxpush/service"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// beforeNth runs fn once, just before the n-th command (1-based) that
// goes through the client it hooks.
type beforeNth struct {
	n    int32
	seen atomic.Int32
	fn   func()
}

func (h *beforeNth) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *beforeNth) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *beforeNth) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.seen.Add(1) == h.n {
			h.fn()
		}
		return next(ctx, cmd)
	}
}

// TestReviewCheckPartitionsRaceOnAnOldQueue: two instances start at once
// with --partitions 4 on a store that holds a queue written before counts
// were recorded. The second instance's check runs while the first one's
// is under way (before its second command, if it sends one). Neither
// may start: the old
// queue's messages are under the prefix itself, where 4 partitions never
// look.
func TestReviewCheckPartitionsRaceOnAnOldQueue(t *testing.T) {
	r := redistest.New(t)
	ctx := t.Context()
	_, err := store.New(r.Client, store.Options{Prefix: r.Prefix}).Enqueue(ctx, []store.NewMessage{partMsg("old", now)})
	require.NoError(t, err)

	o, err := redis.ParseURL(r.URL)
	require.NoError(t, err)
	first := redis.NewClient(o)
	t.Cleanup(func() { _ = first.Close() })
	require.NoError(t, first.Ping(ctx).Err(), "connected: the hook counts the check's own commands")
	second := store.New(r.Client, store.Options{Prefix: r.Prefix, Partitions: 4})
	var secondErr error
	ran := false
	check := func() { secondErr, ran = second.CheckPartitions(ctx), true }
	first.AddHook(&beforeNth{n: 2, fn: check})

	firstErr := store.New(first, store.Options{Prefix: r.Prefix, Partitions: 4}).CheckPartitions(ctx)
	if !ran {
		// The first check was one command (an atomic step): the second
		// one can only come after it.
		check()
	}
	assert.ErrorIs(t, firstErr, store.ErrPartitions, "the first instance")
	assert.ErrorIs(t, secondErr, store.ErrPartitions, "the second instance, checking while the first one did")
	assert.NoError(t, store.New(r.Client, store.Options{Prefix: r.Prefix}).CheckPartitions(ctx), "one partition still starts")
}

// TestReviewSearchPagesAcrossPartitions pages through a partitioned store
// whose partitions hold runs of newest ids (batches), with a filter rare
// enough that pages end at the scan bound in the middle of some
// partitions' read-ahead, while newer
// messages keep arriving in every partition: every message older than the
// first page's newest comes exactly once, newest first, with each filter.
func TestReviewSearchPagesAcrossPartitions(t *testing.T) {
	r := redistest.New(t)
	ctx := t.Context()
	s := store.New(r.Client, store.Options{Prefix: r.Prefix, Partitions: 4, SearchScan: 100, IdempotencyTTL: time.Hour})
	var all []store.NewMessage
	// add stores n messages from the i-th on in one batch: its unkeyed
	// ones go to one partition, so partitions hold runs of newest ids.
	add := func(i, n int) {
		var batch []store.NewMessage
		for j := i; j < i+n; j++ {
			m := partMsg(fmt.Sprintf("m%d", j), now.Add(time.Duration(j)*time.Second))
			if j%3 == 0 {
				m.Request.ToUser = "oSame"
			}
			if j%25 == 0 {
				m.Request.TemplateID = "tplRare"
			}
			if j%7 == 0 {
				m.IdempotencyKey = fmt.Sprintf("key-%d", j)
			}
			batch = append(batch, m)
		}
		res, err := s.Enqueue(ctx, batch)
		require.NoError(t, err)
		for j := range batch {
			batch[j].ID = res[j].ID
		}
		all = append(all, batch...)
	}
	for i := 0; i < 600; i += 12 {
		add(i, 12)
	}
	more := 1000 // the messages that arrive while the pages are read
	for _, q := range []service.MessageQuery{
		{},
		{ToUser: "oSame"},
		{Since: now.Add(10 * time.Second), Until: now.Add(70 * time.Second)},
		{ToUser: "oSame", Since: now.Add(5 * time.Second)},
		{App: "default", Until: now.Add(410 * time.Second)},
		{TemplateID: "tplRare"},
		{TemplateID: "tplRare", Since: now.Add(100 * time.Second), Until: now.Add(500 * time.Second)},
	} {
		name := fmt.Sprintf("touser=%q template=%q since=%v until=%v", q.ToUser, q.TemplateID, !q.Since.IsZero(), !q.Until.IsZero())
		var want []string // the matching messages stored before the first page
		for _, m := range all {
			at := m.AcceptedAt
			if (q.ToUser == "" || m.Request.ToUser == q.ToUser) && (q.TemplateID == "" || m.Request.TemplateID == q.TemplateID) && (q.Since.IsZero() || !at.Before(q.Since)) && (q.Until.IsZero() || at.Before(q.Until)) {
				want = append(want, m.ID)
			}
		}
		slices.Sort(want)
		slices.Reverse(want)
		var got []string
		q.Limit = 5
		for pages := 0; ; pages++ {
			require.Less(t, pages, 1000, "%s: the cursor keeps going", name)
			page, err := s.Search(ctx, q)
			require.NoError(t, err, name)
			for _, m := range page.Messages {
				got = append(got, m.ID)
			}
			// Newer messages arrive meanwhile, in every partition.
			add(more, 3)
			more += 3
			if page.NextCursor == "" {
				break
			}
			q.Cursor = page.NextCursor
		}
		// The messages that arrived while paging are newer than the first
		// page's cursor (only the first page may show them).
		var older []string
		for _, id := range got {
			if slices.Contains(want, id) {
				older = append(older, id)
			}
		}
		assert.Equal(t, want, older, "%s: every message once, newest first", name)
		assert.True(t, slices.IsSortedFunc(got, func(a, b string) int { return strings.Compare(b, a) }), "%s: newest first", name)
	}
}

// TestReviewReportRacesTheSettleAcrossPartitions: a delivery report comes
// while its send is being recorded, on a store of 4 partitions. The
// send's Settle runs before each of the report's commands in turn (and
// after the last): whichever comes first, the report is applied exactly
// once, by ApplyDelivery or by the Settle.
func TestReviewReportRacesTheSettleAcrossPartitions(t *testing.T) {
	for k := int32(1); k <= 10; k++ {
		t.Run(fmt.Sprintf("settle before command %d", k), func(t *testing.T) {
			r := redistest.New(t)
			ctx := t.Context()
			opts := store.Options{Prefix: r.Prefix, Partitions: 4, Apps: []string{"default"}}
			s := store.New(r.Client, opts)
			e := sendingMessage(t, s, "race")

			o, err := redis.ParseURL(r.URL)
			require.NoError(t, err)
			hooked := redis.NewClient(o)
			t.Cleanup(func() { _ = hooked.Close() })
			require.NoError(t, hooked.Ping(ctx).Err())
			var settled store.Settled
			ran := false
			settle := func() {
				settled, err = s.Settle(ctx, e, store.Settlement{Kind: store.SettleSent, App: "default", ToUser: storeUser, MsgID: 91}, now)
				require.NoError(t, err)
				ran = true
			}
			hooked.AddHook(&beforeNth{n: k, fn: settle})
			res, aerr := store.New(hooked, opts).ApplyDelivery(ctx, report(91, "success", true, ""), 0)
			require.NoError(t, aerr)
			if !ran {
				settle()
			}

			byReport, bySettle := res.Outcome == store.DeliveryDelivered, settled.Early == store.DeliveryDelivered
			assert.True(t, byReport != bySettle, "applied once: by the report (%s) or by the settle (%q)", res.Outcome, settled.Early)
			m, err := s.Get(ctx, "race")
			require.NoError(t, err)
			assert.Equal(t, service.StatusDelivered, m.Status)
			reports := 0
			for _, ev := range m.History {
				if ev.Type == service.HistoryDeliveryReport {
					reports++
				}
			}
			assert.Equal(t, 1, reports, "one delivery report in the history")
			again, err := s.ApplyDelivery(ctx, report(91, "success", true, ""), 0)
			require.NoError(t, err)
			assert.Equal(t, store.DeliveryFinal, again.Outcome, "WeChat's retry of the report")
		})
	}
}

// TestReviewReadPartitionOutOfRange: a partition the store does not have
// is an error, not a panic.
func TestReviewReadPartitionOutOfRange(t *testing.T) {
	r := redistest.New(t)
	s := store.New(r.Client, store.Options{Prefix: r.Prefix, Partitions: 2})
	for _, p := range []int{-1, 2} {
		_, err := s.ReadPartition(t.Context(), p, "w", 1, -1)
		assert.Error(t, err, "partition %d", p)
	}
	_, err := s.ReadPartition(t.Context(), 1, "w", 1, -1)
	assert.NoError(t, err)
}
