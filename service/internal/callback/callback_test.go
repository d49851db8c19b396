package callback_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/callback"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

func TestModes(t *testing.T) {
	tests := []struct {
		mode   wechat.Mode
		status string
		want   service.Status
		reason string
	}{
		{wechat.ModePlain, wechat.StatusSuccess, service.StatusDelivered, ""},
		{wechat.ModeCompat, wechat.StatusSuccess, service.StatusDelivered, ""},
		{wechat.ModeSafe, wechat.StatusSuccess, service.StatusDelivered, ""},
		{wechat.ModePlain, wechat.StatusUserBlock, service.StatusFailed, service.ReasonUserBlock},
		{wechat.ModeCompat, wechat.StatusSystemFailed, service.StatusFailed, service.ReasonSystemFailed},
		{wechat.ModeSafe, wechat.StatusFreqLimit, service.StatusFailed, service.ReasonFreqLimit},
		{wechat.ModeSafe, "failed: something new", service.StatusFailed, service.ReasonDeliveryFailed},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode)+" "+tt.status, func(t *testing.T) {
			e := newEnv(t)
			id := e.sent("m1", 1001)
			q, body := e.seal(e.sender, report(1001, tt.status), tt.mode, fixedNow)
			rec := e.post(appName, q, body)
			require.Equal(t, http.StatusOK, rec.Code, "%s", rec.Body)
			assert.Equal(t, "success", rec.Body.String())
			assert.Equal(t, service.StatusSent, e.message(id).Status, "recorded first, applied after")

			assert.Equal(t, 1, e.process())
			m := e.message(id)
			assert.Equal(t, tt.want, m.Status)
			assert.Equal(t, tt.reason, m.Reason)
			assert.Equal(t, tt.status, m.DeliveryStatus)
			if tt.want == service.StatusDelivered {
				require.NotNil(t, m.DeliveredAt)
				assert.True(t, m.DeliveredAt.Equal(fixedNow))
			}
			assert.Equal(t, 1.0, e.callbacks(appName, callback.ResultReport))
		})
	}
}

func TestKeyRotation(t *testing.T) {
	for _, mode := range []wechat.Mode{wechat.ModeCompat, wechat.ModeSafe} {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t)
			id := e.sent("m1", 2002)
			q, body := e.seal(e.old, report(2002, wechat.StatusSuccess), mode, fixedNow)
			rec := e.post(appName, q, body)
			require.Equal(t, http.StatusOK, rec.Code, "an envelope sealed with the previous key opens: %s", rec.Body)
			e.process()
			assert.Equal(t, service.StatusDelivered, e.message(id).Status)

			// A key that is neither current nor previous does not.
			stranger := newCrypter(t, wechat.CrypterConfig{Token: cbToken, AppID: appID,
				EncodingAESKey: strings.Repeat("A", wechat.EncodingAESKeyLength)})
			q, body = e.seal(stranger, report(2003, wechat.StatusSuccess), mode, fixedNow)
			rec = e.post(appName, q, body)
			assert.Equal(t, http.StatusBadRequest, rec.Code, "%s", rec.Body)
		})
	}
}

