package mockwx_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
)

// FuzzTemplateSend drives the send handler's JSON path with arbitrary
// bodies: it must never panic, and must always answer HTTP 200 with a
// WeChat JSON envelope whose errcode is 0 (with a msgid) or a known code.
func FuzzTemplateSend(f *testing.F) {
	f.Add([]byte(`{"touser":"oUser-fuzz-000001","template_id":"order_shipped","data":{"thing1":{"value":"a"},"character_string2":{"value":"b"},"time3":{"value":"15:01"},"phrase4":{"value":"已发货"}}}`))
	f.Add([]byte(`{"touser":"oUser-fuzz-000001","template_id":"notice","client_msg_id":"x","data":{"keyword1":{"value":"\u003ca\u003e"},"keyword2":{"value":"b"}}}`))
	f.Add([]byte(`{"touser":1}`))
	f.Add([]byte(``))
	m, err := mockwx.New(mockwx.Config{Settings: mockwx.Settings{LedgerCapacity: 1 << 16}}, mockwx.Options{Seed: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(m.Close)
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, wechat.PathToken+"?grant_type=client_credential&appid="+mockwx.DemoAppID+"&secret="+mockwx.DemoAppSecret, nil))
	var tok wechat.TokenResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &tok); err != nil || tok.AccessToken == "" {
		f.Fatalf("no token: %s", rec.Body.String())
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, wechat.PathTemplateSend+"?access_token="+tok.AccessToken, bytes.NewReader(body))
		m.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		var resp wechat.SendResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("answer %q is not JSON: %v", rec.Body.String(), err)
		}
		if resp.ErrCode == 0 && resp.MsgID == 0 {
			t.Fatalf("success without msgid for %q", body)
		}
		if resp.ErrCode != 0 && !wechat.Lookup(resp.ErrCode).Known {
			t.Fatalf("unknown errcode %d for %q", resp.ErrCode, body)
		}
	})
}
