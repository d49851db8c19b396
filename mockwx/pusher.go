package mockwx

import (
	"bytes"
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wxpush/wxpush/internal/wechat"
)

// Pusher defaults and limits.
const (
	defaultPushWorkers    = 32
	defaultPushTimeout    = 5 * time.Second
	defaultPushRetries    = 2 // 3 tries in all, as observed of WeChat
	defaultPushRetryDelay = time.Second
	// pushReplyLimit is how much of a receiver's reply the pusher reads:
	// more than any passive reply (8 news articles) needs.
	pushReplyLimit = 64 << 10
	// pushUserAgent identifies the mock's callback requests (WeChat's own
	// User-Agent is not documented).
	pushUserAgent = "mockwx"
)

// ErrPusherClosed is returned by Wait when the Pusher is closed while
// pushes are still pending.
var ErrPusherClosed = errors.New("mockwx: pusher closed")

// Push is one push to an app's callback URL: a TEMPLATESENDJOBFINISH
// delivery report, or a simulated user's event or message.
type Push struct {
	URL     string          // the app's callback URL
	Mode    wechat.Mode     // plain, compat, safe
	Crypter *wechat.Crypter // the app's callback token / EncodingAESKey / appid
	// Message is the push: its ToUserName (the account), FromUserName (the
	// user) and CreateTime always; without Extra, the whole
	// TEMPLATESENDJOBFINISH event. A zero CreateTime is set from the
	// pusher's clock at the first attempt.
	Message wechat.Message
	// Extra, when set, makes the push a user event or message: the
	// elements after ToUserName, FromUserName and CreateTime, in order
	// (MsgType first); Message's other fields are then unused.
	Extra []Element
	Delay time.Duration // wait this long after Schedule before the first attempt
	// Drop is a fault: WeChat lost the push. It counts as sent and failed
	// without any HTTP request (still after Delay).
	Drop bool
	// Fault, when set, is asked before each try: the try waits delay
	// before it is made, and with lose its answer is lost (a fault), so the
	// try counts as unanswered and is retried.
	Fault func() (delay time.Duration, lose bool)
	// Done, when set, is told the result once the push settles (not when a
	// Reset or Close abandons it), before Wait sees it settled. It is called
	// with the Pusher's lock held: it must not block or call the Pusher.
	Done func(PushResult)
}

// PushResult is how a push ended.
type PushResult struct {
	Outcome  string // OutcomeAcked, OutcomeReplied, OutcomeReplyInvalid or OutcomeFailed
	Attempts int    // HTTP requests made
	Reply    *Reply // the decoded passive reply, for OutcomeReplied
	Reason   string // why, for OutcomeReplyInvalid and OutcomeFailed
}

// CallbackStats are the pusher's counters (part of GET /_mock/stats as
// "callbacks").
type CallbackStats struct {
	Scheduled int64 `json:"scheduled"` // Schedule calls accepted
	Sent      int64 `json:"sent"`      // reports whose first attempt was made (or dropped)
	Attempts  int64 `json:"attempts"`  // HTTP requests made, retries included
	Acked     int64 `json:"acked"`     // pushes acknowledged ("success" or empty, plain or encrypted)
	Replied   int64 `json:"replied"`   // pushes answered with a valid passive reply
	Invalid   int64 `json:"invalid"`   // pushes answered with an invalid reply (not retried)
	Failed    int64 `json:"failed"`    // pushes unanswered after all attempts (or dropped)
	Pending   int64 `json:"pending"`   // scheduled and not yet acked or failed
}

