package mockwx_test

import (
	"encoding/json"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
)

func TestTokenValidation(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	app := e.App
	tests := []struct {
		name  string
		query string
		want  int
	}{
		{"ok", "grant_type=client_credential&appid=" + app.AppID + "&secret=" + app.Secret, 0},
		{"bad grant_type", "grant_type=password&appid=" + app.AppID + "&secret=" + app.Secret, 40002},
		{"missing grant_type", "appid=" + app.AppID + "&secret=" + app.Secret, 40002},
		{"unknown appid", "grant_type=client_credential&appid=wx0000000000000000&secret=x", 40013},
		{"wrong secret", "grant_type=client_credential&appid=" + app.AppID + "&secret=nope", 40125},
		{"missing appid", "grant_type=client_credential&secret=x", 41002},
		{"missing secret", "grant_type=client_credential&appid=" + app.AppID, 41004},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.getJSON(t, wechat.PathToken+"?"+tt.query)
			assert.Equal(t, tt.want, r.ErrCode, "GET /cgi-bin/token?%s: %s", tt.query, r.ErrMsg)
			if tt.want != 0 {
				assert.Regexp(t, ` rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$`, r.ErrMsg)
			}
		})
	}
}

func TestTokenRotationGraceAndExpiry(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	ctx := t.Context()
	first, err := e.wc.Token(ctx, e.App.AppID, e.secret())
	require.NoError(t, err)
	assert.Equal(t, 7200*time.Second, first.ExpiresIn)
	assert.True(t, strings.HasPrefix(first.AccessToken.Reveal(), "86_"))

	e.clock.Advance(time.Minute)
	second, err := e.wc.Token(ctx, e.App.AppID, e.secret())
	require.NoError(t, err)
	require.NotEqual(t, first.AccessToken.Reveal(), second.AccessToken.Reveal(), "every call mints a new token")

	sendWith := func(tok wechat.Secret) error {
		_, err := e.wc.SendTemplate(ctx, tok, validOrder("oUser-rotation-000001"))
		return err
	}
	e.clock.Advance(299 * time.Second)
	assert.NoError(t, sendWith(first.AccessToken), "the superseded token is valid during the grace period")
	e.clock.Advance(time.Second)
	assert.Equal(t, 40001, codeOf(sendWith(first.AccessToken)), "after the grace period it answers 40001")
	assert.NoError(t, sendWith(second.AccessToken))

	e.clock.Advance(2 * time.Hour)
	assert.Equal(t, 42001, codeOf(sendWith(second.AccessToken)), "past its lifetime a token answers 42001")
}

func TestTokenCheckErrcodes(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	tests := []struct {
		name, query string
		want        int
	}{
		{"missing", "", 41001},
		{"malformed", "?access_token=hello", 40014},
		{"unknown", "?access_token=86_" + strings.Repeat("A", 136), 40001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, e.getJSON(t, wechat.PathGetCallbackIP+tt.query).ErrCode)
		})
	}
}

func TestTokenDailyBudget(t *testing.T) {
	app := mockwx.DemoApp()
	app.AppID, app.TokenDailyLimit = "wx00000000000000aa", 3
	e := newEnv(t, mockwx.Config{Apps: []mockwx.App{app}})
	for i := range 3 {
		_, err := e.wc.Token(t.Context(), app.AppID, wechat.Secret(app.Secret))
		require.NoError(t, err, "call %d within budget", i+1)
	}
	_, err := e.wc.Token(t.Context(), app.AppID, wechat.Secret(app.Secret))
	assert.Equal(t, 45009, codeOf(err))
	assert.True(t, wechat.QuotaExceeded(err))

	e.clock.Advance(24 * time.Hour) // the Shanghai day rolls over
	_, err = e.wc.Token(t.Context(), app.AppID, wechat.Secret(app.Secret))
	assert.NoError(t, err, "the budget resets daily")
}

