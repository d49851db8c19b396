package console

import (
	"errors"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/store"
)

// parseTemplates parses each page with the layout.
func (con *Console) parseTemplates() error {
	funcs := template.FuncMap{
		"when":       fmtTime,
		"whenp":      func(t *time.Time) string { return fmtTimePtr(t) },
		"age":        fmtAge,
		"needsForce": service.NeedsForce,
		"deref":      func(p *int) int { return *p },
		"ms": func(p *float64) string {
			return strconv.FormatFloat(*p, 'f', 1, 64) + " ms"
		},
		"rate": func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
		"dict": func(kv ...any) (map[string]any, error) {
			if len(kv)%2 != 0 {
				return nil, errors.New("dict: odd number of arguments")
			}
			m := make(map[string]any, len(kv)/2)
			for i := 0; i < len(kv); i += 2 {
				k, ok := kv[i].(string)
				if !ok {
					return nil, errors.New("dict: a key is not a string")
				}
				m[k] = kv[i+1]
			}
			return m, nil
		},
	}
	con.pages = map[string]*template.Template{}
	for _, page := range []string{"login", "overview", "search", "message", "deadletters", "error"} {
		t, err := template.New(page).Funcs(funcs).ParseFS(templateFS, "templates/layout.tmpl", "templates/parts.tmpl", "templates/"+page+".tmpl")
		if err != nil {
			return err
		}
		con.pages[page] = t
	}
	return nil
}

// fmtTime shows a time in UTC to the second.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return fmtTime(*t)
}

// loginData is the sign-in page's.
type loginData struct {
	Next  string
	Error string
	// PlainHTTP: the browser will not keep the Secure session cookie.
	PlainHTTP bool
}

