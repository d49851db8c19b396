package mockwx

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/wxpush/wxpush/internal/wechat"
)

// maxRequestBody bounds what a WeChat endpoint reads.
const maxRequestBody = 1 << 20

// applyFault carries out the pre-answer part of a decision: its latency,
// and an errcode or HTTP status answer. It reports whether it answered.
// Connection faults (reset, timeout, malformed, empty) are applied after
// the call was processed, by breakResponse: WeChat did the work and the
// answer was lost, which is what client_msg_id and token grace exist for.
// record, when set, puts an injected errcode's call in the ledger before
// the answer is written.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, d Decision, record func(errcode int)) bool {
	if len(d.RuleIDs) > 0 {
		s.stats.faultsFired.Add(1)
	}
	if d.Delay > 0 {
		t := time.NewTimer(d.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
		case <-s.closing:
		}
		t.Stop()
	}
	switch {
	case d.ErrCode != 0:
		s.stats.countInjected("errcode")
		resp := s.errResponse(d.ErrCode, d.ErrMsg)
		if record != nil {
			// In the ledger before the client has the answer, as every
			// other answer is: a client that reads the ledger once it has
			// its answer finds the call there.
			record(d.ErrCode)
		}
		writeWeChat(w, resp)
		return true
	case d.HTTPStatus != 0:
		s.stats.countInjected("http_status")
		writeHTTPStatus(w, d.HTTPStatus)
		return true
	}
	return false
}

// --- tokens -----------------------------------------------------------------

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	s.stats.tokenCalls.Add(1)
	q := r.URL.Query()
	appID := q.Get("appid")
	d := s.faults.Decide(Call{Endpoint: EndpointToken, AppID: appID})
	if s.applyFault(w, r, d, nil) {
		return
	}
	resp := s.issueClassic(q.Get("grant_type"), appID, q.Get("secret"))
	s.breakResponse(w, r, d, resp)
}

// credentialsError checks grant_type, appid and secret like WeChat.
func (s *Server) credentialsError(grantType, appID, secret string) (*appState, int) {
	switch {
	case appID == "":
		return nil, wechat.CodeAppIDMissing
	case grantType != wechat.GrantTypeClientCredential:
		return nil, wechat.CodeInvalidGrantType
	}
	app := s.apps[appID]
	switch {
	case app == nil:
		return nil, wechat.CodeInvalidAppID
	case secret == "":
		return nil, wechat.CodeSecretMissing
	case secret != app.Secret:
		return nil, wechat.CodeInvalidAppSecret
	}
	return app, 0
}

func (s *Server) issueClassic(grantType, appID, secret string) any {
	now := s.now()
	s.mu.Lock()
	app, code := s.credentialsError(grantType, appID, secret)
	if code == 0 {
		app.rollCounters(now)
		if app.tokenCalls >= app.TokenDailyLimit {
			code = wechat.CodeQuotaExceeded
		}
	}
	if code != 0 {
		s.mu.Unlock()
		return s.errResponse(code, "")
	}
	app.tokenCalls++
	if prev := app.classic; prev != nil && prev.graceUntil.IsZero() {
		prev.graceUntil = now.Add(seconds(s.settings.TokenGraceSeconds))
	}
	tok := s.mintLocked(app, false, now)
	app.classic = tok
	s.mu.Unlock()
	s.stats.countErrcode(0)
	return tokenOK{AccessToken: tok.value, ExpiresIn: app.TokenExpiresIn}
}

// tokenOK is a token endpoint's success answer: WeChat sends only these two
// fields, no errcode or errmsg.
type tokenOK struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
}

// mintLocked issues a new token for app. s.mu is held.
func (s *Server) mintLocked(app *appState, stable bool, now time.Time) *tokenRec {
	tok := &tokenRec{app: app, value: newTokenValue(s.rng), stable: stable, expires: now.Add(seconds(app.TokenExpiresIn))}
	s.tokens[tok.value] = tok
	s.mints++
	if s.mints%512 == 0 { // forget tokens long dead, so the table stays bounded
		for v, t := range s.tokens {
			if now.Sub(t.expires) > 24*time.Hour {
				delete(s.tokens, v)
			}
		}
	}
	return tok
}

