package wxpushd

import (
	"context"
	"fmt"
	"time"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/httpapi"
	"github.com/wxpush/wxpush/service/internal/store"
	"github.com/wxpush/wxpush/service/internal/token"
)

// appAdmin serves the /v1/apps routes from the shared state in Redis and
// the config.
type appAdmin struct {
	apps   map[string]*apps.App
	store  *store.Store
	tokens *token.Manager
	now    func() time.Time
}

var _ httpapi.AppAdmin = (*appAdmin)(nil)

func (a *appAdmin) info(name string) (*apps.App, error) {
	i, ok := a.apps[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", httpapi.ErrUnknownApp, name)
	}
	return i, nil
}

// AppStatus reads an app's pause, waiting messages, quota used today and
// token state.
func (a *appAdmin) AppStatus(ctx context.Context, name string) (*service.AppStatus, error) {
	i, err := a.info(name)
	if err != nil {
		return nil, err
	}
	now := a.now()
	st, err := a.store.ReadAppState(ctx, name, i.Reset.Day(now), now)
	if err != nil {
		return nil, err
	}
	ts, err := a.tokens.State(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", store.ErrUnavailable, err)
	}
	out := &service.AppStatus{
		App: name, AppID: i.AppID, State: service.AppActive,
		RateLimit: i.Rate.PerSecond, QuotaReset: i.Reset.String(), QuotaUsedToday: st.QuotaUsed, Waiting: st.Waiting,
		StatusWebhook: i.StatusWebhook.Enabled(),
		Token: service.TokenStatus{
			Mode: string(ts.Mode), Cached: ts.Cached, BudgetUsedToday: ts.BudgetUsedToday, DailyBudget: ts.DailyBudget,
			FetchedAt: optTime(ts.FetchedAt), ExpiresAt: optTime(ts.ExpiresAt),
		},
	}
	if i.Rate.PerSecond > 0 {
		out.RateBurst = max(i.Rate.Burst, 1)
	}
	if p := st.Pause; p.Paused {
		out.State = service.AppPaused
		out.Pause = &service.AppPause{
			Reason: p.Reason, ErrCode: p.ErrCode, ErrMsg: p.ErrMsg, Since: p.Since,
			Until: optTime(p.Until), NextProbeAt: optTime(p.NextProbe),
		}
	}
	return out, nil
}

// ResumeApp ends the app's pause for every instance and returns its
// status after.
func (a *appAdmin) ResumeApp(ctx context.Context, name string) (*service.AppStatus, error) {
	if _, err := a.info(name); err != nil {
		return nil, err
	}
	if _, err := a.store.ResumeApp(ctx, name); err != nil {
		return nil, err
	}
	return a.AppStatus(ctx, name)
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// UserState reads what the store knows of openid for app.
func (a *appAdmin) UserState(ctx context.Context, name, openid string) (*service.UserState, error) {
	if _, err := a.info(name); err != nil {
		return nil, err
	}
	f, err := a.store.ReadFollower(ctx, name, openid)
	if err != nil {
		return nil, err
	}
	out := &service.UserState{App: name, OpenID: openid}
	if f.Known {
		following, source := f.Following, f.Source
		out.Following, out.Source, out.Since = &following, &source, optTime(f.Since)
	}
	if f.LastEvent != "" {
		last := f.LastEvent
		out.LastEvent, out.LastEventAt = &last, optTime(f.LastEventAt)
	}
	return out, nil
}
