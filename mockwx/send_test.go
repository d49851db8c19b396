package mockwx_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
)

func TestTemplateSendSuccess(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	tok := e.token(t)
	msg := validOrder("oUser-send-00000001")
	msg.ClientMsgID = "wxp-0001"
	id, err := e.wc.SendTemplate(t.Context(), tok, msg)
	require.NoError(t, err)
	assert.Greater(t, id, int64(1)<<53, "msgids exceed 2^53")

	page, err := e.Admin.Messages(t.Context(), 0, 10)
	require.NoError(t, err)
	require.Len(t, page.Messages, 1)
	got := page.Messages[0]
	assert.Equal(t, e.App.AppID, got.AppID)
	assert.Equal(t, msg.ToUser, got.ToUser)
	assert.Equal(t, "order_shipped", got.TemplateID)
	assert.Equal(t, "wxp-0001", got.ClientMsgID)
	assert.Equal(t, id, got.MsgID)
	assert.Equal(t, 0, got.ErrCode)
	assert.False(t, got.Deduplicated)
	assert.JSONEq(t, `{"thing1":{"value":"巧克力礼盒"},"character_string2":{"value":"SO-2026-000123"},"time3":{"value":"2026年11月23日 15:01"},"phrase4":{"value":"已发货"}}`, string(got.Data))
}

func TestTemplateSendValidation(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	tok := e.token(t)
	good := `"thing1":{"value":"巧克力"},"character_string2":{"value":"SO-1"},"time3":{"value":"15:01"},"phrase4":{"value":"已发货"}`
	tests := []struct {
		name   string
		body   string
		want   int
		errmsg string
	}{
		{"valid", `{"touser":"oUser-valid-000001","template_id":"order_shipped","data":{` + good + `}}`, 0, "ok"},
		{"HTML-escaped JSON is accepted", `{"touser":"oUser-valid-000001","template_id":"order_shipped","url":"https://a.b/?x=1\u0026y=\u003cz\u003e","data":{` + good + `}}`, 0, "ok"},
		{"empty body", ``, 44002, "empty post data"},
		{"invalid JSON", `{"touser":`, 47001, "data format error"},
		{"data value not a string", `{"touser":"oUser-valid-000001","template_id":"order_shipped","data":{"thing1":{"value":1}}}`, 47001, "data format error"},
		{"missing touser", `{"template_id":"order_shipped","data":{` + good + `}}`, 40003, "invalid openid"},
		{"malformed touser", `{"touser":"o!","template_id":"order_shipped","data":{` + good + `}}`, 40003, "invalid openid"},
		{"missing template_id", `{"touser":"oUser-valid-000001","data":{` + good + `}}`, 40036, "invalid template_id size"},
		{"misspelled template_id key", `{"touser":"oUser-valid-000001","temlate_id":"order_shipped","data":{` + good + `}}`, 40036, "invalid template_id size"},
		{"unknown template", `{"touser":"oUser-valid-000001","template_id":"nope","data":{` + good + `}}`, 40037, "invalid template_id"},
		{"empty field", `{"touser":"oUser-valid-000001","template_id":"order_shipped","data":{"thing1":{"value":""},"character_string2":{"value":"SO-1"},"time3":{"value":"15:01"},"phrase4":{"value":"已发货"}}}`, 47003, "argument invalid! data.thing1.value is empty"},
		{"thing too long", `{"touser":"oUser-valid-000001","template_id":"order_shipped","data":{"thing1":{"value":"` + strings.Repeat("长", 21) + `"},"character_string2":{"value":"SO-1"},"time3":{"value":"15:01"},"phrase4":{"value":"已发货"}}}`, 47003, "argument invalid! data.thing1.value invalid"},
		{"phrase not Chinese", `{"touser":"oUser-valid-000001","template_id":"order_shipped","data":{"thing1":{"value":"a"},"character_string2":{"value":"SO-1"},"time3":{"value":"15:01"},"phrase4":{"value":"shipped"}}}`, 47003, "argument invalid! data.phrase4.value invalid"},
		{"unbound mini program", `{"touser":"oUser-valid-000001","template_id":"order_shipped","miniprogram":{"appid":"wxother","pagepath":"index"},"data":{` + good + `}}`, 40165, "invalid weapp pagepath"},
		{"unreleased page", `{"touser":"oUser-valid-000001","template_id":"order_shipped","miniprogram":{"appid":"` + mockwx.DemoMiniProgramID + `","pagepath":"pages/secret?x=1"},"data":{` + good + `}}`, 40165, "invalid weapp pagepath"},
		{"released page with query", `{"touser":"oUser-valid-000001","template_id":"order_shipped","miniprogram":{"appid":"` + mockwx.DemoMiniProgramID + `","pagepath":"pages/order/detail?id=1"},"data":{` + good + `}}`, 0, "ok"},
		{"empty miniprogram object (silenceper)", `{"touser":"oUser-valid-000001","template_id":"order_shipped","miniprogram":{"appid":"","pagepath":""},"data":{` + good + `}}`, 0, "ok"},
		{"not following", `{"touser":"` + mockwx.DemoNotFollowing + `","template_id":"order_shipped","data":{` + good + `}}`, 43004, "require subscribe"},
		{"legacy first/remark ignored", `{"touser":"oUser-valid-000001","template_id":"notice","data":{"first":{"value":"x"},"keyword1":{"value":"a"},"keyword2":{"value":"b"},"remark":{"value":"y"}}}`, 0, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.sendRaw(t, tok, tt.body)
			assert.Equal(t, tt.want, r.ErrCode, "send %s: %s", tt.body, r.ErrMsg)
			assert.True(t, strings.HasPrefix(r.ErrMsg, tt.errmsg), "errmsg %q should start with %q", r.ErrMsg, tt.errmsg)
			if tt.want == 0 {
				assert.Greater(t, r.MsgID, int64(0))
			} else {
				assert.Zero(t, r.MsgID)
			}
		})
	}
}

