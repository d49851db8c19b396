package conformance_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/service"
)

// The replies the suite configures, and the event keys it clicks.
const (
	welcomeText = "欢迎关注 <conformance> & \"quotes\" ]]> end"
	helpText    = "Reply 1 for orders, 2 for refunds"
	todayText   = "Today's picks: chocolate"
	keyToday    = "V1001_TODAY"
	keyOther    = "V1002_OTHER"
	hookSecret  = "conformance-event-webhook-secret-0123"
)

var eventReplies = []conformance.Reply{
	{On: mockwx.EventSubscribe, Text: welcomeText},
	{Keyword: "help", Match: "prefix", Text: helpText},
	{On: mockwx.EventClick, EventKey: keyToday, Text: todayText},
}

// TestEvents: simulated users act on the mock (follow, click, talk,
// unfollow); WeChat's pushes reach the service, which answers each one
// (acknowledged, or with the configured passive reply, sealed in the
// app's mode), forwards each one to the event webhook exactly once by
// delivery id, signed and in order per user (also when WeChat retries
// because answers are lost, and when the receiver fails), and keeps the
// users' follow state, so that sends to a user who left end
// failed/not_following without reaching WeChat. A last case checks a mock
// property: an encrypted empty envelope, the answer of SDKs that seal
// every answer, is an acknowledgement.
func TestEvents(t *testing.T) {
	t.Run("safe", func(t *testing.T) {
		s := newEventSuite(t, "safe")
		t.Run("population", s.population)
		t.Run("event-faults", s.eventFaults)
		t.Run("receiver-failing", s.receiverFailing)
		t.Run("unfollow", s.unfollow)
		t.Run("sdk-empty-envelope", s.sdkEmptyEnvelope)
	})
	t.Run("plain", func(t *testing.T) {
		s := newEventSuite(t, "plain")
		t.Run("population", s.population)
	})
}

type eventSuite struct {
	mode  string
	env   conformance.Env
	c     *conformance.Client
	hook  *receiver
	probe *probeHandler
	// last is the latest CreateTime of the suite's pushes: the next round
	// waits until the clock passed it, in every case.
	last int64
}

func newEventSuite(t *testing.T, mode string) *eventSuite {
	s := &eventSuite{mode: mode, hook: newReceiver(hookSecret), probe: &probeHandler{}}
	s.env = conformance.New(t, conformance.Options{
		CallbackMode: mode, Replies: eventReplies,
		EventWebhook: s.hook, EventWebhookSecret: hookSecret,
		ProbeCallback: s.probe,
	})
	s.c = conformance.NewClient(s.env)
	if ok, err := s.c.HasRoute(t.Context(), 0, http.MethodGet, "/v1/apps/default/users/oConf-probe-0000000001"); err != nil {
		t.Fatal(err)
	} else if !ok {
		t.Skip("the service answers 404 on /v1/apps/default/users/{openid}: inbound events are not there (yet)")
	}
	t.Logf("events %s [%s]: the deployment reaches the test's receiver: %s", mode, s.env.Backend(), s.env.Reach())
	return s
}

// step is one round of user actions; rounds are pushed at least one
// second apart, so each user's pushes have increasing CreateTimes (WeChat
// deduplicates events by FromUserName + CreateTime).
type step []mockwx.EventRequest

// expectation is what the mock must see as the service's answer to a push.
type expectation struct {
	reply string // "" : acknowledged
}

func expect(req mockwx.EventRequest) expectation {
	switch {
	case req.Type == mockwx.EventSubscribe:
		return expectation{welcomeText}
	case req.Type == mockwx.EventClick && req.EventKey == keyToday:
		return expectation{todayText}
	case req.Type == mockwx.MessageText && len(req.Content) >= 4 && req.Content[:4] == "help":
		return expectation{helpText}
	}
	return expectation{}
}

