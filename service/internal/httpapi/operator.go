package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/store"
)

// Operator serves the operator's routes: search, dead letters, redrive
// and the overview. store.Store has all but Overview.
type Operator interface {
	// Search is GET /v1/messages; a bad filter is a *store.QueryError.
	Search(ctx context.Context, q service.MessageQuery) (*service.MessagePage, error)
	// Redrive is POST /v1/messages/{id}/redrive: errors wrap
	// store.ErrNotFound, store.ErrNotFailed or store.ErrForceRequired.
	Redrive(ctx context.Context, id string, force bool, requestID string, now time.Time) (*service.Message, error)
	// RedriveBulk is POST /v1/deadletters/redrive.
	RedriveBulk(ctx context.Context, req service.BulkRedriveRequest, requestID string, now time.Time) (*service.BulkRedriveResult, error)
	// Overview is GET /v1/overview.
	Overview(ctx context.Context) (*service.Overview, error)
}

// maxOperatorBody limits the body of the redrive routes.
const maxOperatorBody = 4 << 10

// searchParams are the query parameters of GET /v1/messages, and
// deadLetterParams those of GET /v1/deadletters.
var (
	searchParams     = []string{"app", "touser", "status", "reason", "template_id", "request_id", "since", "until", "limit", "cursor"}
	deadLetterParams = []string{"app", "reason", "limit", "cursor"}
)

// parseQuery reads a search's filters from the URL query: each known
// parameter at most once, each well formed; anything else is a 400 naming
// the parameter.
func parseQuery(v url.Values, allowed []string) (service.MessageQuery, *service.Error) {
	var q service.MessageQuery
	names := make([]string, 0, len(v))
	for k := range v {
		names = append(names, k)
	}
	sort.Strings(names) // the first bad parameter is the same on every call
	for _, k := range names {
		vals := v[k]
		known := false
		for _, a := range allowed {
			known = known || a == k
		}
		if !known {
			return q, invalid(k, "unknown query parameter %q; the filters are %v", clip(k), allowed)
		}
		if len(vals) != 1 {
			return q, invalid(k, "%s must be given once", k)
		}
		val := vals[0]
		if val == "" {
			return q, invalid(k, "%s must not be empty (leave it out to match every value)", k)
		}
		var e *service.Error
		switch k {
		case "app":
			if !isName(val, true) {
				e = invalid(k, "app must be 1-%d letters, digits, '_' or '-'", maxIDLen)
			}
			q.App = val
		case "touser":
			if !ValidOpenID(val) {
				e = invalid(k, "touser is not an openid")
			}
			q.ToUser = val
		case "status":
			q.Status = service.Status(val)
			if !store.ValidStatus(q.Status) {
				e = invalid(k, "status must be one of queued, sending, retrying, sent, delivered, failed")
			}
		case "reason":
			if !isName(val, false) {
				e = invalid(k, "reason must be 1-%d letters, digits or '_' (e.g. attempts_exhausted)", maxIDLen)
			}
			q.Reason = val
		case "template_id":
			if !validTemplateID(val) {
				e = invalid(k, "template_id must be 1-%d characters without spaces", maxIDLen)
			}
			q.TemplateID = val
		case "request_id":
			if !validRequestID(val) {
				e = invalid(k, "request_id must be 1-64 of [A-Za-z0-9._-]")
			}
			q.RequestID = val
		case "since", "until":
			t, err := time.Parse(time.RFC3339Nano, val)
			if err != nil {
				e = invalid(k, "%s must be an RFC 3339 time such as 2026-12-05T08:00:00Z", k)
			}
			if k == "since" {
				q.Since = t
			} else {
				q.Until = t
			}
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > service.MaxSearchLimit {
				e = invalid(k, "limit must be a whole number from 1 to %d", service.MaxSearchLimit)
			}
			q.Limit = n
		case "cursor":
			if !isName(val, false) {
				e = invalid(k, "cursor is not one this service gave")
			}
			q.Cursor = val
		}
		if e != nil {
			return q, e
		}
	}
	return q, nil
}

// search serves GET /v1/messages.
func (a *api) search(c *gin.Context) {
	q, e := parseQuery(c.Request.URL.Query(), searchParams)
	if e != nil {
		a.abort(c, http.StatusBadRequest, e)
		return
	}
	page, err := a.operator.Search(c.Request.Context(), q)
	a.answerOperator(c, "search", page, err)
}

