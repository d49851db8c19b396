package mockwx_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
)

// proxyClient is an http.Client that reaches https:// URLs through the
// mock as a proxy, trusting roots (nil: the system's).
func proxyClient(t *testing.T, mockURL string, roots *x509.CertPool) *http.Client {
	t.Helper()
	u, err := url.Parse(mockURL)
	require.NoError(t, err)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy:           http.ProxyURL(u),
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}}
}

// fetchCA reads the CA from GET /_mock/ca.pem.
func fetchCA(t *testing.T, s *mockwxtest.Server) *x509.CertPool {
	t.Helper()
	resp, err := http.Get(s.URL + mockwx.PathCAPEM)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "application/x-pem-file", resp.Header.Get("Content-Type"))
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(body), "ca.pem holds a certificate")
	return pool
}

// wxJSON decodes a WeChat answer into a map.
func wxJSON(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var m map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	return m
}

// mockState is what a refused request must leave unchanged.
func mockState(t *testing.T, s *mockwxtest.Server) (mockwx.Stats, int) {
	t.Helper()
	st, err := s.Admin.Stats(t.Context())
	require.NoError(t, err)
	page, err := s.Admin.Messages(t.Context(), 0, 1000)
	require.NoError(t, err)
	return st, len(page.Messages)
}

// An unmodified client that only sets a proxy and trusts the CA reaches
// every WeChat API host's https:// URL: token, template send, and its
// own entry in the ledger, all through the tunnel.
func TestProxyServesEveryWeChatHost(t *testing.T) {
	s := mockwxtest.NewServer(t, mockwxtest.Options{Seed: 1})
	hc := proxyClient(t, s.URL, fetchCA(t, s))
	for i, host := range mockwx.WeChatAPIHosts {
		base := "https://" + host
		tok := wxJSON(t, must(hc.Get(base+"/cgi-bin/token?grant_type=client_credential&appid="+s.App.AppID+"&secret="+s.App.Secret)))
		token, _ := tok["access_token"].(string)
		require.NotEmpty(t, token, "%s: %v", host, tok)
		touser := fmt.Sprintf("oProxyUser-%d", i)
		body := `{"touser":"` + touser + `","template_id":"notice","data":{"keyword1":{"value":"via ` + host + `"},"keyword2":{"value":"x"}}}`
		sent := wxJSON(t, must(hc.Post(base+"/cgi-bin/message/template/send?access_token="+url.QueryEscape(token), "application/json", strings.NewReader(body))))
		assert.EqualValues(t, 0, sent["errcode"], "%s: %v", host, sent)
		assert.NotZero(t, sent["msgid"], host)

		resp := must(hc.Get(base + "/_mock/messages?limit=1000"))
		var page mockwx.LedgerPage
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&page))
		resp.Body.Close()
		var mine int
		for _, m := range page.Messages {
			if m.ToUser == touser {
				mine++
			}
		}
		assert.Equal(t, 1, mine, "%s: the client's one send is in the ledger once", host)
	}
}

