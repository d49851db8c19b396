// Package webhook delivers the final status of each message to its app's
// status webhook (status_webhook_url): a JSON service.StatusEvent POSTed
// with an HMAC-SHA256 signature, retried with exponential backoff.
//
// Durability: the transition to a final status and the event's entry in
// the Redis outbox (a sorted set of message ids scored by due time) are
// written by the same script (store.Settle, store.ApplyDelivery), so a
// crash never loses an event. A Dispatcher in every instance leases due
// events (a leased event is due again after the lease, if its holder
// died), delivers them, and removes each on a 2xx answer or reschedules
// it. The outbox holds a message id once, so each final status is queued
// once per message; a lost acknowledgement or an expired lease can
// deliver it again, so receivers deduplicate by message id.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/store"
)

// Outbox is what the dispatcher needs from the store.
type Outbox interface {
	ClaimEvents(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]string, error)
	AckEvent(ctx context.Context, id string) error
	RetryEvent(ctx context.Context, id string, now time.Time, base, cap time.Duration, maxAttempts int, jitter float64) (int, bool, error)
	Get(ctx context.Context, id string) (*service.Message, error)
}

var _ Outbox = (*store.Store)(nil)

// Options configure a Dispatcher. Zero values take the defaults shown.
type Options struct {
	Outbox Outbox // required
	// Apps are the configured apps; those with a StatusWebhook get their
	// messages' final statuses, the others' events are dropped.
	Apps    []*apps.App
	Client  *http.Client  // nil: a client with Timeout
	Timeout time.Duration // one delivery (default 10 s)
	// BackoffBase and BackoffCap bound the delay before a new attempt:
	// base * 2^(n-1), capped, times a jitter in [0.5, 1) (defaults 1 s, 10 min).
	BackoffBase, BackoffCap time.Duration
	// MaxAttempts: after this many failed deliveries the event is dropped
	// with an ERROR log (default 20: about two hours with the defaults).
	MaxAttempts int
	PollEvery   time.Duration // how often due events are looked for (default 200 ms)
	Concurrency int           // deliveries at once (default 8)
	Lease       time.Duration // an event is redelivered if not settled within this (default 2 Timeout + 5 s)
	Now         func() time.Time
	Logger      *slog.Logger
	Metrics     *metrics.Metrics
}

// Dispatcher delivers status events.
type Dispatcher struct {
	o      Options
	apps   map[string]*apps.App
	jitter *jitter
}

// New returns a Dispatcher; Run starts it.
func New(opts Options) (*Dispatcher, error) {
	if opts.Outbox == nil {
		return nil, errors.New("webhook: no outbox")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.Timeout, 10*time.Second)
	def(&opts.BackoffBase, time.Second)
	def(&opts.BackoffCap, 10*time.Minute)
	def(&opts.PollEvery, 200*time.Millisecond)
	def(&opts.Lease, 2*opts.Timeout+5*time.Second)
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
	return &Dispatcher{o: opts, apps: apps.Index(opts.Apps), jitter: newJitter(0x77686b)}, nil
}

// Run delivers due events until ctx is done; deliveries under way finish
// (bounded by Timeout).
func (d *Dispatcher) Run(ctx context.Context) error {
	t := time.NewTicker(d.o.PollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for ctx.Err() == nil {
			n, err := d.RunOnce(ctx)
			if err != nil {
				d.o.Metrics.RedisErrors.WithLabelValues("claim_events").Inc()
				break
			}
			if n < d.o.Concurrency {
				break
			}
		}
	}
}

// RunOnce leases up to Concurrency due events, delivers them in parallel
// and returns how many it leased.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	ids, err := d.o.Outbox.ClaimEvents(ctx, d.o.Now(), d.o.Lease, d.o.Concurrency)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() { d.deliver(context.WithoutCancel(ctx), id) })
	}
	wg.Wait()
	return len(ids), nil
}

