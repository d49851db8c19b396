package callback_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/callback"
	"github.com/wxpush/wxpush/service/internal/store"
)

// The attacks of issue #13 on the callback route: a downgraded push to an
// app that takes encrypted pushes, a captured query replayed with another
// body, a report for another user, and a body sent before any signature.

// TestDowngradeIsRefused: an app in safe or compat mode refuses a push
// that is not encrypted and signed with msg_signature, even with a valid
// URL signature, and the message keeps its status.
func TestDowngradeIsRefused(t *testing.T) {
	forged := report(9100, wechat.StatusUserBlock)
	for _, app := range []string{safeApp, compatApp} {
		t.Run(app, func(t *testing.T) {
			e := newEnv(t)
			id := e.sentFor(app, "m-"+app, 9100)
			plainQ, plainBody := e.seal(e.sender, forged, wechat.ModePlain, fixedNow)
			noMsgSig, compatBody := e.seal(e.sender, forged, wechat.ModeCompat, fixedNow)
			noMsgSig.Del(wechat.ParamMsgSignature)
			noType, _ := e.seal(e.sender, forged, wechat.ModeCompat, fixedNow)
			noType.Del(wechat.ParamEncryptType)
			// A plaintext body behind a query that claims encryption.
			claimQ, _ := e.seal(e.sender, forged, wechat.ModeSafe, fixedNow)
			cases := []struct {
				name string
				q    url.Values
				body []byte
			}{
				{"plaintext push with a valid URL signature", plainQ, plainBody},
				{"encrypt_type=aes without msg_signature", noMsgSig, compatBody},
				{"compat body without encrypt_type", noType, compatBody},
				{"encrypted query, plaintext body", claimQ, plainBody},
			}
			for _, c := range cases {
				before := e.callbacks(app, callback.ResultDowngrade)
				rec := e.post(app, c.q, c.body)
				assert.Equal(t, http.StatusForbidden, rec.Code, c.name)
				assert.Equal(t, before+1, e.callbacks(app, callback.ResultDowngrade), "%s: counted as a downgrade", c.name)
			}
			assert.Zero(t, e.recorded(), "nothing recorded")
			e.process()
			assert.Equal(t, service.StatusSent, e.message(id).Status, "the forged failure changed nothing")

			// The real, encrypted report is taken.
			mode := wechat.Mode(map[string]string{safeApp: "safe", compatApp: "compat"}[app])
			q, body := e.seal(e.sender, report(9100, wechat.StatusSuccess), mode, fixedNow)
			require.Equal(t, http.StatusOK, e.post(app, q, body).Code)
			e.process()
			assert.Equal(t, service.StatusDelivered, e.message(id).Status)
		})
	}
}

// TestCompatModeTrustsOnlyTheEncryptedMessage: in compat mode the
// plaintext fields beside Encrypt are not signed; rewriting them changes
// nothing, the decrypted message counts.
func TestCompatModeTrustsOnlyTheEncryptedMessage(t *testing.T) {
	e := newEnv(t)
	id := e.sentFor(compatApp, "m1", 9200)
	q, body := e.seal(e.sender, report(9200, wechat.StatusSuccess), wechat.ModeCompat, fixedNow)
	rewritten := bytes.Replace(body, []byte("<Status><![CDATA[success]]></Status>"), []byte("<Status><![CDATA[failed:user block]]></Status>"), 1)
	require.NotEqual(t, body, rewritten, "the outer Status was rewritten")
	require.Equal(t, http.StatusOK, e.post(compatApp, q, rewritten).Code)
	e.process()
	assert.Equal(t, service.StatusDelivered, e.message(id).Status)
}

