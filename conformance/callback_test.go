package conformance_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/service"
)

// TestCallback: WeChat's TEMPLATESENDJOBFINISH reports, in each callback
// mode. The mock pushes a report for every accepted send; the service
// verifies it and moves the message to delivered, or to failed with the
// report's reason (user block, system failed). The suite then plays the
// attacker: a forged signature, a stale timestamp and a replay of a real
// report are refused or change nothing. URL verification echoes.
// The suite skips when the service has no callback route (404).
func TestCallback(t *testing.T) {
	for _, mode := range []string{"plain", "compat", "safe"} {
		t.Run(mode, func(t *testing.T) {
			env := conformance.New(t, conformance.Options{CallbackMode: mode})
			c := conformance.NewClient(env)
			if ok, err := c.HasRoute(t.Context(), 0, http.MethodPost, "/wechat/callback/default"); err != nil {
				t.Fatal(err)
			} else if !ok {
				t.Skip("the service answers 404 on /wechat/callback/default: the delivery callback endpoint is not there (yet)")
			}
			app := env.App()
			crypter, err := wechat.NewCrypter(wechat.CrypterConfig{Token: app.CallbackToken, AppID: app.AppID, EncodingAESKey: app.EncodingAESKey})
			if err != nil {
				t.Fatal(err)
			}
			systemFailed := conformance.OpenID("cbsysfail"+mode, 1)
			conformance.AddFault(t, env.Mock(), mockwx.Rule{Endpoint: mockwx.EndpointCallback, Match: mockwx.Match{ToUser: systemFailed}, DeliveryStatus: wechat.StatusSystemFailed})

			type want struct {
				status service.Status
				reason string
			}
			wants := map[string]want{}
			send := func(openid string, w want) string {
				r, err := c.Send(t.Context(), len(wants)%env.Instances(), conformance.Order(openid), "")
				if err != nil || r.Code != http.StatusAccepted {
					t.Fatalf("send to %s: %v %d %s", openid, err, r.Code, r.Body)
				}
				a, _ := r.Accepted()
				wants[a.ID] = w
				return a.ID
			}
			var okIDs []string
			for n := range 10 {
				okIDs = append(okIDs, send(conformance.OpenID("cb"+mode, n), want{service.StatusDelivered, ""}))
			}
			send(mockwx.DemoBlocked, want{service.StatusFailed, service.ReasonUserBlock})
			send(systemFailed, want{service.StatusFailed, service.ReasonSystemFailed})
			ids := make([]string, 0, len(wants))
			for id := range wants {
				ids = append(ids, id)
			}
			final, err := c.Await(t.Context(), ids, 30*time.Second, func(m service.Message) bool {
				return m.Status == service.StatusDelivered || m.Status == service.StatusFailed
			})
			if err != nil {
				t.Fatal(err)
			}
			counts := map[string]int{}
			for id, w := range wants {
				m := final[id]
				counts[string(m.Status)+" "+m.Reason]++
				if m.Status != w.status || m.Reason != w.reason {
					t.Errorf("message %s: %s %q, want %s %q (delivery_status %q)", id, m.Status, m.Reason, w.status, w.reason, m.DeliveryStatus)
				}
			}

			// The attacker's turn, against a delivered message.
			victim := final[okIDs[0]]
			report := &wechat.Message{ToUserName: app.OriginalID, FromUserName: victim.ToUser, MsgType: "event",
				Event: "TEMPLATESENDJOBFINISH", MsgID: victim.MsgID, Status: wechat.StatusUserBlock, CreateTime: time.Now().Unix()}
			post := (&attacker{t: t, env: env, crypter: crypter, app: app}).post
			now := time.Now().Unix()
			q, body, err := crypter.SealCallback(report, wechat.Mode(mode), now, "1234567")
			if err != nil {
				t.Fatal(err)
			}
			forged := url.Values{}
			for k, v := range q {
				forged[k] = append([]string(nil), v...)
			}
			for _, k := range []string{wechat.ParamSignature, wechat.ParamMsgSignature} {
				if forged.Get(k) != "" {
					forged.Set(k, "0000000000000000000000000000000000000000")
				}
			}
			refused := 0
			if code := post(forged, body); code/100 == 2 {
				t.Errorf("a forged signature was accepted (%d)", code)
			} else {
				refused++
			}
			staleQ, staleBody, err := crypter.SealCallback(report, wechat.Mode(mode), now-3600, "7654321")
			if err != nil {
				t.Fatal(err)
			}
			if code := post(staleQ, staleBody); code/100 == 2 {
				t.Errorf("a report an hour old was accepted (%d)", code)
			} else {
				refused++
			}
			// A replay of the report the mock really sent (same msgid, status
			// and create time is what WeChat's retries look like): acknowledged,
			// and it changes nothing.
			replay := *report
			replay.Status = wechat.StatusSuccess
			rq, rbody, err := crypter.SealCallback(&replay, wechat.Mode(mode), now, "2345678")
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if code := post(rq, rbody); code != http.StatusOK {
					t.Errorf("a replayed report answered %d, want 200 (acknowledged)", code)
				}
			}
			sleep(t, 300*time.Millisecond)
			after, _, err := c.Get(t.Context(), 0, victim.ID)
			if err != nil || after.Status != service.StatusDelivered {
				t.Errorf("after forged, stale and replayed reports: %s %q (%v), want delivered", after.Status, after.Reason, err)
			}

			// URL verification.
			ts, nonce, echo := strconv.FormatInt(now, 10), "888", "echo-"+mode
			vq := url.Values{wechat.ParamSignature: {crypter.Sign(ts, nonce)}, wechat.ParamTimestamp: {ts}, wechat.ParamNonce: {nonce}, wechat.ParamEchoStr: {echo}}
			vr, err := c.Do(t.Context(), 0, http.MethodGet, "/wechat/callback/default?"+vq.Encode(), nil, nil)
			if err != nil || vr.Code != http.StatusOK || string(vr.Body) != echo {
				t.Errorf("URL verification: %v %d %q, want 200 %q", err, vr.Code, vr.Body, echo)
			}
			st, err := conformance.Stats(t.Context(), env.Mock())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("callback %s [%s]: %d messages -> %v; mock pushes sent %d acked %d failed %d; forged/stale refused %d of 2; replay acknowledged without effect; URL verification echoed",
				mode, env.Backend(), len(wants), fmt.Sprint(counts), st.Callbacks.Sent, st.Callbacks.Acked, st.Callbacks.Failed, refused)
		})
	}
}