// population is the population's rounds: everyone follows (some by QR
// code), clicks (the configured key or another), talks (help or not),
// opens a page or reports a location, and a quarter unfollow.
func population(prefix string, users int) ([]string, []step) {
	openids := make([]string, users)
	for i := range openids {
		openids[i] = conformance.OpenID(prefix, i)
	}
	rounds := make([]step, 5)
	lat, lon := 31.2304, 121.4737
	for i, u := range openids {
		sub := mockwx.EventRequest{OpenID: u, Type: mockwx.EventSubscribe}
		if i%2 == 1 {
			sub.EventKey = "qrscene_" + strconv.Itoa(1000+i)
		}
		rounds[0] = append(rounds[0], sub)
		key := keyOther
		if i%3 == 0 {
			key = keyToday
		}
		rounds[1] = append(rounds[1], mockwx.EventRequest{OpenID: u, Type: mockwx.EventClick, EventKey: key})
		text := "hello " + strconv.Itoa(i)
		if i%2 == 0 {
			text = "help me with order " + strconv.Itoa(i)
		}
		rounds[2] = append(rounds[2], mockwx.EventRequest{OpenID: u, Type: mockwx.MessageText, Content: text})
		if i%2 == 0 {
			rounds[3] = append(rounds[3], mockwx.EventRequest{OpenID: u, Type: mockwx.EventView, EventKey: "https://shop.example.com/orders"})
		} else {
			rounds[3] = append(rounds[3], mockwx.EventRequest{OpenID: u, Type: mockwx.EventLocation, Latitude: &lat, Longitude: &lon})
		}
		if i%4 == 0 {
			rounds[4] = append(rounds[4], mockwx.EventRequest{OpenID: u, Type: mockwx.EventUnsubscribe})
		}
	}
	return openids, rounds
}

// pushed is one push the suite made: its request and the mock's record.
type pushed struct {
	req mockwx.EventRequest
	rec mockwx.EventRecord
}

