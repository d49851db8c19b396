package worker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// scriptedSender answers the sends in turn with its errors (nil: accepted
// with msgid 4242), then accepts every send.
type scriptedSender struct {
	mu    sync.Mutex
	errs  []error
	calls int
}

func (s *scriptedSender) SendTemplate(context.Context, wechat.Secret, *wechat.TemplateMessage) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.calls
	s.calls++
	if i < len(s.errs) && s.errs[i] != nil {
		return 0, s.errs[i]
	}
	return 4242, nil
}

func (s *scriptedSender) script(errs ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs[:s.calls:s.calls], errs...)
}

// fakeClock is the workers' clock, moved by the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// syncBuffer is a log sink for several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// resendWindow is the default one: WeChat's 10 minutes less the margin of
// the default 10 s send timeout (10 s + 60 s).
const resendWindow = 8*time.Minute + 50*time.Second

// step is one processing of the message at t0+at: an attempt answered
// with err (nil: accepted), or (died) a worker that began the attempt and
// never settled it.
type step struct {
	at   time.Duration
	errs []error // the sends of the step (two after a stale token)
	died bool
}

// TestResendOnlyInsideTheDedupWindow: a message whose attempt may have
// reached WeChat (lost answer, 5xx, garbled answer, a worker that died
// mid-send) is resent up to the resend window's last millisecond after
// that attempt began, and from then on not at all: it ends
// failed/unconfirmed, in the dead-letter stream, counted under
// wxpush_messages_failed_total{reason="unconfirmed"}, with an ERROR line
// that names it. Definitive answers (45009, 45011, 40001, -1) alone never
// start the window: such a message is sent however late.
func TestResendOnlyInsideTheDedupWindow(t *testing.T) {
	timeout := &wechat.CallError{API: wechat.APITemplateSend, Kind: wechat.CallTimeout, Err: context.DeadlineExceeded}
	reset := &wechat.CallError{API: wechat.APITemplateSend, Kind: wechat.CallTransport, Err: errors.New("connection reset by peer")}
	http502 := &wechat.CallError{API: wechat.APITemplateSend, Kind: wechat.CallHTTPStatus, StatusCode: 502}
	empty := &wechat.CallError{API: wechat.APITemplateSend, Kind: wechat.CallMalformed, Err: errors.New("empty response body")}
	code := func(c int) error {
		return &wechat.Error{API: wechat.APITemplateSend, Code: c, Msg: wechat.Lookup(c).ErrMsg}
	}
	late := resendWindow + time.Hour
	tests := []struct {
		name    string
		steps   []step
		refused bool // the last step is refused: failed/unconfirmed
		sends   int  // sends made in all
	}{
		{"timeout, resend at window-1ms", []step{{0, []error{timeout}, false}, {resendWindow - time.Millisecond, nil, false}}, false, 2},
		{"timeout, resend at window", []step{{0, []error{timeout}, false}, {resendWindow, nil, false}}, true, 1},
		{"reset, resend at window", []step{{0, []error{reset}, false}, {resendWindow, nil, false}}, true, 1},
		{"HTTP 502, resend at window", []step{{0, []error{http502}, false}, {resendWindow, nil, false}}, true, 1},
		{"empty answer, resend at window", []step{{0, []error{empty}, false}, {resendWindow, nil, false}}, true, 1},
		{"stale token then timeout, resend at window", []step{{0, []error{code(40001), timeout}, false}, {resendWindow, nil, false}}, true, 2},
		{"worker died mid-send, resend at window-1ms", []step{{0, nil, true}, {resendWindow - time.Millisecond, nil, false}}, false, 1},
		{"worker died mid-send, resend at window", []step{{0, nil, true}, {resendWindow, nil, false}}, true, 0},
		{"timeout, then 45009 a minute later, resend at window", []step{{0, []error{timeout}, false}, {time.Minute, []error{code(45009)}, false}, {resendWindow, nil, false}}, true, 2},
		{"45009 alone, resend an hour past the window", []step{{0, []error{code(45009)}, false}, {late, nil, false}}, false, 2},
		{"45011 alone, resend an hour past the window", []step{{0, []error{code(45011)}, false}, {late, nil, false}}, false, 2},
		{"40001 twice, resend an hour past the window", []step{{0, []error{code(40001), code(40001)}, false}, {late, nil, false}}, false, 3},
		{"-1 alone, resend an hour past the window", []step{{0, []error{code(-1)}, false}, {late, nil, false}}, false, 2},
		{"HTTP 404 alone, resend an hour past the window", []step{{0, []error{&wechat.CallError{API: wechat.APITemplateSend, Kind: wechat.CallHTTPStatus, StatusCode: 404}}, false}, {late, nil, false}}, false, 2},
	}
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := redistest.New(t)
			q := store.New(r.Client, store.Options{Prefix: r.Prefix})
			ctx := t.Context()
			require.NoError(t, q.EnsureGroup(ctx))
			const id, secret = "dedup-1", "content-that-must-not-be-logged"
			_, err := q.Enqueue(ctx, []store.NewMessage{{
				ID: id, App: "default", AcceptedAt: t0,
				Request: service.SendRequest{App: "default", ToUser: "oUser-worker-000001", TemplateID: "tpl",
					Data: map[string]service.DataValue{"thing1": {Value: secret}}},
			}})
			require.NoError(t, err)
			entries, err := q.Read(ctx, "test", 1, time.Second)
			require.NoError(t, err)
			require.Len(t, entries, 1)

			clock := &fakeClock{t: t0}
			sender := &scriptedSender{}
			m := metrics.New()
			var logs syncBuffer
			for i, s := range tt.steps {
				clock.Set(t0.Add(s.at))
				if s.died {
					_, n, err := q.Begin(ctx, id, clock.Now(), store.Guard{Window: resendWindow})
					require.NoError(t, err)
					require.Positive(t, n)
					continue
				}
				sender.script(s.errs...)
				// A new worker each time: another instance, with no view of
				// a pause the previous one started.
				w, err := New(q, fixedTokens{}, sender, Options{Consumer: "test", Metrics: m, Now: clock.Now,
					Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
				require.NoError(t, err)
				e := entries[0]
				if i > 0 {
					e = store.Entry{StreamID: "0-1", MessageID: id, Due: clock.Now()}
				}
				w.process(ctx, e)
			}

			rec, err := q.Get(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, tt.sends, sender.calls, "sends made")
			failed := counterValue(t, m, "default", service.ReasonUnconfirmed)
			dead, err := q.DeadLetters(ctx, 10)
			require.NoError(t, err)
			if !tt.refused {
				assert.Equal(t, service.StatusSent, rec.Status, "the resend was made: %+v", rec)
				assert.Zero(t, failed)
				assert.Empty(t, dead)
				return
			}
			assert.Equal(t, service.StatusFailed, rec.Status, "not resent: %+v", rec)
			assert.Equal(t, service.ReasonUnconfirmed, rec.Reason)
			assert.Equal(t, 1.0, failed, `wxpush_messages_failed_total{reason="unconfirmed"}`)
			if assert.Len(t, dead, 1) {
				assert.Equal(t, id, dead[0]["id"])
				assert.Equal(t, service.ReasonUnconfirmed, dead[0]["reason"])
			}
			var line string
			for l := range strings.SplitSeq(logs.String(), "\n") {
				if strings.Contains(l, "level=ERROR") && strings.Contains(l, "unconfirmed") {
					line = l
				}
			}
			assert.Contains(t, line, "id="+id, "an ERROR line names the message: %s", logs.String())
			assert.NotContains(t, logs.String(), secret, "never its content")
		})
	}
}