// PusherOptions configures a Pusher. The zero value is usable.
type PusherOptions struct {
	// Client makes the requests. Nil: a client of the Pusher's own with
	// keep-alives, a generous MaxIdleConnsPerHost, no proxy and no
	// redirect following (a redirect is a failed attempt, as for WeChat).
	Client *http.Client
	// Workers is the number of concurrent deliveries; <= 0 means 32.
	Workers int
	// Timeout bounds each attempt (request and reply); <= 0 means 5s.
	Timeout time.Duration
	// Retries is the number of attempts after the first: 0 means 2 (3
	// tries in all, as WeChat), negative means none.
	Retries int
	// RetryDelay is the wait before retrying after a connection error or a
	// non-200 status (a timed-out attempt has already waited, so its retry is
	// immediate): 0 means 1s, negative means no wait.
	RetryDelay time.Duration
	// Now is the clock for timestamps and CreateTime; nil means time.Now.
	// Delays and timeouts always use the real monotonic clock.
	Now func() time.Time
	// Rand supplies nonces (decimal digits, like WeChat's); nil means
	// crypto/rand. It need not be safe for concurrent use.
	Rand io.Reader
	// Logger receives delivery logs; nil discards them. Logs never carry
	// the callback token, keys, or any URL query.
	Logger *slog.Logger
}

// Pusher delivers pushes to callback URLs as WeChat does: asynchronously,
// signed (and encrypted in compat and safe mode), and retried with the same
// query and body only when no answer comes: a timeout, a connection error
// or a non-200 status (WeChat's handling of the last is undocumented). A
// 200 answer settles the push, whatever it says: "success" or 0 bytes
// (also encrypted) is acked, a valid passive reply is replied, anything
// else is reply_invalid, a user-visible error WeChat does not retry. Pushes wait in a delay
// queue ordered by due time (FIFO among equal times); one dispatcher
// goroutine hands due pushes to a fixed pool of workers. A retry goes back
// into the queue, so a waiting retry never holds a worker. All methods are
// safe for concurrent use.
type Pusher struct {
	client     *http.Client
	ownClient  bool
	workers    int
	timeout    time.Duration
	retries    int
	retryDelay time.Duration
	now        func() time.Time
	log        *slog.Logger

	randMu sync.Mutex // guards rand
	rand   io.Reader

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	work   chan *pushItem // dispatcher -> workers, unbuffered
	wake   chan struct{}  // Schedule/requeue -> dispatcher, capacity 1
	done   chan struct{}  // closed by Close
	wg     sync.WaitGroup // dispatcher and workers

	closeOnce sync.Once

	mu          sync.Mutex // guards everything below
	closed      bool
	queue       pushQueue
	seq         uint64
	epoch       uint64             // bumped by Reset; stale items are discarded
	epochCtx    context.Context    // in-flight requests of the current epoch
	epochCancel context.CancelFunc // cancels epochCtx
	stats       CallbackStats
	drained     chan struct{} // closed while stats.Pending == 0
}

// pushItem is one push waiting in the queue or owned by a worker. Its
// mutable fields belong to whichever goroutine holds it: the queue (under
// Pusher.mu), the dispatcher, then one worker.
type pushItem struct {
	push     Push
	due      time.Time
	seq      uint64
	epoch    uint64
	attempts int // HTTP requests made so far

	query url.Values // sealed at the first attempt, sent on every try
	body  []byte
}

// pushQueue is a min-heap of items by due time, then scheduling order.
type pushQueue []*pushItem

func (q pushQueue) Len() int { return len(q) }
func (q pushQueue) Less(i, j int) bool {
	if !q[i].due.Equal(q[j].due) {
		return q[i].due.Before(q[j].due)
	}
	return q[i].seq < q[j].seq
}
func (q pushQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *pushQueue) Push(x any)   { *q = append(*q, x.(*pushItem)) }
func (q *pushQueue) Pop() any {
	old := *q
	n := len(old) - 1
	it := old[n]
	old[n] = nil
	*q = old[:n]
	return it
}

