package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/pacing"
	"github.com/wxpush/wxpush/service/internal/store"
	"github.com/wxpush/wxpush/service/internal/token"
)

// The processor: one entry taken from loading its record to a
// settlement: admission by its app's pause and rate, the follower check,
// the token, the send, and the decision by errcode.

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
