package mockwx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wxpush/wxpush/internal/wechat"
)

// Event types a simulated user can cause (the "type" of POST
// /_mock/events), named as WeChat's Event or MsgType.
const (
	EventSubscribe   = "subscribe"   // follow; event_key "qrscene_<scene>" for scan-to-follow
	EventUnsubscribe = "unsubscribe" // unfollow
	EventScan        = "SCAN"        // a follower scans a parameterised QR code
	EventClick       = "CLICK"       // a click menu button
	EventView        = "VIEW"        // a URL menu button
	EventLocation    = "LOCATION"    // location report
	MessageText      = "text"        // a text message
	MessageImage     = "image"       // an image message
)

// maxEventBatch bounds the events of one POST /_mock/events.
const maxEventBatch = 1000

// EventRequest is one simulated user action, the body of POST
// /_mock/events (or one item of its "events" batch). Only the fields of its
// Type are allowed; the others must be absent.
type EventRequest struct {
	// AppID is the app the user acts on; empty means the first app.
	AppID string `json:"appid,omitempty"`
	// OpenID is the user, the push's FromUserName.
	OpenID string `json:"openid"`
	// Type is subscribe, unsubscribe, SCAN, CLICK, VIEW, LOCATION, text or
	// image.
	Type string `json:"type"`
	// EventKey: subscribe (optional, "qrscene_<scene>" for scan-to-follow),
	// SCAN (required, the scene), CLICK (required, the button key), VIEW
	// (required, the URL).
	EventKey string `json:"event_key,omitempty"`
	// Ticket: subscribe with a qrscene_ key and SCAN; generated when empty.
	Ticket string `json:"ticket,omitempty"`
	// MenuID: VIEW, an integer; generated when absent.
	MenuID *int64 `json:"menu_id,omitempty"`
	// Latitude and Longitude (required) and Precision (default 65):
	// LOCATION.
	Latitude  *float64 `json:"latitude,omitempty"`
	Longitude *float64 `json:"longitude,omitempty"`
	Precision *float64 `json:"precision,omitempty"`
	// Content: text, required.
	Content string `json:"content,omitempty"`
	// PicURL and MediaID: image, generated when empty.
	PicURL  string `json:"pic_url,omitempty"`
	MediaID string `json:"media_id,omitempty"`
}

// EventBatch is the batch form of POST /_mock/events.
type EventBatch struct {
	Events []EventRequest `json:"events"`
}

// EventCreated answers a single POST /_mock/events.
type EventCreated struct {
	ID string `json:"id"`
}

// EventsCreated answers a batch POST /_mock/events: the ids in order.
type EventsCreated struct {
	IDs []string `json:"ids"`
}

// eventError is a bad event, naming the field at fault.
type eventError struct {
	field, msg string
	status     int    // 400 unless set
	code       string // invalid_request unless set
}

func (e *eventError) Error() string { return e.field + ": " + e.msg }

func badEvent(field, format string, args ...any) *eventError {
	return &eventError{field: field, msg: fmt.Sprintf(format, args...)}
}

// eventPlan is a validated event, ready to record and push.
type eventPlan struct {
	app   *appState
	req   EventRequest
	extra []Element
	msgID int64 // MsgId of a message; 0 for events
}