func (s *Server) handleStableToken(w http.ResponseWriter, r *http.Request) {
	s.stats.stableCalls.Add(1)
	if r.Method != http.MethodPost {
		writeWeChat(w, s.errResponse(wechat.CodeRequirePost, ""))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	var req wechat.StableTokenRequest
	if err == nil && len(bytes.TrimSpace(body)) == 0 {
		writeWeChat(w, s.errResponse(wechat.CodeEmptyPostData, ""))
		return
	}
	if err != nil || decodeJSON(body, &req) != nil {
		writeWeChat(w, s.errResponse(wechat.CodeDataFormatError, ""))
		return
	}
	d := s.faults.Decide(Call{Endpoint: EndpointStableToken, AppID: req.AppID})
	if s.applyFault(w, r, d, nil) {
		return
	}
	s.breakResponse(w, r, d, s.issueStable(req))
}

func (s *Server) issueStable(req wechat.StableTokenRequest) any {
	now := s.now()
	s.mu.Lock()
	app, code := s.credentialsError(req.GrantType, req.AppID, req.Secret)
	if code == 0 {
		app.rollCounters(now)
		if app.stableCalls >= app.StableTokenDailyLimit {
			code = wechat.CodeQuotaExceeded
		}
	}
	if code == 0 && req.ForceRefresh && app.forces >= app.ForceRefreshDailyLimit {
		code = wechat.CodeQuotaExceeded
	}
	if code != 0 {
		s.mu.Unlock()
		return s.errResponse(code, "")
	}
	app.stableCalls++
	cur := app.stable
	valid := cur != nil && !cur.killed && !cur.revoked && now.Before(cur.expires)
	handover := seconds(s.settings.StableHandoverSeconds)
	switch {
	case req.ForceRefresh && valid && !app.lastForce.IsZero() && now.Sub(app.lastForce) < seconds(app.ForceRefreshSpacingSeconds):
		// Too soon after the last force refresh: WeChat returns the current token.
	case req.ForceRefresh:
		app.forces++
		app.lastForce = now
		if cur != nil {
			cur.revoked = true // force refresh invalidates the previous stable token
		}
		app.stable = s.mintLocked(app, true, now)
	case !valid:
		app.stable = s.mintLocked(app, true, now)
	case cur.expires.Sub(now) <= handover:
		// The last minutes of validity: hand over to a successor; the old
		// token stays valid until its own expiry.
		app.stable = s.mintLocked(app, true, now)
	}
	tok := app.stable
	s.mu.Unlock()
	s.stats.countErrcode(0)
	remaining := int(tok.expires.Sub(now) / time.Second)
	return tokenOK{AccessToken: tok.value, ExpiresIn: remaining}
}

// checkToken validates the access_token query parameter of an API call and
// returns its app, or the errcode WeChat would answer.
func (s *Server) checkToken(r *http.Request) (*appState, int) {
	v := r.URL.Query().Get("access_token")
	if v == "" {
		return nil, wechat.CodeTokenMissing
	}
	if !wellFormedToken(v) {
		return nil, wechat.CodeInvalidToken
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	tok := s.tokens[v]
	switch {
	case tok == nil:
		return nil, wechat.CodeInvalidCredential
	case tok.revoked:
		return nil, wechat.CodeInvalidCredential
	case tok.killed, !now.Before(tok.expires):
		return nil, wechat.CodeTokenExpired
	case !tok.graceUntil.IsZero() && !now.Before(tok.graceUntil):
		return nil, wechat.CodeInvalidCredential
	}
	return tok.app, 0
}

// ExpireTokens makes every current token of appID (all apps when empty)
// answer 42001 from now on, and returns how many it expired.
func (s *Server) ExpireTokens(appID string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if appID != "" && s.apps[appID] == nil {
		return 0, errUnknownApp
	}
	now := s.now()
	n := 0
	for _, t := range s.tokens {
		if (appID == "" || t.app.AppID == appID) && !t.killed && !t.revoked && now.Before(t.expires) {
			t.killed = true
			n++
		}
	}
	return n, nil
}

var errUnknownApp = errors.New("unknown appid")

// --- template send ----------------------------------------------------------

// tokenPost is the start of every token-checked POST with a JSON body: it
// answers 43002 to another method, the token's errcode to a bad token and
// 44002 to an empty body, and otherwise returns the app and the body (up
// to one byte over maxRequestBody, which the caller refuses). ok is false
// when it answered, or the client went away.
func (s *Server) tokenPost(w http.ResponseWriter, r *http.Request) (app *appState, body []byte, ok bool) {
	if r.Method != http.MethodPost {
		writeWeChat(w, s.errResponse(wechat.CodeRequirePost, ""))
		return nil, nil, false
	}
	app, code := s.checkToken(r)
	if code != 0 {
		writeWeChat(w, s.errResponse(code, ""))
		return nil, nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil {
		return nil, nil, false // the client went away
	}
	if len(bytes.TrimSpace(body)) == 0 {
		writeWeChat(w, s.errResponse(wechat.CodeEmptyPostData, ""))
		return nil, nil, false
	}
	return app, body, true
}

func (s *Server) handleTemplateSend(w http.ResponseWriter, r *http.Request) {
	s.stats.sendCalls.Add(1)
	app, body, ok := s.tokenPost(w, r)
	if !ok {
		return
	}
	receivedAt := s.now()
	var msg wechat.TemplateMessage
	switch {
	case len(body) > maxRequestBody || decodeJSON(body, &msg) != nil:
		resp := s.errResponse(wechat.CodeDataFormatError, "")
		s.record(receivedAt, app.AppID, &msg, nil, 0, resp.ErrCode, false)
		writeWeChat(w, resp)
		return
	}
	d := s.faults.Decide(Call{Endpoint: EndpointTemplateSend, AppID: app.AppID, ToUser: msg.ToUser, TemplateID: msg.TemplateID})
	if s.applyFault(w, r, d, func(code int) { s.record(receivedAt, app.AppID, &msg, body, 0, code, false) }) {
		return
	}

	resp := s.send(app, &msg, body, receivedAt, d)
	s.breakResponse(w, r, d, resp)
}

// send validates and accepts one template message. It returns the answer.
func (s *Server) send(app *appState, msg *wechat.TemplateMessage, body []byte, receivedAt time.Time, d Decision) any {
	code, detail := s.validate(app, msg)
	if code != 0 {
		resp := s.errResponse(code, detail)
		s.record(receivedAt, app.AppID, msg, body, 0, code, false)
		return resp
	}
	now := s.now()
	s.mu.Lock()
	if msg.ClientMsgID != "" {
		if id, ok := s.dedup.lookup(app.AppID, msg.ToUser, msg.ClientMsgID, now); ok {
			s.mu.Unlock()
			s.stats.deduplicated.Add(1)
			s.stats.countErrcode(0)
			s.record(receivedAt, app.AppID, msg, body, id, 0, true)
			return wechat.SendResponse{Response: wechat.Response{ErrMsg: "ok"}, MsgID: id}
		}
	}
	app.rollCounters(now)
	if app.sends >= app.TemplateDailyLimit {
		s.mu.Unlock()
		resp := s.errResponse(wechat.CodeQuotaExceeded, "")
		s.record(receivedAt, app.AppID, msg, body, 0, wechat.CodeQuotaExceeded, false)
		return resp
	}
	app.sends++
	s.msgid += 1 + s.rng.Int64N(64)
	id := s.msgid
	if msg.ClientMsgID != "" {
		s.dedup.insert(app.AppID, msg.ToUser, msg.ClientMsgID, id, now)
	}
	blocked := app.blocked[msg.ToUser]
	s.mu.Unlock()

	s.stats.delivered.Add(1)
	s.stats.countErrcode(0)
	s.record(receivedAt, app.AppID, msg, body, id, 0, false)
	s.schedulePush(app, msg, id, blocked, d)
	return wechat.SendResponse{Response: wechat.Response{ErrMsg: "ok"}, MsgID: id}
}

// validate applies WeChat's checks to a template message in WeChat's order:
// openid, template, data, mini program, follower.
func (s *Server) validate(app *appState, msg *wechat.TemplateMessage) (int, string) {
	switch {
	case msg.ToUser == "" || !wellFormedOpenID(msg.ToUser):
		return wechat.CodeInvalidOpenID, ""
	case msg.TemplateID == "" || len(msg.TemplateID) > 64:
		return wechat.CodeTemplateIDSize, ""
	}
	tpl := app.templates[msg.TemplateID]
	if tpl == nil {
		return wechat.CodeInvalidTemplateID, ""
	}
	values := make(map[string]string, len(msg.Data))
	for k, v := range msg.Data {
		values[k] = v.Value
	}
	if problem := ValidateData(tpl.Fields, values); problem != "" {
		return wechat.CodeArgumentInvalid, "argument invalid! " + problem
	}
	if mp := msg.MiniProgram; mp != nil && mp.AppID != "" {
		page, _, _ := strings.Cut(mp.PagePath, "?")
		pages, bound := app.pages[mp.AppID]
		if !bound || (page != "" && !pages[page]) {
			return wechat.CodeInvalidPagePath, ""
		}
	}
	if !app.follows(msg.ToUser) {
		return wechat.CodeRequireSubscribe, ""
	}
	return 0, ""
}

// record appends one send call to the ledger.
func (s *Server) record(at time.Time, appID string, msg *wechat.TemplateMessage, body []byte, msgID int64, code int, dedup bool) {
	var data json.RawMessage
	if body != nil && len(msg.Data) > 0 {
		if b, err := wechat.Marshal(msg.Data); err == nil {
			data = b
		}
	}
	s.ledger.Append(LedgerEntry{
		ReceivedAt: at, AppID: appID, ToUser: msg.ToUser, TemplateID: msg.TemplateID,
		ClientMsgID: msg.ClientMsgID, MsgID: msgID, ErrCode: code, Deduplicated: dedup, Data: data,
	})
}

// schedulePush queues the TEMPLATESENDJOBFINISH report of an accepted send.
// A "callback" rule can change its status, delay it or lose it.
func (s *Server) schedulePush(app *appState, msg *wechat.TemplateMessage, msgID int64, blocked bool, d Decision) {
	if app.CallbackURL == "" || app.crypter == nil {
		return
	}
	status := wechat.StatusSuccess
	if blocked {
		status = wechat.StatusUserBlock
	}
	if d.DeliveryStatus != "" {
		status = d.DeliveryStatus
	}
	cb := s.faults.Decide(Call{Endpoint: EndpointCallback, AppID: app.AppID, ToUser: msg.ToUser, TemplateID: msg.TemplateID})
	if len(cb.RuleIDs) > 0 {
		s.stats.faultsFired.Add(1)
	}
	if cb.DeliveryStatus != "" {
		status = cb.DeliveryStatus
	}
	s.pusher.Schedule(Push{
		URL:     app.CallbackURL,
		Mode:    app.CallbackMode,
		Crypter: app.crypter,
		Message: wechat.Message{
			ToUserName: app.OriginalID, FromUserName: msg.ToUser, MsgType: wechat.MsgTypeEvent,
			Event: wechat.EventTemplateSendJobFinish, MsgID: msgID, Status: status,
		},
		Delay: time.Duration(s.settings.CallbackDelayMS)*time.Millisecond + cb.Delay,
		Drop:  cb.Fault != "", // the report is lost
	})
}

// --- quota and network helpers -----------------------------------------------

func (s *Server) handleClearQuota(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeWeChat(w, s.errResponse(wechat.CodeRequirePost, ""))
		return
	}
	app, code := s.checkToken(r)
	if code != 0 {
		writeWeChat(w, s.errResponse(code, ""))
		return
	}
	var req wechat.ClearQuotaRequest
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	if decodeJSON(body, &req) != nil {
		writeWeChat(w, s.errResponse(wechat.CodeDataFormatError, ""))
		return
	}
	if req.AppID != app.AppID {
		writeWeChat(w, s.errResponse(wechat.CodeInvalidAppID, ""))
		return
	}
	now := s.now()
	s.mu.Lock()
	app.rollCounters(now)
	if app.clears >= app.ClearQuotaMonthlyLimit {
		s.mu.Unlock()
		writeWeChat(w, s.errResponse(wechat.CodeClearQuotaLimit, ""))
		return
	}
	app.clears++
	app.tokenCalls, app.stableCalls, app.sends, app.forces = 0, 0, 0, 0
	s.mu.Unlock()
	s.stats.countErrcode(0)
	writeWeChat(w, wechat.Response{ErrMsg: "ok"})
}

func (s *Server) handleCallbackIP(w http.ResponseWriter, r *http.Request) {
	if _, code := s.checkToken(r); code != 0 {
		writeWeChat(w, s.errResponse(code, ""))
		return
	}
	s.stats.countErrcode(0)
	writeWeChat(w, wechat.CallbackIPResponse{IPList: s.settings.CallbackIPs})
}

// --- dedup ------------------------------------------------------------------

// dedupIndex remembers (appid, openid, client_msg_id) -> msgid for the
// dedup window in time buckets, so memory is bounded by the send rate times
// the window and expiry is O(1) amortized.
type dedupIndex struct {
	window  time.Duration
	bucket  time.Duration
	buckets map[int64]map[string]dedupVal
}

type dedupVal struct {
	msgID int64
	at    time.Time
}

func newDedupIndex(window time.Duration) *dedupIndex {
	b := window / 10
	if b <= 0 {
		b = time.Second
	}
	return &dedupIndex{window: window, bucket: b, buckets: map[int64]map[string]dedupVal{}}
}

func dedupKey(appID, openID, clientMsgID string) string {
	return appID + "\x00" + openID + "\x00" + clientMsgID
}

func (x *dedupIndex) lookup(appID, openID, clientMsgID string, now time.Time) (int64, bool) {
	key := dedupKey(appID, openID, clientMsgID)
	for _, m := range x.buckets {
		if v, ok := m[key]; ok && now.Sub(v.at) < x.window {
			return v.msgID, true
		}
	}
	return 0, false
}

func (x *dedupIndex) insert(appID, openID, clientMsgID string, msgID int64, now time.Time) {
	idx := now.UnixNano() / int64(x.bucket)
	m := x.buckets[idx]
	if m == nil {
		m = map[string]dedupVal{}
		x.buckets[idx] = m
		for i := range x.buckets { // drop buckets wholly outside the window
			if (idx-i)*int64(x.bucket) > int64(x.window)+int64(x.bucket) {
				delete(x.buckets, i)
			}
		}
	}
	m[dedupKey(appID, openID, clientMsgID)] = dedupVal{msgID: msgID, at: now}
}
