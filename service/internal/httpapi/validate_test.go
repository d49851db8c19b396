package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"

	"github.com/wxpush/wxpush/service"
)

func TestValidateResolvesApp(t *testing.T) {
	tests := []struct {
		name    string
		app     string
		apps    []string
		want    string
		wantErr bool
	}{
		{name: "only app", apps: []string{"shop"}, want: "shop"},
		{name: "default among several", apps: []string{"shop", "default"}, want: "default"},
		{name: "named", app: "shop", apps: []string{"default", "shop"}, want: "shop"},
		{name: "several without default", apps: []string{"a", "b"}, wantErr: true},
		{name: "none configured", apps: nil, wantErr: true},
		{name: "unknown", app: "nope", apps: []string{"default"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := service.SendRequest{App: tt.app, ToUser: "u", TemplateID: "t", Data: map[string]service.DataValue{"k": {Value: "v"}}}
			e := Validate(&req, tt.apps)
			if tt.wantErr {
				if e == nil || e.Field != "app" || e.Code != service.CodeInvalidRequest {
					t.Fatalf("Validate(app %q, apps %q) = %+v, want an invalid_request on field app", tt.app, tt.apps, e)
				}
				if req.App != tt.app {
					t.Errorf("req.App = %q after a failed Validate, want it unchanged (%q)", req.App, tt.app)
				}
				return
			}
			if e != nil {
				t.Fatalf("Validate(app %q, apps %q) = %+v, want nil", tt.app, tt.apps, e)
			}
			if req.App != tt.want {
				t.Errorf("req.App = %q, want %q", req.App, tt.want)
			}
		})
	}
}

func TestValidateChangesOnlyApp(t *testing.T) {
	req := service.SendRequest{
		ToUser: "u", TemplateID: "t<&>", URL: "HTTPS://Example.com/a?b=<c>",
		MiniProgram: &service.MiniProgram{AppID: "wx1", PagePath: "index?x=1"},
		Data:        map[string]service.DataValue{"k": {Value: " v ", Color: "#aabbcc"}},
	}
	want := req
	want.App = "default"
	want.MiniProgram = &service.MiniProgram{AppID: "wx1", PagePath: "index?x=1"}
	want.Data = map[string]service.DataValue{"k": {Value: " v ", Color: "#aabbcc"}}
	if e := Validate(&req, []string{"default", "b"}); e != nil {
		t.Fatalf("Validate = %+v, want nil", e)
	}
	if !reflect.DeepEqual(req, want) {
		t.Errorf("after Validate: %+v, want %+v", req, want)
	}
}

func TestValidateFirstProblemIsDeterministic(t *testing.T) {
	for range 20 {
		req := service.SendRequest{ToUser: "u", TemplateID: "t", Data: map[string]service.DataValue{
			"z": {Value: ""}, "b": {Value: "x", Color: "red"}, "a": {Value: "ok"}, "m": {Value: ""},
		}}
		e := Validate(&req, []string{"default"})
		if e == nil || e.Field != "data.b.color" {
			t.Fatalf("Validate = %+v, want the first key in order (data.b.color)", e)
		}
	}
}

func TestRequestHash(t *testing.T) {
	req := service.SendRequest{
		App: "default", ToUser: "u", TemplateID: "t",
		Data: map[string]service.DataValue{"b": {Value: "<x>&"}, "a": {Value: "1", Color: "#FF0000"}},
	}
	canonical := `{"app":"default","touser":"u","template_id":"t","data":{"a":{"value":"1","color":"#FF0000"},"b":{"value":"<x>&"}}}`
	sum := sha256.Sum256([]byte(canonical))
	want := hex.EncodeToString(sum[:])
	for range 10 { // map order must not matter
		if got := RequestHash(req); got != want {
			t.Fatalf("RequestHash = %s, want %s (SHA-256 of %s)", got, want, canonical)
		}
	}

	other := req
	other.App = "shop"
	if got := RequestHash(other); got == want {
		t.Errorf("RequestHash ignores App: %s for both", got)
	}
	if got := RequestHash(req); len(got) != 64 || strings.Trim(got, "0123456789abcdef") != "" {
		t.Errorf("RequestHash = %q, want 64 lowercase hex digits", got)
	}
}