func TestTemplateSendRequiresPost(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	assert.Equal(t, 43002, e.getJSON(t, wechat.PathTemplateSend+"?access_token="+e.token(t).Reveal()).ErrCode)
}

func TestClientMsgIDDedup(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	ctx, tok := t.Context(), e.token(t)
	send := func(openid, cmid string) int64 {
		t.Helper()
		m := validOrder(openid)
		m.ClientMsgID = cmid
		id, err := e.wc.SendTemplate(ctx, tok, m)
		require.NoError(t, err)
		return id
	}
	first := send("oUser-dedup-000001", "cm-1")
	e.clock.Advance(9 * time.Minute)
	assert.Equal(t, first, send("oUser-dedup-000001", "cm-1"), "a resend within 10 minutes answers the original msgid")
	assert.NotEqual(t, first, send("oUser-dedup-000002", "cm-1"), "dedup is per openid")
	assert.NotEqual(t, first, send("oUser-dedup-000001", "cm-2"), "and per client_msg_id")
	e.clock.Advance(time.Minute)
	assert.NotEqual(t, first, send("oUser-dedup-000001", "cm-1"), "after 10 minutes the same id sends again")
	noID1, noID2 := send("oUser-dedup-000001", ""), send("oUser-dedup-000001", "")
	assert.NotEqual(t, noID1, noID2, "without client_msg_id nothing is deduplicated")

	st, err := e.Admin.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), st.Deduplicated)
	assert.Equal(t, int64(6), st.Delivered)
	var dedups int
	require.NoError(t, e.Admin.AllMessages(ctx, 0, func(le mockwx.LedgerEntry) error {
		if le.Deduplicated {
			dedups++
			assert.Equal(t, first, le.MsgID)
		}
		return nil
	}))
	assert.Equal(t, 1, dedups)
}

func TestTemplateQuotaAndClearQuota(t *testing.T) {
	app := mockwx.DemoApp()
	app.AppID, app.TemplateDailyLimit, app.ClearQuotaMonthlyLimit = "wx00000000000000cc", 2, 1
	e := newEnv(t, mockwx.Config{Apps: []mockwx.App{app}, NoDemoApp: true})
	ctx := t.Context()
	tok := e.token(t)
	for range 2 {
		_, err := e.wc.SendTemplate(ctx, tok, validOrder("oUser-quota-000001"))
		require.NoError(t, err)
	}
	_, err := e.wc.SendTemplate(ctx, tok, validOrder("oUser-quota-000001"))
	assert.Equal(t, 45009, codeOf(err))

	require.NoError(t, e.wc.ClearQuota(ctx, tok, app.AppID))
	_, err = e.wc.SendTemplate(ctx, tok, validOrder("oUser-quota-000001"))
	assert.NoError(t, err, "clear_quota resets the daily quota")
	assert.Equal(t, 48006, codeOf(e.wc.ClearQuota(ctx, tok, app.AppID)), "clear_quota is limited per month")
	assert.Equal(t, 40013, codeOf(e.wc.ClearQuota(ctx, tok, "wx0000000000000000")), "another app's id")

	e.clock.Advance(24 * time.Hour)
	tok = e.token(t)
	_, err = e.wc.SendTemplate(ctx, tok, validOrder("oUser-quota-000001"))
	assert.NoError(t, err, "the quota resets at the next Shanghai midnight")
}

func TestGetCallbackIP(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	resp, err := e.HTTP.Client().Get(e.URL + wechat.PathGetCallbackIP + "?access_token=" + e.token(t).Reveal())
	require.NoError(t, err)
	defer resp.Body.Close()
	var r wechat.CallbackIPResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	assert.Equal(t, []string{"127.0.0.1"}, r.IPList)
}

func TestUnknownAPI(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	r := e.getJSON(t, "/cgi-bin/menu/create")
	assert.Equal(t, 48001, r.ErrCode)
}
