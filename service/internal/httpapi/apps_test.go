package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service"
)

// fakeAdmin serves app statuses from memory.
type fakeAdmin struct {
	mu      sync.Mutex
	paused  map[string]bool
	down    bool
	resumed []string
}

var _ AppAdmin = (*fakeAdmin)(nil)

func (f *fakeAdmin) AppStatus(_ context.Context, app string) (*service.AppStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errUnavailable()
	}
	if app != "default" && app != "shop" {
		return nil, fmt.Errorf("%w: %q", ErrUnknownApp, app)
	}
	st := &service.AppStatus{App: app, State: service.AppActive, QuotaReset: "00:00 Asia/Shanghai"}
	if f.paused[app] {
		st.State, st.Pause = service.AppPaused, &service.AppPause{Reason: service.PauseDailyQuota, ErrCode: 45009}
	}
	return st, nil
}

func (f *fakeAdmin) ResumeApp(ctx context.Context, app string) (*service.AppStatus, error) {
	f.mu.Lock()
	if app == "default" || app == "shop" {
		delete(f.paused, app)
		f.resumed = append(f.resumed, app)
	}
	f.mu.Unlock()
	return f.AppStatus(ctx, app)
}

func (f *fakeAdmin) UserState(ctx context.Context, app, openid string) (*service.UserState, error) {
	if _, err := f.AppStatus(ctx, app); err != nil {
		return nil, err
	}
	return &service.UserState{App: app, OpenID: openid}, nil
}

func TestUserStateRoute(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Admin = &fakeAdmin{} })
	tests := []struct {
		path string
		code int
	}{
		{"/v1/apps/default/users/oUser_0123-abc", http.StatusOK},
		{"/v1/apps/nope/users/oUser_0123-abc", http.StatusNotFound},
		{"/v1/apps/default/users/o%20bad", http.StatusBadRequest},
		{"/v1/apps/default/users/" + strings.Repeat("a", 65), http.StatusBadRequest},
		{"/v1/apps/default/users/%3Cscript%3E", http.StatusBadRequest},
	}
	for _, tt := range tests {
		rec := e.do(t, http.MethodGet, tt.path, "", nil)
		require.Equal(t, tt.code, rec.Code, "%s: %s", tt.path, rec.Body)
	}
}

func TestAppRoutes(t *testing.T) {
	admin := &fakeAdmin{paused: map[string]bool{"shop": true}}
	e := newEnv(t, func(o *Options) { o.Admin = admin })

	rec := e.do(t, http.MethodGet, "/v1/apps/shop", "", nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var st service.AppStatus
	decode(t, rec, &st)
	assert.Equal(t, service.AppPaused, st.State)
	assert.Equal(t, service.PauseDailyQuota, st.Pause.Reason)

	rec = e.do(t, http.MethodGet, "/v1/apps", "", nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var list service.AppList
	decode(t, rec, &list)
	require.Len(t, list.Apps, 2)
	assert.Equal(t, "default", list.Apps[0].App)

	rec = e.do(t, http.MethodPost, "/v1/apps/shop/resume", "", nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	decode(t, rec, &st)
	assert.Equal(t, service.AppActive, st.State)
	assert.Equal(t, []string{"shop"}, admin.resumed)
	assert.Contains(t, e.logs.String(), "app resumed by an operator")

	rec = e.do(t, http.MethodGet, "/v1/apps/nope", "", nil)
	assert.Equal(t, http.StatusNotFound, rec.Code)
	assert.Equal(t, service.Error{Code: service.CodeNotFound, Message: "no app of that name is configured", Field: "app"}, apiError(t, rec))

	for _, path := range []string{"/v1/apps", "/v1/apps/shop"} {
		rec = e.do(t, http.MethodGet, path, "", map[string]string{"Authorization": ""})
		assert.Equal(t, http.StatusUnauthorized, rec.Code, path)
	}
	rec = e.do(t, http.MethodPost, "/v1/apps/shop/resume", "", map[string]string{"Authorization": "Bearer wrong-key-0123456789abcdef"})
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Len(t, admin.resumed, 1, "an unauthenticated resume changes nothing")

	rec = e.do(t, http.MethodGet, "/v1/apps/shop/resume", "", nil)
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)

	admin.mu.Lock()
	admin.down = true
	admin.mu.Unlock()
	rec = e.do(t, http.MethodGet, "/v1/apps/default", "", nil)
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, service.CodeUnavailable, apiError(t, rec).Code)
}

func TestAppRoutesAbsentWithoutAdmin(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.do(t, http.MethodGet, "/v1/apps/default", "", nil)
	assert.Equal(t, http.StatusNotFound, rec.Code)
}