func TestURLVerification(t *testing.T) {
	e := newEnv(t)
	ts := strconv.FormatInt(fixedNow.Unix(), 10)
	plain := url.Values{"timestamp": {ts}, "nonce": {"1514711492"}, "echostr": {"4375120948345356249"}}
	plain.Set("signature", wechat.Signature(cbToken, ts, "1514711492"))

	rec := e.get(appName, plain)
	require.Equal(t, http.StatusOK, rec.Code, "%s", rec.Body)
	assert.Equal(t, "4375120948345356249", rec.Body.String(), "the echostr, raw")
	assert.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))

	// Encrypted echostr with msg_signature: the answer is the plaintext.
	enc, err := e.sender.Encrypt([]byte("echo-1234567890"))
	require.NoError(t, err)
	safe := url.Values{"timestamp": {ts}, "nonce": {"77"}, "echostr": {enc}, "msg_signature": {e.sender.Sign(ts, "77", enc)}}
	rec = e.get(appName, safe)
	require.Equal(t, http.StatusOK, rec.Code, "%s", rec.Body)
	assert.Equal(t, "echo-1234567890", rec.Body.String())
	safe.Set("signature", e.sender.Sign(ts, "77"))
	rec = e.get(appName, safe)
	require.Equal(t, http.StatusOK, rec.Code, "with both signatures: %s", rec.Body)
	assert.Equal(t, "echo-1234567890", rec.Body.String())

	stale := strconv.FormatInt(fixedNow.Add(-time.Hour).Unix(), 10)
	bad := []struct {
		name string
		q    url.Values
		code int
	}{
		{"wrong signature", with(plain, "signature", strings.Repeat("0", 40)), http.StatusForbidden},
		{"no signature", with(plain, "signature", ""), http.StatusForbidden},
		{"stale", with(with(plain, "timestamp", stale), "signature", wechat.Signature(cbToken, stale, "1514711492")), http.StatusForbidden},
		{"wrong msg_signature", with(safe, "msg_signature", strings.Repeat("0", 40)), http.StatusForbidden},
		{"msg_signature with a wrong signature", with(safe, "signature", strings.Repeat("0", 40)), http.StatusForbidden},
		{"echostr too long", with(with(plain, "echostr", strings.Repeat("9", 2000)), "signature", wechat.Signature(cbToken, ts, "1514711492")), http.StatusBadRequest},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.get(appName, tt.q)
			assert.Equal(t, tt.code, rec.Code, "%s", rec.Body)
			assert.NotContains(t, rec.Body.String(), "4375120948345356249")
			assert.NotContains(t, rec.Body.String(), "echo-1234567890")
		})
	}
	assert.Equal(t, http.StatusNotFound, e.get("nope", plain).Code)
	assert.Equal(t, 3.0, e.callbacks(appName, callback.ResultVerified))
}

// with returns a copy of q with key set (deleted when v is empty).
func with(q url.Values, key, v string) url.Values {
	out := url.Values{}
	for k, vs := range q {
		out[k] = append([]string(nil), vs...)
	}
	if v == "" {
		out.Del(key)
	} else {
		out.Set(key, v)
	}
	return out
}

// signPlain signs a raw plaintext body as WeChat would.
func signPlain(ts time.Time, nonce string) url.Values {
	s := strconv.FormatInt(ts.Unix(), 10)
	return url.Values{"signature": {wechat.Signature(cbToken, s, nonce)}, "timestamp": {s}, "nonce": {nonce}}
}

