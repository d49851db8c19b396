// Package mockwxcontainer starts mockwx, the WeChat API mock, in a
// container for other projects' tests, with testcontainers-go.
//
//	c, err := mockwxcontainer.Run(ctx, mockwxcontainer.WithSeed(42))
//	if err != nil { ... }
//	defer c.Terminate(ctx)
//	// Point the client under test at c.BaseURL() as WeChat's API base URL,
//	// or leave it at https://api.weixin.qq.com and give it c.HTTPClient()
//	// (or c.ProxyURL() and c.CertPool()): the mock is also an HTTPS proxy
//	// for WeChat's hosts.
//	st, err := c.Admin().Stats(ctx)
//
// The image is built FROM scratch from the wxpush source the current
// module uses (deploy/mockwx/Dockerfile, a static binary from `go build`),
// once per process; nothing is pulled. WithImage runs a prebuilt one
// instead (`make images` in the wxpush repository builds
// wxpush/mockwx:local).
//
// Every Docker call has a deadline. Containers carry the label
// wxpush.mockwxcontainer=true, so that leftovers of a crashed run can be
// found and removed:
//
//	docker rm -f $(docker ps -aq --filter label=wxpush.mockwxcontainer=true)
//
// Where testcontainers' reaper image cannot be pulled, set
// TESTCONTAINERS_RYUK_DISABLED=true (and, when the tests run in a
// container sharing the host's network, TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1).
package mockwxcontainer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/wxpush/wxpush/internal/imagebuild"
	"github.com/wxpush/wxpush/mockwx"
)

// Label is the label (value "true") on every container Run starts.
const Label = "wxpush.mockwxcontainer"

// DefaultAlias is the mock's host name on a WithNetwork network when no
// alias is given.
const DefaultAlias = "mockwx"

// Port is the mock's port inside the container.
const Port = "9000"

// ImageRepo is the repository of the images Run builds; their tag is
// derived from the binary's content, so an unchanged source reuses the
// image.
const ImageRepo = "wxpush-mockwxcontainer/mockwx"

// Deadlines of Run's steps and of each Docker call.
const (
	dockerTimeout  = imagebuild.DockerTimeout
	startupTimeout = 60 * time.Second
	pingTimeout    = 10 * time.Second
)

const (
	containerPort = Port + "/tcp"
	configPath    = "/etc/mockwx.yaml"
	caCertPath    = "/etc/mockwx-ca.pem"
	caKeyPath     = "/etc/mockwx-ca-key.pem"
	caPath        = mockwx.PathCAPEM
	readyPath     = "/_mock/apps"
)

// ErrNoDocker is wrapped by Run's error when Docker does not answer, so
// that a test can skip:
//
//	if errors.Is(err, mockwxcontainer.ErrNoDocker) { t.Skip(err) }
var ErrNoDocker = errors.New("docker does not answer")

// images holds what Run learns about images once per process: the image
// built from the source (built once), and the prebuilt tags found in the
// local image cache (looked up once per tag).
var images struct {
	once  sync.Once
	built string
	err   error
	found sync.Map // image reference: struct{}
}

// Container is a running mock.
type Container struct {
	ctr        testcontainers.Container
	image      string
	baseURL    string
	networkURL string
	caPEM      []byte
	pool       *x509.CertPool
	admin      *mockwx.Client

	mu         sync.Mutex
	terminated bool
}

