package conformance_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/service"
)

// TestAdversaryCallbacks plays an attacker who knows a user's openid and
// has captured callback URLs, against delivery reports that have not
// arrived yet (the mock holds the real report back for a few seconds, so
// the forgery comes first, which is when it can do harm):
//   - downgrade (safe mode): a plaintext push with a valid URL signature
//     claims the user blocked the message; it must be refused with 403;
//   - replay: a signed query seen once is replayed with another body (a
//     failure for another message); it must be refused with 403, while
//     the same query with the same body (WeChat's retry) is acknowledged;
//   - another openid: a report for the message's msgid that names another
//     user must change nothing.
//
// In every case the message must end as the mock really delivered it:
// delivered. It runs in safe and plain mode; against an external
// deployment, in the mode its mock pushes in.
func TestAdversaryCallbacks(t *testing.T) {
	for _, mode := range []string{"safe", "plain"} {
		t.Run(mode, func(t *testing.T) {
			env := conformance.New(t, conformance.Options{CallbackMode: mode})
			c := conformance.NewClient(env)
			app := env.App()
			crypter, err := wechat.NewCrypter(wechat.CrypterConfig{Token: app.CallbackToken, AppID: app.AppID, EncodingAESKey: app.EncodingAESKey})
			if err != nil {
				t.Fatal(err)
			}
			a := &attacker{t: t, env: env, crypter: crypter, app: app}

			// victim sends a message whose real report the mock holds back,
			// and returns it once the service recorded it as sent.
			held := 4000
			victim := func(name string) service.Message {
				openid := conformance.OpenID("adv"+name+mode, 1)
				conformance.AddFault(t, env.Mock(), mockwx.Rule{Endpoint: mockwx.EndpointCallback, Match: mockwx.Match{ToUser: openid}, Latency: &mockwx.Latency{FixedMS: &held}})
				return a.sent(c, openid)
			}
			// delivered waits for the message's final status.
			final := func(m service.Message) service.Message {
				got, err := c.Await(t.Context(), []string{m.ID}, 30*time.Second, func(m service.Message) bool {
					return m.Status == service.StatusDelivered || m.Status == service.StatusFailed
				})
				if err != nil {
					t.Fatal(err)
				}
				return got[m.ID]
			}
			type outcome struct {
				name, tried, saw string
				ok               bool
			}
			var results []outcome
			check := func(name, tried string, m service.Message, codes ...int) {
				end := final(m)
				ok := end.Status == service.StatusDelivered
				saw := "answers " + fmtCodes(codes) + ", message " + string(end.Status)
				if end.Reason != "" {
					saw += "/" + end.Reason
				}
				if !ok {
					t.Errorf("%s: %s: the message ended %s %q, want delivered (the mock delivered it)", name, tried, end.Status, end.Reason)
				}
				results = append(results, outcome{name, tried, saw, ok})
			}

			if mode != "plain" {
				m := victim("downgrade")
				report := a.report(m, m.ToUser, wechat.StatusUserBlock)
				q, body := a.seal(report, wechat.ModePlain)
				code := a.post(q, body)
				if code != http.StatusForbidden {
					t.Errorf("downgrade: a plaintext push to a %s-mode app answered %d, want 403", mode, code)
				}
				check("downgrade", "plaintext push with a valid URL signature, failed:user block", m, code)
			}

			{
				m := victim("replay")
				// The captured push: a genuine-looking report for another,
				// already delivered message, as it crossed the wire.
				other := a.sent(c, conformance.OpenID("advreplayother"+mode, 1))
				other = final(other)
				q, body := a.seal(a.report(other, other.ToUser, wechat.StatusSuccess), wechat.Mode(mode))
				first := a.post(q, body)
				retry := a.post(q, body)
				if first != http.StatusOK || retry != http.StatusOK {
					t.Errorf("replay: the captured push and its retry answered %d and %d, want 200 (acknowledged)", first, retry)
				}
				forged, err := a.report(m, m.ToUser, wechat.StatusUserBlock).Bytes()
				if err != nil {
					t.Fatal(err)
				}
				if mode != "plain" { // the encrypted body, as an attacker would re-seal it: msg_signature no longer matches
					_, forged = a.seal(a.report(m, m.ToUser, wechat.StatusUserBlock), wechat.Mode(mode))
				}
				replayed := a.post(q, forged)
				if replayed != http.StatusForbidden {
					t.Errorf("replay: the captured query with another body answered %d, want 403", replayed)
				}
				check("replay", "captured query re-posted with failed:user block for another message", m, first, retry, replayed)
			}

			{
				m := victim("openid")
				q, body := a.seal(a.report(m, conformance.OpenID("advattacker"+mode, 1), wechat.StatusUserBlock), wechat.Mode(mode))
				code := a.post(q, body)
				check("another openid", "report for the message's msgid naming another user, failed:user block", m, code)
			}

			for _, r := range results {
				verdict := "held"
				if !r.ok {
					verdict = "BROKEN"
				}
				t.Logf("adversary callbacks %s [%s] %s: tried %s; saw %s: %s", mode, env.Backend(), r.name, r.tried, r.saw, verdict)
			}
		})
	}
}

// attacker forges callbacks to the service's callback route.
type attacker struct {
	t       *testing.T
	env     conformance.Env
	crypter *wechat.Crypter
	app     mockwx.App
}

// sent sends one message to openid and waits until the service recorded
// the send (status sent, with its msgid).
func (a *attacker) sent(c *conformance.Client, openid string) service.Message {
	a.t.Helper()
	r, err := c.Send(a.t.Context(), 0, conformance.Order(openid), "")
	if err != nil || r.Code != http.StatusAccepted {
		a.t.Fatalf("send to %s: %v %d %s", openid, err, r.Code, r.Body)
	}
	acc, _ := r.Accepted()
	got, err := c.Await(a.t.Context(), []string{acc.ID}, 30*time.Second, func(m service.Message) bool { return m.MsgID != 0 || m.Status.Terminal() })
	if err != nil {
		a.t.Fatal(err)
	}
	m := got[acc.ID]
	if m.MsgID == 0 {
		a.t.Fatalf("message %s ended %s %q before it was sent", m.ID, m.Status, m.Reason)
	}
	return m
}

// report is a TEMPLATESENDJOBFINISH for m's msgid from openid.
func (a *attacker) report(m service.Message, openid, status string) *wechat.Message {
	return &wechat.Message{ToUserName: a.app.OriginalID, FromUserName: openid, CreateTime: time.Now().Unix(),
		MsgType: wechat.MsgTypeEvent, Event: wechat.EventTemplateSendJobFinish, MsgID: m.MsgID, Status: status}
}

// seal signs msg as WeChat would in mode, with a fresh nonce.
func (a *attacker) seal(msg *wechat.Message, mode wechat.Mode) (url.Values, []byte) {
	a.t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	q, body, err := a.crypter.SealCallback(msg, mode, time.Now().Unix(), hex.EncodeToString(b[:]))
	if err != nil {
		a.t.Fatal(err)
	}
	return q, body
}

// post sends a push to instance 0's callback route and returns the status.
func (a *attacker) post(q url.Values, body []byte) int {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(a.t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.env.ServiceURL(0)+"/wechat/callback/default?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("callback post: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func fmtCodes(codes []int) string {
	s := ""
	for i, c := range codes {
		if i > 0 {
			s += ","
		}
		s += itoa(c)
	}
	return s
}
