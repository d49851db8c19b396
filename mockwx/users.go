package mockwx

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// customWindow is how long after a user's last interaction the account may
// send them customer-service messages.
const customWindow = 48 * time.Hour

// userState is what simulated events changed about one user of one app.
// Guarded by Server.mu. Users without one follow as the config says.
type userState struct {
	followSet       bool // a simulated subscribe or unsubscribe decided following
	following       bool
	subscribedAt    time.Time // the latest simulated follow
	qrScene         string    // its qrscene_ scene, if any
	lastInteraction time.Time // the latest message, follow, scan or click
}

// UserState is one user as the mock sees them (GET /_mock/users/{openid}).
type UserState struct {
	AppID  string `json:"appid"`
	OpenID string `json:"openid"`
	// Subscribed reports whether the user follows the app now: by the
	// config's followers rules unless a simulated subscribe or unsubscribe
	// decided it.
	Subscribed bool `json:"subscribed"`
	// SubscribeTime is the latest follow: a simulated subscribe's time, or
	// the mock's start for a follower by config; nil for a non-follower.
	SubscribeTime *time.Time `json:"subscribe_time,omitempty"`
	// LastInteraction is the latest simulated message, follow, QR scan or
	// click (what opens the 48 h customer-service window); nil when none.
	LastInteraction *time.Time `json:"last_interaction,omitempty"`
	// Blocked: the config lists the user as blocking the account.
	Blocked bool `json:"blocked"`
	// Source says what decided Subscribed: "config" or "events".
	Source string `json:"source"`
}

// follows reports whether openid follows the app now.
func (a *appState) follows(openid string) bool {
	if u := a.users[openid]; u != nil && u.followSet {
		return u.following
	}
	return a.followsByConfig(openid)
}

// followsByConfig applies the config's followers rules.
func (a *appState) followsByConfig(openid string) bool {
	if len(a.only) > 0 {
		return a.only[openid]
	}
	return !a.notFollow[openid]
}

// user returns openid's state, creating it.
func (a *appState) user(openid string) *userState {
	u := a.users[openid]
	if u == nil {
		u = &userState{}
		a.users[openid] = u
	}
	return u
}

// listed adds openid to the follower list's order the first time it
// follows.
func (a *appState) listed(openid string) {
	if _, ok := a.listIndex[openid]; !ok {
		a.listIndex[openid] = len(a.listOrder)
		a.listOrder = append(a.listOrder, openid)
	}
}

// applyEventLocked changes follow state and interactions for an accepted
// event. s.mu is held.
func (s *Server) applyEventLocked(req EventRequest, now time.Time) {
	app := s.apps[req.AppID]
	u := app.user(req.OpenID)
	switch req.Type {
	case EventSubscribe:
		u.followSet, u.following, u.subscribedAt = true, true, now
		u.qrScene = strings.TrimPrefix(req.EventKey, "qrscene_")
		u.lastInteraction = now
		app.listed(req.OpenID)
	case EventUnsubscribe:
		u.followSet, u.following = true, false
	case EventScan, EventClick, MessageText, MessageImage:
		u.lastInteraction = now
	}
}

// usersUndo restores the users a rejected batch touched.
type usersUndo struct {
	app    map[string]*appState
	saved  map[string]*userState // appid+"\x00"+openid -> copy, nil: absent
	orders map[string]int        // appid -> len(listOrder)
}

func (s *Server) snapshotUsersLocked(reqs []EventRequest) usersUndo {
	u := usersUndo{app: map[string]*appState{}, saved: map[string]*userState{}, orders: map[string]int{}}
	for _, r := range reqs {
		appID := r.AppID
		if appID == "" && len(s.order) > 0 {
			appID = s.order[0]
		}
		app := s.apps[appID]
		if app == nil {
			continue
		}
		u.app[appID] = app
		u.orders[appID] = len(app.listOrder)
		k := appID + "\x00" + r.OpenID
		if _, done := u.saved[k]; done {
			continue
		}
		var c *userState
		if st := app.users[r.OpenID]; st != nil {
			cp := *st
			c = &cp
		}
		u.saved[k] = c
	}
	return u
}

func (s *Server) restoreUsersLocked(u usersUndo) {
	for k, st := range u.saved {
		appID, openid, _ := strings.Cut(k, "\x00")
		app := u.app[appID]
		if st == nil {
			delete(app.users, openid)
		} else {
			app.users[openid] = st
		}
	}
	for appID, n := range u.orders {
		app := u.app[appID]
		for _, o := range app.listOrder[n:] {
			delete(app.listIndex, o)
		}
		app.listOrder = app.listOrder[:n]
	}
}

// User returns openid's state in appID (the first app when empty).
func (s *Server) User(appID, openid string) (UserState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if appID == "" && len(s.order) > 0 {
		appID = s.order[0]
	}
	app := s.apps[appID]
	if app == nil {
		return UserState{}, errUnknownApp
	}
	st := UserState{AppID: appID, OpenID: openid, Subscribed: app.follows(openid), Blocked: app.blocked[openid], Source: "config"}
	u := app.users[openid]
	if u != nil && u.followSet {
		st.Source = "events"
	}
	if st.Subscribed {
		t := s.started
		if u != nil && !u.subscribedAt.IsZero() {
			t = u.subscribedAt
		}
		st.SubscribeTime = &t
	}
	if u != nil && !u.lastInteraction.IsZero() {
		t := u.lastInteraction
		st.LastInteraction = &t
	}
	return st, nil
}

func (s *Server) adminUser(w http.ResponseWriter, r *http.Request) {
	openid := r.PathValue("openid")
	if !wellFormedOpenID(openid) {
		adminError(w, http.StatusBadRequest, "invalid_request", strconv.Quote(openid)+" is not a well-formed openid", "openid")
		return
	}
	appID := r.URL.Query().Get("appid")
	st, err := s.User(appID, openid)
	if err != nil {
		adminError(w, http.StatusNotFound, "not_found", "no app "+strconv.Quote(appID), "appid")
		return
	}
	adminJSON(w, http.StatusOK, st)
}