// Run starts a mock and waits until it answers; the caller terminates it.
// On error nothing is left running. Without Docker the error wraps
// ErrNoDocker.
func Run(ctx context.Context, opts ...Option) (_ *Container, err error) {
	s, err := newSettings(opts)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	provider, err := testcontainers.NewDockerProvider()
	if err == nil {
		_, err = provider.Client().Ping(pctx, client.PingOptions{NegotiateAPIVersion: true})
	}
	cancel()
	if provider != nil {
		defer provider.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("mockwxcontainer: %w: %v", ErrNoDocker, err)
	}
	image, err := resolveImage(ctx, provider, s.image)
	if err != nil {
		return nil, fmt.Errorf("mockwxcontainer: %w", err)
	}

	env := map[string]string{"MOCKWX_ADDR": ":" + Port, "LOG_LEVEL": "warn"}
	var files []testcontainers.ContainerFile
	if s.config != nil {
		env["MOCKWX_CONFIG"] = configPath
		files = append(files, testcontainers.ContainerFile{Reader: strings.NewReader(string(s.config)), ContainerFilePath: configPath, FileMode: 0o644})
	}
	if s.seed != nil {
		env["MOCKWX_SEED"] = strconv.FormatInt(*s.seed, 10)
	}
	if s.callbackURL != "" {
		env["MOCKWX_CALLBACK_URL"] = s.callbackURL
	}
	if s.caCert != nil {
		// The image's user is not root: the key must be readable by it in
		// this throwaway container.
		env[mockwx.EnvCACert], env[mockwx.EnvCAKey] = caCertPath, caKeyPath
		files = append(files,
			testcontainers.ContainerFile{Reader: strings.NewReader(string(s.caCert)), ContainerFilePath: caCertPath, FileMode: 0o644},
			testcontainers.ContainerFile{Reader: strings.NewReader(string(s.caKey)), ContainerFilePath: caKeyPath, FileMode: 0o644})
	}
	ready := wait.ForHTTP(readyPath).WithPort(containerPort).WithStartupTimeout(startupTimeout)
	if s.adminToken != "" {
		env["MOCKWX_ADMIN_TOKEN"] = s.adminToken
		ready = ready.WithHeaders(map[string]string{"Authorization": "Bearer " + s.adminToken})
	}
	req := testcontainers.ContainerRequest{
		Image:        image,
		Env:          env,
		Files:        files,
		ExposedPorts: []string{containerPort},
		Labels:       map[string]string{Label: "true"},
		WaitingFor:   ready,
	}
	if s.network != "" {
		req.Networks = []string{s.network}
		req.NetworkAliases = map[string][]string{s.network: s.aliases}
	}
	sctx, cancel := context.WithTimeout(ctx, dockerTimeout+startupTimeout)
	defer cancel()
	ctr, err := testcontainers.GenericContainer(sctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	if d, ok := ctr.(*testcontainers.DockerContainer); ok && d == nil {
		ctr = nil // a failed create returns a typed nil: nothing to remove
	}
	c := &Container{ctr: ctr, image: image}
	defer func() {
		if err != nil && ctr != nil {
			if logs := c.logs(ctx, 20); logs != "" {
				err = fmt.Errorf("%w\ncontainer log:\n%s", err, logs)
			}
			_ = c.Terminate(context.WithoutCancel(ctx))
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("mockwxcontainer: start %s: %w", image, err)
	}
	host, err := ctr.Host(sctx)
	if err != nil {
		return nil, fmt.Errorf("mockwxcontainer: the container's host: %w", err)
	}
	port, err := ctr.MappedPort(sctx, containerPort)
	if err != nil {
		return nil, fmt.Errorf("mockwxcontainer: the container's port: %w", err)
	}
	c.baseURL = "http://" + net.JoinHostPort(host, port.Port())
	if s.network != "" {
		c.networkURL = "http://" + net.JoinHostPort(s.aliases[0], Port)
	}
	// Admin calls and the CA go straight to the mock, whatever proxy the
	// environment names.
	direct := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: dockerTimeout}
	c.admin = mockwx.NewClient(c.baseURL, s.adminToken, direct)
	if c.caPEM, c.pool, err = fetchCA(sctx, direct, c.baseURL); err != nil {
		return nil, fmt.Errorf("mockwxcontainer: %s: %w", image, err)
	}
	return c, nil
}

// resolveImage returns the image to run: image when it is in the local
// cache, or, when image is empty, the one built from the source.
func resolveImage(ctx context.Context, provider *testcontainers.DockerProvider, image string) (string, error) {
	if image == "" {
		images.once.Do(func() {
			images.built, images.err = imagebuild.Build(ctx, provider, imagebuild.Image{
				Name: "mockwx", Package: imagebuild.ModulePath + "/mockwx/cmd/mockwx", Repo: ImageRepo,
			})
		})
		if images.err != nil {
			return "", fmt.Errorf("build the mockwx image: %w", images.err)
		}
		return images.built, nil
	}
	if _, ok := images.found.Load(image); ok {
		return image, nil
	}
	ictx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	if _, err := provider.Client().ImageInspect(ictx, image); err != nil {
		return "", fmt.Errorf("image %s is not in the local image cache (it is never pulled; `make images` in the wxpush repository builds wxpush/mockwx:local): %w", image, err)
	}
	images.found.Store(image, struct{}{})
	return image, nil
}

// fetchCA reads the CA certificate the mock's HTTPS proxy signs with.
func fetchCA(ctx context.Context, hc *http.Client, baseURL string) ([]byte, *x509.CertPool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+caPath, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", caPath, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", caPath, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s answered %s: the image predates the mock's HTTPS proxy mode; rebuild it from a current wxpush", caPath, resp.Status)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("GET %s: not a PEM certificate", caPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", caPath, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return data, pool, nil
}

// BaseURL is the mock's URL on this host, e.g. http://127.0.0.1:32768: the
// WeChat API base URL to give a client under test, and the admin API's.
func (c *Container) BaseURL() string { return c.baseURL }

// ProxyURL is the mock's HTTPS proxy for WeChat's API hosts
// (api.weixin.qq.com and the others): the same listener as BaseURL. A
// client that keeps https://api.weixin.qq.com as its base URL, goes
// through this proxy and trusts CertPool (or CACertPEM) reaches the mock.
func (c *Container) ProxyURL() string { return c.baseURL }

// NetworkURL is the mock's URL for containers on the WithNetwork network,
// http://ALIAS:9000 with the first alias: the base URL and the proxy URL
// (HTTPS_PROXY) to give a service under test there. Empty without
// WithNetwork.
func (c *Container) NetworkURL() string { return c.networkURL }

// CACertPEM is the PEM-encoded CA certificate that signs the proxy's
// certificates for WeChat's hosts (GET /_mock/ca.pem), to mount into a
// service's trust store. Each container generates a CA of its own at
// start (FROM scratch, it has nowhere to keep one). The caller may keep
// the slice; it is a copy.
func (c *Container) CACertPEM() []byte { return append([]byte(nil), c.caPEM...) }

// CertPool is a pool holding only the mock's CA certificate.
func (c *Container) CertPool() *x509.CertPool { return c.pool.Clone() }

// HTTPClient is an HTTP client for Go tests that reaches WeChat's real
// URLs (https://api.weixin.qq.com/...) at the mock: https requests go
// through ProxyURL with TLS trusting only the mock's CA, and plain http
// requests (to BaseURL) go straight to the mock, as the mock wants them.
func (c *Container) HTTPClient() *http.Client {
	proxy, err := url.Parse(c.baseURL)
	if err != nil {
		panic("mockwxcontainer: the base URL does not parse: " + err.Error()) // Run built it from a host and a port
	}
	return &http.Client{Transport: &http.Transport{
		Proxy: func(r *http.Request) (*url.URL, error) {
			if r.URL.Scheme == "https" {
				return proxy, nil
			}
			return nil, nil
		},
		TLSClientConfig: &tls.Config{RootCAs: c.pool.Clone(), MinVersion: tls.VersionTLS12},
	}}
}

// Admin is a client of the mock's admin API, carrying WithAdminToken's
// token.
func (c *Container) Admin() *mockwx.Client { return c.admin }

// Image is the image the container runs (built by Run, or WithImage's).
func (c *Container) Image() string { return c.image }

// Container is the testcontainers container, for what this package does
// not wrap (logs, exec, network changes).
func (c *Container) Container() testcontainers.Container { return c.ctr }

// Terminate stops and removes the container. Once it has succeeded, later
// calls do nothing; a nil Container is fine.
func (c *Container) Terminate(ctx context.Context) error {
	if c == nil || c.ctr == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.terminated {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	if err := c.ctr.Terminate(ctx); err != nil {
		return fmt.Errorf("mockwxcontainer: terminate: %w", err)
	}
	c.terminated = true
	return nil
}

// logs returns the last n lines of the container's log ("" when it cannot
// be read).
func (c *Container) logs(ctx context.Context, n int) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dockerTimeout)
	defer cancel()
	rc, err := c.ctr.Logs(ctx)
	if err != nil {
		return ""
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// HostAddress is the address (an IPv4 address) at which containers on the
// Docker network name ("bridge" for Run without WithNetwork) reach this
// host: the network's gateway. Serve a callback receiver on it (listen on
// HostAddress:0, or on all addresses where that fails) and give its URL
// to WithCallbackURL.
func HostAddress(ctx context.Context, network string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return "", fmt.Errorf("mockwxcontainer: %w: %v", ErrNoDocker, err)
	}
	defer cli.Close()
	res, err := cli.NetworkInspect(ctx, network, client.NetworkInspectOptions{})
	if err != nil {
		return "", fmt.Errorf("mockwxcontainer: inspect network %s: %w", network, err)
	}
	for _, cfg := range res.Network.IPAM.Config {
		if cfg.Gateway.IsValid() && cfg.Gateway.Is4() {
			return cfg.Gateway.String(), nil
		}
	}
	return "", fmt.Errorf("mockwxcontainer: network %s has no IPv4 gateway", network)
}
