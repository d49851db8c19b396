package mockwx

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// WeChatAPIHosts are the hosts whose CONNECT the mock answers as an HTTPS
// proxy: WeChat's API host and its regional and backup ones. A CONNECT to
// any other host is refused; the mock never tunnels to the internet.
var WeChatAPIHosts = []string{
	"api.weixin.qq.com",
	"api2.weixin.qq.com",
	"sh.api.weixin.qq.com",
	"sz.api.weixin.qq.com",
	"hk.api.weixin.qq.com",
}

// PathCAPEM serves the proxy's CA certificate (PEM), unguarded: it is
// public, and a client needs it before it can talk to the proxy.
const PathCAPEM = "/_mock/ca.pem"

// isWeChatHost reports whether host (no port) is one of WeChatAPIHosts.
func isWeChatHost(host string) bool {
	return slices.Contains(WeChatAPIHosts, strings.ToLower(strings.TrimSuffix(host, ".")))
}

// CA is the local certificate authority behind the proxy mode: it signs
// the certificate the mock presents for WeChatAPIHosts. Its certificate is
// name-constrained to those hosts (and to no IP address), so even a leaked
// key cannot sign for any other site: trusting it exposes nothing else.
type CA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
}

// caValidity is how long a generated CA is valid; leafValidity how long
// the certificate made from it at each start is.
const (
	caValidity   = 5 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
)

// NewCA generates a CA (ECDSA P-256) valid from an hour before now.
func NewCA(now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	_, all4, _ := net.ParseCIDR("0.0.0.0/0")
	_, all6, _ := net.ParseCIDR("::/0")
	tmpl := &x509.Certificate{
		SerialNumber:                serial,
		Subject:                     pkix.Name{CommonName: "mockwx local CA (WeChat API hosts only)", Organization: []string{"wxpush mockwx, a test tool"}},
		NotBefore:                   now.Add(-time.Hour),
		NotAfter:                    now.Add(caValidity),
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLenZero:              true,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         WeChatAPIHosts,
		ExcludedIPRanges:            []*net.IPNet{all4, all6},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// ParseCA reads a CA from its certificate and private key (PEM; the key
// as PKCS#8, SEC 1 or PKCS#1). The certificate must be a CA and the key
// must be its own.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("CA certificate: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("CA certificate: not a CA (needs basic constraints CA:TRUE and keyCertSign)")
	}
	if err := checkConstrained(cert); err != nil {
		return nil, err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || !strings.HasSuffix(kb.Type, "PRIVATE KEY") {
		return nil, errors.New("CA key: no PEM PRIVATE KEY block")
	}
	var key any
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	}
	if err != nil {
		return nil, errors.New("CA key: cannot parse it") // never quote key material
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("CA key: not a signing key")
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := signer.Public().(equaler); !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("CA key: it does not match the CA certificate")
	}
	return &CA{cert: cert, key: signer, certPEM: pem.EncodeToMemory(cb)}, nil
}

// checkConstrained refuses a CA that could sign for more than
// WeChatAPIHosts: the mock serves its CA for clients to trust, and that
// trust must expose nothing else (a developer's own CA, or one planted at
// the CA paths, would). It must permit exactly those DNS names, marked
// critical, and exclude every IP address, as NewCA's do.
func checkConstrained(cert *x509.Certificate) error {
	permitted := slices.Sorted(slices.Values(cert.PermittedDNSDomains))
	want := slices.Sorted(slices.Values(WeChatAPIHosts))
	ipsExcluded := func(bits int) bool {
		for _, r := range cert.ExcludedIPRanges {
			if ones, size := r.Mask.Size(); ones == 0 && size == bits {
				return true
			}
		}
		return false
	}
	if !cert.PermittedDNSDomainsCritical || !slices.Equal(permitted, want) || !ipsExcluded(32) || !ipsExcluded(128) ||
		len(cert.PermittedIPRanges)+len(cert.PermittedEmailAddresses)+len(cert.PermittedURIDomains) > 0 {
		return errors.New("CA certificate: not name-constrained to WeChat's API hosts (critical permitted DNS names " +
			strings.Join(WeChatAPIHosts, ", ") + ", every IP address excluded); the mock uses only a CA that cannot sign for " +
			"other sites: remove the pair to have one generated, or make one with mockwx.NewCA")
	}
	return nil
}