// TestRejections: every forged, replayed, oversized or malformed push is
// refused with the right status, and nothing is recorded or changed.
func TestRejections(t *testing.T) {
	e := newEnv(t)
	id := e.sent("m1", 3003)
	good := report(3003, wechat.StatusSuccess)
	var huge bytes.Buffer
	huge.WriteString("<xml><Content>")
	huge.WriteString(strings.Repeat("a", callback.DefaultMaxBody))
	huge.WriteString("</Content></xml>")

	type push struct {
		app  string
		q    url.Values
		body []byte
		// chunked hides the length, so the limit is found while reading.
		chunked bool
	}
	sealed := func(c *wechat.Crypter, msg *wechat.Message, mode wechat.Mode, ts time.Time) push {
		q, body := e.seal(c, msg, mode, ts)
		return push{app: appName, q: q, body: body}
	}
	tamper := func(p push, key, v string) push { p.q = with(p.q, key, v); return p }
	raw := func(body string) push {
		return push{app: appName, q: signPlain(fixedNow, "42"), body: []byte(body)}
	}
	otherApp := newCrypter(t, wechat.CrypterConfig{Token: cbToken, AppID: "wxffffffffffffffff", EncodingAESKey: aesKey})
	noMsgID := report(0, wechat.StatusSuccess)

	// Outer ToUserName rewritten: signatures still hold (they do not cover
	// it), the inner one differs.
	mismatch := sealed(e.sender, good, wechat.ModeSafe, fixedNow)
	mismatch.body = bytes.Replace(mismatch.body, []byte(originalID), []byte("gh_ffffffffffff"), 1)
	// Encrypt tampered: msg_signature no longer matches.
	tampered := sealed(e.sender, good, wechat.ModeSafe, fixedNow)
	tampered.body = bytes.Replace(tampered.body, []byte("<Encrypt><![CDATA["), []byte("<Encrypt><![CDATA[AAAA"), 1)

	tests := []struct {
		name   string
		push   push
		code   int
		result string
	}{
		{"unknown app", push{app: "nope", q: signPlain(fixedNow, "1"), body: []byte("<xml></xml>")}, http.StatusNotFound, callback.ResultUnknownApp},
		{"bad signature", tamper(sealed(e.sender, good, wechat.ModePlain, fixedNow), "signature", strings.Repeat("a", 40)), http.StatusForbidden, callback.ResultForbidden},
		{"no signature", tamper(sealed(e.sender, good, wechat.ModePlain, fixedNow), "signature", ""), http.StatusForbidden, callback.ResultForbidden},
		{"bad signature in safe mode", tamper(sealed(e.sender, good, wechat.ModeSafe, fixedNow), "signature", strings.Repeat("a", 40)), http.StatusForbidden, callback.ResultForbidden},
		{"bad msg_signature", tamper(sealed(e.sender, good, wechat.ModeSafe, fixedNow), "msg_signature", strings.Repeat("a", 40)), http.StatusForbidden, callback.ResultForbidden},
		{"no msg_signature", tamper(sealed(e.sender, good, wechat.ModeCompat, fixedNow), "msg_signature", ""), http.StatusForbidden, callback.ResultForbidden},
		{"tampered Encrypt", tampered, http.StatusForbidden, callback.ResultForbidden},
		{"other appid in the trailer", sealed(otherApp, good, wechat.ModeSafe, fixedNow), http.StatusForbidden, callback.ResultForbidden},
		{"outer and inner ToUserName differ", mismatch, http.StatusForbidden, callback.ResultForbidden},
		{"stale timestamp", sealed(e.sender, good, wechat.ModePlain, fixedNow.Add(-6*time.Minute)), http.StatusForbidden, callback.ResultStale},
		{"future timestamp", sealed(e.sender, good, wechat.ModeSafe, fixedNow.Add(6*time.Minute)), http.StatusForbidden, callback.ResultStale},
		{"non-numeric timestamp", push{app: appName, q: url.Values{"signature": {wechat.Signature(cbToken, "soon", "1")}, "timestamp": {"soon"}, "nonce": {"1"}}, body: []byte("<xml></xml>")}, http.StatusForbidden, callback.ResultStale},
		{"oversized body", push{app: appName, q: signPlain(fixedNow, "5"), body: huge.Bytes()}, http.StatusRequestEntityTooLarge, callback.ResultTooLarge},
		{"oversized body without length", push{app: appName, q: signPlain(fixedNow, "6"), body: huge.Bytes(), chunked: true}, http.StatusRequestEntityTooLarge, callback.ResultTooLarge},
		{"malformed XML", raw("<xml><ToUserName>gh_1</ToUserName>"), http.StatusBadRequest, callback.ResultMalformed},
		{"not XML", raw(`{"ToUserName":"gh_1"}`), http.StatusBadRequest, callback.ResultMalformed},
		{"empty body", raw(""), http.StatusBadRequest, callback.ResultMalformed},
		{"DOCTYPE with an entity", raw(`<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">]><xml><Status>&a;</Status></xml>`), http.StatusBadRequest, callback.ResultMalformed},
		{"billion laughs", raw(`<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><xml><Status>&lol3;</Status></xml>`), http.StatusBadRequest, callback.ResultMalformed},
		{"external entity", raw(`<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Status>&xxe;</Status></xml>`), http.StatusBadRequest, callback.ResultMalformed},
		{"deep nesting", raw("<xml>" + strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100) + "</xml>"), http.StatusBadRequest, callback.ResultMalformed},
		{"two roots", raw("<xml></xml><xml></xml>"), http.StatusBadRequest, callback.ResultMalformed},
		{"report without MsgID", sealed(e.sender, noMsgID, wechat.ModePlain, fixedNow), http.StatusBadRequest, callback.ResultMalformed},
		{"encrypted push to an app without a key", func() push {
			p := sealed(e.sender, good, wechat.ModeSafe, fixedNow)
			p.app = plainApp
			return p
		}(), http.StatusBadRequest, callback.ResultMalformed},
		{"safe mode without Encrypt", func() push {
			p := sealed(e.sender, good, wechat.ModeSafe, fixedNow)
			p.body = []byte("<xml><ToUserName>" + originalID + "</ToUserName></xml>")
			return p
		}(), http.StatusBadRequest, callback.ResultMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = bytes.NewReader(tt.push.body)
			if tt.push.chunked {
				body = io.MultiReader(body) // not a type NewRequest measures
			}
			req := httptest.NewRequest(http.MethodPost, "/wechat/callback/"+tt.push.app+"?"+tt.push.q.Encode(), body)
			rec := httptest.NewRecorder()
			before := e.callbacks(labelApp(tt.push.app), tt.result)
			e.h.ServeHTTP(rec, req)
			assert.Equal(t, tt.code, rec.Code, "%s", rec.Body)
			assert.NotEqual(t, "success", rec.Body.String())
			assert.Contains(t, rec.Body.String(), `"error"`, "a JSON error")
			assert.Equal(t, before+1, e.callbacks(labelApp(tt.push.app), tt.result), "counted as %s", tt.result)
			assert.Zero(t, e.recorded(), "nothing is recorded")
		})
	}
	assert.Zero(t, e.process())
	assert.Equal(t, service.StatusSent, e.message(id).Status, "nothing changed")

	logs := e.logs.String()
	for name, secret := range map[string]string{"callback token": cbToken, "EncodingAESKey": aesKey, "previous EncodingAESKey": previousKey} {
		assert.NotContains(t, logs, secret, "%s leaked into the logs", name)
	}
	assert.Contains(t, logs, "callback rejected")
}