// NewPusher returns a running Pusher: its dispatcher and workers start now
// and stop in Close.
func NewPusher(opts PusherOptions) *Pusher {
	p := &Pusher{
		client:     opts.Client,
		workers:    opts.Workers,
		timeout:    opts.Timeout,
		retries:    opts.Retries,
		retryDelay: opts.RetryDelay,
		now:        opts.Now,
		log:        opts.Logger,
		rand:       opts.Rand,
		work:       make(chan *pushItem),
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		drained:    make(chan struct{}),
	}
	close(p.drained) // nothing pending yet
	if p.workers <= 0 {
		p.workers = defaultPushWorkers
	}
	if p.timeout <= 0 {
		p.timeout = defaultPushTimeout
	}
	switch {
	case p.retries == 0:
		p.retries = defaultPushRetries
	case p.retries < 0:
		p.retries = 0
	}
	switch {
	case p.retryDelay == 0:
		p.retryDelay = defaultPushRetryDelay
	case p.retryDelay < 0:
		p.retryDelay = 0
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.rand == nil {
		p.rand = rand.Reader
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.client == nil {
		p.client = newPushClient(p.workers)
		p.ownClient = true
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.epochCtx, p.epochCancel = context.WithCancel(p.ctx)

	p.wg.Add(1 + p.workers)
	go p.dispatch()
	for range p.workers {
		go p.worker()
	}
	return p
}

// newPushClient is the default client: direct connections (no proxy from
// the environment), keep-alives with an idle pool as large as the worker
// pool, and redirects returned rather than followed.
func newPushClient(workers int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext: (&net.Dialer{
				Timeout:   5 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			MaxIdleConnsPerHost: max(workers, 100),
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 5 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Schedule queues push for delivery after push.Delay. It only takes a lock
// and pushes onto a heap (O(log n)); it never waits for a worker. After
// Close it does nothing and the push is not counted.
func (p *Pusher) Schedule(push Push) {
	due := time.Now().Add(max(push.Delay, 0))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.seq++
	it := &pushItem{push: push, due: due, seq: p.seq, epoch: p.epoch}
	p.stats.Scheduled++
	if p.stats.Pending == 0 {
		p.drained = make(chan struct{})
	}
	p.stats.Pending++
	p.enqueueLocked(it)
}

// enqueueLocked puts it on the heap and wakes the dispatcher if it is now
// the earliest item.
func (p *Pusher) enqueueLocked(it *pushItem) {
	heap.Push(&p.queue, it)
	if p.queue[0] == it {
		select {
		case p.wake <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// Stats returns a consistent snapshot of the counters.
func (p *Pusher) Stats() CallbackStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Reset drops every pending push, cancels in-flight requests (their outcome
// is ignored; nothing is counted as failed) and zeroes the counters. The
// Pusher keeps running.
func (p *Pusher) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.epoch++
	p.epochCancel()
	p.epochCtx, p.epochCancel = context.WithCancel(p.ctx)
	clear(p.queue)
	p.queue = nil
	if p.stats.Pending > 0 {
		close(p.drained)
	}
	p.stats = CallbackStats{}
}

// Close stops accepting pushes, abandons queued ones (Stats keeps counting
// them as Pending), cancels in-flight requests and waits for every
// goroutine of the Pusher to return. It is idempotent; concurrent calls all
// return after the shutdown completes.
func (p *Pusher) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		clear(p.queue)
		p.queue = nil
		p.mu.Unlock()
		p.cancel() // also cancels every epoch context
		close(p.done)
		p.wg.Wait()
		if p.ownClient {
			p.client.CloseIdleConnections()
		}
	})
}

// Wait blocks until nothing is pending, and returns nil; or until ctx is
// done, and returns its error; or until the Pusher is closed with pushes
// still pending, and returns ErrPusherClosed.
func (p *Pusher) Wait(ctx context.Context) error {
	p.mu.Lock()
	drained := p.drained
	p.mu.Unlock()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-p.done:
		if p.Stats().Pending == 0 {
			return nil
		}
		return ErrPusherClosed
	}
}

// dispatch is the timer goroutine: it pops due items in order and hands
// each to a worker, sleeping until the earliest due time otherwise.
func (p *Pusher) dispatch() {
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		var (
			next *pushItem
			wait time.Duration = -1 // no timer: the queue is empty
		)
		p.mu.Lock()
		if len(p.queue) > 0 {
			if d := time.Until(p.queue[0].due); d > 0 {
				wait = d
			} else {
				next = heap.Pop(&p.queue).(*pushItem)
			}
		}
		p.mu.Unlock()

		if next != nil {
			select {
			case p.work <- next:
			case <-p.ctx.Done():
				return
			}
			continue
		}
		var fire <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			fire = timer.C
		}
		select {
		case <-fire:
		case <-p.wake:
		case <-p.ctx.Done():
			return
		}
		timer.Stop()
	}
}

// worker delivers the items the dispatcher hands it, one at a time.
func (p *Pusher) worker() {
	defer p.wg.Done()
	for {
		select {
		case it := <-p.work:
			p.deliver(it)
		case <-p.ctx.Done():
			return
		}
	}
}

// liveLocked reports whether it still counts: the Pusher is open and no
// Reset happened since it was scheduled.
func (p *Pusher) liveLocked(it *pushItem) bool {
	return !p.closed && it.epoch == p.epoch
}

// finishLocked settles a pending push with its outcome.
func (p *Pusher) finishLocked(outcome string) {
	switch outcome {
	case OutcomeAcked:
		p.stats.Acked++
	case OutcomeReplied:
		p.stats.Replied++
	case OutcomeReplyInvalid:
		p.stats.Invalid++
	default:
		p.stats.Failed++
	}
	p.stats.Pending--
	if p.stats.Pending == 0 {
		close(p.drained)
	}
}

// pushOutcome is the result of one attempt.
type pushOutcome int

const (
	pushAnswered  pushOutcome = iota // a 200 answer: acked, replied or reply_invalid
	pushRetry                        // connection error or non-200 status
	pushTimedOut                     // the attempt hit its timeout
	pushPermanent                    // cannot be sent at all; no retry
	pushAbandoned                    // Reset or Close; not counted
)

// deliver makes one attempt for it (or drops it) and then settles it or
// puts it back in the queue for a retry. It logs outside the lock, before
// settling, so a drained Wait has seen every log line of the push.
func (p *Pusher) deliver(it *pushItem) {
	p.mu.Lock()
	if !p.liveLocked(it) {
		p.mu.Unlock()
		return
	}
	ctx := p.epochCtx
	first := it.attempts == 0
	if first {
		p.stats.Sent++
	}
	p.mu.Unlock()

	if first && it.push.Drop {
		p.log.Debug("mockwx: callback dropped by fault", p.logAttrs(it)...)
		p.settle(it, PushResult{Outcome: OutcomeFailed, Reason: "lost by a fault rule"})
		return
	}
	if first && it.push.Message.CreateTime == 0 {
		it.push.Message.CreateTime = p.now().Unix()
	}
	outcome, res := p.attempt(ctx, it)
	reason := res.Reason
	switch {
	case outcome == pushAbandoned:
	case outcome == pushAnswered:
		if res.Outcome == OutcomeReplyInvalid {
			p.log.Warn("mockwx: callback answered with an invalid reply", append(p.logAttrs(it), slog.String("reason", reason))...)
		}
		p.settle(it, res)
	case outcome == pushPermanent || it.attempts > p.retries:
		p.log.Warn("mockwx: callback failed", append(p.logAttrs(it), slog.String("reason", reason))...)
		p.settle(it, PushResult{Outcome: OutcomeFailed, Reason: reason})
	default:
		delay := p.retryDelay
		if outcome == pushTimedOut {
			delay = 0
		}
		p.log.Debug("mockwx: callback attempt failed, will retry",
			append(p.logAttrs(it), slog.String("reason", reason), slog.Duration("retry_in", delay))...)
		p.mu.Lock()
		if p.liveLocked(it) {
			it.due = time.Now().Add(delay)
			p.enqueueLocked(it)
		}
		p.mu.Unlock()
	}
}

// settle records how it ended unless a Reset or Close came first, and
// tells its Done.
func (p *Pusher) settle(it *pushItem, res PushResult) {
	res.Attempts = it.attempts
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.liveLocked(it) {
		if it.push.Done != nil {
			it.push.Done(res) // before Wait can see the push settled
		}
		p.finishLocked(res.Outcome)
	}
}

// seal builds it's query and body once, at the first attempt: every try
// sends the same payload, as WeChat does.
func (p *Pusher) seal(it *pushItem) error {
	if it.body != nil {
		return nil
	}
	push := &it.push
	if push.Crypter == nil {
		return errors.New("no crypter")
	}
	nonce, err := p.nonce()
	if err != nil {
		return err
	}
	ts := p.now().Unix()
	var q url.Values
	var body []byte
	if len(push.Extra) > 0 {
		q, body, err = sealElements(push.Crypter, push.Mode, &push.Message, push.Extra, ts, nonce)
	} else {
		q, body, err = push.Crypter.SealCallback(&push.Message, push.Mode, ts, nonce)
	}
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	it.query, it.body = q, body
	return nil
}

// attempt POSTs it (sealed at its first attempt) and judges the answer.
// The result's Reason describes a failure without secrets.
func (p *Pusher) attempt(ctx context.Context, it *pushItem) (pushOutcome, PushResult) {
	push := &it.push
	if err := p.seal(it); err != nil {
		return pushPermanent, PushResult{Reason: err.Error()}
	}
	var lose bool
	if push.Fault != nil {
		var delay time.Duration
		if delay, lose = push.Fault(); delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return pushAbandoned, PushResult{}
			}
		}
	}
	sep := "?"
	if strings.Contains(push.URL, "?") {
		sep = "&"
	}
	actx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, push.URL+sep+it.query.Encode(), bytes.NewReader(it.body))
	if err != nil {
		return pushPermanent, PushResult{Reason: "bad callback URL"}
	}
	req.Header.Set("Content-Type", "text/xml")
	req.Header.Set("User-Agent", pushUserAgent)

	p.mu.Lock()
	if !p.liveLocked(it) {
		p.mu.Unlock()
		return pushAbandoned, PushResult{}
	}
	p.stats.Attempts++
	it.attempts++
	p.mu.Unlock()

	failed := func(err error) (pushOutcome, PushResult) {
		switch {
		case ctx.Err() != nil:
			return pushAbandoned, PushResult{}
		case actx.Err() == context.DeadlineExceeded || pushIsTimeout(err):
			return pushTimedOut, PushResult{Reason: "no answer within " + p.timeout.String()}
		}
		return pushRetry, PushResult{Reason: pushRedactError(err)}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return failed(err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, pushReplyLimit))
	if err != nil {
		return failed(err)
	}
	if lose {
		return pushRetry, PushResult{Reason: "answer lost by a fault rule"}
	}
	if resp.StatusCode != http.StatusOK {
		return pushRetry, PushResult{Reason: "status " + strconv.Itoa(resp.StatusCode)}
	}
	if len(reply) == pushReplyLimit {
		return pushAnswered, PushResult{Outcome: OutcomeReplyInvalid, Reason: fmt.Sprintf("reply longer than %d bytes", pushReplyLimit)}
	}
	j := replyJudge{crypter: push.Crypter, mode: push.Mode, openID: push.Message.FromUserName, originalID: push.Message.ToUserName}
	outcome, rep, reason := j.judge(reply)
	return pushAnswered, PushResult{Outcome: outcome, Reply: rep, Reason: reason}
}

