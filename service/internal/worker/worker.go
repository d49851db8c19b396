// Package worker is wxpushd's send pipeline: it takes messages from the
// Redis queue, sends them to WeChat with the app's shared access token and
// a client_msg_id equal to the message id (the same on every attempt, so a
// resend after a lost answer never reaches the user twice), classifies the
// outcome with internal/wechat's taxonomy, and settles it: sent, retry
// later (full-jitter backoff), or failed to the dead-letter stream.
//
// Every instance runs a Worker on the same consumer group. Entries a dead
// worker received but never acknowledged are reclaimed after the
// visibility timeout; due retries are moved back to the stream by whichever
// instance gets there first.
//
// Pacing is shared by all instances through Redis (see store's pacing.go):
// before a send the worker admits the message — a paused app's message is
// parked in the app's wait set in order of due time, a rate-limited app's
// message waits for its GCRA slot (at most Options.SlotWait, else it is
// queued in the wait set) — so a paused or saturated app holds no worker
// and never delays another app. A feeder in every instance moves waiting
// messages back to the queue as the app's rate and pause allow. 45011
// pauses the app for Options.PaceDelay, 45009 until its quota reset, an
// app-level errcode until an operator resumes it; none of them spends an
// attempt or fails a message.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/pacing"
	"github.com/wxpush/wxpush/service/internal/store"
)

// Queue is what the worker needs from the store.
type Queue interface {
	Partitions() int
	ReadPartition(ctx context.Context, p int, consumer string, count int, block time.Duration) ([]store.Entry, error)
	Reclaim(ctx context.Context, consumer string, minIdle time.Duration, count int) ([]store.Entry, error)
	Load(ctx context.Context, id string) (*store.Record, error)
	MarkSending(ctx context.Context, id string, now time.Time, g store.Guard) (int, time.Time, error)
	Begin(ctx context.Context, id string, now time.Time, g store.Guard) (*store.Record, int, error)
	Settle(ctx context.Context, e store.Entry, st store.Settlement, now time.Time) (store.Settled, error)
	MoveDue(ctx context.Context, now time.Time, limit int) (int, error)
	Release(ctx context.Context, e store.Entry) error
	EnsureGroup(ctx context.Context) error
	Admit(ctx context.Context, e store.Entry, app string, rate store.Rate, maxWait, grace time.Duration) (store.Admission, error)
	Feed(ctx context.Context, app string, rate store.Rate, horizon time.Duration, limit int, quotaDay string) (store.FeedResult, error)
	PauseApp(ctx context.Context, app string, p store.Pause, now time.Time) (bool, error)
	ResumeApp(ctx context.Context, app string) (string, error)
	NotFollowing(ctx context.Context, app, openid string) (bool, error)
	MarkNotFollowing(ctx context.Context, app, openid string, at time.Time) error
}

// Tokens hands out the apps' shared access tokens.
type Tokens interface {
	Token(ctx context.Context, app string) (wechat.Secret, error)
	Invalidate(ctx context.Context, app string, bad wechat.Secret) (bool, error)
}

// Sender sends one template message to WeChat.
type Sender interface {
	SendTemplate(ctx context.Context, token wechat.Secret, msg *wechat.TemplateMessage) (int64, error)
}

var (
	_ Queue  = (*store.Store)(nil)
	_ Sender = (*wechat.Client)(nil)
)