func labelApp(app string) string {
	if app == appName || app == plainApp {
		return app
	}
	return "_unknown"
}

func TestEncryptedPushToAnAppWithoutKey(t *testing.T) {
	// The signatures hold (same token) but the app has no key: the push
	// cannot be opened, and is refused without being recorded.
	e := newEnv(t)
	q, body := e.seal(e.sender, report(1, wechat.StatusSuccess), wechat.ModeSafe, fixedNow)
	rec := e.post(plainApp, q, body)
	assert.Equal(t, http.StatusBadRequest, rec.Code, "%s", rec.Body)
	assert.Zero(t, e.recorded())
	// Plaintext pushes are fine.
	q, body = e.seal(e.sender, report(1, wechat.StatusSuccess), wechat.ModePlain, fixedNow)
	assert.Equal(t, http.StatusOK, e.post(plainApp, q, body).Code)
}

// TestDuplicateReportOneTransition: WeChat's retries (fresh timestamp and
// nonce, same report) are answered "success" and recorded once; a report
// applied twice anyway (its dedup key expired) changes nothing.
func TestDuplicateReportOneTransition(t *testing.T) {
	for _, mode := range []wechat.Mode{wechat.ModePlain, wechat.ModeCompat, wechat.ModeSafe} {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t)
			id := e.sent("m1", 4004)
			for range 4 { // the first push and WeChat's three retries
				q, body := e.seal(e.sender, report(4004, wechat.StatusSuccess), mode, fixedNow)
				rec := e.post(appName, q, body)
				require.Equal(t, http.StatusOK, rec.Code, "%s", rec.Body)
				assert.Equal(t, "success", rec.Body.String())
			}
			assert.Equal(t, 1.0, e.callbacks(appName, callback.ResultReport))
			assert.Equal(t, 3.0, e.callbacks(appName, callback.ResultDuplicate))
			assert.Equal(t, 1, e.process(), "one report recorded")
			m := e.message(id)
			assert.Equal(t, service.StatusDelivered, m.Status)
			assert.Equal(t, 1.0, e.reports(store.DeliveryDelivered))

			// The dedup key expired: the report is recorded again, and
			// applying it is a no-op, even if it now says something else.
			keys, err := e.redis.Client.Keys(t.Context(), e.redis.Prefix+"cbseen:*").Result()
			require.NoError(t, err)
			require.NoError(t, e.redis.Client.Del(t.Context(), keys...).Err())
			q, body := e.seal(e.sender, report(4004, wechat.StatusUserBlock), mode, fixedNow)
			require.Equal(t, http.StatusOK, e.post(appName, q, body).Code)
			assert.Equal(t, 1, e.process())
			assert.Equal(t, m, e.message(id), "a final status never changes")
			assert.Equal(t, 1.0, e.reports(store.DeliveryDelivered), "one transition")
			assert.Equal(t, 1.0, e.reports(store.DeliveryFinal))
		})
	}
}

