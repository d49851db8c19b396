package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/store"
)

// The feeder and the apps' pauses: the feeder moves waiting messages
// back to the queue as their app's rate and pause allow, and keeps this
// instance's view of each app's pause; pause and resume change it for
// every instance.

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
