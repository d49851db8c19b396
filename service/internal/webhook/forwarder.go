package webhook

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/store"
)

// Inbox is what the forwarder needs from the store (see store's
// inbound.go).
type Inbox interface {
	EnsureInboundGroup(ctx context.Context) error
	ReadInbound(ctx context.Context, consumer string, count int, block time.Duration) ([]store.InboundToken, error)
	ReclaimInbound(ctx context.Context, consumer string, minIdle time.Duration, count int) ([]store.InboundToken, error)
	NextInbound(ctx context.Context, queue string) (*store.InboundPush, int, error)
	FinishInbound(ctx context.Context, tok store.InboundToken, id string) (int, error)
	RetryInbound(ctx context.Context, tok store.InboundToken, id string, now time.Time, base, cap time.Duration, maxAttempts int, jitter float64) (store.InboundRetry, error)
	MoveDueInbound(ctx context.Context, now time.Time, limit int) (int, error)
}

var _ Inbox = (*store.Store)(nil)

// ForwarderOptions configure a Forwarder. Zero values take the defaults
// of Options (Timeout, BackoffBase, BackoffCap, MaxAttempts, Concurrency).
type ForwarderOptions struct {
	Inbox    Inbox // required
	Apps     []*apps.App
	Consumer string // this instance's name in the consumer group; required
	Client   *http.Client
	Timeout  time.Duration
	// BackoffBase and BackoffCap bound the wait of a user's queue after a
	// failed delivery: base * 2^(n-1), capped, times a jitter in [0.5, 1).
	BackoffBase, BackoffCap time.Duration
	MaxAttempts             int // failed deliveries before a push is given up (default 20)
	Concurrency             int // users served at once (default 8)
	// ReclaimAfter: a user's queue a forwarder took and did not finish
	// for this long is taken over (default 2 Timeout + 5 s: longer than
	// a delivery, so one user's pushes are not delivered by two at once).
	ReclaimAfter time.Duration
	Block        time.Duration // the read's wait for new pushes (default 1 s)
	MoveEvery    time.Duration // how often due retries come back (default 200 ms)
	Now          func() time.Time
	Logger       *slog.Logger
	Metrics      *metrics.Metrics
}

// Forwarder delivers recorded pushes to the apps' event webhooks: in
// order per user, each retried with backoff until a 2xx answer, under the
// stable delivery id of the push (header X-Wxpush-Delivery-Id), so a
// receiver that drops ids it has seen gets each push exactly once.
type Forwarder struct {
	o      ForwarderOptions
	apps   map[string]*apps.App
	jitter *jitter
}