// deadLetters serves GET /v1/deadletters: the failed messages, newest
// first.
func (a *api) deadLetters(c *gin.Context) {
	q, e := parseQuery(c.Request.URL.Query(), deadLetterParams)
	if e != nil {
		a.abort(c, http.StatusBadRequest, e)
		return
	}
	q.Status = service.StatusFailed
	page, err := a.operator.Search(c.Request.Context(), q)
	a.answerOperator(c, "dead letters", page, err)
}

// redrive serves POST /v1/messages/{id}/redrive (an empty body is no
// force).
func (a *api) redrive(c *gin.Context) {
	id := c.Param("id")
	if !validMessageID(id) {
		a.abort(c, http.StatusNotFound, &service.Error{Code: service.CodeNotFound, Message: "no message with that id"})
		return
	}
	var req service.RedriveRequest
	if c.Request.ContentLength != 0 {
		if status, e := decodeBody(c, maxOperatorBody, &req, duplicateTopKey); e != nil {
			a.abort(c, status, e)
			return
		}
	}
	m, err := a.operator.Redrive(c.Request.Context(), id, req.Force, requestIDOf(c), a.now())
	if err == nil {
		a.log.InfoContext(c.Request.Context(), "message redriven by an operator", "request_id", requestIDOf(c), "id", id, "app", m.App, "force", req.Force, "redrives", m.Redrives)
	}
	a.answerOperator(c, "redrive", m, err)
}

// redriveBulk serves POST /v1/deadletters/redrive.
func (a *api) redriveBulk(c *gin.Context) {
	var req service.BulkRedriveRequest
	if status, e := decodeBody(c, maxOperatorBody, &req, duplicateTopKey); e != nil {
		a.abort(c, status, e)
		return
	}
	// The filters are checked as the query parameters of GET
	// /v1/deadletters are.
	v := url.Values{}
	for k, s := range map[string]string{"app": req.App, "reason": req.Reason, "cursor": req.Cursor} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if req.Limit != 0 {
		if req.Limit < 1 || req.Limit > service.MaxBulkRedrive {
			a.abort(c, http.StatusBadRequest, invalid("limit", "limit must be from 1 to %d", service.MaxBulkRedrive))
			return
		}
	}
	if _, e := parseQuery(v, deadLetterParams); e != nil {
		a.abort(c, http.StatusBadRequest, e)
		return
	}
	res, err := a.operator.RedriveBulk(c.Request.Context(), req, requestIDOf(c), a.now())
	if err == nil {
		a.log.InfoContext(c.Request.Context(), "dead letters redriven by an operator", "request_id", requestIDOf(c), "app", req.App, "reason", req.Reason,
			"force", req.Force, "matched", res.Matched, "redriven", res.Redriven, "ids", res.IDs)
	}
	a.answerOperator(c, "bulk redrive", res, err)
}

// overview serves GET /v1/overview.
func (a *api) overview(c *gin.Context) {
	o, err := a.operator.Overview(c.Request.Context())
	a.answerOperator(c, "overview", o, err)
}

// answerOperatorStatus maps the errors an operator route answers to a
// client to their status and body; 0 for the others.
func answerOperatorStatus(err error) (int, *service.Error) {
	var qe *store.QueryError
	switch {
	case errors.As(err, &qe):
		return http.StatusBadRequest, invalid(qe.Field, "%s", qe.Message)
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, &service.Error{Code: service.CodeNotFound, Message: "no message with that id"}
	case errors.Is(err, store.ErrNotFailed):
		return http.StatusConflict, &service.Error{Code: service.CodeNotFailed, Message: strings.TrimPrefix(err.Error(), "store: ")}
	case errors.Is(err, store.ErrForceRequired):
		return http.StatusConflict, &service.Error{Code: service.CodeForceRequired, Message: strings.TrimPrefix(err.Error(), "store: ") +
			`: a resend may reach the user twice (unconfirmed) or cannot succeed as it is; send {"force": true} to redrive it anyway`, Field: "force"}
	}
	return 0, nil
}

// answerOperator writes v as 200, or maps err to its answer.
func (a *api) answerOperator(c *gin.Context, op string, v any, err error) {
	ctx := c.Request.Context()
	if err == nil {
		a.writeJSON(c, http.StatusOK, v)
		return
	}
	if status, e := answerOperatorStatus(err); e != nil {
		a.abort(c, status, e)
		return
	}
	if errors.Is(err, store.ErrUnavailable) {
		a.log.WarnContext(ctx, op+": store unavailable", "request_id", requestIDOf(c), "err", err)
		a.unavailable(c)
		return
	}
	a.log.ErrorContext(ctx, op+" failed", "request_id", requestIDOf(c), "err", err)
	a.abort(c, http.StatusInternalServerError, internalError())
}
