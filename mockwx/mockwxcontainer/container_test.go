//go:build containers

package mockwxcontainer_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	tcnetwork "github.com/testcontainers/testcontainers-go/network"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxcontainer"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
)

// Run with Docker:
//
//	TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 \
//	  go test -tags containers ./mockwx/mockwxcontainer/

// run starts a mock for the test and terminates it in t.Cleanup; it skips
// the test when Docker does not answer.
func run(t *testing.T, opts ...mockwxcontainer.Option) *mockwxcontainer.Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute) // a cold build cache compiles mockwx first
	defer cancel()
	c, err := mockwxcontainer.Run(ctx, opts...)
	if errors.Is(err, mockwxcontainer.ErrNoDocker) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Terminate(context.Background()); err != nil {
			t.Errorf("terminate: %v", err)
		}
	})
	return c
}

// tokenURL is WeChat's /cgi-bin/token URL for the app at base.
func tokenURL(base string, app mockwx.App) string {
	return base + wechat.PathToken + "?grant_type=client_credential&appid=" + url.QueryEscape(app.AppID) + "&secret=" + url.QueryEscape(app.Secret)
}

// fetchToken gets an access token with hc from u and fails the test
// without one.
func fetchToken(t *testing.T, hc *http.Client, u string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET token: %v", err)
	}
	defer resp.Body.Close()
	var tr wechat.TokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		t.Fatalf("GET token: %s: %v", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || tr.ErrCode != 0 || tr.AccessToken == "" {
		t.Fatalf("GET token: %s errcode %d %q", resp.Status, tr.ErrCode, tr.ErrMsg)
	}
	return tr.AccessToken
}

func TestConfigAndSeedTakeEffect(t *testing.T) {
	app := mockwx.App{
		AppID: "wx0123456789abcdef", Secret: "0123456789abcdef0123456789abcdef",
		Templates: []mockwx.Template{{ID: "container_ready", Fields: []mockwx.Field{{Key: "thing1", Type: mockwx.FieldThing}}}},
	}
	cfg := mockwx.Config{Apps: []mockwx.App{app}}
	c := run(t, mockwxcontainer.WithConfig(cfg), mockwxcontainer.WithSeed(42))

	apps, err := c.Admin().Apps(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	var found bool
	for _, a := range apps {
		ids = append(ids, a.AppID)
		if a.AppID == app.AppID {
			found = len(a.Templates) == 1 && a.Templates[0].ID == "container_ready"
		}
	}
	if len(apps) != 2 || apps[0].AppID != mockwx.DemoAppID || !found {
		t.Errorf("apps %v; want the demo app, then %s with its template container_ready", ids, app.AppID)
	}

	// The seed decides the tokens: the container's first token is the one
	// an in-process mock with the same config and seed mints, and not the
	// one another seed mints.
	got := fetchToken(t, http.DefaultClient, tokenURL(c.BaseURL(), app))
	same := mockwxtest.NewServer(t, mockwxtest.Options{Config: cfg, Seed: 42})
	other := mockwxtest.NewServer(t, mockwxtest.Options{Config: cfg, Seed: 43})
	want := fetchToken(t, same.HTTP.Client(), tokenURL(same.URL, app))
	if got != want {
		t.Errorf("seed 42: the container's first token differs from an in-process mock's with seed 42")
	}
	if fetchToken(t, other.HTTP.Client(), tokenURL(other.URL, app)) == want {
		t.Fatal("seeds 42 and 43 mint the same first token: the comparison above proves nothing")
	}
}

func TestAdminTokenGuardsTheAdminAPI(t *testing.T) {
	const token = "container-admin-token-1"
	c := run(t, mockwxcontainer.WithAdminToken(token))
	for _, auth := range []string{"", "Bearer wrong-token", "Bearer " + token} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, c.BaseURL()+"/_mock/stats", nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusUnauthorized
		if auth == "Bearer "+token {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Errorf("GET /_mock/stats with Authorization %q: %s, want %d", strings.Replace(auth, token, "<token>", 1), resp.Status, want)
		}
	}
	if _, err := c.Admin().Stats(t.Context()); err != nil {
		t.Errorf("Admin().Stats: %v (the client carries the token)", err)
	}
	// The WeChat API stays open.
	fetchToken(t, http.DefaultClient, tokenURL(c.BaseURL(), mockwx.DemoApp()))
}