// LoadOrCreateCA loads the CA from certPath and keyPath, or, when neither
// file exists, generates one and writes it there (the key readable by its
// owner only), so the CA a user trusted once stays the same across
// restarts. created reports a generated CA. One file without the other is
// an error, as is a pair that does not belong together.
func LoadOrCreateCA(certPath, keyPath string, now time.Time) (ca *CA, created bool, err error) {
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		ca, err := ParseCA(certPEM, keyPEM)
		if err != nil {
			return nil, false, fmt.Errorf("%s, %s: %w", certPath, keyPath, err)
		}
		// A CA kept for years expires: its certificates would fail every
		// handshake with a confusing error, so say it here.
		if now.After(ca.cert.NotAfter) || now.Before(ca.cert.NotBefore) {
			return nil, false, fmt.Errorf("%s: the CA is valid from %s to %s, not now: remove it and %s to have a new pair generated (and trust the new one)",
				certPath, ca.cert.NotBefore.UTC().Format(time.DateOnly), ca.cert.NotAfter.UTC().Format(time.DateOnly), keyPath)
		}
		return ca, false, nil
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
	case certErr != nil && !errors.Is(certErr, os.ErrNotExist):
		return nil, false, certErr
	case keyErr != nil && !errors.Is(keyErr, os.ErrNotExist):
		return nil, false, keyErr
	case certErr == nil:
		return nil, false, fmt.Errorf("CA: %s exists but its key %s does not (remove the certificate to generate a new pair)", certPath, keyPath)
	default:
		return nil, false, fmt.Errorf("CA: %s exists but its certificate %s does not (remove the key to generate a new pair)", keyPath, certPath)
	}
	ca, err = NewCA(now)
	if err != nil {
		return nil, false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, false, err
	}
	for _, dir := range []string{filepath.Dir(certPath), filepath.Dir(keyPath)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, false, err
		}
	}
	// The key first, exclusively: two mocks starting at once do not
	// overwrite each other's pair (the loser fails and can be restarted).
	kf, err := os.OpenFile(keyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, err
	}
	_, werr := kf.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if cerr := kf.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		// Exclusively too: a symlink planted at the certificate's path
		// (dangling, so it read as missing) is not followed.
		werr = writeNew(certPath, ca.certPEM, 0o644)
	}
	if werr != nil {
		_ = os.Remove(keyPath)
		return nil, false, werr
	}
	return ca, true, nil
}

// writeNew creates path, which must not exist (not even as a symlink),
// and writes b to it.
func writeNew(path string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// CertPEM returns the CA certificate (PEM): what clients trust.
func (ca *CA) CertPEM() []byte { return slices.Clone(ca.certPEM) }

// Certificate returns the parsed CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPool returns a pool holding only the CA certificate.
func (ca *CA) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// leaf signs a certificate for WeChatAPIHosts, valid from an hour before
// now for leafValidity (and never past the CA's own end).
func (ca *CA) leaf(now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(leafValidity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: WeChatAPIHosts[0]},
		DNSNames:     WeChatAPIHosts,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key}, nil
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// proxy is the mock's HTTPS proxy mode: CONNECTs for WeChatAPIHosts are
// answered on the mock's own listener, the tunnel's TLS is terminated with
// a certificate from the CA, and the requests inside are served by the
// same handler as plain ones, by an http.Server of its own fed through a
// listener of hijacked connections.
type proxy struct {
	once   sync.Once
	err    error
	ca     *CA
	tlsCfg *tls.Config
	ln     *tunnelListener
	srv    *http.Server
}

// ca returns the proxy's CA: Options.CA, or one generated on first use
// (in-process tests rarely need one, so New does not pay for it).
func (s *Server) proxyCA() (*CA, error) {
	s.proxy.once.Do(func() {
		ca := s.opts.CA
		if ca == nil {
			if ca, s.proxy.err = NewCA(time.Now()); s.proxy.err != nil {
				return
			}
		}
		cert, err := ca.leaf(time.Now())
		if err != nil {
			s.proxy.err = err
			return
		}
		s.proxy.ca = ca
		s.proxy.tlsCfg = &tls.Config{
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"http/1.1"},
			GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				if hello.ServerName != "" && !isWeChatHost(hello.ServerName) {
					return nil, fmt.Errorf("mockwx proxy: no certificate for %q (WeChat's API hosts only)", hello.ServerName)
				}
				return cert, nil
			},
		}
		s.proxy.ln = newTunnelListener()
		s.proxy.srv = &http.Server{
			Handler:           s,
			ReadHeaderTimeout: 10 * time.Second,
			// A client that does not trust the CA ends its handshake here;
			// that is the client's error, logged at debug level.
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		go func() { _ = s.proxy.srv.Serve(s.proxy.ln) }()
	})
	return s.proxy.ca, s.proxy.err
}

