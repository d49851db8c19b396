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
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/pacing"
	"github.com/wxpush/wxpush/service/internal/store"
	"github.com/wxpush/wxpush/service/internal/token"
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

// readLoop feeds jobs from partition p until ctx is done. Entries read
// but not taken by a processor when ctx ends are handed back to the queue.
// With several partitions each loop reads its share of the processors
// (at least one), so that no more entries wait unstarted than with one.
func (w *Worker) readLoop(ctx context.Context, p int, jobs chan<- store.Entry) {
	backoff := 100 * time.Millisecond
	count := max(w.o.Concurrency/w.q.Partitions(), 1)
	for ctx.Err() == nil {
		entries, err := w.q.ReadPartition(ctx, p, w.o.Consumer, count, time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.o.Metrics.RedisErrors.WithLabelValues("read").Inc()
			w.o.Logger.Warn("queue read failed; backing off", "err", err, "backoff", backoff)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			// Redis may have come back empty: recreate the stream and
			// group (a no-op when they exist) rather than wait to be told.
			_ = w.q.EnsureGroup(ctx)
			continue
		}
		backoff = 100 * time.Millisecond
		for i, e := range entries {
			select {
			case jobs <- e:
			case <-ctx.Done():
				w.release(entries[i:])
				return
			}
		}
	}
}

func (w *Worker) release(entries []store.Entry) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	failed := 0
	var last error
	for _, e := range entries {
		if err := w.q.Release(ctx, e); err != nil {
			failed, last = failed+1, err
		}
	}
	if failed > 0 {
		// Not a line about one message: those are not loaded, so their
		// request ids are not known here.
		w.o.Logger.Warn("shutdown: could not hand back queue entries; they will be reclaimed", "entries", failed, "err", last)
	}
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

func (w *Worker) moveDue(ctx context.Context) {
	for {
		n, err := w.q.MoveDue(ctx, w.o.Now(), 500)
		if err != nil {
			if ctx.Err() == nil {
				w.o.Metrics.RedisErrors.WithLabelValues("move_due").Inc()
			}
			return
		}
		if n < 500 {
			return
		}
	}
}

