package loadtest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/scenarios"
	"github.com/wxpush/wxpush/service"
)

// The simulated users' fixed choices: the menu keys they click, what they
// type, and the spacing of one user's pushes (so that no two of them share
// a CreateTime second, WeChat's dedup key for events, and a push's order
// per user is its CreateTime order).
var (
	clickKeys   = []string{"MENU_HELP", "MENU_ORDERS", "MENU_ABOUT"}
	textContent = []string{"help", "help me", "hello", "where is my order"}
)

const userSpacing = 2 * time.Second

// pushedEvent is one push the users made, as wxload asked the mock for it.
type pushedEvent struct {
	id, app, appid, openid, typ string
	eventKey, content           string
	at                          time.Time
	reply                       string // the configured reply it must get; "" for none
	hasReply                    bool
}

// userSim drives the users of load.users through the mock's POST
// /_mock/events while the attack runs.
type userSim struct {
	cfg        scenarios.Users
	mock       *mockwx.Client
	apps       []simApp
	total      float64 // the apps' weights
	recipients int
	unfollowN  int // users 0..unfollowN-1 of each app unfollow
	rng        *rand.Rand

	mu        sync.Mutex
	pushed    map[string]*pushedEvent
	last      map[string]time.Time // appid/openid: the user's last push
	unsubIDs  map[string]string    // mock id of each unsubscribe: appid/openid
	refollow  map[string]string    // mock id of each re-subscribe: appid/openid
	errors    int
	firstErr  string
	skipped   int // due events for which no user was free (spacing)
	refollows bool
}

type simApp struct {
	name, appid string
	weight      float64
	replies     []scenarios.Reply
}

func newUserSim(sc scenarios.Scenario, mock *mockwx.Client, apps map[string]mockwx.App) *userSim {
	u := &userSim{cfg: *sc.Load.Users, mock: mock, recipients: sc.Load.Recipients,
		rng: rand.New(rand.NewPCG(uint64(sc.Seed), 0x75736572)), pushed: map[string]*pushedEvent{},
		last: map[string]time.Time{}, unsubIDs: map[string]string{}, refollow: map[string]string{}}
	for _, a := range sc.Mock.Apps {
		w := a.Weight
		if w == 0 {
			w = 1
		}
		u.apps = append(u.apps, simApp{name: a.Name, appid: apps[a.Name].AppID, weight: w, replies: a.Replies})
		u.total += w
	}
	if f := u.cfg.Unfollow; f != nil {
		u.unfollowN = max(int(f.Share*float64(u.recipients)), 1)
		u.refollows = f.Refollow != 0
	}
	return u
}

func userOpenID(i int) string { return fmt.Sprintf("oWxLoad%021d", i) }

// run pushes events at the configured rate until ctx ends, and the
// unfollow wave at its moments.
func (u *userSim) run(ctx context.Context, start time.Time) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	credit := 0.0
	prev := start
	unfollowed, refollowed := u.cfg.Unfollow == nil, !u.refollows
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			credit += u.cfg.Rate * now.Sub(prev).Seconds()
			prev = now
			if !unfollowed && now.Sub(start) >= u.cfg.Unfollow.At.D() {
				unfollowed = true
				u.wave(ctx, "unsubscribe", u.unsubIDs)
			}
			if !refollowed && now.Sub(start) >= u.cfg.Unfollow.Refollow.D() {
				refollowed = true
				u.wave(ctx, "subscribe", u.refollow)
			}
			n := int(credit)
			credit -= float64(n)
			if n > 0 {
				u.push(ctx, u.draw(n, now))
			}
		}
	}
}

// wave pushes typ for every unfollowing user of every app.
func (u *userSim) wave(ctx context.Context, typ string, ids map[string]string) {
	now := time.Now()
	var evs []*pushedEvent
	for _, a := range u.apps {
		for i := range u.unfollowN {
			evs = append(evs, u.event(a, userOpenID(i), typ, now))
		}
	}
	got := u.push(ctx, evs)
	u.mu.Lock()
	for _, e := range got {
		ids[e.appid+"/"+e.openid] = e.id
	}
	u.mu.Unlock()
}