func TestStableToken(t *testing.T) {
	app := mockwx.DemoApp()
	app.AppID, app.ForceRefreshDailyLimit = "wx00000000000000bb", 3
	e := newEnv(t, mockwx.Config{Apps: []mockwx.App{app}})
	ctx, secret := t.Context(), wechat.Secret(app.Secret)
	stable := func(force bool) *wechat.Token {
		t.Helper()
		tok, err := e.wc.StableToken(ctx, app.AppID, secret, force)
		require.NoError(t, err)
		return tok
	}
	call := func(tok wechat.Secret) int {
		_, err := e.wc.SendTemplate(ctx, tok, validOrder("oUser-stable-0000001"))
		return codeOf(err)
	}

	a := stable(false)
	e.clock.Advance(10 * time.Minute)
	b := stable(false)
	assert.Equal(t, a.AccessToken.Reveal(), b.AccessToken.Reveal(), "same token while valid")
	assert.Equal(t, 7200*time.Second-10*time.Minute, b.ExpiresIn, "expires_in is the remaining lifetime")

	// A classic token call never touches the stable namespace.
	_, err := e.wc.Token(ctx, app.AppID, secret)
	require.NoError(t, err)
	assert.Equal(t, 0, call(a.AccessToken))

	// The last 5 minutes: a call gets the successor; both stay valid.
	e.clock.Advance(7200*time.Second - 10*time.Minute - 4*time.Minute)
	c := stable(false)
	assert.NotEqual(t, a.AccessToken.Reveal(), c.AccessToken.Reveal(), "handover mints a successor")
	assert.Equal(t, 7200*time.Second, c.ExpiresIn)
	assert.Equal(t, 0, call(a.AccessToken), "old token valid during the handover")
	assert.Equal(t, 0, call(c.AccessToken))
	e.clock.Advance(4 * time.Minute)
	assert.Equal(t, 42001, codeOf(func() error {
		_, err := e.wc.SendTemplate(ctx, a.AccessToken, validOrder("oUser-stable-0000001"))
		return err
	}()))

	// force_refresh: a new token, the previous one is invalid at once.
	d := stable(true)
	assert.NotEqual(t, c.AccessToken.Reveal(), d.AccessToken.Reveal())
	assert.Equal(t, 40001, call(c.AccessToken))
	// Within 30 s of the last force refresh: no refresh happens.
	e.clock.Advance(10 * time.Second)
	assert.Equal(t, d.AccessToken.Reveal(), stable(true).AccessToken.Reveal(), "force refreshes closer than 30 s return the current token")
	e.clock.Advance(30 * time.Second)
	f := stable(true)
	assert.NotEqual(t, d.AccessToken.Reveal(), f.AccessToken.Reveal())
	e.clock.Advance(30 * time.Second)
	stable(true) // the third force refresh of the day
	e.clock.Advance(30 * time.Second)
	_, err = e.wc.StableToken(ctx, app.AppID, secret, true)
	assert.Equal(t, 45009, codeOf(err), "force refresh is limited per day")
	stable(false) // ordinary calls still work
}

func TestStableTokenRejectsBadBodies(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	tests := []struct {
		name, body string
		want       int
	}{
		{"empty", "", 44002},
		{"not json", "grant_type=client_credential", 47001},
		{"wrong secret", `{"grant_type":"client_credential","appid":"` + e.App.AppID + `","secret":"x"}`, 40125},
		{"bad grant", `{"grant_type":"x","appid":"` + e.App.AppID + `","secret":"` + e.App.Secret + `"}`, 40002},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, b := e.post(t, wechat.PathStableToken, []byte(tt.body))
			assert.Contains(t, string(b), `"errcode":`+strconv.Itoa(tt.want), "POST stable_token %q", tt.body)
		})
	}
	assert.Equal(t, 43002, e.getJSON(t, wechat.PathStableToken).ErrCode, "stable_token requires POST")
}

func TestAdminExpireTokens(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	tok := e.token(t)
	n, err := e.Admin.ExpireTokens(t.Context(), e.App.AppID)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = e.wc.SendTemplate(t.Context(), tok, validOrder("oUser-expire-000001"))
	assert.Equal(t, 42001, codeOf(err))
	_, err = e.Admin.ExpireTokens(t.Context(), "wx0000000000000000")
	var ae *mockwx.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 404, ae.StatusCode)
	assert.Equal(t, "appid", ae.Field)
}

// TestTokenSuccessHasNoErrcode: WeChat's token endpoints answer success
// with access_token and expires_in only, no errcode or errmsg.
func TestTokenSuccessHasNoErrcode(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	tests := []struct {
		name, path string
		body       string
	}{
		{"token", wechat.PathToken + "?grant_type=client_credential&appid=" + e.App.AppID + "&secret=" + e.App.Secret, ""},
		{"stable_token", wechat.PathStableToken, `{"grant_type":"client_credential","appid":"` + e.App.AppID + `","secret":"` + e.App.Secret + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b []byte
			if tt.body == "" {
				resp, err := e.HTTP.Client().Get(e.URL + tt.path)
				require.NoError(t, err)
				defer resp.Body.Close()
				b, err = io.ReadAll(resp.Body)
				require.NoError(t, err)
			} else {
				_, b = e.post(t, tt.path, []byte(tt.body))
			}
			var got map[string]any
			require.NoError(t, json.Unmarshal(b, &got), "body %s", b)
			assert.ElementsMatch(t, []string{"access_token", "expires_in"}, slices.Collect(maps.Keys(got)), "body %s", b)
		})
	}
	// wxpushd's client parses it.
	tok, err := e.wc.Token(t.Context(), e.App.AppID, e.secret())
	require.NoError(t, err)
	assert.NotEmpty(t, tok.AccessToken.Reveal())
	stable, err := e.wc.StableToken(t.Context(), e.App.AppID, e.secret(), false)
	require.NoError(t, err)
	assert.Positive(t, stable.ExpiresIn)
}