// nonce returns a fresh nonce: a uint32 in decimal, as WeChat's.
func (p *Pusher) nonce() (string, error) {
	var b [4]byte
	p.randMu.Lock()
	_, err := io.ReadFull(p.rand, b[:])
	p.randMu.Unlock()
	if err != nil {
		return "", fmt.Errorf("read nonce: %w", err)
	}
	return strconv.FormatUint(uint64(binary.BigEndian.Uint32(b[:])), 10), nil
}

// logAttrs identifies it in logs: the URL without query or credentials,
// the mode, the MsgID and the attempts so far.
func (p *Pusher) logAttrs(it *pushItem) []any {
	return []any{
		slog.String("url", pushRedactURL(it.push.URL)),
		slog.String("mode", string(it.push.Mode)),
		slog.Int64("msgid", it.push.Message.MsgID),
		slog.Int("attempts", it.attempts),
	}
}

// pushRedactURL drops the query, fragment and user info of a URL.
func pushRedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	u.ForceQuery = false
	u.Fragment = ""
	u.RawFragment = ""
	return u.String()
}

// pushRedactError strips the *url.Error wrapper, whose text holds the full
// request URL with its signed query.
func pushRedactError(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	return err.Error()
}

// pushIsTimeout reports whether err is a network or context timeout.
func pushIsTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}