// deliver sends one event and settles it in the outbox.
func (d *Dispatcher) deliver(ctx context.Context, id string) {
	log := d.o.Logger.With("id", id)
	msg, err := d.o.Outbox.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		log.Warn("status webhook: the message is gone (past retention); dropping its event")
		d.o.Metrics.Webhooks.WithLabelValues("_unknown", "dropped").Inc()
		_ = d.o.Outbox.AckEvent(ctx, id)
		return
	}
	if err != nil {
		log.Warn("status webhook: cannot load the message; retried after the lease", "err", err)
		return
	}
	// The event carries the message as GET shows it, less its timeline.
	msg.History = nil
	log = log.With("app", msg.App, "request_id", msg.RequestID)
	app, ok := d.apps[msg.App]
	if !ok || !app.StatusWebhook.Enabled() {
		d.o.Metrics.Webhooks.WithLabelValues(msg.App, "dropped").Inc()
		_ = d.o.Outbox.AckEvent(ctx, id)
		return
	}
	err = d.post(ctx, app.StatusWebhook, msg)
	if err == nil {
		d.o.Metrics.Webhooks.WithLabelValues(msg.App, "delivered").Inc()
		if aerr := d.o.Outbox.AckEvent(ctx, id); aerr != nil {
			log.Warn("status webhook delivered but not acknowledged; it may be delivered again", "err", aerr)
		}
		log.Debug("status webhook delivered", "status", msg.Status)
		return
	}
	n, gaveUp, rerr := d.o.Outbox.RetryEvent(ctx, id, d.o.Now(), d.o.BackoffBase, d.o.BackoffCap, d.o.MaxAttempts, d.jitter.next())
	switch {
	case rerr != nil:
		log.Warn("status webhook failed and cannot be rescheduled; retried after the lease", "err", err, "reschedule_err", rerr)
	case gaveUp:
		d.o.Metrics.Webhooks.WithLabelValues(msg.App, "gave_up").Inc()
		log.Error("status webhook: giving up after repeated failures", "attempts", n, "err", err)
	default:
		d.o.Metrics.Webhooks.WithLabelValues(msg.App, "retry").Inc()
		log.Info("status webhook failed; will retry", "attempt", n, "err", err)
	}
}

// post makes one delivery; nil means the receiver answered 2xx.
func (d *Dispatcher) post(ctx context.Context, t apps.Webhook, msg *service.Message) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(service.StatusEvent{Event: service.EventMessageStatus, Message: *msg}); err != nil {
		return err
	}
	return send(ctx, d.o.Client, d.o.Timeout, d.o.Now(), "webhook", t, buf.Bytes(), service.HeaderWebhookMessageID, msg.ID)
}

// send posts body to the webhook t, signed at now, with the header pairs
// in extra, bounded by timeout; nil means the receiver answered 2xx. what
// names the webhook in errors, which never carry its URL.
func send(ctx context.Context, client *http.Client, timeout time.Duration, now time.Time, what string, t apps.Webhook, body []byte, extra ...string) error {
	ts := strconv.FormatInt(now.Unix(), 10)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s request: %w", what, redactURL(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "wxpushd-webhook")
	req.Header.Set(service.HeaderWebhookTimestamp, ts)
	req.Header.Set(service.HeaderWebhookSignature, Sign(t.Secret, ts, body))
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, redactURL(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s: receiver answered HTTP %d", what, resp.StatusCode)
	}
	return nil
}

// jitter is a source of backoff jitter safe for concurrent use.
type jitter struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newJitter(stream uint64) *jitter {
	return &jitter{r: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), stream))}
}

// next returns a number in [0, 1).
func (j *jitter) next() float64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.r.Float64()
}

// redactURL drops the URL from a client error (it may carry credentials
// in its query), keeping the cause.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// Sign returns the signature header value of body sent at timestamp ts
// (unix seconds, the X-Wxpush-Timestamp value):
// "sha256=" + hex(HMAC-SHA256(secret, ts + "." + body)).
func Sign(secret wechat.Secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret.Reveal()))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a signature made by Sign in constant time; receivers
// written in Go can use it (and should also bound the timestamp's age).
func Verify(secret wechat.Secret, ts string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(signature))
}
