package mockwx_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx"
)

// connectTunnel dials addr, sends CONNECT target and returns the open
// connection once the mock answered 200.
func connectTunnel(t *testing.T, addr, target string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, target)
	require.Zero(t, br.Buffered())
	require.NoError(t, conn.SetDeadline(time.Time{}))
	return conn
}

// TestReviewProxyHostSpellings: CONNECT targets spelled oddly are taken
// for the same WeChat host or refused, never anything else.
func TestReviewProxyHostSpellings(t *testing.T) {
	srv, err := mockwx.New(mockwx.Config{}, mockwx.Options{Seed: 1})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); _ = hs.Close() })
	for _, target := range []string{"API.WEIXIN.QQ.COM:443", "api.weixin.qq.com.:443"} {
		_ = connectTunnel(t, ln.Addr().String(), target)
	}
	for target, want := range map[string]int{
		"api.weixin.qq.com:0443":        http.StatusForbidden,
		"[::1]:443":                     http.StatusForbidden,
		":443":                          http.StatusForbidden,
		"api.weixin.qq.com..:443":       http.StatusForbidden,
		"api%2eweixin.qq.com:443":       http.StatusBadRequest,
		"[api.weixin.qq.com]:443":       http.StatusBadRequest,
		"user:pw@api.weixin.qq.com:443": http.StatusBadRequest,
		"api.weixin.qq.com:+443":        http.StatusBadRequest,
	} {
		status, line, _ := rawConnect(t, "http://"+ln.Addr().String(), target)
		assert.Equal(t, want, status, "%s: %s", target, line)
	}
}

// TestReviewProxyCloseEndsTunnels: Close ends every tunnel's goroutine,
// whatever state its client left it in.
func TestReviewProxyCloseEndsTunnels(t *testing.T) {
	base := runtime.NumGoroutine()
	srv, err := mockwx.New(mockwx.Config{}, mockwx.Options{Seed: 1})
	require.NoError(t, err)
	ca, err := srv.CA()
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	addr := ln.Addr().String()
	var held []net.Conn
	for range 5 { // no ClientHello at all
		held = append(held, connectTunnel(t, addr, "api.weixin.qq.com:443"))
	}
	for range 5 { // half a ClientHello
		c := connectTunnel(t, addr, "api.weixin.qq.com:443")
		_, err := c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
		require.NoError(t, err)
		held = append(held, c)
	}
	for range 5 { // a request, then idle with keep-alive
		c := connectTunnel(t, addr, "api.weixin.qq.com:443")
		tc := tls.Client(c, &tls.Config{ServerName: "api.weixin.qq.com", RootCAs: ca.CertPool()})
		require.NoError(t, tc.SetDeadline(time.Now().Add(10*time.Second)))
		_, err := fmt.Fprintf(tc, "GET /healthz HTTP/1.1\r\nHost: api.weixin.qq.com\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		held = append(held, tc)
	}
	during := runtime.NumGoroutine()
	srv.Close()
	require.NoError(t, hs.Close())
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	after := runtime.NumGoroutine()
	if after > base {
		buf := make([]byte, 1<<20)
		t.Logf("%s", buf[:runtime.Stack(buf, true)])
	}
	assert.LessOrEqual(t, after, base, "goroutines: %d before, %d with %d tunnels, %d after Close", base, during, len(held), after)
}

// unconstrainedCA writes a CA pair with no name constraints, as a
// developer's own CA or one planted by someone else would be.
func unconstrainedCA(t *testing.T, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "any site"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	require.NoError(t, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
}

// TestReviewLoadOrCreateCARefusesUnconstrainedCA: the CA type promises
// that trusting the mock's CA exposes no site but WeChat's API hosts
// ("even a leaked key cannot sign for any other site"), and the mock
// serves the CA it loaded at /_mock/ca.pem for clients to trust. A pair
// found at the CA paths that is not name-constrained to those hosts (a
// developer's own CA, or one planted at a -ca-cert/-ca-key path in a
// shared directory) is loaded and served all the same: whoever holds its
// key can then sign for any site the trusting client visits.
func TestReviewLoadOrCreateCARefusesUnconstrainedCA(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	unconstrainedCA(t, certPath, keyPath)
	ca, _, err := mockwx.LoadOrCreateCA(certPath, keyPath, time.Now())
	if err == nil {
		c := ca.Certificate()
		t.Errorf("an unconstrained CA was loaded (permitted DNS domains %v, critical %v, excluded IP ranges %d)",
			c.PermittedDNSDomains, c.PermittedDNSDomainsCritical, len(c.ExcludedIPRanges))
	}
	certPEM, err := os.ReadFile(certPath)
	require.NoError(t, err)
	keyPEM, err := os.ReadFile(keyPath)
	require.NoError(t, err)
	_, err = mockwx.ParseCA(certPEM, keyPEM)
	assert.Error(t, err, "ParseCA (Options.CA, mockwxcontainer's WithCA) takes an unconstrained CA too")
}

// TestReviewLoadOrCreateCADoesNotFollowPlantedSymlink: the key is created
// with O_EXCL so that nothing is overwritten, but the certificate is
// written with os.WriteFile, which follows a symlink: a dangling symlink
// planted at the certificate's path (it reads as "does not exist") makes
// the mock create a file wherever it points.
func TestReviewLoadOrCreateCADoesNotFollowPlantedSymlink(t *testing.T) {
	dir := t.TempDir()
	elsewhere := filepath.Join(t.TempDir(), "planted-target")
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	require.NoError(t, os.Symlink(elsewhere, certPath))
	_, _, err := mockwx.LoadOrCreateCA(certPath, keyPath, time.Now())
	_, statErr := os.Stat(elsewhere)
	assert.ErrorIs(t, statErr, os.ErrNotExist, "the symlink's target was written (LoadOrCreateCA: %v)", err)
	assert.Error(t, err, "a symlink at the certificate path is refused")
}