// TestReplayedQueryWithAnotherBody: one captured plain-mode callback URL
// replayed with another body is refused (403, counted "replayed"), while
// WeChat's own retry (same query, same body) stays a duplicate answered
// "success".
func TestReplayedQueryWithAnotherBody(t *testing.T) {
	e := newEnv(t)
	victim := e.sent("victim", 9300)
	other := e.sent("other", 9301)
	q, body := e.seal(e.sender, report(9301, wechat.StatusSuccess), wechat.ModePlain, fixedNow)
	require.Equal(t, http.StatusOK, e.post(appName, q, body).Code)

	// WeChat's retry: same query, same body.
	rec := e.post(appName, q, body)
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "success", rec.Body.String())
	assert.Equal(t, 1.0, e.callbacks(appName, callback.ResultDuplicate))

	// The attacker's replay: the captured query, a failure for another message.
	forged, err := report(9300, wechat.StatusUserBlock).Bytes()
	require.NoError(t, err)
	for range 3 {
		rec = e.post(appName, q, forged)
		assert.Equal(t, http.StatusForbidden, rec.Code)
	}
	assert.Equal(t, 3.0, e.callbacks(appName, callback.ResultReplayed))
	e.process()
	assert.Equal(t, service.StatusSent, e.message(victim).Status, "the replay changed nothing")
	assert.Equal(t, service.StatusDelivered, e.message(other).Status)

	// The victim's real report, with its own query, still applies.
	q2, body2 := e.seal(e.sender, report(9300, wechat.StatusSuccess), wechat.ModePlain, fixedNow)
	require.Equal(t, http.StatusOK, e.post(appName, q2, body2).Code)
	e.process()
	assert.Equal(t, service.StatusDelivered, e.message(victim).Status)
}

// TestReportForAnotherUser: a report whose FromUserName is not the
// message's touser changes nothing, is counted as forged, and does not
// take the real report's dedup slot.
func TestReportForAnotherUser(t *testing.T) {
	e := newEnv(t)
	id := e.sent("m1", 9400)
	forged := report(9400, wechat.StatusUserBlock)
	forged.FromUserName = "oAttacker"
	q, body := e.seal(e.sender, forged, wechat.ModePlain, fixedNow)
	require.Equal(t, http.StatusOK, e.post(appName, q, body).Code)
	e.process()
	assert.Equal(t, service.StatusSent, e.message(id).Status)
	assert.Equal(t, 1.0, e.reports(store.DeliveryForged))

	q, body = e.seal(e.sender, report(9400, wechat.StatusSuccess), wechat.ModePlain, fixedNow)
	rec := e.post(appName, q, body)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, 2.0, e.callbacks(appName, callback.ResultReport), "the real report is new, not a duplicate of the forged one")
	e.process()
	assert.Equal(t, service.StatusDelivered, e.message(id).Status)
}

// readSpy records whether anything read the body.
type readSpy struct {
	r    io.Reader
	read bool
}

func (s *readSpy) Read(p []byte) (int, error) { s.read = true; return s.r.Read(p) }

// TestBodyIsReadOnlyAfterTheQueryChecks: a push with a missing or wrong
// signature, a stale timestamp or a downgraded query is refused without its
// body being read, so an unauthenticated client cannot hold the route
// with a slow body.
func TestBodyIsReadOnlyAfterTheQueryChecks(t *testing.T) {
	e := newEnv(t)
	good, _ := e.seal(e.sender, report(9500, wechat.StatusSuccess), wechat.ModePlain, fixedNow)
	stale, _ := e.seal(e.sender, report(9500, wechat.StatusSuccess), wechat.ModePlain, fixedNow.Add(-10*time.Minute))
	cases := []struct {
		name, app string
		q         url.Values
		code      int
	}{
		{"no signature", appName, url.Values{}, http.StatusForbidden},
		{"wrong signature", appName, with(good, "signature", "0000000000000000000000000000000000000000"), http.StatusForbidden},
		{"stale timestamp", appName, stale, http.StatusForbidden},
		{"downgrade", safeApp, good, http.StatusForbidden},
		{"unknown app", "nope", good, http.StatusNotFound},
	}
	for _, c := range cases {
		spy := &readSpy{r: bytes.NewReader([]byte("<xml></xml>"))}
		req := httptest.NewRequest(http.MethodPost, "/wechat/callback/"+c.app+"?"+c.q.Encode(), spy)
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		assert.Equal(t, c.code, rec.Code, c.name)
		assert.False(t, spy.read, "%s: the body was read before the query was checked", c.name)
	}
	// A valid query's body is read.
	spy := &readSpy{r: bytes.NewReader([]byte("<xml></xml>"))}
	req := httptest.NewRequest(http.MethodPost, "/wechat/callback/"+appName+"?"+good.Encode(), spy)
	e.h.ServeHTTP(httptest.NewRecorder(), req)
	assert.True(t, spy.read)
}