func TestOtherPushesAreDeduplicated(t *testing.T) {
	e := newEnv(t)
	subscribe := &wechat.Message{ToUserName: originalID, FromUserName: "oUser-callback-0002", CreateTime: fixedNow.Unix(),
		MsgType: wechat.MsgTypeEvent, Event: wechat.EventSubscribe}
	text := &wechat.Message{ToUserName: originalID, FromUserName: "oUser-callback-0002", CreateTime: fixedNow.Unix(),
		MsgType: wechat.MsgTypeText, Content: "hello", UserMsgID: 6054768590064713728}
	for range 2 {
		for _, m := range []*wechat.Message{subscribe, text} {
			q, body := e.seal(e.sender, m, wechat.ModeSafe, fixedNow)
			rec := e.post(appName, q, body)
			require.Equal(t, http.StatusOK, rec.Code, "%s", rec.Body)
			assert.Equal(t, "success", rec.Body.String())
		}
	}
	assert.Equal(t, 2.0, e.callbacks(appName, callback.ResultEvent))
	assert.Equal(t, 2.0, e.callbacks(appName, callback.ResultDuplicate))
	assert.Zero(t, e.process(), "only delivery reports are queued")
}

// TestEarlyReport: a report processed before the send is recorded is
// parked, and the send's own write applies it.
func TestEarlyReport(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	_, err := e.store.Enqueue(ctx, []store.NewMessage{{ID: "m1", App: appName, AcceptedAt: fixedNow,
		Request: service.SendRequest{App: appName, ToUser: "oUser-callback-0001", TemplateID: "tpl"}}})
	require.NoError(t, err)
	entries, err := e.store.Read(ctx, "w", 1, 10*time.Millisecond)
	require.NoError(t, err)
	_, _, err = e.store.MarkSending(ctx, "m1", fixedNow, store.Guard{})
	require.NoError(t, err)

	q, body := e.seal(e.sender, report(5005, wechat.StatusSystemFailed), wechat.ModeCompat, fixedNow)
	require.Equal(t, http.StatusOK, e.post(appName, q, body).Code)
	assert.Equal(t, 1, e.process())
	assert.Equal(t, 1.0, e.reports(store.DeliveryParked))
	assert.Equal(t, service.StatusSending, e.message("m1").Status)

	require.NoError(t, settleErr(e.store.Settle(ctx, entries[0], store.Settlement{Kind: store.SettleSent, App: appName, ToUser: "oUser-callback-0001", MsgID: 5005}, fixedNow)))
	m := e.message("m1")
	assert.Equal(t, service.StatusFailed, m.Status)
	assert.Equal(t, service.ReasonSystemFailed, m.Reason)
}

