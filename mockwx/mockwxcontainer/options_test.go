package mockwxcontainer

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wxpush/wxpush/mockwx"
)

// These tests need no Docker: options are checked before Run talks to it.

func TestRunRejectsBadOptionsBeforeDocker(t *testing.T) {
	badConfig := mockwx.Config{Apps: []mockwx.App{{AppID: "not-an-appid", Secret: "s"}}}
	cases := []struct {
		name string
		opt  Option
		want string // in the error
	}{
		{"nil option", nil, "nil Option"},
		{"invalid config", WithConfig(badConfig), "WithConfig: "},
		{"unknown YAML key", WithConfigYAML([]byte("settings:\n  no_such_setting: 1\n")), "WithConfigYAML: "},
		{"YAML invalid config", WithConfigYAML([]byte("apps:\n  - appid: nope\n    secret: s\n")), "WithConfigYAML: "},
		{"relative callback URL", WithCallbackURL("/callback"), "WithCallbackURL: "},
		{"callback URL with another scheme", WithCallbackURL("ftp://host/cb"), "not an absolute http or https URL"},
		{"callback URL that does not parse", WithCallbackURL("http://[::1"), "WithCallbackURL: "},
		{"empty admin token", WithAdminToken(""), "WithAdminToken: empty token"},
		{"admin token with a space", WithAdminToken("a b"), "WithAdminToken: "},
		{"admin token with a newline", WithAdminToken("ab\n"), "WithAdminToken: "},
		{"empty image", WithImage(""), "WithImage: "},
		{"image with a space", WithImage("wxpush/mockwx :local"), "WithImage: "},
		{"empty network", WithNetwork(""), "WithNetwork: empty network name"},
		{"empty alias", WithNetwork("net", ""), "WithNetwork: "},
		{"alias with a port", WithNetwork("net", "mockwx:9000"), "WithNetwork: "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Run(t.Context(), WithSeed(1), tc.opt)
			if err == nil {
				_ = c.Terminate(t.Context())
				t.Fatalf("Run accepted the option")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "mockwxcontainer: ") {
				t.Errorf("error %q, want it to start with mockwxcontainer: and hold %q", err, tc.want)
			}
			if errors.Is(err, ErrNoDocker) {
				t.Errorf("error %q: Run talked to Docker before checking the options", err)
			}
		})
	}
}

func TestRunReportsEveryBadOption(t *testing.T) {
	_, err := Run(t.Context(), WithImage(""), WithAdminToken(""), WithCallbackURL("x"))
	if err == nil {
		t.Fatal("Run accepted three bad options")
	}
	for _, name := range []string{"WithImage", "WithAdminToken", "WithCallbackURL"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
}

func TestOptionsSetWhatTheContainerGets(t *testing.T) {
	app := mockwx.App{AppID: "wx0123456789abcdef", Secret: "0123456789abcdef0123456789abcdef",
		Templates: []mockwx.Template{{ID: "tmpl_ready", Fields: []mockwx.Field{{Key: "thing1", Type: "thing"}}}}}
	s, err := newSettings([]Option{
		WithConfigYAML([]byte("no_demo_app: true\n")), // replaced by the WithConfig after it
		WithConfig(mockwx.Config{Apps: []mockwx.App{app}}),
		WithSeed(-7),
		WithCallbackURL("http://172.17.0.1:4000/cb"),
		WithAdminToken("tok-123"),
		WithImage("wxpush/mockwx:local"),
		WithNetwork("testnet"),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := mockwx.ParseConfig(s.config)
	if err != nil {
		t.Fatalf("the config file the mock would read: %v\n%s", err, s.config)
	}
	if cfg.NoDemoApp || len(cfg.Apps) != 1 || cfg.Apps[0].AppID != app.AppID || cfg.Apps[0].Templates[0].ID != "tmpl_ready" {
		t.Errorf("config file %s: got no_demo_app %v, apps %+v; want the demo app and %s with tmpl_ready", s.config, cfg.NoDemoApp, cfg.Apps, app.AppID)
	}
	if s.seed == nil || *s.seed != -7 {
		t.Errorf("seed %v, want -7", s.seed)
	}
	if s.callbackURL != "http://172.17.0.1:4000/cb" || s.adminToken != "tok-123" || s.image != "wxpush/mockwx:local" {
		t.Errorf("callback URL %q, admin token %q, image %q", s.callbackURL, s.adminToken, s.image)
	}
	if s.network != "testnet" || !slices.Equal(s.aliases, []string{DefaultAlias}) {
		t.Errorf("network %q aliases %q, want testnet [%s]", s.network, s.aliases, DefaultAlias)
	}

	yamlIn := []byte("no_demo_app: true\napps:\n  - appid: wx0123456789abcdef\n    secret: 0123456789abcdef0123456789abcdef\n")
	s, err = newSettings([]Option{WithConfigYAML(yamlIn), WithNetwork("n2", "wx-a", "wx-b")})
	if err != nil {
		t.Fatal(err)
	}
	yamlIn[0] = '#' // the option keeps its own copy
	if !strings.HasPrefix(string(s.config), "no_demo_app: true") {
		t.Errorf("config %q changed with the caller's slice", s.config)
	}
	if !slices.Equal(s.aliases, []string{"wx-a", "wx-b"}) {
		t.Errorf("aliases %q, want [wx-a wx-b]", s.aliases)
	}
}

// WithCA refuses a pair that does not belong together, naming the option,
// and never quotes the key.
func TestWithCARefusesAMismatchedPair(t *testing.T) {
	a, err := mockwx.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, _, err := mockwx.LoadOrCreateCA(dir+"/c.pem", dir+"/k.pem", time.Now()); err != nil {
		t.Fatal(err)
	}
	otherKey, err := os.ReadFile(dir + "/k.pem")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), WithCA(a.CertPEM(), otherKey))
	if err == nil || !strings.Contains(err.Error(), "WithCA") || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("Run with a mismatched CA pair: %v", err)
	}
	if strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Fatalf("the error quotes the key: %v", err)
	}
}