// draw mints n events from the mix, for users who follow throughout and
// pushed nothing in the last userSpacing.
func (u *userSim) draw(n int, now time.Time) []*pushedEvent {
	mix := u.cfg.EffectiveMix()
	var mixTotal float64
	for _, m := range mix {
		mixTotal += m.Share()
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []*pushedEvent
	for range n {
		a := u.apps[len(u.apps)-1]
		x := u.rng.Float64() * u.total
		for _, c := range u.apps {
			if x -= c.weight; x < 0 {
				a = c
				break
			}
		}
		typ := mix[len(mix)-1].Type
		x = u.rng.Float64() * mixTotal
		for _, m := range mix {
			if x -= m.Share(); x < 0 {
				typ = m.Type
				break
			}
		}
		openid := ""
		for range 8 {
			i := u.unfollowN + u.rng.IntN(max(u.recipients-u.unfollowN, 1))
			if t, ok := u.last[a.appid+"/"+userOpenID(i)]; !ok || now.Sub(t) >= userSpacing {
				openid = userOpenID(i)
				break
			}
		}
		if openid == "" {
			u.skipped++
			continue
		}
		u.last[a.appid+"/"+openid] = now
		out = append(out, u.event(a, openid, typ, now))
	}
	return out
}

// event fills in one push of typ and the reply the app's rules call for.
func (u *userSim) event(a simApp, openid, typ string, now time.Time) *pushedEvent {
	e := &pushedEvent{app: a.name, appid: a.appid, openid: openid, typ: typ, at: now}
	switch typ {
	case "CLICK":
		e.eventKey = clickKeys[u.rng.IntN(len(clickKeys))]
	case "SCAN":
		e.eventKey = "scene" + strconv.Itoa(1+u.rng.IntN(9))
	case "VIEW":
		e.eventKey = "https://example.com/menu/" + strconv.Itoa(u.rng.IntN(5))
	case "text":
		e.content = textContent[u.rng.IntN(len(textContent))]
	}
	for _, r := range a.replies {
		if r.Matches(typ, e.eventKey, e.content) {
			e.reply, e.hasReply = r.Text, true
			break
		}
	}
	return e
}

func (e *pushedEvent) request() mockwx.EventRequest {
	r := mockwx.EventRequest{AppID: e.appid, OpenID: e.openid, Type: e.typ, EventKey: e.eventKey, Content: e.content}
	if e.typ == "LOCATION" {
		lat, lon := 23.134521, 113.358803
		r.Latitude, r.Longitude = &lat, &lon
	}
	return r
}

// push sends evs to the mock in one batch and keeps the ones it took.
func (u *userSim) push(ctx context.Context, evs []*pushedEvent) []*pushedEvent {
	if len(evs) == 0 {
		return nil
	}
	reqs := make([]mockwx.EventRequest, len(evs))
	for i, e := range evs {
		reqs[i] = e.request()
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ids, err := u.mock.PushEvents(cctx, reqs)
	cancel()
	u.mu.Lock()
	defer u.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			u.errors += len(evs)
			if u.firstErr == "" {
				u.firstErr = err.Error()
			}
		}
		return nil
	}
	for i, e := range evs {
		e.id = ids[i]
		u.pushed[e.id] = e
	}
	return evs
}

// eventReceiver is wxload's own receiver of the service's event webhook:
// it checks each delivery's signature and counts receipts per delivery id
// and per push.
type eventReceiver struct {
	secret string
	srv    *http.Server
	url    string

	mu         sync.Mutex
	receipts   int
	badSig     int
	byID       map[string]int      // delivery id: receipts
	byPush     map[string][]string // push key: the delivery ids it came with
	lastCreate map[string]int64    // app/openid: the latest CreateTime received
	outOfOrder int
}