// TestReplayGuardSeesThroughSpelling: the replay guard keys a query by
// what its signatures cover, so re-spelling a captured query (the
// signature in upper case, which the check accepts, or an unchecked
// msg_signature added to a plaintext push) is still the same query, and
// its new body is refused.
func TestReplayGuardSeesThroughSpelling(t *testing.T) {
	t.Run("encrypted query stripped to a plain one", func(t *testing.T) {
		// A plain-mode app with a key takes both kinds of push. A captured
		// encrypted push's query, stripped of encrypt_type and
		// msg_signature, still carries a valid URL signature: it is the
		// same (timestamp, nonce) and its plaintext body is refused.
		e := newEnv(t)
		victim := e.sent("victim", 9650)
		e.sent("other", 9651)
		q, body := e.seal(e.sender, report(9651, wechat.StatusSuccess), wechat.ModeCompat, fixedNow)
		require.Equal(t, http.StatusOK, e.post(appName, q, body).Code)
		forged, err := report(9650, wechat.StatusUserBlock).Bytes()
		require.NoError(t, err)
		q2 := with(q, wechat.ParamSignature, q.Get(wechat.ParamSignature)) // a copy
		q2.Del(wechat.ParamEncryptType)
		q2.Del(wechat.ParamMsgSignature)
		assert.Equal(t, http.StatusForbidden, e.post(appName, q2, forged).Code)
		assert.Equal(t, 1.0, e.callbacks(appName, callback.ResultReplayed))
		e.process()
		assert.Equal(t, service.StatusSent, e.message(victim).Status, "the forged failure changed nothing")
	})
	for name, respell := range map[string]func(url.Values){
		"upper-case signature": func(q url.Values) { q.Set(wechat.ParamSignature, strings.ToUpper(q.Get(wechat.ParamSignature))) },
		"msg_signature added":  func(q url.Values) { q.Set(wechat.ParamMsgSignature, "x") },
		"both, and an openid": func(q url.Values) {
			q.Set(wechat.ParamSignature, strings.ToUpper(q.Get(wechat.ParamSignature)))
			q.Set(wechat.ParamMsgSignature, "y")
			q.Set(wechat.ParamOpenID, "oOther")
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			victim := e.sent("victim", 9600)
			e.sent("other", 9601)
			q, body := e.seal(e.sender, report(9601, wechat.StatusSuccess), wechat.ModePlain, fixedNow)
			require.Equal(t, http.StatusOK, e.post(appName, q, body).Code)
			forged, err := report(9600, wechat.StatusUserBlock).Bytes()
			require.NoError(t, err)
			q2 := with(q, wechat.ParamSignature, q.Get(wechat.ParamSignature)) // a copy
			respell(q2)
			rec := e.post(appName, q2, forged)
			assert.Equal(t, http.StatusForbidden, rec.Code)
			assert.Equal(t, 1.0, e.callbacks(appName, callback.ResultReplayed))
			e.process()
			assert.Equal(t, service.StatusSent, e.message(victim).Status)
			// The real report still comes through.
			q3, body3 := e.seal(e.sender, report(9600, wechat.StatusSuccess), wechat.ModePlain, fixedNow)
			require.Equal(t, http.StatusOK, e.post(appName, q3, body3).Code)
			e.process()
			assert.Equal(t, service.StatusDelivered, e.message(victim).Status)
		})
	}
}

// TestVerificationQueryIsNoPush: a URL verification's signed query (it may
// sit in an access log) re-posted as a push with a body is a replay.
func TestVerificationQueryIsNoPush(t *testing.T) {
	e := newEnv(t)
	victim := e.sent("victim", 9700)
	q, _ := e.seal(e.sender, report(9700, wechat.StatusSuccess), wechat.ModePlain, fixedNow)
	verify := with(q, wechat.ParamEchoStr, "hello")
	rec := e.get(appName, verify)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "hello", rec.Body.String())
	require.Equal(t, http.StatusOK, e.get(appName, verify).Code, "WeChat's retry of the verification")

	forged, err := report(9700, wechat.StatusUserBlock).Bytes()
	require.NoError(t, err)
	assert.Equal(t, http.StatusForbidden, e.post(appName, q, forged).Code)
	assert.Equal(t, 1.0, e.callbacks(appName, callback.ResultReplayed))
	e.process()
	assert.Equal(t, service.StatusSent, e.message(victim).Status)
}