// TestHoldKeepsResendsInsideTheWindow: after an attempt with an unknown
// outcome, a retry's backoff ends before the resend window does, a pause
// that outlasts the window does not park the message (it is retried at
// the window's last moment instead), a short pause parks it as usual, and
// a message with no time left fails as unconfirmed at once.
func TestHoldKeepsResendsInsideTheWindow(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) // 20:00 in Shanghai: 45009 pauses 4 h
	w := newTestWorker(t, now)                            // backoff up to 1 s
	log := slog.New(slog.DiscardHandler)
	entry := store.Entry{MessageID: "m1", Due: now.Add(-time.Hour)}
	timeout := &wechat.CallError{API: wechat.APITemplateSend, Kind: wechat.CallTimeout, Err: context.DeadlineExceeded}
	code := func(c int) error { return &wechat.Error{API: wechat.APITemplateSend, Code: c, Msg: "x"} }
	last := func(amb time.Time) time.Time { return amb.Add(resendWindow - w.resendSlack()) }
	tests := []struct {
		name  string
		amb   time.Duration // the unknown outcome's age
		err   error
		kind  store.SettleKind
		due   time.Time // exact; zero: a jittered backoff within 1 s
		cause string
	}{
		{"no ambiguity: backoff", 0, timeout, store.SettleRetry, time.Time{}, ""},
		{"backoff capped at the window's end", resendWindow - w.resendSlack() - time.Millisecond, timeout, store.SettleRetry, time.Time{}, ""},
		{"no time left: unconfirmed now", resendWindow - w.resendSlack(), code(-1), store.SettleFail, time.Time{}, service.ReasonUnconfirmed},
		{"45009 outlasts the window: retried at its end", time.Minute, code(45009), store.SettleRetry, last(now.Add(-time.Minute)), ""},
		{"45011 ends inside the window: parked", time.Minute, code(45011), store.SettlePark, time.Time{}, ""},
		{"45011 ends after the window: retried at its end", 8 * time.Minute, code(45011), store.SettleRetry, last(now.Add(-8 * time.Minute)), ""},
		{"app stopped: retried at the window's end", time.Minute, code(40164), store.SettleRetry, last(now.Add(-time.Minute)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &store.Record{Message: service.Message{ID: "m1", App: "default"}}
			if tt.amb > 0 {
				rec.AmbiguousAt = now.Add(-tt.amb)
			}
			got, _ := w.decide(log, rec, w.app("default"), entry, 1, 0, tt.err)
			assert.Equal(t, tt.kind, got.Kind)
			assert.Equal(t, tt.cause, got.Reason)
			switch {
			case tt.kind != store.SettleRetry:
				assert.True(t, got.Due.IsZero(), "due %v", got.Due)
			case !tt.due.IsZero():
				assert.True(t, got.Due.Equal(tt.due), "due %v, want %v", got.Due, tt.due)
			default:
				bound := now.Add(time.Second) // the backoff's bound
				if tt.amb > 0 && last(rec.AmbiguousAt).Before(bound) {
					bound = last(rec.AmbiguousAt)
				}
				assert.True(t, got.Due.After(now) && !got.Due.After(bound), "jittered due %v, want in (%v, %v]", got.Due, now, bound)
			}
		})
	}
}

