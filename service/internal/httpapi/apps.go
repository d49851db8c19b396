package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/store"
)

// AppAdmin reads and changes the apps' shared state for
// GET /v1/apps, GET /v1/apps/{app} and POST /v1/apps/{app}/resume. Its
// errors wrap ErrUnknownApp for an app that is not configured and
// store.ErrUnavailable when Redis is down.
type AppAdmin interface {
	AppStatus(ctx context.Context, app string) (*service.AppStatus, error)
	ResumeApp(ctx context.Context, app string) (*service.AppStatus, error)
	// UserState is GET /v1/apps/{app}/users/{openid}; openid is checked
	// by the caller (ValidOpenID).
	UserState(ctx context.Context, app, openid string) (*service.UserState, error)
}

// ErrUnknownApp is what an AppAdmin answers for an app that is not configured (404).
var ErrUnknownApp = errors.New("httpapi: unknown app")

// appStatus answers GET /v1/apps/{app}.
func (a *api) appStatus(c *gin.Context) {
	st, err := a.admin.AppStatus(c.Request.Context(), c.Param("app"))
	a.answerApp(c, "app status", st, err)
}

// resumeApp answers POST /v1/apps/{app}/resume: the app's pause ends for
// every instance and its waiting messages are sent again. Resuming an
// active app changes nothing.
func (a *api) resumeApp(c *gin.Context) {
	st, err := a.admin.ResumeApp(c.Request.Context(), c.Param("app"))
	if err == nil {
		a.log.InfoContext(c.Request.Context(), "app resumed by an operator", "request_id", requestIDOf(c), "app", st.App)
	}
	a.answerApp(c, "resume app", st, err)
}

// listApps answers GET /v1/apps with every configured app's status.
func (a *api) listApps(c *gin.Context) {
	out := service.AppList{Apps: make([]service.AppStatus, 0, len(a.apps))}
	for _, name := range a.apps {
		st, err := a.admin.AppStatus(c.Request.Context(), name)
		if err != nil {
			a.answerApp(c, "app list", nil, err)
			return
		}
		out.Apps = append(out.Apps, *st)
	}
	a.writeJSON(c, http.StatusOK, out)
}

func (a *api) answerApp(c *gin.Context, op string, st *service.AppStatus, err error) {
	ctx := c.Request.Context()
	switch {
	case errors.Is(err, ErrUnknownApp):
		a.abort(c, http.StatusNotFound, &service.Error{Code: service.CodeNotFound, Message: "no app of that name is configured", Field: "app"})
	case errors.Is(err, store.ErrUnavailable):
		a.log.WarnContext(ctx, op+": store unavailable", "request_id", requestIDOf(c), "err", err)
		a.unavailable(c)
	case err != nil || st == nil:
		a.log.ErrorContext(ctx, op+" failed", "request_id", requestIDOf(c), "err", err)
		a.abort(c, http.StatusInternalServerError, internalError())
	default:
		a.writeJSON(c, http.StatusOK, st)
	}
}

// ValidOpenID reports whether s can be an openid: 1-64 of A-Z a-z 0-9 _ -
// (WeChat's are 28 characters of that alphabet).
func ValidOpenID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// userState answers GET /v1/apps/{app}/users/{openid}: what the service
// knows of whether the user follows the app.
func (a *api) userState(c *gin.Context) {
	openid := c.Param("openid")
	if !ValidOpenID(openid) {
		a.abort(c, http.StatusBadRequest, &service.Error{Code: service.CodeInvalidRequest, Message: "openid must be 1-64 of A-Z a-z 0-9 _ -", Field: "openid"})
		return
	}
	st, err := a.admin.UserState(c.Request.Context(), c.Param("app"), openid)
	ctx := c.Request.Context()
	switch {
	case errors.Is(err, ErrUnknownApp):
		a.abort(c, http.StatusNotFound, &service.Error{Code: service.CodeNotFound, Message: "no app of that name is configured", Field: "app"})
	case errors.Is(err, store.ErrUnavailable):
		a.log.WarnContext(ctx, "user state: store unavailable", "request_id", requestIDOf(c), "err", err)
		a.unavailable(c)
	case err != nil || st == nil:
		a.log.ErrorContext(ctx, "user state failed", "request_id", requestIDOf(c), "err", err)
		a.abort(c, http.StatusInternalServerError, internalError())
	default:
		a.writeJSON(c, http.StatusOK, st)
	}
}