// run pushes the rounds one after the other, each once the last has
// settled at the mock and the clock has passed its CreateTime (the
// service orders a user's subscribe and unsubscribe by CreateTime, whole
// seconds), and returns every push with its settled record.
func (s *eventSuite) run(t *testing.T, rounds []step) []pushed {
	t.Helper()
	var all []pushed
	for _, r := range rounds {
		if len(r) == 0 {
			continue
		}
		for time.Now().Unix() <= s.last {
			sleep(t, 50*time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		ids, err := s.env.Mock().PushEvents(ctx, r)
		cancel()
		if err != nil {
			t.Fatalf("push %d events: %v", len(r), err)
		}
		recs := s.settled(t, ids, 60*time.Second)
		for i, id := range ids {
			all = append(all, pushed{r[i], recs[id]})
			s.last = max(s.last, recs[id].CreateTime)
		}
	}
	return all
}

// settled waits until the mock settled every push in ids and returns
// their records.
func (s *eventSuite) settled(t *testing.T, ids []string, within time.Duration) map[string]mockwx.EventRecord {
	t.Helper()
	want := map[string]bool{}
	var first uint64 = 1<<64 - 1
	for _, id := range ids {
		want[id] = true
		n, err := strconv.ParseUint(id[1:], 10, 64)
		if err != nil {
			t.Fatalf("event id %q: %v", id, err)
		}
		first = min(first, n)
	}
	var got map[string]mockwx.EventRecord
	ok := conformance.Eventually(t.Context(), within, func(ctx context.Context) bool {
		got = map[string]mockwx.EventRecord{}
		after := first - 1
		for {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			p, err := s.env.Mock().Events(cctx, after, 10000)
			cancel()
			if err != nil {
				return false
			}
			for _, r := range p.Events {
				if want[r.ID] {
					if r.Outcome == mockwx.OutcomePending {
						return false
					}
					got[r.ID] = r
				}
			}
			if !p.More {
				break
			}
			after = p.NextAfter
		}
		return len(got) == len(want)
	})
	if !ok {
		t.Fatalf("the mock did not settle %d pushes within %s (%d settled)", len(ids), within, len(got))
	}
	return got
}

// outcomes checks every push's outcome at the mock against what was
// configured, and counts them. lossy allows failed (every try's answer
// lost by a fault rule).
func (s *eventSuite) outcomes(t *testing.T, all []pushed, lossy bool) (counts map[string]int, retried int) {
	t.Helper()
	counts = map[string]int{}
	encrypted := s.mode != "plain"
	bad := 0
	for _, p := range all {
		r, want := p.rec, expect(p.req)
		counts[r.Outcome]++
		if r.Attempts > 1 {
			retried++
		}
		var problem string
		switch {
		case r.Outcome == mockwx.OutcomeFailed && lossy:
		case want.reply == "" && r.Outcome != mockwx.OutcomeAcked:
			problem = "want acked"
		case want.reply != "" && r.Outcome != mockwx.OutcomeReplied:
			problem = "want replied " + strconv.Quote(want.reply)
		case want.reply != "" && (r.Reply == nil || r.Reply.MsgType != "text" || r.Reply.Content != want.reply || r.Reply.Encrypted != encrypted):
			problem = fmt.Sprintf("want a text reply %q, encrypted %v", want.reply, encrypted)
		}
		if problem != "" {
			if bad < 10 {
				t.Errorf("push %s (%s %s %q %q): outcome %s %q reply %+v: %s", r.ID, r.OpenID, r.Type, p.req.EventKey, p.req.Content, r.Outcome, r.Reason, r.Reply, problem)
			}
			bad++
		}
	}
	return counts, retried
}

// hookVerdict is what the receiver got for one case's users.
type hookVerdict struct {
	accepted, raw, dupes, failedOn, badSig int
}

// checkWebhook waits until the receiver accepted one delivery per push
// of all, then checks each is there once (by delivery id, and by push),
// matches the push, and that each user's deliveries came in CreateTime
// order, in the order the mock pushed them.
func (s *eventSuite) checkWebhook(t *testing.T, openids []string, all []pushed, within time.Duration) hookVerdict {
	t.Helper()
	users := map[string]bool{}
	for _, u := range openids {
		users[u] = true
	}
	if !conformance.Eventually(t.Context(), within, func(context.Context) bool { return s.hook.accepted(users) >= len(all) }) {
		t.Errorf("the event webhook accepted %d deliveries for these users within %s, want %d", s.hook.accepted(users), within, len(all))
	}
	sleep(t, 300*time.Millisecond) // late duplicates, if any, arrive
	got, v := s.hook.snapshot(users)
	key := func(openid, typ string, ct int64) string { return openid + "|" + typ + "|" + strconv.FormatInt(ct, 10) }
	byPush := map[string][]service.InboundEvent{}
	for _, list := range got {
		for _, ev := range list {
			k := key(ev.OpenID, ev.Type, ev.CreateTime)
			byPush[k] = append(byPush[k], ev)
		}
	}
	app := s.env.App()
	shown := 0
	report := func(format string, args ...any) {
		if shown < 10 {
			t.Errorf(format, args...)
		}
		shown++
	}
	wantOrder := map[string][]string{}
	for _, p := range all {
		r := p.rec
		wantOrder[r.OpenID] = append(wantOrder[r.OpenID], r.Type)
		evs := byPush[key(r.OpenID, r.Type, r.CreateTime)]
		if len(evs) != 1 {
			report("push %s (%s %s at %d): %d deliveries with distinct ids, want exactly 1", r.ID, r.OpenID, r.Type, r.CreateTime, len(evs))
			continue
		}
		ev := evs[0]
		msgType := wechat.MsgTypeEvent
		if r.Type == mockwx.MessageText {
			msgType = mockwx.MessageText
		}
		switch {
		case ev.Event != service.EventInbound || ev.App != "default" || ev.ToUserName != app.OriginalID || ev.MsgType != msgType:
			report("push %s: delivered as event %q app %q to_user_name %q msg_type %q", r.ID, ev.Event, ev.App, ev.ToUserName, ev.MsgType)
		case r.MsgID != 0 && ev.MsgID != strconv.FormatInt(r.MsgID, 10):
			report("push %s: msgid %q, want %d", r.ID, ev.MsgID, r.MsgID)
		case p.req.EventKey != "" && ev.Fields["EventKey"] != p.req.EventKey:
			report("push %s: fields.EventKey %v, want %q", r.ID, ev.Fields["EventKey"], p.req.EventKey)
		case p.req.Content != "" && ev.Fields["Content"] != p.req.Content:
			report("push %s: fields.Content %v, want %q", r.ID, ev.Fields["Content"], p.req.Content)
		}
	}
	for u, list := range got {
		var types []string
		for i, ev := range list {
			types = append(types, ev.Type)
			if i > 0 && ev.CreateTime < list[i-1].CreateTime {
				report("user %s: delivery %d (%s at %d) after one at %d: out of CreateTime order", u, i, ev.Type, ev.CreateTime, list[i-1].CreateTime)
			}
		}
		if fmt.Sprint(types) != fmt.Sprint(wantOrder[u]) {
			report("user %s: deliveries %v, want %v (the mock's order)", u, types, wantOrder[u])
		}
	}
	if v.badSig > 0 {
		t.Errorf("%d deliveries with a bad signature or mismatched headers", v.badSig)
	}
	if v.accepted != len(all) {
		t.Errorf("%d deliveries accepted (distinct ids), want %d (one per push)", v.accepted, len(all))
	}
	return v
}

// population: a population follows, clicks, talks and unfollows; every
// push is answered as configured and reaches the webhook once, in order.
func (s *eventSuite) population(t *testing.T) {
	s.hook.reset(0)
	openids, rounds := population("evpop"+s.mode, 40)
	replyMode := map[bool]string{true: "plain", false: "encrypted"}[s.mode == "plain"]
	repliesBefore := s.metricSum(t, "wxpush_callback_replies_total", "app", "default", "mode", replyMode)
	start := time.Now()
	all := s.run(t, rounds)
	counts, retried := s.outcomes(t, all, false)
	v := s.checkWebhook(t, openids, all, 30*time.Second)
	// The service answers every try that reaches it, WeChat's retries of
	// a push too (the same answer): between one and attempts replies per
	// push answered with one.
	replies, replyTries := 0, 0
	for _, p := range all {
		if expect(p.req).reply != "" {
			replies++
			replyTries += max(p.rec.Attempts, 1)
		}
	}
	if counts[mockwx.OutcomeReplied] != replies || counts[mockwx.OutcomeReplyInvalid] != 0 || counts[mockwx.OutcomeFailed] != 0 {
		t.Errorf("outcomes %v, want %d replied, the rest acked", counts, replies)
	}
	replied := s.metricSum(t, "wxpush_callback_replies_total", "app", "default", "mode", replyMode) - repliesBefore
	if int(replied) < replies || int(replied) > replyTries {
		t.Errorf("wxpush_callback_replies_total{mode=%q} rose by %v, want %d (%d with WeChat's retries)", replyMode, replied, replies, replyTries)
	}
	t.Logf("events %s [%s] population: %d users, %d pushes in %d rounds -> mock acked %d replied %d (want %d; encrypted %v) reply_invalid %d failed %d retried %d (no fault: an answer slower than the mock's timeout, or refused); webhook: %d distinct ids accepted, %d raw receipts (%d duplicate ids dropped), bad signatures %d, in order per user, from %v; wxpush_callback_replies_total{mode=%q} +%v; %.1fs",
		s.mode, s.env.Backend(), len(openids), len(all), len(rounds), counts[mockwx.OutcomeAcked], counts[mockwx.OutcomeReplied], replies, s.mode != "plain",
		counts[mockwx.OutcomeReplyInvalid], counts[mockwx.OutcomeFailed], retried, v.accepted, v.raw, v.dupes, v.badSig, s.hook.remoteAddrs(), replyMode, replied, time.Since(start).Seconds())
}

// eventFaults: half the answers to WeChat's pushes are lost, so WeChat
// retries; the service deduplicates the retries and answers them the same,
// and the webhook still gets each push once by delivery id.
func (s *eventSuite) eventFaults(t *testing.T) {
	s.hook.reset(0)
	half := 0.5
	rule := conformance.AddFault(t, s.env.Mock(), mockwx.Rule{Endpoint: mockwx.EndpointEvent, Fault: mockwx.FaultReset, Probability: &half})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.env.Mock().DeleteFault(ctx, rule); err != nil {
			t.Errorf("delete fault %s: %v", rule, err)
		}
	}()
	openids, rounds := population("evfault", 24)
	rounds = rounds[:3] // follow, click, talk
	dupBefore := s.metricSum(t, "wxpush_events_received_total", "app", "default", "result", "duplicate")
	start := time.Now()
	all := s.run(t, rounds)
	counts, retried := s.outcomes(t, all, true)
	if retried == 0 {
		t.Errorf("no push was retried: the fault rule did not bite")
	}
	attempts := 0
	for _, p := range all {
		attempts += p.rec.Attempts
	}
	v := s.checkWebhook(t, openids, all, 30*time.Second)
	// Each lost answer's push reached the service: every retry is one
	// duplicate there.
	dups := s.metricSum(t, "wxpush_events_received_total", "app", "default", "result", "duplicate") - dupBefore
	if int(dups) != attempts-len(all) {
		t.Errorf("wxpush_events_received_total{result=\"duplicate\"} rose by %v, want %d (tries - pushes)", dups, attempts-len(all))
	}
	t.Logf("events %s [%s] event-faults (answer lost with p=0.5): %d pushes, %d tries, %d retried by the mock -> acked %d replied %d failed %d (all 3 answers lost) reply_invalid %d; webhook: %d distinct ids accepted for %d pushes, %d raw receipts (%d duplicate ids, dropped by id), bad signatures %d, in order per user; service counted %v WeChat retries as duplicates; %.1fs",
		s.mode, s.env.Backend(), len(all), attempts, retried, counts[mockwx.OutcomeAcked], counts[mockwx.OutcomeReplied], counts[mockwx.OutcomeFailed],
		counts[mockwx.OutcomeReplyInvalid], v.accepted, len(all), v.raw, v.dupes, v.badSig, dups, time.Since(start).Seconds())
}

// receiverFailing: the receiver answers 500 to its first deliveries; all
// are delivered in the end, in order per user.
func (s *eventSuite) receiverFailing(t *testing.T) {
	const failFirst = 12
	s.hook.reset(failFirst)
	openids, rounds := population("evfail", 16)
	rounds = rounds[:3]
	retryBefore := s.metricSum(t, "wxpush_event_webhook_deliveries_total", "app", "default", "outcome", "retry")
	start := time.Now()
	all := s.run(t, rounds)
	counts, _ := s.outcomes(t, all, false)
	v := s.checkWebhook(t, openids, all, 60*time.Second)
	if v.failedOn != failFirst {
		t.Errorf("the receiver failed %d deliveries, want %d", v.failedOn, failFirst)
	}
	retries := s.metricSum(t, "wxpush_event_webhook_deliveries_total", "app", "default", "outcome", "retry") - retryBefore
	if int(retries) != failFirst {
		t.Errorf("wxpush_event_webhook_deliveries_total{outcome=\"retry\"} rose by %v, want %d", retries, failFirst)
	}
	t.Logf("events %s [%s] receiver-failing (first %d deliveries answered 500): %d pushes -> mock acked %d replied %d; webhook: %d distinct ids accepted, %d raw receipts (%d answered 500, %d duplicate ids dropped), bad signatures %d, in order per user, retries counted %v; %.1fs",
		s.mode, s.env.Backend(), failFirst, len(all), counts[mockwx.OutcomeAcked], counts[mockwx.OutcomeReplied], v.accepted, v.raw, v.failedOn, v.dupes, v.badSig, retries, time.Since(start).Seconds())
}

// unfollow: after users unsubscribe, sends to them end failed/not_following
// and the mock's ledger shows none; followers still get theirs; a later
// subscribe makes sends go through again; the users API agrees.
func (s *eventSuite) unfollow(t *testing.T) {
	s.hook.reset(0)
	const per = 3
	var leavers, stayers []string
	for i := range 4 {
		leavers = append(leavers, conformance.OpenID("evleave", i))
		stayers = append(stayers, conformance.OpenID("evstay", i))
	}
	everyone := append(append([]string(nil), leavers...), stayers...)
	acts := func(typ string, users []string) step {
		var st step
		for _, u := range users {
			st = append(st, mockwx.EventRequest{OpenID: u, Type: typ})
		}
		return st
	}
	s.run(t, []step{acts(mockwx.EventSubscribe, everyone)})
	s.checkFollowing(t, everyone, true, mockwx.EventSubscribe)
	unsub := s.run(t, []step{acts(mockwx.EventUnsubscribe, leavers)})
	s.checkFollowing(t, leavers, false, mockwx.EventUnsubscribe)
	mark := s.ledgerEnd(t)
	skippedBefore := s.metricSum(t, "wxpush_sends_skipped_total", "app", "default", "reason", service.ReasonNotFollowing)

	sendAll := func(users []string) map[string]string { // message id -> openid
		ids := map[string]string{}
		for _, u := range users {
			for range per {
				r, err := s.c.Send(t.Context(), len(ids)%s.env.Instances(), conformance.Order(u), "")
				if err != nil || r.Code != http.StatusAccepted {
					t.Fatalf("send to %s: %v %d %s", u, err, r.Code, r.Body)
				}
				a, _ := r.Accepted()
				ids[a.ID] = u
			}
		}
		return ids
	}
	await := func(ids map[string]string) map[string]service.Message {
		list := make([]string, 0, len(ids))
		for id := range ids {
			list = append(list, id)
		}
		final, err := s.c.Await(t.Context(), list, 30*time.Second, func(m service.Message) bool {
			return m.Status == service.StatusDelivered || m.Status == service.StatusFailed
		})
		if err != nil {
			t.Fatal(err)
		}
		return final
	}
	toLeavers, toStayers := sendAll(leavers), sendAll(stayers)
	final := await(toLeavers)
	skipped := 0
	for id, m := range final {
		if m.Status != service.StatusFailed || m.Reason != service.ReasonNotFollowing {
			t.Errorf("message %s to %s (unsubscribed): %s %q, want failed %q", id, toLeavers[id], m.Status, m.Reason, service.ReasonNotFollowing)
		} else {
			skipped++
		}
	}
	stayed := 0
	for id, m := range await(toStayers) {
		if m.Status != service.StatusDelivered {
			t.Errorf("message %s to %s (following): %s %q, want delivered", id, toStayers[id], m.Status, m.Reason)
		} else {
			stayed++
		}
	}
	skippedMetric := s.metricSum(t, "wxpush_sends_skipped_total", "app", "default", "reason", service.ReasonNotFollowing) - skippedBefore
	if int(skippedMetric) != len(toLeavers) {
		t.Errorf("wxpush_sends_skipped_total{reason=\"not_following\"} rose by %v, want %d", skippedMetric, len(toLeavers))
	}
	afterUnsub := s.ledgerSince(t, mark)
	leaverSends := 0
	for _, u := range leavers {
		leaverSends += afterUnsub[u]
		if afterUnsub[u] != 0 {
			t.Errorf("the mock's ledger shows %d sends to %s after they unsubscribed, want 0", afterUnsub[u], u)
		}
	}
	for _, u := range stayers {
		if afterUnsub[u] != per {
			t.Errorf("the mock's ledger shows %d sends to follower %s, want %d", afterUnsub[u], u, per)
		}
	}

	resub := s.run(t, []step{acts(mockwx.EventSubscribe, leavers)})
	s.checkFollowing(t, leavers, true, mockwx.EventSubscribe)
	mark2 := s.ledgerEnd(t)
	back := 0
	for id, m := range await(sendAll(leavers)) {
		if m.Status != service.StatusDelivered {
			t.Errorf("message %s to %s (subscribed again): %s %q, want delivered", id, m.ToUser, m.Status, m.Reason)
		} else {
			back++
		}
	}
	afterResub := s.ledgerSince(t, mark2)
	for _, u := range leavers {
		if afterResub[u] != per {
			t.Errorf("the mock's ledger shows %d sends to %s after they subscribed again, want %d", afterResub[u], u, per)
		}
	}
	counts, _ := s.outcomes(t, append(unsub, resub...), false)
	t.Logf("events %s [%s] unfollow: %d users unsubscribed -> %d of %d sends failed/not_following, ledger sends to them after the unsubscribe %d, wxpush_sends_skipped_total +%v; %d followers -> %d of %d delivered; subscribed again -> %d of %d delivered, ledger %d; users API agreed at each step; pushes %v",
		s.mode, s.env.Backend(), len(leavers), skipped, len(toLeavers), leaverSends, skippedMetric, len(stayers), stayed, len(toStayers), back, len(leavers)*per, sumOver(afterResub, leavers), counts)
}

func sumOver(m map[string]int, keys []string) int {
	n := 0
	for _, k := range keys {
		n += m[k]
	}
	return n
}

// checkFollowing checks the service's users API (through each instance)
// and the mock's view of every user.
func (s *eventSuite) checkFollowing(t *testing.T, users []string, following bool, last string) {
	t.Helper()
	for n, u := range users {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		st, err := s.c.API(n%s.env.Instances()).UserState(ctx, "default", u)
		cancel()
		if err != nil {
			t.Fatalf("GET users/%s: %v", u, err)
		}
		body, _ := json.Marshal(st)
		switch {
		case st.Following == nil || *st.Following != following:
			t.Errorf("GET users/%s: following %v, want %v (%s)", u, st.Following, following, body)
		case st.Source == nil || *st.Source != "event" || st.LastEvent == nil || *st.LastEvent != last || st.Since == nil:
			t.Errorf("GET users/%s: %s, want source event, last_event %s and since", u, body, last)
		}
		ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
		m, err := s.env.Mock().User(ctx, s.env.App().AppID, u)
		cancel()
		if err != nil || m.Subscribed != following {
			t.Errorf("mock user %s: subscribed %v (%v), want %v", u, m.Subscribed, err, following)
		}
	}
}

// ledgerEnd is the mock ledger's last seq.
func (s *eventSuite) ledgerEnd(t *testing.T) uint64 {
	t.Helper()
	var last uint64
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.env.Mock().AllMessages(ctx, 0, func(e mockwx.LedgerEntry) error { last = e.Seq; return nil }); err != nil {
		t.Fatal(err)
	}
	return last
}

// ledgerSince counts the template sends WeChat accepted per openid after
// seq (any errcode counts: a send that reached WeChat).
func (s *eventSuite) ledgerSince(t *testing.T, seq uint64) map[string]int {
	t.Helper()
	out := map[string]int{}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.env.Mock().AllMessages(ctx, seq, func(e mockwx.LedgerEntry) error { out[e.ToUser]++; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// sdkEmptyEnvelope: a program answering every push with an encrypted
// envelope of empty content (what SDKs that seal every answer do when the
// handler has nothing to say) is acknowledged by the mock, on the first
// try; a control answer with a broken signature is reply_invalid.
func (s *eventSuite) sdkEmptyEnvelope(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	apps, err := s.env.Mock().Apps(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	var app *mockwx.App
	for i := range apps {
		if apps[i].AppID == conformance.ProbeAppID {
			app = &apps[i]
		}
	}
	if app == nil {
		t.Skip("the mock has no probe app: the backend cannot point a mock app at the test's handler")
	}
	crypter, err := wechat.NewCrypter(wechat.CrypterConfig{Token: app.CallbackToken, AppID: app.AppID, EncodingAESKey: app.EncodingAESKey})
	if err != nil {
		t.Fatal(err)
	}
	s.probe.set(crypter)
	u := conformance.OpenID("evsdk", 1)
	reqs := step{
		{AppID: app.AppID, OpenID: u, Type: mockwx.EventSubscribe},
		{AppID: app.AppID, OpenID: u, Type: mockwx.EventClick, EventKey: keyToday},
		{AppID: app.AppID, OpenID: u, Type: mockwx.MessageText, Content: "help"},
		{AppID: app.AppID, OpenID: u, Type: mockwx.MessageText, Content: "success"},
		{AppID: app.AppID, OpenID: u, Type: mockwx.MessageText, Content: probeBroken},
	}
	all := s.run(t, []step{reqs[:3], reqs[3:]})
	acked, invalid := 0, 0
	for _, p := range all {
		r := p.rec
		want := mockwx.OutcomeAcked
		if p.req.Content == probeBroken {
			want = mockwx.OutcomeReplyInvalid
		}
		if r.Outcome != want || r.Attempts != 1 {
			t.Errorf("push %s (%s %q) to the probe: outcome %s %q after %d tries, want %s after 1", r.ID, r.Type, p.req.Content, r.Outcome, r.Reason, r.Attempts, want)
		}
		switch r.Outcome {
		case mockwx.OutcomeAcked:
			acked++
		case mockwx.OutcomeReplyInvalid:
			invalid++
		}
	}
	opened, refused := s.probe.counts()
	if opened != len(all) || refused != 0 {
		t.Errorf("the probe opened %d pushes and refused %d, want %d and 0", opened, refused, len(all))
	}
	t.Logf("events %s [%s] sdk-empty-envelope (mock property; probe app %s -> test handler at %s): %d pushes opened by the handler, answered with an encrypted empty envelope -> acked %d of %d on the first try; control (bad MsgSignature) -> reply_invalid %d of 1",
		s.mode, s.env.Backend(), app.AppID, s.env.HandlersURL()+conformance.PathProbeCallback, opened, acked, len(all)-1, invalid)
}

// probeBroken is the text that makes the probe answer with a broken
// signature (the control).
const probeBroken = "control: broken signature"

// probeHandler answers pushes as an SDK that seals every answer does when
// its handler returns nothing: an encrypted envelope of empty content.
type probeHandler struct {
	mu              sync.Mutex
	crypter         *wechat.Crypter
	opened, refused int
}

func (p *probeHandler) set(c *wechat.Crypter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.crypter = c
}

func (p *probeHandler) counts() (int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opened, p.refused
}

func (p *probeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	c := p.crypter
	p.mu.Unlock()
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var msg *wechat.Message
	var err error
	if c != nil {
		msg, err = c.OpenCallback(r.URL.Query(), body)
	}
	p.mu.Lock()
	if c == nil || err != nil {
		p.refused++
		p.mu.Unlock()
		http.Error(w, "cannot open the push", http.StatusForbidden)
		return
	}
	p.opened++
	p.mu.Unlock()
	nonce := r.URL.Query().Get(wechat.ParamNonce)
	sealed, err := c.SealReply(nil, time.Now().Unix(), nonce)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if msg.Content == probeBroken {
		sealed.MsgSignature = "0000000000000000000000000000000000000000"
	}
	w.Header().Set("Content-Type", "text/xml")
	_ = xml.NewEncoder(w).Encode(sealed)
}

// receiver is the event webhook's receiver: it checks each delivery's
// signature and headers, answers 500 to the first failFirst deliveries,
// and keeps each delivery id once (later receipts of an id are
// duplicates it drops, as the README tells receivers to).
type receiver struct {
	secret []byte

	mu        sync.Mutex
	failFirst int
	failed    int
	raw       map[string]int // receipts per openid, including failed and dropped ones
	dupes     map[string]int // receipts of ids already accepted, per openid
	badSig    int
	seen      map[string]bool
	byUser    map[string][]service.InboundEvent // accepted, in the order accepted
	remotes   map[string]int                    // the deployment's addresses seen
}

func newReceiver(secret string) *receiver {
	r := &receiver{secret: []byte(secret)}
	r.reset(0)
	return r
}

// reset forgets everything and fails the next failFirst deliveries.
func (r *receiver) reset(failFirst int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failFirst, r.failed, r.badSig = failFirst, 0, 0
	r.raw, r.dupes, r.seen = map[string]int{}, map[string]int{}, map[string]bool{}
	r.byUser, r.remotes = map[string][]service.InboundEvent{}, map[string]int{}
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	ts, sig, id := req.Header.Get(service.HeaderWebhookTimestamp), req.Header.Get(service.HeaderWebhookSignature), req.Header.Get(service.HeaderWebhookDeliveryID)
	mac := hmac.New(sha256.New, r.secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	var ev service.InboundEvent
	jerr := json.Unmarshal(body, &ev)
	host, _, _ := net.SplitHostPort(req.RemoteAddr)

	r.mu.Lock()
	defer r.mu.Unlock()
	r.remotes[host]++
	r.raw[ev.OpenID]++
	tsOK := false
	if n, err := strconv.ParseInt(ts, 10, 64); err == nil {
		d := time.Since(time.Unix(n, 0))
		tsOK = d < 5*time.Minute && d > -5*time.Minute
	}
	if !hmac.Equal([]byte(sig), []byte(want)) || !tsOK || jerr != nil || ev.ID != id || req.Header.Get(service.HeaderWebhookEventType) != ev.Type {
		r.badSig++
		http.Error(w, "bad signature or headers", http.StatusUnauthorized)
		return
	}
	if r.failed < r.failFirst {
		r.failed++
		http.Error(w, "failing on purpose", http.StatusInternalServerError)
		return
	}
	if r.seen[id] {
		r.dupes[ev.OpenID]++
		w.WriteHeader(http.StatusOK) // a duplicate: dropped
		return
	}
	r.seen[id] = true
	r.byUser[ev.OpenID] = append(r.byUser[ev.OpenID], ev)
	w.WriteHeader(http.StatusOK)
}

// accepted counts the deliveries accepted for users.
func (r *receiver) accepted(users map[string]bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for u, list := range r.byUser {
		if users[u] {
			n += len(list)
		}
	}
	return n
}

// snapshot returns the deliveries accepted for users and the counts.
func (r *receiver) snapshot(users map[string]bool) (map[string][]service.InboundEvent, hookVerdict) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]service.InboundEvent{}
	var v hookVerdict
	for u := range users {
		if list := r.byUser[u]; len(list) > 0 {
			out[u] = append([]service.InboundEvent(nil), list...)
			v.accepted += len(list)
		}
		v.raw += r.raw[u]
		v.dupes += r.dupes[u]
	}
	v.failedOn, v.badSig = r.failed, r.badSig
	return out, v
}

// remoteAddrs lists the addresses deliveries came from.
func (r *receiver) remoteAddrs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for a := range r.remotes {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// metricSum sums a counter's samples whose labels include every pair of
// labels, over every instance's /metrics.
func (s *eventSuite) metricSum(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	total := 0.0
	for i := range s.env.Instances() {
		r, err := s.c.Do(t.Context(), i, http.MethodGet, "/metrics", nil, nil)
		if err != nil || r.Code != http.StatusOK {
			t.Fatalf("GET /metrics of instance %d: %v %d", i, err, r.Code)
		}
	lines:
		for line := range strings.SplitSeq(string(r.Body), "\n") {
			rest, ok := strings.CutPrefix(line, name+"{")
			if !ok {
				continue
			}
			set, value, ok := strings.Cut(rest, "} ")
			if !ok {
				continue
			}
			for j := 0; j+1 < len(labels); j += 2 {
				if !strings.Contains(","+set+",", ","+labels[j]+"=\""+labels[j+1]+"\",") {
					continue lines
				}
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			total += v
		}
	}
	return total
}