// TestResendGoesThroughAPause: a message that may have reached the user
// is resent inside the window even while its app is paused (held behind
// the pause it could only fail as unconfirmed), while another message of
// the app, with nothing ambiguous about it, waits for the pause to end.
func TestResendGoesThroughAPause(t *testing.T) {
	r := redistest.New(t)
	q := store.New(r.Client, store.Options{Prefix: r.Prefix})
	ctx := t.Context()
	require.NoError(t, q.EnsureGroup(ctx))
	// An app-level errcode pauses the app until an operator resumes it
	// (pacing runs on Redis's clock, not the test's).
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	msg := func(id string) store.NewMessage {
		return store.NewMessage{ID: id, App: "default", AcceptedAt: t0, Request: service.SendRequest{App: "default",
			ToUser: "oUser-worker-000001", TemplateID: "tpl", Data: map[string]service.DataValue{"thing1": {Value: "v"}}}}
	}
	_, err := q.Enqueue(ctx, []store.NewMessage{msg("lost"), msg("other")})
	require.NoError(t, err)
	entries, err := q.Read(ctx, "test", 2, time.Second)
	require.NoError(t, err)
	require.Len(t, entries, 2)

	clock := &fakeClock{t: t0}
	timeout := &wechat.CallError{API: wechat.APITemplateSend, Kind: wechat.CallTimeout, Err: context.DeadlineExceeded}
	sender := &scriptedSender{errs: []error{timeout, &wechat.Error{API: wechat.APITemplateSend, Code: wechat.CodeIPNotWhitelisted}}}
	w, err := New(q, fixedTokens{}, sender, Options{Consumer: "test", Now: clock.Now, Apps: []*apps.App{{Name: "default"}}})
	require.NoError(t, err)
	w.process(ctx, entries[0]) // the answer is lost
	clock.Set(t0.Add(time.Minute))
	w.process(ctx, store.Entry{StreamID: "0-1", MessageID: "lost", Due: clock.Now()}) // 40164: the app pauses
	require.True(t, w.app("default").paused(), "40164 paused the app")
	require.Equal(t, 2, sender.calls)

	clock.Set(t0.Add(resendWindow - time.Second))
	w.process(ctx, entries[1])
	w.process(ctx, store.Entry{StreamID: "0-2", MessageID: "lost", Due: clock.Now()})
	assert.Equal(t, 3, sender.calls, "only the message that may have reached the user is sent during the pause")
	lost, err := q.Get(ctx, "lost")
	require.NoError(t, err)
	assert.Equal(t, service.StatusSent, lost.Status)
	other, err := q.Get(ctx, "other")
	require.NoError(t, err)
	assert.Equal(t, service.StatusQueued, other.Status, "the other message waits for the pause to end")
}

// stallTokens' Token blocks until release: a slow token fetch, lock
// contention during a token endpoint outage, or a frozen process.
type stallTokens struct{ entered, release chan struct{} }

func (s stallTokens) Token(context.Context, string) (wechat.Secret, error) {
	close(s.entered)
	<-s.release
	return "tok", nil
}
func (stallTokens) Invalidate(context.Context, string, wechat.Secret) (bool, error) {
	return false, nil
}