// validateEvent checks req's fields for its type. s.mu is held (it reads
// apps and follow state).
func (s *Server) validateEventLocked(req *EventRequest) *eventError {
	app := s.apps[req.AppID]
	switch {
	case req.AppID == "" && len(s.order) > 0:
		app = s.apps[s.order[0]]
		req.AppID = app.AppID
	case app == nil:
		return badEvent("appid", "no app %q", req.AppID)
	}
	if app.CallbackURL == "" || app.crypter == nil {
		return &eventError{field: "appid", msg: "app " + app.AppID + " has no callback_url to push to", status: http.StatusConflict, code: "no_callback"}
	}
	if req.OpenID == "" {
		return badEvent("openid", "required")
	}
	if !wellFormedOpenID(req.OpenID) {
		return badEvent("openid", "%q is not a well-formed openid (6-64 of A-Z a-z 0-9 _ -)", req.OpenID)
	}
	// allowed lists the optional fields of each type; set ones of other
	// types are errors.
	set := map[string]bool{
		"event_key": req.EventKey != "", "ticket": req.Ticket != "", "menu_id": req.MenuID != nil,
		"latitude": req.Latitude != nil, "longitude": req.Longitude != nil, "precision": req.Precision != nil,
		"content": req.Content != "", "pic_url": req.PicURL != "", "media_id": req.MediaID != "",
	}
	allowed := map[string][]string{
		EventSubscribe: {"event_key", "ticket"}, EventUnsubscribe: nil, EventScan: {"event_key", "ticket"},
		EventClick: {"event_key"}, EventView: {"event_key", "menu_id"},
		EventLocation: {"latitude", "longitude", "precision"},
		MessageText:   {"content"}, MessageImage: {"pic_url", "media_id"},
	}
	fields, ok := allowed[req.Type]
	if !ok {
		if req.Type == "" {
			return badEvent("type", "required: one of subscribe, unsubscribe, SCAN, CLICK, VIEW, LOCATION, text, image")
		}
		return badEvent("type", "%q is not one of subscribe, unsubscribe, SCAN, CLICK, VIEW, LOCATION, text, image (case matters)", req.Type)
	}
	for _, name := range []string{"event_key", "ticket", "menu_id", "latitude", "longitude", "precision", "content", "pic_url", "media_id"} {
		if set[name] && !contains(fields, name) {
			return badEvent(name, "not a field of type %s", req.Type)
		}
	}
	for name, v := range map[string]string{"event_key": req.EventKey, "ticket": req.Ticket, "content": req.Content, "pic_url": req.PicURL, "media_id": req.MediaID} {
		if !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' && r != '\r' }) {
			return badEvent(name, "must be UTF-8 text without control characters")
		}
	}
	switch req.Type {
	case EventSubscribe:
		if req.EventKey != "" && (!strings.HasPrefix(req.EventKey, "qrscene_") || len(req.EventKey) == len("qrscene_")) {
			return badEvent("event_key", "a scan-to-follow key is qrscene_<scene> (got %q); leave it out for a plain follow", req.EventKey)
		}
		if req.Ticket != "" && req.EventKey == "" {
			return badEvent("ticket", "only with a qrscene_ event_key")
		}
	case EventScan:
		switch {
		case req.EventKey == "":
			return badEvent("event_key", "required: the QR code's scene (scene_id or scene_str)")
		case strings.HasPrefix(req.EventKey, "qrscene_"):
			return badEvent("event_key", "a SCAN key is the scene without the qrscene_ prefix")
		}
	case EventClick:
		if req.EventKey == "" || len(req.EventKey) > 128 {
			return badEvent("event_key", "required: the button's key, at most 128 bytes")
		}
	case EventView:
		if u, err := url.Parse(req.EventKey); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return badEvent("event_key", "required: the button's http(s) URL")
		}
		if req.MenuID != nil && *req.MenuID < 0 {
			return badEvent("menu_id", "must not be negative")
		}
	case EventLocation:
		if err := checkCoord("latitude", req.Latitude, 90, true); err != nil {
			return err
		}
		if err := checkCoord("longitude", req.Longitude, 180, true); err != nil {
			return err
		}
		if req.Precision != nil && !(*req.Precision >= 0 && *req.Precision <= 1e6) {
			return badEvent("precision", "must be between 0 and 1000000 metres")
		}
	case MessageText:
		if req.Content == "" {
			return badEvent("content", "required for a text message")
		}
		if len(req.Content) > 2048 {
			return badEvent("content", "at most 2048 bytes")
		}
	}
	if req.Type != EventSubscribe && !app.follows(req.OpenID) {
		return &eventError{field: "openid", msg: req.OpenID + " does not follow " + app.AppID + "; only a follower can cause " + req.Type + " (push subscribe first)",
			status: http.StatusConflict, code: "not_following"}
	}
	return nil
}