// One tunnel carries many requests (keep-alive), as SDK clients expect.
func TestProxyTunnelKeepsAlive(t *testing.T) {
	s := mockwxtest.NewServer(t, mockwxtest.Options{Seed: 2})
	var conns int
	tr := &http.Transport{
		Proxy:           http.ProxyURL(must(url.Parse(s.URL))),
		TLSClientConfig: &tls.Config{RootCAs: fetchCA(t, s)},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conns++
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for range 20 {
		resp := must(hc.Get("https://api.weixin.qq.com/cgi-bin/getcallbackip?access_token=x"))
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	assert.Equal(t, 1, conns, "20 requests, one tunnel")
}

// CONNECT to any other host or port is refused with a reason, and the
// mock's state does not move.
func TestProxyRefusesOtherHosts(t *testing.T) {
	s := mockwxtest.NewServer(t, mockwxtest.Options{Seed: 3})
	before, beforeLedger := mockState(t, s)
	for _, target := range []string{"example.com:443", "api.weixin.qq.com:80", "api.weixin.qq.com.evil.example:443", "127.0.0.1:443", "mp.weixin.qq.com:443", "api.weixin.qq.com"} {
		status, line, body := rawConnect(t, s.URL, target)
		if target == "api.weixin.qq.com" {
			assert.Equal(t, http.StatusBadRequest, status, "%s: %s", target, line)
			assert.Contains(t, body, "want host:port")
			continue
		}
		assert.Equal(t, http.StatusForbidden, status, "%s: %s", target, line)
		assert.Contains(t, body, "never tunnels anywhere else", target)
		assert.Contains(t, body, target)
	}
	after, afterLedger := mockState(t, s)
	assert.Equal(t, before.ByErrcode, after.ByErrcode)
	assert.Equal(t, before.TokenCalls, after.TokenCalls)
	assert.Equal(t, beforeLedger, afterLedger)

	// Through a Go client, the refusal is an error naming the status.
	hc := proxyClient(t, s.URL, fetchCA(t, s))
	_, err := hc.Get("https://example.com/")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Forbidden")
}

// rawConnect sends one CONNECT and returns the status, status line and body.
func rawConnect(t *testing.T, mockURL, target string) (int, string, string) {
	t.Helper()
	u := must(url.Parse(mockURL))
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Status, string(body)
}

// A plain-HTTP proxy request (HTTP_PROXY with an http:// URL) is refused
// with what to do instead, and is not served as if it were a WeChat call.
func TestProxyRefusesPlainHTTPProxyRequests(t *testing.T) {
	s := mockwxtest.NewServer(t, mockwxtest.Options{Seed: 4})
	before, beforeLedger := mockState(t, s)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(must(url.Parse(s.URL)))}}
	resp := must(hc.Get("http://api.weixin.qq.com/cgi-bin/token?grant_type=client_credential&appid=" + s.App.AppID + "&secret=" + s.App.Secret))
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Contains(t, string(body), "HTTPS_PROXY")
	assert.NotContains(t, string(body), s.App.Secret, "the refusal does not echo the query")
	after, afterLedger := mockState(t, s)
	assert.Equal(t, before.TokenCalls, after.TokenCalls, "no token was minted")
	assert.Equal(t, beforeLedger, afterLedger)
}

// A client that does not trust the mock's CA fails its handshake and
// the mock's state does not move.
func TestProxyUntrustedClientFails(t *testing.T) {
	s := mockwxtest.NewServer(t, mockwxtest.Options{Seed: 5})
	before, beforeLedger := mockState(t, s)
	hc := proxyClient(t, s.URL, x509.NewCertPool()) // trusts nothing
	_, err := hc.Get("https://api.weixin.qq.com/cgi-bin/token?grant_type=client_credential&appid=" + s.App.AppID + "&secret=" + s.App.Secret)
	require.Error(t, err)
	var unknown x509.UnknownAuthorityError
	assert.ErrorAs(t, err, &unknown)
	after, afterLedger := mockState(t, s)
	assert.Equal(t, before.TokenCalls, after.TokenCalls)
	assert.Equal(t, beforeLedger, afterLedger)
}