// CA returns the CA behind the proxy mode (Options.CA, else one generated
// on first use).
func (s *Server) CA() (*CA, error) { return s.proxyCA() }

// closeProxy stops the tunnels' server, when one was started.
func (s *Server) closeProxy() {
	s.proxy.once.Do(func() { s.proxy.err = errors.New("mockwx: closed") })
	if s.proxy.srv != nil {
		_ = s.proxy.srv.Close()
	}
}

// serveConnect answers a CONNECT: for one of WeChatAPIHosts on port 443 it
// says 200 and hands the connection, TLS-wrapped, to the tunnels' server;
// anything else is refused with a reason and changes nothing.
func (s *Server) serveConnect(w http.ResponseWriter, r *http.Request) {
	if r.TLS != nil {
		proxyRefuse(w, http.StatusBadRequest, "mockwx: CONNECT inside a tunnel is not served")
		return
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		proxyRefuse(w, http.StatusBadRequest, fmt.Sprintf("mockwx: CONNECT %q: want host:port", r.Host))
		return
	}
	if !isWeChatHost(host) || port != "443" {
		s.log.Warn("proxy: CONNECT refused", "target", r.Host)
		proxyRefuse(w, http.StatusForbidden, fmt.Sprintf(
			"mockwx: CONNECT %s refused: the mock stands in for WeChat's API hosts on port 443 only (%s) and never tunnels anywhere else",
			r.Host, strings.Join(WeChatAPIHosts, ", ")))
		return
	}
	if _, err := s.proxyCA(); err != nil {
		proxyRefuse(w, http.StatusInternalServerError, "mockwx: proxy CA: "+err.Error())
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		proxyRefuse(w, http.StatusInternalServerError, "mockwx: this listener cannot hand over connections (HTTP/2?); CONNECT needs HTTP/1.1")
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	if _, err = brw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n"); err == nil {
		err = brw.Flush()
	}
	if err != nil {
		_ = conn.Close()
		return
	}
	// Bytes the client sent before our 200 (an eager ClientHello) are in
	// brw's reader: read them first.
	tc := tls.Server(&bufferedConn{Conn: conn, r: brw.Reader}, s.proxy.tlsCfg)
	if !s.proxy.ln.push(tc) {
		_ = conn.Close()
	}
}

// serveProxyRequest refuses an absolute-form (plain HTTP proxy) request.
func (s *Server) serveProxyRequest(w http.ResponseWriter, r *http.Request) {
	proxyRefuse(w, http.StatusForbidden, fmt.Sprintf(
		"mockwx: a plain-HTTP proxy request for %s://%s is not served: as a proxy the mock answers CONNECT for https:// URLs of WeChat's API hosts (set HTTPS_PROXY, not HTTP_PROXY); plain requests go to the mock's own address",
		r.URL.Scheme, r.URL.Host))
}

func proxyRefuse(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Connection", "close")
	w.WriteHeader(status)
	_, _ = fmt.Fprintln(w, msg)
}

// handleCAPEM serves the CA certificate.
func (s *Server) handleCAPEM(w http.ResponseWriter, r *http.Request) {
	ca, err := s.proxyCA()
	if err != nil {
		adminError(w, http.StatusInternalServerError, "internal", "proxy CA: "+err.Error(), "")
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="mockwx-ca.pem"`)
	_, _ = w.Write(ca.certPEM)
}

// bufferedConn reads what a bufio.Reader already holds before the conn.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.r != nil && c.r.Buffered() > 0 {
		return c.r.Read(p)
	}
	c.r = nil
	return c.Conn.Read(p)
}

// tunnelListener is a net.Listener whose connections are the hijacked
// tunnels serveConnect pushes.
type tunnelListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newTunnelListener() *tunnelListener {
	return &tunnelListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to Accept; false once the listener is closed.
func (l *tunnelListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept implements net.Listener.
func (l *tunnelListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *tunnelListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

// Addr implements net.Listener.
func (l *tunnelListener) Addr() net.Addr { return tunnelAddr{} }

type tunnelAddr struct{}

func (tunnelAddr) Network() string { return "tunnel" }
func (tunnelAddr) String() string  { return "mockwx-proxy-tunnels" }