// TestStoreDownIsNotSuccess: a push that cannot be recorded is answered
// 503, never "success", so that WeChat retries it.
func TestStoreDownIsNotSuccess(t *testing.T) {
	r := redistest.New(t)
	if r.Real() {
		t.Skip("needs miniredis to simulate an outage")
	}
	c := redis.NewClient(&redis.Options{Addr: r.Mini.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	e := newEnv(t, func(o *callback.Options) {
		o.Store = store.New(c, store.Options{Prefix: r.Prefix})
		o.RecordTimeout = 500 * time.Millisecond
	})
	r.Mini.Close()
	q, body := e.seal(e.sender, report(6006, wechat.StatusSuccess), wechat.ModeSafe, fixedNow)
	rec := e.post(appName, q, body)
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code, "%s", rec.Body)
	assert.NotEqual(t, "success", rec.Body.String())
	assert.Equal(t, 1.0, e.callbacks(appName, callback.ResultUnavailable))
}

// TestRecordIsBounded: a Redis that never answers cannot hold the answer
// past RecordTimeout (WeChat gives up after 5 s).
func TestRecordIsBounded(t *testing.T) {
	slow := &stuckStore{Store: newEnv(t).store}
	e := newEnv(t, func(o *callback.Options) {
		o.Store = slow
		o.RecordTimeout = 50 * time.Millisecond
	})
	q, body := e.seal(e.sender, report(7007, wechat.StatusSuccess), wechat.ModePlain, fixedNow)
	rec := e.post(appName, q, body)
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.True(t, slow.sawDeadline, "the record call had a deadline")
}

// stuckStore's RecordCallback waits for its context to end, as a call to a
// hung Redis would.
type stuckStore struct {
	*store.Store
	sawDeadline bool
}

func (s *stuckStore) RecordCallback(ctx context.Context, _ store.Callback, _, _ time.Duration) (store.Recorded, error) {
	_, s.sawDeadline = ctx.Deadline()
	<-ctx.Done()
	return 0, errors.Join(store.ErrUnavailable, ctx.Err())
}

func TestRunAppliesReports(t *testing.T) {
	e := newEnv(t, func(o *callback.Options) { o.Block = 50 * time.Millisecond })
	id := e.sent("m1", 8008)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.recv.Run(ctx) }()

	q, body := e.seal(e.sender, report(8008, wechat.StatusSuccess), wechat.ModeSafe, fixedNow)
	require.Equal(t, http.StatusOK, e.post(appName, q, body).Code)
	require.Eventually(t, func() bool { return e.message(id).Status == service.StatusDelivered }, 10*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

func TestNewRejectsBadOptions(t *testing.T) {
	_, err := callback.New(callback.Options{})
	assert.Error(t, err, "no store")
	s := newEnv(t).store
	c := newCrypter(t, wechat.CrypterConfig{Token: cbToken})
	_, err = callback.New(callback.Options{Store: s, Apps: []*apps.App{{Name: "a", Crypter: c}, {Name: "a", Crypter: c}}})
	assert.Error(t, err, "duplicate app")
	_, err = callback.New(callback.Options{Store: s, Apps: []*apps.App{{Crypter: c}}})
	assert.Error(t, err, "no name")
	_, err = callback.New(callback.Options{Store: s, Apps: []*apps.App{{Name: "a", Crypter: c, CallbackMode: wechat.ModeSafe}}})
	assert.Error(t, err, "safe mode without a key")
	_, err = callback.New(callback.Options{Store: s, Apps: []*apps.App{{Name: "a", Crypter: c, Replies: apps.Replies{{On: "subscribe"}}}}})
	assert.ErrorContains(t, err, "replies[0].text", "a reply without text")
	r, err := callback.New(callback.Options{Store: s})
	require.NoError(t, err)
	assert.Error(t, r.Run(t.Context()), "Run needs a consumer name")
}

func TestReason(t *testing.T) {
	for status, want := range map[string]string{
		wechat.StatusSuccess: "", wechat.StatusUserBlock: service.ReasonUserBlock, "failed: user block": service.ReasonUserBlock,
		wechat.StatusSystemFailed: service.ReasonSystemFailed, wechat.StatusFreqLimit: service.ReasonFreqLimit,
		"failed:new thing": service.ReasonDeliveryFailed, "": service.ReasonDeliveryFailed,
	} {
		assert.Equal(t, want, callback.Reason(wechat.ParseDeliveryStatus(status)), "status %q", status)
	}
}