// Options tune a Worker. Zero values take the defaults shown.
type Options struct {
	Consumer     string        // this instance's consumer name (required)
	Concurrency  int           // sends at once in this instance (default 16)
	MaxAttempts  int           // send attempts before attempts_exhausted (default 8)
	BackoffBase  time.Duration // first retry delay bound (default 1 s)
	BackoffCap   time.Duration // largest retry delay bound (default 5 min)
	SendTimeout  time.Duration // one WeChat call (default 10 s)
	Visibility   time.Duration // reclaim entries unacknowledged this long (default 60 s; > SendTimeout + token wait)
	ReclaimEvery time.Duration // default min(5 s, Visibility/2)
	MoveEvery    time.Duration // how often due retries are moved (default 250 ms)
	// PaceDelay is how long 45011 pauses the app, across instances
	// (default 60 s).
	PaceDelay time.Duration
	// QuotaDelay is the probe interval of an app paused by 45009 (or by
	// the token budget): one waiting message is sent this often to see
	// whether the quota came back (an operator's clear_quota); default
	// 5 min, negative: no probe (the pause lasts until the quota reset or
	// an operator resumes the app).
	QuotaDelay time.Duration
	// AppDelay, when positive, is the probe interval of an app paused by an
	// app-level errcode; default 0: only an operator resumes it.
	AppDelay time.Duration
	// Apps are the apps' settings (Rate, Reset, FollowerCheck); an app
	// not listed is not rate limited, resets at midnight Asia/Shanghai
	// and has no follower check.
	Apps []*apps.App
	// FeedEvery is how often this instance moves waiting messages back to
	// the queue (default 100 ms).
	FeedEvery time.Duration
	// SlotWait is the longest a worker waits for a rate slot before it
	// queues the message in the wait set instead; it is also how far
	// ahead the feeder reserves slots (default 300 ms).
	SlotWait time.Duration
	// SlotGrace is how late a message may still use the slot the feeder
	// reserved for it (default 100 ms).
	SlotGrace time.Duration
	Drain     time.Duration // on shutdown, how long in-flight sends may finish (default 10 s)
	Now       func() time.Time
	Logger    *slog.Logger
	Metrics   *metrics.Metrics
	Rand      *rand.Rand // jitter; nil: a time-seeded source

	// DedupWindow is how long WeChat drops a resend with the same
	// client_msg_id (default 10 min). After an attempt whose outcome is
	// unknown (WeChat may have sent the message), a resend may begin only
	// until DedupWindow less DedupMargin after that attempt began; a
	// message that would need a later resend fails as unconfirmed.
	DedupWindow time.Duration
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	def(&o.BackoffBase, time.Second)
	def(&o.BackoffCap, 5*time.Minute)
	def(&o.SendTimeout, 10*time.Second)
	def(&o.Visibility, 60*time.Second)
	def(&o.ReclaimEvery, min(5*time.Second, o.Visibility/2))
	def(&o.MoveEvery, 250*time.Millisecond)
	def(&o.PaceDelay, 60*time.Second)
	if o.QuotaDelay == 0 {
		o.QuotaDelay = 5 * time.Minute
	}
	def(&o.FeedEvery, 100*time.Millisecond)
	def(&o.SlotWait, 300*time.Millisecond)
	def(&o.SlotGrace, 100*time.Millisecond)
	def(&o.Drain, 10*time.Second)
	def(&o.DedupWindow, 10*time.Minute)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.Rand == nil {
		o.Rand = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x776f726b))
	}
}

// DedupMargin is how much earlier than WeChat's dedup window a resend
// must begin: the send timeout (the resend may reach WeChat only that late,
// plus a token fetch) and a tenth of the window for the clocks of the
// instances and WeChat's (60 s of a 10 min window, so the last resend
// begins at 8 min 50 s with the default 10 s send timeout).
func DedupMargin(window, sendTimeout time.Duration) time.Duration {
	return sendTimeout + window/10
}

// appRuntime is an app's settings and this instance's view of its pause.
type appRuntime struct {
	*apps.App // Rate (zero: unlimited), Reset, FollowerCheck
	rate      store.Rate
	reason    atomic.Pointer[string] // the pause reason as last seen; nil or "": active
}

func (a *appRuntime) paused() bool {
	r := a.reason.Load()
	return r != nil && *r != ""
}

func (a *appRuntime) setReason(r string) { a.reason.Store(&r) }

// pauseReasons are the reasons the paused gauge reports.
var pauseReasons = []string{service.PauseMinuteLimit, service.PauseDailyQuota, service.PauseTokenBudget, service.PauseAppError}