func checkCoord(name string, v *float64, limit float64, required bool) *eventError {
	switch {
	case v == nil && required:
		return badEvent(name, "required for LOCATION")
	case v != nil && (math.IsNaN(*v) || *v < -limit || *v > limit):
		return badEvent(name, "must be between %v and %v", -limit, limit)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// planEventLocked builds the push elements of a validated req, drawing
// generated values (tickets, menu ids, media ids, MsgIds) from the seeded
// RNG. s.mu is held.
func (s *Server) planEventLocked(req EventRequest) eventPlan {
	pl := eventPlan{app: s.apps[req.AppID], req: req}
	ev := func(name string) []Element {
		return []Element{{Name: "MsgType", Value: wechat.MsgTypeEvent}, {Name: "Event", Value: name}}
	}
	ticket := func() string {
		if req.Ticket != "" {
			return req.Ticket
		}
		return "gQH" + newTokenValue(s.rng)[len(tokenPrefix):len(tokenPrefix)+45]
	}
	switch req.Type {
	case EventSubscribe:
		// Real follows carry an empty EventKey; scan-to-follow adds Ticket.
		pl.extra = append(ev(EventSubscribe), Element{Name: "EventKey", Value: req.EventKey})
		if req.EventKey != "" {
			pl.extra = append(pl.extra, Element{Name: "Ticket", Value: ticket()})
		}
	case EventUnsubscribe:
		pl.extra = append(ev(EventUnsubscribe), Element{Name: "EventKey"})
	case EventScan:
		pl.extra = append(ev(EventScan), Element{Name: "EventKey", Value: req.EventKey}, Element{Name: "Ticket", Value: ticket()})
	case EventClick:
		pl.extra = append(ev(EventClick), Element{Name: "EventKey", Value: req.EventKey})
	case EventView:
		menu := int64(400000000 + s.rng.Int64N(100000000))
		if req.MenuID != nil {
			menu = *req.MenuID
		}
		pl.extra = append(ev(EventView), Element{Name: "EventKey", Value: req.EventKey},
			Element{Name: "MenuId", Value: strconv.FormatInt(menu, 10), Number: true})
	case EventLocation:
		prec := 65.0
		if req.Precision != nil {
			prec = *req.Precision
		}
		dec := func(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }
		pl.extra = append(ev(EventLocation),
			Element{Name: "Latitude", Value: dec(*req.Latitude), Number: true},
			Element{Name: "Longitude", Value: dec(*req.Longitude), Number: true},
			Element{Name: "Precision", Value: dec(prec), Number: true})
	case MessageText, MessageImage:
		s.msgid += 1 + s.rng.Int64N(64)
		pl.msgID = s.msgid
		pl.extra = []Element{{Name: "MsgType", Value: req.Type}}
		if req.Type == MessageText {
			pl.extra = append(pl.extra, Element{Name: "Content", Value: req.Content})
		} else {
			media := req.MediaID
			if media == "" {
				media = "MEDIA_" + newTokenValue(s.rng)[len(tokenPrefix):len(tokenPrefix)+40]
			}
			pic := req.PicURL
			if pic == "" {
				pic = "http://mmbiz.qpic.cn/mmbiz_jpg/" + strconv.FormatInt(pl.msgID, 36) + "/0"
			}
			pl.extra = append(pl.extra, Element{Name: "PicUrl", Value: pic}, Element{Name: "MediaId", Value: media})
		}
		pl.extra = append(pl.extra, Element{Name: "MsgId", Value: strconv.FormatInt(pl.msgID, 10), Number: true})
	}
	return pl
}

// PushEvents validates every request, and only when all are valid applies
// their effect on follow state and interactions, records them and schedules
// their pushes. It returns their ids in order, or an error naming the first
// bad field (prefixed events[i]. in a batch of more than one).
func (s *Server) PushEvents(reqs []EventRequest) ([]string, error) {
	now := s.now()
	s.mu.Lock()
	plans := make([]eventPlan, 0, len(reqs))
	// Validate against the state the earlier events of the batch leave, so
	// a batch may subscribe a user and then have them talk.
	undo := s.snapshotUsersLocked(reqs)
	for i := range reqs {
		req := reqs[i]
		if err := s.validateEventLocked(&req); err != nil {
			s.restoreUsersLocked(undo)
			s.mu.Unlock()
			if len(reqs) > 1 {
				err.field = fmt.Sprintf("events[%d].%s", i, err.field)
			}
			return nil, err
		}
		s.applyEventLocked(req, now)
		plans = append(plans, eventPlan{req: req})
	}
	for i := range plans {
		plans[i] = s.planEventLocked(plans[i].req)
	}
	s.mu.Unlock()

	ids := make([]string, len(plans))
	for i, pl := range plans {
		ids[i] = s.scheduleEvent(pl, now)
	}
	return ids, nil
}

// scheduleEvent records pl in the event log and queues its push.
func (s *Server) scheduleEvent(pl eventPlan, now time.Time) string {
	app := pl.app
	rec := s.eventLog.add(EventRecord{
		CreatedAt: now, AppID: app.AppID, OpenID: pl.req.OpenID, Type: pl.req.Type,
		MsgID: pl.msgID, CreateTime: now.Unix(), Outcome: OutcomePending,
	})
	call := Call{Endpoint: EndpointEvent, AppID: app.AppID, ToUser: pl.req.OpenID}
	s.events.Schedule(Push{
		URL: app.CallbackURL, Mode: app.CallbackMode, Crypter: app.crypter,
		Message: wechat.Message{ToUserName: app.OriginalID, FromUserName: pl.req.OpenID, CreateTime: now.Unix()},
		Extra:   pl.extra,
		Fault: func() (time.Duration, bool) {
			d := s.faults.Decide(call)
			if len(d.RuleIDs) > 0 {
				s.stats.faultsFired.Add(1)
			}
			return d.Delay, d.Fault != ""
		},
		Done: func(r PushResult) { s.eventLog.settle(rec, r) },
	})
	return rec.ID
}

// decodeEvents reads a single event or an {"events":[...]} batch strictly.
func decodeEvents(body []byte) ([]EventRequest, bool, *eventError) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, false, badEvent("body", "empty: want an event object or {\"events\":[...]}")
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &probe); err != nil {
		return nil, false, badEvent("body", "not a JSON object: %v", err)
	}
	strict := func(v any) *eventError {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
				name, _ := strconv.Unquote(f)
				return badEvent(name, "unknown field")
			}
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Field != "" {
				return badEvent(te.Field, "must be a JSON %s", te.Type.Kind())
			}
			return badEvent("body", "%v", err)
		}
		return nil
	}
	if _, batch := probe["events"]; batch {
		var b EventBatch
		if err := strict(&b); err != nil {
			return nil, true, err
		}
		switch {
		case len(b.Events) == 0:
			return nil, true, badEvent("events", "must hold 1 to %d events", maxEventBatch)
		case len(b.Events) > maxEventBatch:
			return nil, true, badEvent("events", "at most %d events per request (got %d)", maxEventBatch, len(b.Events))
		}
		return b.Events, true, nil
	}
	var r EventRequest
	if err := strict(&r); err != nil {
		return nil, false, err
	}
	return []EventRequest{r}, false, nil
}

