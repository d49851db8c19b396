package worker

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

const followerUser = "oUser-follower-000001"

// TestNotFollowing: a 43004 marks the user as not following; the next
// message to them fails as not_following without calling WeChat (and
// without spending an attempt), unless the follower check is off; a
// newer subscribe push lets messages through again.
func TestNotFollowing(t *testing.T) {
	for _, check := range []bool{true, false} {
		t.Run(map[bool]string{true: "check on", false: "check off"}[check], func(t *testing.T) {
			r := redistest.New(t)
			q := store.New(r.Client, store.Options{Prefix: r.Prefix})
			ctx := t.Context()
			require.NoError(t, q.EnsureGroup(ctx))
			t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
			clock := &fakeClock{t: t0}
			sender := &scriptedSender{errs: []error{&wechat.Error{API: wechat.APITemplateSend, Code: wechat.CodeRequireSubscribe, Msg: "require subscribe"}}}
			m := metrics.New()
			w, err := New(q, fixedTokens{}, sender, Options{Consumer: "test", Now: clock.Now, Metrics: m,
				Apps: []*apps.App{{Name: "default", FollowerCheck: check}}})
			require.NoError(t, err)
			send := func(id string) *service.Message {
				t.Helper()
				_, err := q.Enqueue(ctx, []store.NewMessage{{ID: id, App: "default", AcceptedAt: clock.Now(), Request: service.SendRequest{App: "default",
					ToUser: followerUser, TemplateID: "tpl", Data: map[string]service.DataValue{"thing1": {Value: "v"}}}}})
				require.NoError(t, err)
				entries, err := q.Read(ctx, "test", 1, time.Second)
				require.NoError(t, err)
				require.Len(t, entries, 1)
				w.process(ctx, entries[0])
				msg, err := q.Get(ctx, id)
				require.NoError(t, err)
				return msg
			}

			first := send("m1")
			require.Equal(t, service.StatusFailed, first.Status)
			require.Equal(t, service.ReasonPermanentErrcode, first.Reason, "WeChat's own 43004")
			require.Equal(t, 1, sender.calls)
			f, err := q.ReadFollower(ctx, "default", followerUser)
			require.NoError(t, err)
			require.True(t, f.Known)
			require.False(t, f.Following)
			require.Equal(t, store.SourceErrcode, f.Source)

			clock.Set(t0.Add(time.Minute))
			second := send("m2")
			var d dto.Metric
			require.NoError(t, m.SendsSkipped.WithLabelValues("default", service.ReasonNotFollowing).Write(&d))
			skipped := d.GetCounter().GetValue()
			if !check {
				require.Equal(t, 2, sender.calls, "check off: sent anyway")
				require.Equal(t, service.StatusSent, second.Status)
				require.Zero(t, skipped)
				return
			}
			require.Equal(t, 1, sender.calls, "no call to WeChat for a user known not to follow")
			require.Equal(t, service.StatusFailed, second.Status)
			require.Equal(t, service.ReasonNotFollowing, second.Reason)
			require.Zero(t, second.Attempts, "no attempt was spent")
			require.Equal(t, 1.0, skipped)

			// A subscribe newer than the 43004 clears it.
			_, err = q.RecordPush(ctx, store.Push{App: "default", DedupKey: "sub", QueryID: "q", BodySum: "b", OpenID: followerUser,
				CreateTime: t0.Add(30 * time.Second).Unix(), Type: "subscribe", Follow: store.FollowSubscribe}, time.Hour, time.Hour)
			require.NoError(t, err)
			third := send("m3")
			require.Equal(t, service.StatusSent, third.Status)
			require.Equal(t, 2, sender.calls)
		})
	}
}