func TestCallbackURLReachesAHandlerOnThisHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	nw, err := tcnetwork.New(ctx, tcnetwork.WithLabels(map[string]string{mockwxcontainer.Label: "true"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nw.Remove(context.Background()); err != nil {
			t.Errorf("network remove: %v", err)
		}
	})
	gw, err := mockwxcontainer.HostAddress(ctx, nw.Name)
	if err != nil {
		t.Fatal(err)
	}
	// The gateway address itself; any address when this process cannot
	// bind it (it runs in a container sharing the host's network, say).
	ln, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		if ln, err = net.Listen("tcp", "0.0.0.0:0"); err != nil {
			t.Fatal(err)
		}
	}
	reports := make(chan *wechat.Message, 16)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, wechat.MaxCallbackBytes+1))
		if m, err := wechat.ParseMessage(body); err == nil && r.Method == http.MethodPost && r.URL.Path == "/wechat/callback" {
			select {
			case reports <- m:
			default:
			}
		}
		_, _ = io.WriteString(w, "success")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	callback := "http://" + net.JoinHostPort(gw, port) + "/wechat/callback"

	c := run(t, mockwxcontainer.WithNetwork(nw.Name), mockwxcontainer.WithCallbackURL(callback))
	if got, want := c.NetworkURL(), "http://"+mockwxcontainer.DefaultAlias+":"+mockwxcontainer.Port; got != want {
		t.Errorf("NetworkURL %q, want %q", got, want)
	}

	wc, err := wechat.NewClient(c.BaseURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	demo := mockwx.DemoApp()
	tok, err := wc.Token(ctx, demo.AppID, wechat.Secret(demo.Secret))
	if err != nil {
		t.Fatal(err)
	}
	msgid, err := wc.SendTemplate(ctx, tok.AccessToken, &wechat.TemplateMessage{
		ToUser: "oContainer-user-000001", TemplateID: "order_shipped",
		Data: map[string]wechat.DataItem{
			"thing1": {Value: "巧克力礼盒"}, "character_string2": {Value: "SO-2026-000123"},
			"time3": {Value: "2026年11月23日 15:01"}, "phrase4": {Value: "已发货"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case m := <-reports:
			if m.Event != wechat.EventTemplateSendJobFinish || m.MsgID != msgid {
				continue
			}
			if m.Status != wechat.StatusSuccess || m.FromUserName != "oContainer-user-000001" {
				t.Errorf("delivery report: status %q for %q, want %q for oContainer-user-000001", m.Status, m.FromUserName, wechat.StatusSuccess)
			}
			return
		case <-ctx.Done():
			st, _ := c.Admin().Stats(context.Background())
			t.Fatalf("no delivery report for msgid %d at %s (mock's callbacks: %+v)", msgid, callback, st.Callbacks)
		}
	}
}

func TestWithImageRunsAPrebuiltImage(t *testing.T) {
	built := run(t)
	if !strings.HasPrefix(built.Image(), mockwxcontainer.ImageRepo+":") {
		t.Errorf("image %q, want one of %s", built.Image(), mockwxcontainer.ImageRepo)
	}
	c := run(t, mockwxcontainer.WithImage(built.Image()))
	if c.Image() != built.Image() {
		t.Errorf("WithImage(%q) ran %q", built.Image(), c.Image())
	}
	if c.BaseURL() == built.BaseURL() {
		t.Errorf("two containers share the base URL %s", c.BaseURL())
	}
	if _, err := c.Admin().Apps(t.Context()); err != nil {
		t.Error(err)
	}

	// The label, and Terminate removes the container.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	ctr := c.Container()
	st, err := ctr.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Config.Labels[mockwxcontainer.Label] != "true" {
		t.Errorf("labels %v, want %s=true", st.Config.Labels, mockwxcontainer.Label)
	}
	if err := c.Terminate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ctr.Inspect(ctx); err == nil {
		t.Error("the container is still there after Terminate")
	}

	_, err = mockwxcontainer.Run(ctx, mockwxcontainer.WithImage(mockwxcontainer.ImageRepo+":no-such-tag"))
	if err == nil || !strings.Contains(err.Error(), "not in the local image cache") {
		t.Errorf("WithImage of a missing image: %v, want an error saying it is not in the local image cache", err)
	}
}

// The HTTPS proxy: a client that keeps WeChat's real URL and knows only the
// proxy URL and the CA gets its token from the mock.
func TestProxyServesWeChatsHostsWithTheMocksCA(t *testing.T) {
	c := run(t, mockwxcontainer.WithAdminToken("container-admin-token-2"))
	block, _ := pem.Decode(c.CACertPEM())
	if block == nil {
		t.Fatalf("CACertPEM %q is not PEM", c.CACertPEM())
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !ca.IsCA {
		t.Fatalf("CACertPEM: %v, CA %v", err, ca != nil && ca.IsCA)
	}
	// /_mock/ca.pem is open even with an admin token.
	resp, err := http.Get(c.BaseURL() + "/_mock/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /_mock/ca.pem without a token: %s, want 200", resp.Status)
	}

	proxy, err := url.Parse(c.ProxyURL())
	if err != nil {
		t.Fatal(err)
	}
	plain := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy), TLSClientConfig: &tls.Config{RootCAs: c.CertPool()}}}
	real := tokenURL("https://api.weixin.qq.com", mockwx.DemoApp())
	fetchToken(t, plain, real)
	fetchToken(t, c.HTTPClient(), real)
	st, err := c.Admin().Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.TokenCalls != 2 {
		t.Errorf("the mock counted %d token calls, want the 2 made through the proxy", st.TokenCalls)
	}
	// HTTPClient also reaches the mock's own address (plain http, direct).
	fetchToken(t, c.HTTPClient(), tokenURL(c.BaseURL(), mockwx.DemoApp()))

	// The CA is what makes it work: through the proxy with the system
	// roots, TLS fails.
	untrusting := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
	var unknown x509.UnknownAuthorityError
	if _, err := untrusting.Get(real); !errors.As(err, &unknown) {
		t.Errorf("through the proxy without the mock's CA: %v, want an unknown authority error", err)
	}
}

// TestWithCAServesTheGivenCA: with WithCA the container presents and
// serves the given CA, so a trust store made once works for every
// container; a client trusting only that CA gets a token through the proxy.
func TestWithCAServesTheGivenCA(t *testing.T) {
	dir := t.TempDir()
	ca, _, err := mockwx.LoadOrCreateCA(dir+"/ca.pem", dir+"/ca-key.pem", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(dir + "/ca-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	c := run(t, mockwxcontainer.WithCA(ca.CertPEM(), key))
	if string(c.CACertPEM()) != string(ca.CertPEM()) {
		t.Fatalf("the container serves another CA than the one given")
	}
	proxy, err := url.Parse(c.ProxyURL())
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy), TLSClientConfig: &tls.Config{RootCAs: ca.CertPool()}}}
	fetchToken(t, hc, tokenURL("https://api.weixin.qq.com", mockwx.DemoApp()))
}
