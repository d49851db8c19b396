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