func (w *Worker) reclaim(ctx context.Context, jobs chan<- store.Entry) {
	entries, err := w.q.Reclaim(ctx, w.o.Consumer, w.o.Visibility, w.o.Concurrency)
	if err != nil {
		if ctx.Err() == nil {
			w.o.Metrics.RedisErrors.WithLabelValues("reclaim").Inc()
		}
		return
	}
	for i, e := range entries {
		w.o.Metrics.Reclaimed.Inc()
		w.o.Logger.Info("reclaimed a message from a stopped worker", "id", e.MessageID, "request_id", e.RequestID)
		select {
		case jobs <- e:
		case <-ctx.Done():
			w.release(entries[i:])
			return
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

// process takes one entry to a settlement.
func (w *Worker) process(ctx context.Context, e store.Entry) {
	log := w.o.Logger.With("id", e.MessageID)
	// When no app is paced or paused, as far as this instance knows, and
	// this is not a probe, admission needs no round trip: the record is
	// loaded and the attempt counted in one. Otherwise the record is
	// loaded first, to admit the message by its app.
	var (
		rec     *store.Record
		attempt int // counted already when > 0
		err     error
		start   = w.o.Now()
	)
	fast := !e.Probe && w.allFree()
	if fast {
		rec, attempt, err = w.q.Begin(ctx, e.MessageID, start, w.guard(0))
	} else {
		rec, err = w.q.Load(ctx, e.MessageID)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		w.settle(ctx, log, e, store.Settlement{Kind: store.SettleDrop})
		return
	case err != nil:
		if errors.Is(err, store.ErrUnavailable) {
			op := "load"
			if fast {
				op = "begin"
			}
			w.o.Metrics.RedisErrors.WithLabelValues(op).Inc()
		}
		log.Warn("cannot load message; leaving it to be reclaimed", "err", err)
		return
	case attempt == store.AttemptRefused:
		log = log.With("app", rec.App, "request_id", rec.RequestID)
		st := w.unconfirmed(log, rec, store.Settlement{App: rec.App, Attempt: rec.Attempts + rec.AttemptBase, AttemptBase: rec.AttemptBase, Instance: w.o.Consumer})
		if res, ok := w.settle(ctx, log, e, st); ok {
			w.observe(rec, st, res)
		}
		return
	case rec.Status.Terminal() || attempt < 0:
		w.settle(ctx, log, e, store.Settlement{Kind: store.SettleDrop, App: rec.App})
		return
	}
	log = log.With("app", rec.App, "request_id", rec.RequestID)
	rt := w.app(rec.App)
	// A message that may have reached the user already is resent inside
	// WeChat's dedup window even while its app is paused (see hold): held
	// behind the pause, it could only fail as unconfirmed afterwards.
	resend := rt.paused() && !rec.Unconfirmed().IsZero()
	if !fast && !resend && !w.admit(ctx, log, e, rt) {
		return
	}
	w.o.Metrics.InFlight.Inc()
	defer w.o.Metrics.InFlight.Dec()
	st, ok := w.attempt(ctx, log, e, rec, rt, attempt, start)
	if !ok {
		// Nothing was attempted and nothing can be recorded now: leave the
		// entry unacknowledged; it is reclaimed after the visibility timeout.
		return
	}
	st.App, st.ToUser, st.Instance, st.AttemptBase = rec.App, rec.ToUser, w.o.Consumer, rec.AttemptBase
	res, ok := w.settle(ctx, log, e, st)
	if !ok {
		return
	}
	logOutcome(log, st, res)
	w.observe(rec, st, res)
	if e.Probe && st.Kind == store.SettleSent {
		w.resume(ctx, log, rt, "probe send accepted")
	}
}

// admit applies the app's pause and rate limit to e. It reports whether
// the message may be sent now (after waiting for its slot); when not, the
// admission moved it to the app's wait set, or it is left to be reclaimed
// (Redis error).
func (w *Worker) admit(ctx context.Context, log *slog.Logger, e store.Entry, rt *appRuntime) bool {
	if !rt.Rate.Limited() && !rt.paused() && !e.Probe {
		return true // nothing to reserve, and the app is active as far as we know: no round trip
	}
	adm, err := w.q.Admit(ctx, e, rt.Name, rt.rate, w.o.SlotWait, w.o.SlotGrace)
	if err != nil {
		w.o.Metrics.RedisErrors.WithLabelValues("admit").Inc()
		log.Warn("cannot check the app's pacing; leaving the message to be reclaimed", "err", err)
		return false
	}
	switch adm.Kind {
	case store.AdmitPaused:
		w.o.Metrics.Held.WithLabelValues(rt.Name, "paused").Inc()
		if !rt.paused() {
			rt.setReason("paused") // refined by the next feed
		}
		log.Debug("app paused: the message waits")
		return false
	case store.AdmitQueued:
		w.o.Metrics.Held.WithLabelValues(rt.Name, "rate_limit").Inc()
		return false
	case store.AdmitProbe:
		log.Info("app paused: sending one message as a probe")
		return true
	}
	if adm.Wait > 0 {
		sleep(ctx, adm.Wait)
	}
	return true
}

// allFree reports whether no configured app is rate limited or paused, as
// far as this instance knows (an app not configured is neither).
func (w *Worker) allFree() bool {
	for _, a := range w.apps {
		if a.Rate.Limited() || a.paused() {
			return false
		}
	}
	return true
}

// attempt makes one send (two when the token was stale) and decides. It
// counts the attempt first unless counted is its number already (> 0,
// counted at start). It reports false when the attempt could not even be
// recorded (Redis error).
func (w *Worker) attempt(ctx context.Context, log *slog.Logger, e store.Entry, rec *store.Record, rt *appRuntime, counted int, start time.Time) (store.Settlement, bool) {
	attempt := counted
	if attempt <= 0 {
		start = w.o.Now()
		n, amb, err := w.q.MarkSending(ctx, rec.ID, start, w.guard(0))
		if err != nil {
			w.o.Metrics.RedisErrors.WithLabelValues("mark_sending").Inc()
			log.Warn("cannot record the attempt; leaving the message to be reclaimed", "err", err)
			return store.Settlement{}, false
		}
		if n == store.AttemptRefused {
			rec.AmbiguousAt = amb
			return w.unconfirmed(log, rec, store.Settlement{Attempt: rec.Attempts + rec.AttemptBase}), true
		}
		if n <= 0 { // gone, or finished by another worker meanwhile
			return store.Settlement{Kind: store.SettleDrop}, true
		}
		attempt, rec.AmbiguousAt = n, amb
	}
	// A user known not to follow the account (an unsubscribe push, or a
	// 43004 to an earlier send) cannot receive the message: it fails
	// without a call to WeChat, and the attempt is refunded. Redis
	// failing here does not stop the send: WeChat answers 43004 itself.
	if rt.FollowerCheck {
		no, ferr := w.q.NotFollowing(ctx, rec.App, rec.ToUser)
		switch {
		case ferr != nil:
			w.o.Metrics.RedisErrors.WithLabelValues("check_follower").Inc()
			log.Warn("cannot check the follower state; sending anyway", "err", ferr)
		case no:
			w.o.Metrics.SendsSkipped.WithLabelValues(rec.App, service.ReasonNotFollowing).Inc()
			log.Info("the user does not follow the account; the message fails without a send")
			return store.Settlement{Kind: store.SettleFail, Reason: service.ReasonNotFollowing, Refund: true, Attempt: attempt}, true
		}
	}
	// A worker that takes the message over counts this attempt as one that
	// may have reached WeChat, from its start. So nothing may leave for
	// WeChat after the resend window of the earliest such attempt, this one
	// included, however long the token fetch or a stall of this process
	// takes: the token fetches run under that deadline, and it is checked
	// again before each send. A send begun in time runs its own timeout
	// (the window's margin holds a whole send timeout), and so do the
	// store calls: cutting them off at the deadline would turn a send
	// begun in time into an unknown outcome.
	from := start
	if !rec.AmbiguousAt.IsZero() && rec.AmbiguousAt.Before(from) {
		from = rec.AmbiguousAt
	}
	deadline := from.Add(w.resendWindow)
	fetchCtx, cancel := context.WithTimeout(ctx, deadline.Sub(w.o.Now()))
	defer cancel()
	late := func() bool { return !w.o.Now().Before(deadline) }
	tok, err := w.tokens.Token(fetchCtx, rec.App)
	if err == nil && late() {
		err = errTooLate
	}
	if err != nil {
		st := w.tokenFailure(ctx, log, e, rec, rt, attempt, err)
		st.Attempt = attempt
		return st, true
	}
	msg := toWeChat(rec)
	var spent time.Duration // the time this attempt's sends took, for the history
	sendTimed := func(tok wechat.Secret) (int64, error) {
		t0 := time.Now()
		defer func() { spent += time.Since(t0) }()
		return w.send(ctx, rec, tok, msg)
	}
	msgid, err := sendTimed(tok)
	var tokenErr error // the rejected first attempt, kept as last_error if the retry succeeds
	if wechat.TokenInvalid(err) {
		tokenErr = err
		// The cached token went stale (superseded, expired, or revoked):
		// drop it only if it is still the one that failed, then retry once.
		deleted, ierr := w.tokens.Invalidate(ctx, rec.App, tok)
		log.Info("access token rejected; refreshing and retrying once", "errcode", wechat.Code(err), "deleted", deleted, "invalidate_err", ierr)
		if tok, terr := w.tokens.Token(fetchCtx, rec.App); terr == nil && !late() {
			// The resend is an attempt of its own, counted and guarded as
			// the first was; without its record it is not made (the token
			// error stands and the message is retried later).
			n, amb, merr := w.q.MarkSending(ctx, rec.ID, w.o.Now(), w.guard(attempt))
			switch {
			case merr != nil:
				w.o.Metrics.RedisErrors.WithLabelValues("mark_sending").Inc()
				log.Warn("cannot record the resend after the token refresh; the message is retried later", "err", merr)
			case n == store.AttemptRefused:
				rec.AmbiguousAt = amb
				return w.unconfirmed(log, rec, store.Settlement{Attempt: attempt}), true
			case n <= 0:
				return store.Settlement{Kind: store.SettleDrop}, true
			default:
				attempt = n
				msgid, err = sendTimed(tok)
			}
		}
	}
	// An answer that leaves open whether WeChat sent the message starts
	// the dedup window at this attempt's start, unless an earlier one did.
	ambiguous := wechat.Ambiguous(err)
	if ambiguous && (rec.AmbiguousAt.IsZero() || start.Before(rec.AmbiguousAt)) {
		rec.AmbiguousAt = start
	}
	st, pause := w.decide(log, rec, rt, e, attempt, msgid, err)
	if wechat.Code(err) == wechat.CodeRequireSubscribe {
		// The next sends to this user fail without a call, until a
		// subscribe push newer than this attempt.
		if merr := w.q.MarkNotFollowing(ctx, rec.App, rec.ToUser, start); merr != nil {
			w.o.Metrics.RedisErrors.WithLabelValues("mark_not_following").Inc()
		}
	}
	if ambiguous {
		st.AmbiguousAt = start
	}
	if pause != nil {
		w.pause(ctx, log, rt, *pause)
	}
	if st.Kind == store.SettleSent && tokenErr != nil {
		st.HasErr, st.ErrCode, st.ErrMsg = true, wechat.Code(tokenErr), tokenErr.Error()
	}
	st.Attempt, st.Called, st.Latency = attempt, true, spent
	return st, true
}

// errTooLate is the token failure of an attempt that could not begin
// inside the resend window: nothing was sent.
var errTooLate = errors.New("worker: the attempt could not begin inside WeChat's dedup window; nothing was sent")

// tokenFailure settles a message whose app has no access token: an
// exhausted token budget or a pacing, quota or app-level answer of the
// token endpoint pauses the app (the message waits in the wait set); an
// unknown app fails the message; anything else is retried later without
// spending the attempt.
func (w *Worker) tokenFailure(ctx context.Context, log *slog.Logger, e store.Entry, rec *store.Record, rt *appRuntime, attempt int, err error) store.Settlement {
	now := w.o.Now()
	st := store.Settlement{HasErr: true, ErrCode: wechat.Code(err), ErrMsg: err.Error(), Refund: true}
	if errors.Is(err, token.ErrUnknownApp) {
		log.Error("message for an app that is not configured", "err", err)
		st.Kind, st.Reason, st.Refund = store.SettleFail, service.ReasonUnknownApp, false
		return st
	}
	var p *store.Pause
	if errors.Is(err, token.ErrBudgetExhausted) {
		p = &store.Pause{Reason: service.PauseTokenBudget, Rank: rankQuota, ErrMsg: err.Error(),
			Until: pacing.DefaultReset().Next(now), ProbeEvery: max(w.o.QuotaDelay, 0)}
	} else {
		p = w.pauseFor(rt, err, now)
	}
	if p != nil {
		w.pause(ctx, log, rt, *p)
		return w.hold(log, rec, st, p, 0)
	}
	log.Warn("no access token; the message waits", "err", err, "class", wechat.Classify(err))
	return w.hold(log, rec, st, nil, w.backoff(attempt-rec.AttemptBase))
}

// pauseFor returns the pause an error calls for: 45011 pauses the app for
// PaceDelay, 45009 until its quota reset, an app-level errcode until an
// operator resumes it; nil for other errors.
func (w *Worker) pauseFor(rt *appRuntime, err error, now time.Time) *store.Pause {
	p := &store.Pause{ErrCode: wechat.Code(err), ErrMsg: err.Error()}
	switch wechat.Classify(err) {
	case wechat.ClassPace:
		p.Reason, p.Rank, p.Until = service.PauseMinuteLimit, rankMinute, now.Add(w.o.PaceDelay)
	case wechat.ClassQuota:
		p.Reason, p.Rank, p.Until, p.ProbeEvery = service.PauseDailyQuota, rankQuota, rt.Reset.Next(now), max(w.o.QuotaDelay, 0)
	case wechat.ClassPermanentApp:
		p.Reason, p.Rank, p.ProbeEvery = service.PauseAppError, rankApp, max(w.o.AppDelay, 0)
	default:
		return nil
	}
	return p
}

// pause pauses the app for every instance and logs the pause this
// instance started: an app-level error at ERROR (alert on it), a quota at
// WARN, the minute limit at INFO.
func (w *Worker) pause(ctx context.Context, log *slog.Logger, rt *appRuntime, p store.Pause) {
	rt.setReason(p.Reason)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	started, err := w.q.PauseApp(pctx, rt.Name, p, w.o.Now())
	if err != nil {
		w.o.Metrics.RedisErrors.WithLabelValues("pause_app").Inc()
		log.Warn("cannot record the app's pause; the message waits anyway", "reason", p.Reason, "err", err)
		return
	}
	if !started {
		return
	}
	w.o.Metrics.AppPauses.WithLabelValues(rt.Name, p.Reason).Inc()
	w.setPausedGauge(rt.Name, p.Reason)
	attrs := []any{"reason", p.Reason, "errcode", p.ErrCode, "errmsg", p.ErrMsg}
	if !p.Until.IsZero() {
		attrs = append(attrs, "until", p.Until)
	}
	if p.ProbeEvery > 0 {
		attrs = append(attrs, "probe_every", p.ProbeEvery)
	}
	switch p.Reason {
	case service.PauseAppError:
		log.Error("APP PAUSED: WeChat refuses the app itself; its messages wait (none fails) until an operator fixes the cause and calls POST /v1/apps/"+rt.Name+"/resume", attrs...)
	case service.PauseDailyQuota, service.PauseTokenBudget:
		log.Warn("app paused: daily quota used up; its messages wait for the quota reset or POST /v1/apps/"+rt.Name+"/resume", attrs...)
	default:
		log.Info("app paused: per-minute limit reached; its messages wait", attrs...)
	}
}

// resume ends the app's pause after a successful probe.
func (w *Worker) resume(ctx context.Context, log *slog.Logger, rt *appRuntime, why string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	reason, err := w.q.ResumeApp(rctx, rt.Name)
	if err != nil {
		w.o.Metrics.RedisErrors.WithLabelValues("resume_app").Inc()
		log.Warn("cannot resume the app; the next probe will try again", "err", err)
		return
	}
	rt.setReason("")
	w.setPausedGauge(rt.Name, "")
	if reason != "" {
		log.Info("app resumed", "why", why, "was", reason)
	}
}

func (w *Worker) setPausedGauge(app, reason string) {
	for _, r := range pauseReasons {
		v := 0.0
		if r == reason {
			v = 1
		}
		w.o.Metrics.AppPaused.WithLabelValues(app, r).Set(v)
	}
}

// feed moves every app's waiting messages back to the queue as its pause
// and rate allow, and refreshes this instance's view of the apps.
func (w *Worker) feed(ctx context.Context) {
	now := w.o.Now()
	for _, rt := range w.apps {
		res, err := w.q.Feed(ctx, rt.Name, rt.rate, w.o.SlotWait, 1000, rt.Reset.Day(now))
		if err != nil {
			if ctx.Err() == nil {
				w.o.Metrics.RedisErrors.WithLabelValues("feed").Inc()
			}
			return
		}
		was := rt.paused()
		rt.setReason(res.Reason)
		if was && !res.Paused {
			w.o.Logger.Info("app active again: its waiting messages are sent", "app", rt.Name, "waiting", res.Waiting)
		}
		w.setPausedGauge(rt.Name, res.Reason)
		w.o.Metrics.AppWaiting.WithLabelValues(rt.Name).Set(float64(res.Waiting))
		w.o.Metrics.QuotaUsed.WithLabelValues(rt.Name).Set(float64(res.QuotaUsed))
	}
}

func (w *Worker) send(ctx context.Context, rec *store.Record, tok wechat.Secret, msg *wechat.TemplateMessage) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, w.o.SendTimeout)
	defer cancel()
	start := time.Now()
	msgid, err := w.sender.SendTemplate(ctx, tok, msg)
	w.o.Metrics.SendSeconds.WithLabelValues(rec.App).Observe(time.Since(start).Seconds())
	w.o.Metrics.Attempts.WithLabelValues(rec.App, outcomeLabel(err)).Inc()
	return msgid, err
}

// decide maps an attempt's result to a settlement using the taxonomy, and
// to the app pause the result calls for, if any.
func (w *Worker) decide(log *slog.Logger, rec *store.Record, rt *appRuntime, e store.Entry, attempt int, msgid int64, err error) (store.Settlement, *store.Pause) {
	now := w.o.Now()
	class := wechat.Classify(err)
	if class == wechat.ClassOK {
		return store.Settlement{Kind: store.SettleSent, MsgID: msgid, QuotaDay: rt.Reset.Day(now)}, nil
	}
	errSt := store.Settlement{HasErr: true, ErrCode: wechat.Code(err), ErrMsg: err.Error()}
	if class == wechat.ClassPermanentMessage {
		errSt.Kind, errSt.Reason = store.SettleFail, service.ReasonPermanentErrcode
		return errSt, nil
	}
	if p := w.pauseFor(rt, err, now); p != nil {
		// Pacing, quota and app-level errors pause the app; the message
		// waits in the app's wait set without spending an attempt.
		w.o.Metrics.Retries.WithLabelValues(rec.App, class.String()).Inc()
		errSt.Refund = true
		return w.hold(log, rec, errSt, p, 0), p
	}
	// ClassRetry, and ClassTokenInvalid after the one immediate retry.
	return w.retryLater(log, rec, attempt, err), nil
}

// retryLater schedules a retry with full-jitter backoff, or fails the
// message once its attempts are used up.
func (w *Worker) retryLater(log *slog.Logger, rec *store.Record, attempt int, err error) store.Settlement {
	st := store.Settlement{HasErr: true, ErrCode: wechat.Code(err), ErrMsg: err.Error()}
	// attempt counts every attempt the message had; this run's (since its
	// latest redrive) are the ones past rec.AttemptBase.
	if attempt-rec.AttemptBase >= w.o.MaxAttempts {
		st.Kind, st.Reason = store.SettleFail, service.ReasonAttemptsExhausted
		return st
	}
	st = w.hold(log, rec, st, nil, w.backoff(attempt-rec.AttemptBase))
	if st.Kind == store.SettleRetry {
		w.o.Metrics.Retries.WithLabelValues(rec.App, wechat.Classify(err).String()).Inc()
	}
	return st
}

// hold makes st a retry after delay, or, when the app is paused (p), a
// park in the app's wait set until the pause ends. For a message that may
// have reached the user already (rec.AmbiguousAt: an attempt with an
// unknown outcome), the next resend must begin before that attempt's
// start plus the resend window (the store's guard refuses it later), and
// a little earlier still (resendSlack) so that moving it back to the queue
// and picking it up fit in:
//   - a retry's backoff is capped to end by then;
//   - it is parked only behind a pause that ends by then; behind a longer
//     pause (a 45009 until the quota reset, an app stopped until an
//     operator acts, a 45011 when little of the window is left) it would
//     wait only to fail as unconfirmed, so it is scheduled instead as a
//     retry at the last moment inside the window, when the pause has had
//     the most time to lift (a quota cleared, a minute passed): the resend
//     goes through the pause (see process) and is absorbed by WeChat if
//     the first attempt got through, or answered with the pause's errcode
//     again;
//   - when no time is left for a resend, the message fails now as
//     unconfirmed rather than wait for nothing.
func (w *Worker) hold(log *slog.Logger, rec *store.Record, st store.Settlement, p *store.Pause, delay time.Duration) store.Settlement {
	now := w.o.Now()
	if p != nil {
		st.PauseReason = p.Reason
	}
	if rec.AmbiguousAt.IsZero() {
		if p != nil {
			st.Kind = store.SettlePark
		} else {
			st.Kind, st.Due = store.SettleRetry, now.Add(delay)
		}
		return st
	}
	last := rec.AmbiguousAt.Add(w.resendWindow - w.resendSlack()) // the latest due time of a resend
	if !now.Before(last) {
		return w.unconfirmed(log, rec, st)
	}
	if p != nil {
		if !p.Until.IsZero() && !p.Until.After(last) {
			st.Kind = store.SettlePark
			return st
		}
		delay = last.Sub(now)
	}
	st.Kind, st.Due = store.SettleRetry, now.Add(min(delay, last.Sub(now)))
	return st
}

// resendSlack is how much earlier than the end of the resend window a
// resend is scheduled: a due retry waits up to MoveEvery to go back to the
// queue, and as long again to be picked up.
func (w *Worker) resendSlack() time.Duration { return 2 * w.o.MoveEvery }

// unconfirmed makes st the failure of a message that is not resent: an
// earlier attempt may have reached the user and WeChat's dedup window for
// it is over (or ends before a resend could begin), so a resend could
// deliver it twice. It logs the failure at ERROR, with the message's id
// and never its content.
func (w *Worker) unconfirmed(log *slog.Logger, rec *store.Record, st store.Settlement) store.Settlement {
	st.Kind, st.Reason, st.Refund, st.Due = store.SettleFail, service.ReasonUnconfirmed, false, time.Time{}
	log.Error("message NOT resent, failed as unconfirmed: an earlier attempt may have reached the user (its answer was lost) and WeChat's dedup window for it is over, so a resend could deliver it twice",
		"ambiguous_since", rec.AmbiguousAt, "dedup_window", w.o.DedupWindow)
	return st
}

// backoff is full jitter: uniform in [0, min(cap, base * 2^(attempt-1))).
func (w *Worker) backoff(attempt int) time.Duration {
	bound := w.o.BackoffCap
	if attempt < 31 {
		bound = min(w.o.BackoffCap, w.o.BackoffBase<<max(attempt-1, 0))
	}
	w.randMu.Lock()
	defer w.randMu.Unlock()
	return time.Duration(w.o.Rand.Int64N(int64(bound)) + 1)
}

// settle records st and reports whether it was recorded.
func (w *Worker) settle(ctx context.Context, log *slog.Logger, e store.Entry, st store.Settlement) (store.Settled, bool) {
	// Settle even if shutdown cancelled the send context: the outcome is
	// known and recording it is what prevents a needless resend.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	res, err := w.q.Settle(sctx, e, st, w.o.Now())
	switch {
	case errors.Is(err, store.ErrStale):
		// This worker was too slow: the message was reclaimed and
		// attempted again (same client_msg_id); that attempt's outcome
		// stands.
		log.Info("outcome not recorded: another worker took the message over", "kind", st.Kind, "attempt", st.Attempt)
		return res, false
	case err != nil:
		w.o.Metrics.RedisErrors.WithLabelValues("settle").Inc()
		log.Warn("cannot record the outcome; the message will be reclaimed and resent with the same client_msg_id", "err", err)
		return res, false
	}
	return res, true
}

// observe counts a recorded settlement: a send, a failure, and a failure
// that a delivery report parked before the send turned it into.
func (w *Worker) observe(rec *store.Record, st store.Settlement, res store.Settled) {
	switch st.Kind {
	case store.SettleSent:
		w.o.Metrics.Sent.WithLabelValues(rec.App).Inc()
		w.o.Metrics.EndToEndSeconds.WithLabelValues(rec.App).Observe(w.o.Now().Sub(rec.CreatedAt).Seconds())
		if res.Early == store.DeliveryFailed {
			w.o.Metrics.Failed.WithLabelValues(rec.App, res.EarlyReason).Inc()
		}
	case store.SettleFail:
		w.o.Metrics.Failed.WithLabelValues(rec.App, st.Reason).Inc()
	}
}

// logOutcome writes the one log line of a recorded attempt's outcome:
// sent, retried, waiting for a pause, or failed (WARN). The logger carries
// the message's id, app and request id.
func logOutcome(log *slog.Logger, st store.Settlement, res store.Settled) {
	attrs := []any{"attempt", st.Attempt}
	if st.Called {
		attrs = append(attrs, "latency_ms", float64(st.Latency.Microseconds())/1000)
	}
	if st.HasErr && st.Kind != store.SettleSent {
		attrs = append(attrs, "errcode", st.ErrCode, "err", st.ErrMsg)
	}
	switch st.Kind {
	case store.SettleSent:
		attrs = append(attrs, "msgid", st.MsgID)
		switch res.Early {
		case store.DeliveryDelivered:
			log.Info("message sent and delivered (its delivery report came first)", attrs...)
		case store.DeliveryFailed:
			log.Warn("message sent, and failed by its delivery report (which came first)", append(attrs, "reason", res.EarlyReason)...)
		default:
			log.Info("message sent", attrs...)
		}
	case store.SettleRetry:
		log.Info("attempt did not send the message; it is retried", append(attrs, "due", st.Due)...)
	case store.SettlePark:
		log.Info("message waits for its app's pause", append(attrs, "pause", st.PauseReason)...)
	case store.SettleFail:
		log.Warn("message failed", append(attrs, "reason", st.Reason)...)
	}
}

// toWeChat builds the WeChat request. client_msg_id is the message id, the
// same on every attempt (with the redrive's number after a redrive of a
// message WeChat had accepted: see store.Record.ClientMsgID).
func toWeChat(rec *store.Record) *wechat.TemplateMessage {
	r := rec.Request
	cmid := rec.ClientMsgID
	if cmid == "" {
		cmid = rec.ID
	}
	m := &wechat.TemplateMessage{ToUser: r.ToUser, TemplateID: r.TemplateID, URL: r.URL, ClientMsgID: cmid, Data: make(map[string]wechat.DataItem, len(r.Data))}
	if r.MiniProgram != nil {
		m.MiniProgram = &wechat.MiniProgram{AppID: r.MiniProgram.AppID, PagePath: r.MiniProgram.PagePath}
	}
	for k, v := range r.Data {
		m.Data[k] = wechat.DataItem{Value: v.Value, Color: v.Color}
	}
	return m
}

// outcomeLabel names an attempt's outcome for the attempts metric.
func outcomeLabel(err error) string {
	if err == nil {
		return "0"
	}
	if code := wechat.Code(err); code != 0 {
		return strconv.Itoa(code)
	}
	var ce *wechat.CallError
	if errors.As(err, &ce) {
		if ce.Kind == wechat.CallHTTPStatus {
			return fmt.Sprintf("http_%d", ce.StatusCode)
		}
		return string(ce.Kind)
	}
	return "error"
}