// clockedSender records the (fake) time of each send.
type clockedSender struct {
	mu    sync.Mutex
	clock *fakeClock
	at    []time.Time
}

func (s *clockedSender) SendTemplate(context.Context, wechat.Secret, *wechat.TemplateMessage) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at = append(s.at, s.clock.Now())
	return 4242, nil
}

// oneMessage stores message "m", accepted at t0, and reads it for consumer
// "a".
func oneMessage(t *testing.T, t0 time.Time) (*store.Store, []store.Entry) {
	t.Helper()
	r := redistest.New(t)
	q := store.New(r.Client, store.Options{Prefix: r.Prefix})
	require.NoError(t, q.EnsureGroup(t.Context()))
	_, err := q.Enqueue(t.Context(), []store.NewMessage{{ID: "m", App: "default", AcceptedAt: t0,
		Request: service.SendRequest{App: "default", ToUser: "oU", TemplateID: "tpl", Data: map[string]service.DataValue{"thing1": {Value: "v"}}}}})
	require.NoError(t, err)
	entries, err := q.Read(t.Context(), "a", 1, time.Second)
	require.NoError(t, err)
	return q, entries
}

// TestStalledAttemptSendsNothingPastTheWindow: worker A counts its attempt
// and stalls before its send (in the token fetch); worker B takes the
// message over after the visibility timeout and sends it; A wakes up past
// WeChat's dedup window of B's send and must not send again.
func TestStalledAttemptSendsNothingPastTheWindow(t *testing.T) {
	ctx := t.Context()
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	q, entries := oneMessage(t, t0)
	clock := &fakeClock{t: t0}
	sender := &clockedSender{clock: clock}
	stall := stallTokens{make(chan struct{}), make(chan struct{})}
	m := metrics.New()
	a, err := New(q, stall, sender, Options{Consumer: "a", Metrics: m, Now: clock.Now})
	require.NoError(t, err)
	b, err := New(q, fixedTokens{}, sender, Options{Consumer: "b", Metrics: m, Now: clock.Now})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { a.process(ctx, entries[0]); close(done) }()
	<-stall.entered
	clock.Set(t0.Add(time.Minute)) // past the visibility timeout: B takes over
	b.process(ctx, store.Entry{StreamID: entries[0].StreamID, MessageID: "m", Due: clock.Now()})
	clock.Set(t0.Add(12 * time.Minute)) // A wakes up
	close(stall.release)
	<-done
	rec, err := q.Get(ctx, "m")
	require.NoError(t, err)
	assert.Equal(t, []time.Time{t0.Add(time.Minute)}, sender.at, "one send, B's")
	assert.Equal(t, service.StatusSent, rec.Status)
}

// slowSender answers after delay (real time), or with the context's error
// when the context ends first, as an HTTP client does.
type slowSender struct{ delay time.Duration }

func (s slowSender) SendTemplate(ctx context.Context, _ wechat.Secret, _ *wechat.TemplateMessage) (int64, error) {
	select {
	case <-time.After(s.delay):
		return 4242, nil
	case <-ctx.Done():
		return 0, &wechat.CallError{API: wechat.APITemplateSend, Kind: wechat.CallTimeout, Err: ctx.Err()}
	}
}

// TestResendBegunInTimeMayFinish: the resend window bounds when a resend
// may begin, not how long it may take (the margin holds a whole send
// timeout). A resend begun 100 ms before the window closes whose answer
// takes 400 ms is sent, not cut off into failed/unconfirmed.
func TestResendBegunInTimeMayFinish(t *testing.T) {
	ctx := t.Context()
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	q, entries := oneMessage(t, t0)
	clock := &fakeClock{t: t0}
	m := metrics.New()
	first := &scriptedSender{errs: []error{&wechat.CallError{API: wechat.APITemplateSend, Kind: wechat.CallTimeout, Err: context.DeadlineExceeded}}}
	a, err := New(q, fixedTokens{}, first, Options{Consumer: "a", Metrics: m, Now: clock.Now})
	require.NoError(t, err)
	a.process(ctx, entries[0])

	clock.Set(t0.Add(resendWindow - 100*time.Millisecond))
	b, err := New(q, fixedTokens{}, slowSender{400 * time.Millisecond}, Options{Consumer: "b", Metrics: m, Now: clock.Now})
	require.NoError(t, err)
	b.process(ctx, store.Entry{StreamID: "0-1", MessageID: "m", Due: clock.Now()})
	rec, err := q.Get(ctx, "m")
	require.NoError(t, err)
	assert.Equal(t, service.StatusSent, rec.Status, "%+v", rec)
	assert.Zero(t, counterValue(t, m, "default", service.ReasonUnconfirmed))
}