// plainHTTP reports whether the browser reached the console over plain
// HTTP on a host other than loopback, where it drops Secure cookies: the
// sign-in would not last.
func plainHTTP(r *http.Request) bool {
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		return false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// loginPage shows the sign-in form, or goes on to the console when the
// visitor is signed in already or the console is open.
func (con *Console) loginPage(c *gin.Context) {
	next := localTarget(c.Query("next"), Path)
	if len(con.keys) == 0 {
		c.Redirect(http.StatusSeeOther, next)
		return
	}
	secret, ok := con.loadSecret(c)
	if !ok {
		return
	}
	if ck, err := c.Cookie(CookieName); err == nil && verifySession(secret, con.keys, ck, con.now()) {
		c.Redirect(http.StatusSeeOther, next)
		return
	}
	con.takeFlash(c, secret)
	con.render(c, http.StatusOK, "login", view{Title: "Sign in", Data: loginData{Next: next, PlainHTTP: plainHTTP(c.Request)}})
}

// login checks the API key of the sign-in form and starts a session.
func (con *Console) login(c *gin.Context) {
	next := localTarget(c.PostForm("next"), Path)
	if len(con.keys) == 0 {
		c.Redirect(http.StatusSeeOther, next)
		return
	}
	secret, ok := con.loadSecret(c)
	if !ok {
		return
	}
	idx := keyIndex(con.keys, c.PostForm("api_key"))
	if idx < 0 {
		con.log.InfoContext(c.Request.Context(), "console: sign-in refused", "request_id", requestID(c))
		con.render(c, http.StatusUnauthorized, "login", view{Title: "Sign in", Data: loginData{Next: next, Error: "That is not an API key of this service.", PlainHTTP: plainHTTP(c.Request)}})
		return
	}
	now := con.now()
	v, exp := newSession(secret, fingerprint(secret, con.keys[idx]), now, con.ttl)
	setCookie(c, CookieName, v, exp, now)
	con.log.InfoContext(c.Request.Context(), "console: signed in", "request_id", requestID(c), "key_index", idx, "until", exp)
	c.Redirect(http.StatusSeeOther, next)
}

// logout ends the session on this browser.
func (con *Console) logout(c *gin.Context) {
	setCookie(c, CookieName, "", time.Time{}, con.now())
	con.log.InfoContext(c.Request.Context(), "console: signed out", "request_id", requestID(c))
	target := Path + "/login"
	if len(con.keys) == 0 {
		target = Path
	}
	con.redirectWithFlash(c, target, flash{Kind: "ok", Text: "Signed out."})
}

// appRow is one app on the overview.
type appRow struct {
	service.AppStatus
	Shown string // active, paced or paused
}

// overviewData is the overview page's.
type overviewData struct {
	Now    time.Time
	Charts []chart
	Queue  service.QueueState
	Apps   []appRow
}

// overview shows the charts, the queue and the apps.
func (con *Console) overview(c *gin.Context) {
	ov, err := con.backend.Overview(c.Request.Context())
	if err != nil {
		con.fail(c, "overview", err)
		return
	}
	d := overviewData{Now: con.now(), Charts: buildCharts(ov.Minutes), Queue: ov.Queue}
	for _, a := range ov.Apps {
		row := appRow{AppStatus: a, Shown: "active"}
		switch {
		case a.State == service.AppPaused:
			row.Shown = "paused"
		case a.RateLimit > 0:
			row.Shown = "paced"
		}
		d.Apps = append(d.Apps, row)
	}
	con.render(c, http.StatusOK, "overview", view{Title: "Overview", Nav: "overview", Refresh: con.refresh, Data: d})
}

// statuses are the statuses the search form offers.
func statuses() []service.Status {
	return []service.Status{service.StatusQueued, service.StatusSending, service.StatusRetrying, service.StatusSent, service.StatusDelivered, service.StatusFailed}
}

// reasons are the failure reasons the search and dead letters forms offer.
func reasons() []string {
	return []string{
		service.ReasonPermanentErrcode, service.ReasonAttemptsExhausted, service.ReasonUnconfirmed, service.ReasonNotFollowing,
		service.ReasonUserBlock, service.ReasonSystemFailed, service.ReasonFreqLimit, service.ReasonDeliveryFailed, service.ReasonUnknownApp,
	}
}

// searchForm is the search form as the operator filled it in, with an
// error per field.
type searchForm struct {
	App, ToUser, Status, Reason, TemplateID, RequestID, Since, Until, Limit, Cursor string
	Errors                                                                          map[string]string
}

// values returns the form as a query, without the cursor.
func (f searchForm) values() url.Values {
	v := url.Values{}
	for _, kv := range [][2]string{
		{"app", f.App}, {"touser", f.ToUser}, {"status", f.Status}, {"reason", f.Reason}, {"template_id", f.TemplateID},
		{"request_id", f.RequestID}, {"since", f.Since}, {"until", f.Until}, {"limit", f.Limit},
	} {
		if kv[1] != "" {
			v.Set(kv[0], kv[1])
		}
	}
	return v
}

// parseSearch reads the search form into a query; a value it cannot use
// is an error on its field.
func parseSearch(c *gin.Context) (service.MessageQuery, searchForm) {
	get := func(k string) string { return strings.TrimSpace(c.Query(k)) }
	f := searchForm{
		App: get("app"), ToUser: get("touser"), Status: get("status"), Reason: get("reason"), TemplateID: get("template_id"),
		RequestID: get("request_id"), Since: get("since"), Until: get("until"), Limit: get("limit"), Cursor: get("cursor"),
		Errors: map[string]string{},
	}
	q := service.MessageQuery{App: f.App, ToUser: f.ToUser, Status: service.Status(f.Status), Reason: f.Reason,
		TemplateID: f.TemplateID, RequestID: f.RequestID, Cursor: f.Cursor}
	for field, p := range map[string]struct {
		in  string
		out *time.Time
	}{"since": {f.Since, &q.Since}, "until": {f.Until, &q.Until}} {
		if p.in == "" {
			continue
		}
		t, ok := parseFormTime(p.in)
		if !ok {
			f.Errors[field] = "not a time: use RFC 3339 (2026-12-05T08:00:00Z) or 2026-12-05T08:00 (UTC)"
			continue
		}
		*p.out = t
	}
	if f.Limit != "" {
		n, err := strconv.Atoi(f.Limit)
		if err != nil || n < 1 || n > service.MaxSearchLimit {
			f.Errors["limit"] = "a number from 1 to " + strconv.Itoa(service.MaxSearchLimit)
		}
		q.Limit = n
	}
	return q, f
}

// parseFormTime reads RFC 3339, or a datetime-local input's value (UTC).
func parseFormTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// searchData is the search and dead letters pages'.
type searchData struct {
	Form     searchForm
	Statuses []service.Status
	Reasons  []string
	Searched bool // the query ran (no form errors)
	Page     *service.MessagePage
	Next     string // the next page's URL
	Return   string // this page's URL, for the redrive forms
}

// search shows the search form and, when its values are usable, the
// matching messages.
func (con *Console) search(c *gin.Context) {
	q, f := parseSearch(c)
	d := searchData{Form: f, Statuses: statuses(), Reasons: reasons()}
	con.runSearch(c, q, &d, Path+"/messages")
	con.render(c, statusOf(d), "search", view{Title: "Search", Nav: "search", Data: d})
}

// deadLetters lists failed messages, filtered by app and reason.
func (con *Console) deadLetters(c *gin.Context) {
	q, f := parseSearch(c)
	f = searchForm{App: f.App, Reason: f.Reason, Cursor: f.Cursor, Errors: map[string]string{}}
	q = service.MessageQuery{App: q.App, Status: service.StatusFailed, Reason: q.Reason, Cursor: q.Cursor}
	d := searchData{Form: f, Reasons: reasons()}
	con.runSearch(c, q, &d, Path+"/deadletters")
	con.render(c, statusOf(d), "deadletters", view{Title: "Dead letters", Nav: "deadletters", Data: d})
}

// runSearch runs q unless the form has errors, and puts a filter the
// backend refuses on its field.
func (con *Console) runSearch(c *gin.Context, q service.MessageQuery, d *searchData, base string) {
	d.Return = c.Request.URL.RequestURI()
	if len(d.Form.Errors) > 0 {
		return
	}
	page, err := con.backend.Search(c.Request.Context(), q)
	var qe *store.QueryError
	switch {
	case errors.As(err, &qe):
		field := qe.Field
		if !isFormField(field) {
			field = "form"
		}
		d.Form.Errors[field] = qe.Message
		return
	case err != nil:
		con.fail(c, "search", err)
		return
	}
	d.Searched, d.Page = true, page
	if page.NextCursor != "" {
		v := d.Form.values()
		v.Set("cursor", page.NextCursor)
		d.Next = base + "?" + v.Encode()
	}
}

// isFormField reports whether the search form has a field by that name.
func isFormField(name string) bool {
	switch name {
	case "app", "touser", "status", "reason", "template_id", "request_id", "since", "until", "limit", "cursor":
		return true
	}
	return false
}

// statusOf is 400 for a search whose form has errors.
func statusOf(d searchData) int {
	if len(d.Form.Errors) > 0 {
		return http.StatusBadRequest
	}
	return http.StatusOK
}

// message shows one message with its timeline.
func (con *Console) message(c *gin.Context) {
	m, err := con.backend.Message(c.Request.Context(), c.Param("id"))
	if err != nil {
		con.fail(c, "message", err)
		return
	}
	con.render(c, http.StatusOK, "message", view{Title: "Message " + m.ID, Nav: "search",
		Data: struct {
			M      *service.Message
			Return string
		}{m, c.Request.URL.RequestURI()}})
}

// redrive puts a failed message back in the queue and goes back to the
// page the button was on.
func (con *Console) redrive(c *gin.Context) {
	id := c.Param("id")
	force := c.PostForm("force") != ""
	target := localTarget(c.PostForm("return"), Path+"/messages/"+url.PathEscape(id))
	rid := requestID(c)
	m, err := con.backend.Redrive(c.Request.Context(), id, service.RedriveRequest{Force: force}, rid)
	var qe *store.QueryError
	var f flash
	switch {
	case err == nil:
		con.log.InfoContext(c.Request.Context(), "console: message redriven", "request_id", rid, "message_id", id, "force", force)
		f = flash{Kind: "ok", Text: "Message " + id + " redriven: it is " + string(m.Status) + " again."}
	case errors.Is(err, store.ErrNotFound):
		f = flash{Kind: "error", Text: "Message " + id + " does not exist."}
	case errors.Is(err, store.ErrNotFailed):
		f = flash{Kind: "error", Text: "Message " + id + " has not failed: only a failed message can be redriven."}
	case errors.Is(err, store.ErrForceRequired):
		f = flash{Kind: "error", Text: "Message " + id + " failed for a reason that needs Force: a resend may reach the user twice or fail again."}
	case errors.As(err, &qe):
		f = flash{Kind: "error", Text: "Cannot redrive " + id + ": " + qe.Message}
	case errors.Is(err, store.ErrUnavailable):
		con.log.WarnContext(c.Request.Context(), "console: redrive: store unavailable", "request_id", rid, "message_id", id, "err", err)
		f = flash{Kind: "error", Text: "The store is unavailable; nothing changed. Try again in a moment."}
	default:
		con.log.ErrorContext(c.Request.Context(), "console: redrive failed", "request_id", rid, "message_id", id, "err", err)
		f = flash{Kind: "error", Text: "Redrive of " + id + " failed (request " + rid + ")."}
	}
	con.redirectWithFlash(c, target, f)
}

// resume ends an app's pause and goes back to the overview.
func (con *Console) resume(c *gin.Context) {
	app := c.Param("app")
	rid := requestID(c)
	st, err := con.backend.ResumeApp(c.Request.Context(), app)
	var f flash
	switch {
	case err == nil:
		con.log.InfoContext(c.Request.Context(), "console: app resumed", "request_id", rid, "app", app)
		f = flash{Kind: "ok", Text: "App " + app + " resumed: it is " + string(st.State) + "."}
	case errors.Is(err, store.ErrUnavailable):
		con.log.WarnContext(c.Request.Context(), "console: resume: store unavailable", "request_id", rid, "app", app, "err", err)
		f = flash{Kind: "error", Text: "The store is unavailable; nothing changed. Try again in a moment."}
	default:
		con.log.WarnContext(c.Request.Context(), "console: resume failed", "request_id", rid, "app", app, "err", err)
		f = flash{Kind: "error", Text: "Cannot resume app " + app + " (request " + rid + ")."}
	}
	con.redirectWithFlash(c, Path, f)
}