// Pause ranks: a pause never replaces an active one of higher rank.
const (
	rankMinute = 1
	rankQuota  = 2
	rankApp    = 3
)

// Worker runs the pipeline of one instance.
type Worker struct {
	q      Queue
	tokens Tokens
	sender Sender
	o      Options
	apps   map[string]*appRuntime
	randMu sync.Mutex
	// resendWindow is how long after an attempt with an unknown outcome
	// began a resend may still begin (DedupWindow less DedupMargin).
	resendWindow time.Duration
}

// guard is what the store checks before it counts an attempt; held is the
// attempt number this worker holds already (0: none).
func (w *Worker) guard(held int) store.Guard {
	return store.Guard{Window: w.resendWindow, Held: held}
}

// New returns a Worker; Run starts it.
func New(q Queue, tokens Tokens, sender Sender, opts Options) (*Worker, error) {
	if opts.Consumer == "" {
		return nil, errors.New("worker: consumer name is required")
	}
	opts.defaults()
	margin := DedupMargin(opts.DedupWindow, opts.SendTimeout)
	if opts.DedupWindow <= margin {
		return nil, fmt.Errorf("worker: dedup window %s leaves no time to resend: it must be longer than its safety margin %s (the send timeout plus a tenth of the window)", opts.DedupWindow, margin)
	}
	w := &Worker{q: q, tokens: tokens, sender: sender, o: opts, apps: map[string]*appRuntime{}, resendWindow: opts.DedupWindow - margin}
	for _, a := range opts.Apps {
		if a.Reset.Loc == nil {
			c := *a
			c.Reset = pacing.DefaultReset()
			a = &c
		}
		w.apps[a.Name] = &appRuntime{App: a, rate: store.Rate{Interval: a.Rate.Interval(), Tolerance: a.Rate.Tolerance()}}
	}
	return w, nil
}

// app returns the runtime of an app; an app that is not configured is
// unlimited (its token calls fail anyway).
func (w *Worker) app(name string) *appRuntime {
	if a := w.apps[name]; a != nil {
		return a
	}
	return &appRuntime{App: &apps.App{Name: name, Reset: pacing.DefaultReset()}}
}

// Run consumes the queue until ctx is done, then stops reading, hands back
// entries it received but did not start, lets in-flight sends finish for
// up to Options.Drain, and returns. Whatever is still unacknowledged after
// that is reclaimed by another instance after the visibility timeout.
func (w *Worker) Run(ctx context.Context) error {
	// Sends run on their own context so that shutdown lets them finish
	// (bounded by Drain) instead of cutting them mid-call.
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()

	jobs := make(chan store.Entry)
	var procs sync.WaitGroup
	for range w.o.Concurrency {
		procs.Go(func() {
			for e := range jobs {
				w.process(sendCtx, e)
			}
		})
	}
	var loops sync.WaitGroup
	loops.Go(func() { w.every(ctx, w.o.MoveEvery, w.moveDue) })
	loops.Go(func() { w.every(ctx, w.o.FeedEvery, w.feed) })
	loops.Go(func() { w.every(ctx, w.o.ReclaimEvery, func(ctx context.Context) { w.reclaim(ctx, jobs) }) })

	// One read loop per partition: each blocks on its own stream, so a
	// message in any partition is taken at once, and every partition gets
	// its turn at the processors.
	var readers sync.WaitGroup
	for p := range w.q.Partitions() {
		readers.Go(func() { w.readLoop(ctx, p, jobs) })
	}
	readers.Wait()
	close(jobs)
	loops.Wait()

	done := make(chan struct{})
	go func() { procs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(w.o.Drain):
		w.o.Logger.Warn("shutdown: in-flight sends did not finish in time; they will be reclaimed", "drain", w.o.Drain)
		cancelSends()
		<-done
	}
	return nil
}

func (w *Worker) every(ctx context.Context, d time.Duration, fn func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// errTooLate is the token failure of an attempt that could not begin
// inside the resend window: nothing was sent.
var errTooLate = errors.New("worker: the attempt could not begin inside WeChat's dedup window; nothing was sent")