// The CA is name-constrained to WeChat's API hosts: a certificate it
// signed for any other name, or for an IP address, does not verify, so
// trusting it (even with its key leaked) exposes no other site.
func TestCAIsNameConstrained(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	ca, created, err := mockwx.LoadOrCreateCA(certPath, keyPath, time.Now())
	require.NoError(t, err)
	require.True(t, created)
	keyPEM, err := os.ReadFile(keyPath)
	require.NoError(t, err)
	kb, _ := pem.Decode(keyPEM)
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	require.NoError(t, err)

	sign := func(dns []string, ips []net.IP) *x509.Certificate {
		lk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "x"},
			DNSNames: dns, IPAddresses: ips, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Certificate(), lk.Public(), key)
		require.NoError(t, err)
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return c
	}
	verify := func(c *x509.Certificate, name string) error {
		_, err := c.Verify(x509.VerifyOptions{Roots: ca.CertPool(), DNSName: name})
		return err
	}
	require.NoError(t, verify(sign([]string{"api.weixin.qq.com"}, nil), "api.weixin.qq.com"))
	for _, name := range []string{"example.com", "weixin.qq.com", "mp.weixin.qq.com", "pay.weixin.qq.com"} {
		assert.Error(t, verify(sign([]string{name}, nil), name), name)
	}
	assert.Error(t, verify(sign(nil, []net.IP{net.ParseIP("127.0.0.1")}), "127.0.0.1"))
}

// LoadOrCreateCA writes a pair once (key owner-only) and loads the same
// one after; half a pair or a pair that does not belong together is an
// error that quotes no key material.
func TestLoadOrCreateCA(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "sub", "ca.pem"), filepath.Join(dir, "sub", "ca-key.pem")
	first, created, err := mockwx.LoadOrCreateCA(certPath, keyPath, time.Now())
	require.NoError(t, err)
	assert.True(t, created)
	fi, err := os.Stat(keyPath)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	again, created, err := mockwx.LoadOrCreateCA(certPath, keyPath, time.Now())
	require.NoError(t, err)
	assert.False(t, created)
	assert.Equal(t, first.CertPEM(), again.CertPEM())

	// Only the certificate: refused, nothing overwritten.
	require.NoError(t, os.Remove(keyPath))
	_, _, err = mockwx.LoadOrCreateCA(certPath, keyPath, time.Now())
	require.ErrorContains(t, err, "does not")
	_, statErr := os.Stat(keyPath)
	assert.ErrorIs(t, statErr, os.ErrNotExist)

	// A key from another pair.
	other := t.TempDir()
	_, _, err = mockwx.LoadOrCreateCA(filepath.Join(other, "c.pem"), filepath.Join(other, "k.pem"), time.Now())
	require.NoError(t, err)
	otherKey, err := os.ReadFile(filepath.Join(other, "k.pem"))
	require.NoError(t, err)
	_, err = mockwx.ParseCA(first.CertPEM(), otherKey)
	require.ErrorContains(t, err, "does not match")
	assert.NotContains(t, err.Error(), "PRIVATE")

	_, err = mockwx.ParseCA([]byte("garbage"), otherKey)
	require.ErrorContains(t, err, "no PEM CERTIFICATE")

	// Years later the kept CA has expired: loading it says so rather than
	// serving certificates every client refuses.
	_, _, err = mockwx.LoadOrCreateCA(certPath, filepath.Join(other, "k.pem"), time.Now())
	require.ErrorContains(t, err, "does not match", "the pair still has to match")
	require.NoError(t, os.WriteFile(keyPath, otherKey, 0o600))
	require.NoError(t, os.Remove(certPath))
	require.NoError(t, os.Rename(filepath.Join(other, "c.pem"), certPath))
	_, _, err = mockwx.LoadOrCreateCA(certPath, keyPath, time.Now().AddDate(6, 0, 0))
	require.ErrorContains(t, err, "not now")
	_, _, err = mockwx.LoadOrCreateCA(certPath, keyPath, time.Now().AddDate(4, 0, 0))
	require.NoError(t, err, "within its five years it loads")
}

// Options.CA is the CA the proxy presents and /_mock/ca.pem serves.
func TestProxyUsesGivenCA(t *testing.T) {
	ca, err := mockwx.NewCA(time.Now())
	require.NoError(t, err)
	srv, err := mockwx.New(mockwx.Config{}, mockwx.Options{Seed: 1, CA: ca})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	got, err := srv.CA()
	require.NoError(t, err)
	assert.Equal(t, ca.CertPEM(), got.CertPEM())
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