// NewForwarder checks opts and returns a Forwarder; Run starts it.
func NewForwarder(opts ForwarderOptions) (*Forwarder, error) {
	if opts.Inbox == nil {
		return nil, errors.New("webhook: forwarder: no inbox")
	}
	if opts.Consumer == "" {
		return nil, errors.New("webhook: forwarder: a consumer name is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.Timeout, 10*time.Second)
	def(&opts.BackoffBase, time.Second)
	def(&opts.BackoffCap, 10*time.Minute)
	def(&opts.ReclaimAfter, 2*opts.Timeout+5*time.Second)
	def(&opts.Block, time.Second)
	def(&opts.MoveEvery, 200*time.Millisecond)
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 20
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: opts.Timeout}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	return &Forwarder{o: opts, apps: apps.Index(opts.Apps), jitter: newJitter(0x667764)}, nil
}

// Run forwards pushes until ctx is done; deliveries under way finish
// (bounded by Timeout). Queues it holds when it returns are taken over by
// another instance after ReclaimAfter.
func (f *Forwarder) Run(ctx context.Context) error {
	if err := f.o.Inbox.EnsureInboundGroup(ctx); err != nil {
		f.o.Logger.Warn("event webhooks: cannot create the inbound group yet; retrying", "err", err)
	}
	var loops sync.WaitGroup
	loops.Go(func() {
		t := time.NewTicker(f.o.MoveEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := f.o.Inbox.MoveDueInbound(ctx, f.o.Now(), 500); err != nil && ctx.Err() == nil {
					f.o.Metrics.RedisErrors.WithLabelValues("move_due_inbound").Inc()
				}
			}
		}
	})
	defer loops.Wait()
	backoff := 100 * time.Millisecond
	lastReclaim := time.Now()
	for ctx.Err() == nil {
		if _, err := f.RunOnce(ctx, f.o.Block, time.Since(lastReclaim) >= f.o.ReclaimAfter/2); err != nil {
			if ctx.Err() != nil {
				break
			}
			f.o.Metrics.RedisErrors.WithLabelValues("read_inbound").Inc()
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if time.Since(lastReclaim) >= f.o.ReclaimAfter/2 {
			lastReclaim = time.Now()
		}
	}
	return nil
}

// RunOnce takes up to Concurrency user queues (waiting up to block for
// new ones; negative: no wait), after those left by a dead forwarder when
// reclaim is set, and empties each, users in parallel. It returns how many
// queues it took.
func (f *Forwarder) RunOnce(ctx context.Context, block time.Duration, reclaim bool) (int, error) {
	var toks []store.InboundToken
	if reclaim {
		got, err := f.o.Inbox.ReclaimInbound(ctx, f.o.Consumer, f.o.ReclaimAfter, f.o.Concurrency)
		if err != nil {
			return 0, err
		}
		if len(got) > 0 {
			f.o.Logger.Info("event webhooks: took over users' pushes a stopped instance left", "count", len(got))
		}
		toks = got
	}
	if len(toks) < f.o.Concurrency {
		got, err := f.o.Inbox.ReadInbound(ctx, f.o.Consumer, f.o.Concurrency-len(toks), block)
		if err != nil && len(toks) == 0 {
			return 0, err
		}
		toks = append(toks, got...)
	}
	var wg sync.WaitGroup
	for _, tok := range toks {
		wg.Go(func() { f.drain(context.WithoutCancel(ctx), tok) })
	}
	wg.Wait()
	return len(toks), nil
}

// drain delivers the pushes of one user's queue in order until it is
// empty, a delivery fails (the queue waits for its retry) or another
// forwarder took the queue over.
func (f *Forwarder) drain(ctx context.Context, tok store.InboundToken) {
	for {
		p, dropped, err := f.o.Inbox.NextInbound(ctx, tok.Queue)
		if err != nil {
			f.o.Metrics.RedisErrors.WithLabelValues("next_inbound").Inc()
			return // the token stays pending: reclaimed later
		}
		if dropped > 0 {
			f.o.Metrics.EventWebhooks.WithLabelValues("_unknown", "expired").Add(float64(dropped))
			f.o.Logger.Warn("event webhooks: dropped pushes kept past retention without delivery", "count", dropped)
		}
		if p == nil {
			// Empty: acknowledge the token (FinishInbound of nothing).
			if _, err := f.o.Inbox.FinishInbound(ctx, tok, ""); err != nil && !errors.Is(err, store.ErrMoved) {
				f.o.Metrics.RedisErrors.WithLabelValues("finish_inbound").Inc()
			}
			return
		}
		log := f.o.Logger.With("app", p.App, "id", p.ID)
		err = f.post(ctx, p)
		if err == nil {
			f.o.Metrics.EventWebhooks.WithLabelValues(p.App, "delivered").Inc()
			left, ferr := f.o.Inbox.FinishInbound(ctx, tok, p.ID)
			switch {
			case errors.Is(ferr, store.ErrMoved):
				return
			case ferr != nil:
				f.o.Metrics.RedisErrors.WithLabelValues("finish_inbound").Inc()
				log.Warn("event webhook delivered but not recorded; it will be delivered again under the same id", "err", ferr)
				return
			case left == 0:
				return
			}
			continue
		}
		r, rerr := f.o.Inbox.RetryInbound(ctx, tok, p.ID, f.o.Now(), f.o.BackoffBase, f.o.BackoffCap, f.o.MaxAttempts, f.jitter.next())
		switch {
		case errors.Is(rerr, store.ErrMoved):
			return
		case rerr != nil:
			f.o.Metrics.RedisErrors.WithLabelValues("retry_inbound").Inc()
			log.Warn("event webhook failed and cannot be rescheduled; retried after the reclaim time", "err", err, "reschedule_err", rerr)
			return
		case r.GaveUp:
			f.o.Metrics.EventWebhooks.WithLabelValues(p.App, "gave_up").Inc()
			log.Error("event webhook: giving up on a push after repeated failures", "type", p.Type, "attempts", r.Attempts, "err", err)
			if r.Left == 0 {
				return
			}
		default:
			f.o.Metrics.EventWebhooks.WithLabelValues(p.App, "retry").Inc()
			log.Info("event webhook failed; the user's pushes wait for the retry", "attempt", r.Attempts, "due", r.Due, "err", err)
			return
		}
	}
}

// errNoWebhook: the app has no event webhook (any more); the push counts
// as failed until the configuration has one or it is given up.
var errNoWebhook = errors.New("webhook: the app has no event webhook configured")

// post makes one delivery; nil means the receiver answered 2xx.
func (f *Forwarder) post(ctx context.Context, p *store.InboundPush) error {
	app, ok := f.apps[p.App]
	if !ok || !app.EventWebhook.Enabled() {
		return errNoWebhook
	}
	return send(ctx, f.o.Client, f.o.Timeout, f.o.Now(), "event webhook", app.EventWebhook, p.Payload,
		service.HeaderWebhookDeliveryID, p.ID, service.HeaderWebhookEventType, headerType(p.Type))
}

// headerType is a push type fit for a header: WeChat's types are short
// identifiers; anything else (it is sender-controlled text) is "other".
func headerType(t string) string {
	if t == "" || len(t) > 64 {
		return "other"
	}
	for _, r := range t {
		if !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return "other"
		}
	}
	return t
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