func (s *Server) adminPushEvents(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		adminError(w, http.StatusBadRequest, "invalid_request", "cannot read body", "")
		return
	}
	reqs, batch, eerr := decodeEvents(body)
	if eerr == nil {
		var ids []string
		ids, err = s.PushEvents(reqs)
		if err == nil {
			if batch {
				adminJSON(w, http.StatusCreated, EventsCreated{IDs: ids})
			} else {
				adminJSON(w, http.StatusCreated, EventCreated{ID: ids[0]})
			}
			return
		}
		eerr, _ = err.(*eventError)
	}
	status, code := http.StatusBadRequest, "invalid_request"
	if eerr.status != 0 {
		status, code = eerr.status, eerr.code
	}
	adminError(w, status, code, eerr.Error(), eerr.field)
}

func (s *Server) adminEvents(w http.ResponseWriter, r *http.Request) {
	after, limit, ok := pageParams(w, r)
	if !ok {
		return
	}
	adminJSON(w, http.StatusOK, s.eventLog.page(after, limit))
}

// pageParams reads ?after=SEQ&limit=N (1..10000, default 1000), answering
// 400 itself when they are bad.
func pageParams(w http.ResponseWriter, r *http.Request) (uint64, int, bool) {
	q := r.URL.Query()
	var after uint64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			adminError(w, http.StatusBadRequest, "invalid_request", "after must be a non-negative integer sequence number", "after")
			return 0, 0, false
		}
		after = n
	}
	limit := 1000
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			adminError(w, http.StatusBadRequest, "invalid_request", "limit must be an integer from 1 to 10000", "limit")
			return 0, 0, false
		}
		limit = n
	}
	return after, limit, true
}