func startEventReceiver(secret string) (*eventReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &eventReceiver{secret: secret, url: "http://" + ln.Addr().String() + "/events",
		byID: map[string]int{}, byPush: map[string][]string{}, lastCreate: map[string]int64{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *eventReceiver) close() { _ = r.srv.Close() }

// pushKey identifies a push the way WeChat's dedup does: a message by its
// MsgId, an event by user, CreateTime and type.
func pushKey(app, openid, typ string, createTime int64, msgid string) string {
	if msgid != "" && msgid != "0" {
		return app + "/m/" + msgid
	}
	return app + "/e/" + openid + "/" + typ + "/" + strconv.FormatInt(createTime, 10)
}

func (r *eventReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	ts := req.Header.Get(service.HeaderWebhookTimestamp)
	mac := hmac.New(sha256.New, []byte(r.secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.receipts++
	if !hmac.Equal([]byte(want), []byte(req.Header.Get(service.HeaderWebhookSignature))) {
		r.badSig++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev service.InboundEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	id := req.Header.Get(service.HeaderWebhookDeliveryID)
	r.byID[id]++
	if r.byID[id] == 1 {
		k := pushKey(ev.App, ev.OpenID, ev.Type, ev.CreateTime, ev.MsgID)
		r.byPush[k] = append(r.byPush[k], id)
		u := ev.App + "/" + ev.OpenID
		if ev.CreateTime < r.lastCreate[u] {
			r.outOfOrder++
		}
		r.lastCreate[u] = max(r.lastCreate[u], ev.CreateTime)
	}
	w.WriteHeader(http.StatusNoContent)
}

// forwarded reports how many distinct deliveries of push k arrived.
func (r *eventReceiver) forwarded(k string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byPush[k])
}

// settle waits until every pushed event has an outcome at the mock and,
// when a receiver runs, every acknowledged one has been forwarded (or ctx
// ends), then returns the mock's records of the run's pushes.
func (u *userSim) settle(ctx context.Context, recv *eventReceiver, names map[string]string) map[string]mockwx.EventRecord {
	recs := map[string]mockwx.EventRecord{}
	for {
		var after uint64
		for {
			page, err := u.mock.Events(ctx, after, 10000)
			if err != nil {
				break
			}
			u.mu.Lock()
			for _, e := range page.Events {
				if _, ok := u.pushed[e.ID]; ok {
					recs[e.ID] = e
				}
			}
			u.mu.Unlock()
			after = page.NextAfter
			if !page.More {
				break
			}
		}
		done := true
		u.mu.Lock()
		for id := range u.pushed {
			rec, ok := recs[id]
			switch {
			case !ok || rec.Outcome == "pending":
				done = false
			case recv != nil && (rec.Outcome == "acked" || rec.Outcome == "replied") &&
				recv.forwarded(recordKey(rec, names)) == 0:
				done = false
			}
		}
		u.mu.Unlock()
		if done || ctx.Err() != nil {
			return recs
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

func recordKey(rec mockwx.EventRecord, names map[string]string) string {
	msgid := ""
	if rec.MsgID != 0 {
		msgid = strconv.FormatInt(rec.MsgID, 10)
	}
	return pushKey(names[rec.AppID], rec.OpenID, rec.Type, rec.CreateTime, msgid)
}

// unfollowSend is a send that reached the mock for a user of the unfollow
// wave.
type unfollowSend struct {
	appid, openid string
	at            time.Time
	errcode       int
}

// fill computes the summary's events section.
func (u *userSim) fill(ev *Events, recs map[string]mockwx.EventRecord, recv *eventReceiver, names map[string]string, sends []unfollowSend) {
	ev.Enabled = true
	ev.ByType = map[string]*EventTypeFigures{}
	u.mu.Lock()
	defer u.mu.Unlock()
	ev.PushErrors, ev.FirstPushError, ev.Skipped = u.errors, u.firstErr, u.skipped
	for id, p := range u.pushed {
		f := ev.ByType[p.typ]
		if f == nil {
			f = &EventTypeFigures{}
			ev.ByType[p.typ] = f
		}
		f.Pushed++
		rec, ok := recs[id]
		if !ok {
			f.Pending++
			continue
		}
		switch rec.Outcome {
		case "acked":
			f.Acked++
		case "replied":
			f.Replied++
		case "reply_invalid":
			f.ReplyInvalid++
		case "failed":
			f.Failed++
		default:
			f.Pending++
		}
		if rec.Attempts > 1 {
			f.Retried++
		}
		// The reply must be the configured one, and only where configured.
		got := ""
		if rec.Reply != nil {
			got = rec.Reply.Content
		}
		if (rec.Outcome == "replied") != p.hasReply || got != p.reply {
			if rec.Outcome == "acked" || rec.Outcome == "replied" {
				f.RepliesWrong++
			}
		}
		if recv == nil {
			continue
		}
		switch n := recv.forwarded(recordKey(rec, names)); {
		case n == 1:
			f.ForwardedOnce++
		case n > 1:
			f.ForwardedTwice++
		case rec.Outcome == "acked" || rec.Outcome == "replied":
			f.Lost++
		}
	}
	for _, f := range ev.ByType {
		ev.add(*f)
	}
	if recv != nil {
		recv.mu.Lock()
		ev.Webhook = &EventWebhook{Receipts: recv.receipts, BadSignatures: recv.badSig, DeliveryIDs: len(recv.byID), OutOfOrder: recv.outOfOrder}
		for _, n := range recv.byID {
			ev.Webhook.Redelivered += n - 1
		}
		recv.mu.Unlock()
	}
	// The unfollow wave: sends that reached the mock for a user after the
	// service had acknowledged the user's unsubscribe (and before a
	// re-subscribe was pushed).
	if u.unfollowN > 0 {
		ev.Unfollowed = len(u.unsubIDs)
		acked := map[string]time.Time{}
		for user, id := range u.unsubIDs {
			if rec, ok := recs[id]; ok && rec.SettledAt != nil && (rec.Outcome == "acked" || rec.Outcome == "replied") {
				acked[user] = *rec.SettledAt
			}
		}
		back := map[string]time.Time{}
		for user, id := range u.refollow {
			if p := u.pushed[id]; p != nil {
				back[user] = p.at
			}
		}
		for _, s := range sends {
			user := s.appid + "/" + s.openid
			p := u.pushed[u.unsubIDs[user]]
			if p == nil || s.at.Before(p.at) {
				continue // before the wave
			}
			if b, ok := back[user]; ok && !s.at.Before(b) {
				ev.SendsAfterRefollow++
				continue
			}
			if at, ok := acked[user]; !ok || s.at.Before(at) {
				ev.SendsBeforeServiceKnew++
				continue
			}
			ev.SendsToUnfollowed++
		}
	}
}

// inWave reports whether openid is a user of the unfollow wave.
func (u *userSim) inWave(openid string) bool {
	var i int
	if _, err := fmt.Sscanf(openid, "oWxLoad%d", &i); err != nil {
		return false
	}
	return i < u.unfollowN
}

func describeMix(mix []scenarios.EventShare) string {
	out := ""
	for i, m := range mix {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%s×%g", m.Type, m.Share())
	}
	return out
}

func describeUnfollow(f *scenarios.Unfollow, n int) string {
	if f == nil {
		return ""
	}
	s := fmt.Sprintf("; %d users per app unfollow at %s", n, f.At)
	if f.Refollow != 0 {
		s += fmt.Sprintf(" and follow again at %s", f.Refollow)
	}
	return s
}
