//go:build containers

package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/wxpush/wxpush/mockwx"
)

// Labels on everything the container backend creates: cleanup finds
// leftovers of a failed run by them.
const (
	labelOwner = "wxpush.conformance"
	labelRun   = "wxpush.conformance.run"
)

// opTimeout bounds every Docker call the backend makes.
const opTimeout = 90 * time.Second

// images are built once per test process (the only state shared between
// Envs): wxpushd and mockwx FROM scratch, from static binaries.
var images struct {
	once            sync.Once
	wxpushd, mockwx string
	run             string
	err             error
}

type containerEnv struct {
	opts    Options
	apiKey  string
	app     mockwx.App
	cli     *testcontainers.DockerClient
	appNet  *testcontainers.DockerNetwork // mockwx and wxpushd
	dataNet *testcontainers.DockerNetwork // Redis and wxpushd: cut by disconnecting an instance
	redis   testcontainers.Container
	mock    testcontainers.Container
	admin   *mockwx.Client
	// handlers serve the test's own handlers (nil: the options gave
	// none), reached from the app network at its gateway address.
	handlers *testHandlers
	reach    string

	mu        sync.Mutex
	instances []testcontainers.Container
	urls      []string
}

var _ Env = (*containerEnv)(nil)

func newContainers(t testing.TB, opts Options) Env {
	t.Helper()
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		// The reaper image cannot be pulled here; cleanup is by label instead.
		_ = os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err == nil {
		_, err = cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	}
	cancel()
	if err != nil {
		t.Skipf("containers backend: Docker does not answer: %v", err)
	}
	images.once.Do(func() { buildImages(t, cli) })
	if images.err != nil {
		t.Fatalf("containers backend: building images: %v", images.err)
	}
	e := &containerEnv{opts: opts, apiKey: "conformance-" + randomHex(12), cli: cli}
	t.Cleanup(func() { e.close(t) })

	ctx, cancel = context.WithTimeout(context.Background(), 4*opTimeout)
	defer cancel()
	labels := map[string]string{labelOwner: "true", labelRun: images.run}
	if e.appNet, err = tcnetwork.New(ctx, tcnetwork.WithLabels(labels)); err != nil {
		t.Fatalf("network: %v", err)
	}
	// The data network is internal (no gateway): an instance's default
	// route and published port always go through the app network, so
	// cutting the data network (CutRedis) cannot take the instance's API
	// off the host with it. Docker picks the gateway network by name
	// order otherwise, which made the cut test flaky.
	if e.dataNet, err = tcnetwork.New(ctx, tcnetwork.WithLabels(labels), tcnetwork.WithInternal()); err != nil {
		t.Fatalf("network: %v", err)
	}

	if opts.servesHandlers() {
		if err := e.serveHandlers(ctx, labels); err != nil {
			t.Fatalf("containers backend: the test's handlers: %v", err)
		}
	}

	redisImage := os.Getenv(EnvRedisImage)
	if redisImage == "" {
		redisImage = "redis:7-alpine"
	}
	e.redis, err = testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{Started: true, ContainerRequest: testcontainers.ContainerRequest{
		Image:        redisImage,
		Cmd:          []string{"redis-server", "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--protected-mode", "no", "--dir", "/data"},
		ExposedPorts: []string{"6379/tcp"},
		Labels:       labels,
		// The app network too, only to publish the port to the host
		// (FlushRedis): the "redis" alias exists on the data network only.
		Networks:       []string{e.appNet.Name, e.dataNet.Name},
		NetworkAliases: map[string][]string{e.dataNet.Name: {"redis"}},
		WaitingFor:     wait.ForListeningPort("6379/tcp").SkipInternalCheck().WithStartupTimeout(60 * time.Second),
	}})
	if err != nil {
		t.Fatalf("redis (%s; set %s, or build one with conformance/images/redis/build.sh): %v", redisImage, EnvRedisImage, err)
	}

	e.app = mockApp(opts, "http://wxpushd:8080")
	cfg, err := json.Marshal(mockwx.Config{NoDemoApp: true, Apps: mockApps(opts, e.app, e.HandlersURL()), Settings: mockSettings(opts)})
	if err != nil {
		t.Fatal(err)
	}
	e.mock, err = testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{Started: true, ContainerRequest: testcontainers.ContainerRequest{
		Image:          images.mockwx,
		Env:            map[string]string{"MOCKWX_ADDR": ":9000", "MOCKWX_CONFIG": "/etc/mockwx.json", "MOCKWX_SEED": strconv.FormatInt(opts.Seed, 10), "LOG_LEVEL": "warn"},
		Files:          []testcontainers.ContainerFile{{Reader: strings.NewReader(string(cfg)), ContainerFilePath: "/etc/mockwx.json", FileMode: 0o644}},
		ExposedPorts:   []string{"9000/tcp"},
		Labels:         labels,
		Networks:       []string{e.appNet.Name},
		NetworkAliases: map[string][]string{e.appNet.Name: {"mockwx"}},
		WaitingFor:     wait.ForHTTP("/_mock/apps").WithPort("9000/tcp").WithStartupTimeout(60 * time.Second),
	}})
	if err != nil {
		t.Fatalf("mockwx: %v", err)
	}
	mockURL, err := e.endpoint(ctx, e.mock, "9000/tcp")
	if err != nil {
		t.Fatal(err)
	}
	e.admin = mockwx.NewClient(mockURL, "", nil)

	e.instances = make([]testcontainers.Container, opts.Instances)
	e.urls = make([]string, opts.Instances)
	for i := range opts.Instances {
		c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{Started: true, ContainerRequest: testcontainers.ContainerRequest{
			Image:        images.wxpushd,
			Env:          e.serviceEnv(i),
			Files:        e.appsFile(),
			ExposedPorts: []string{"8080/tcp"},
			Labels:       labels,
			Networks:     []string{e.appNet.Name, e.dataNet.Name},
			// "wxpushd" is shared: Docker's DNS spreads the mock's delivery
			// reports over the instances that are up, as a balancer would.
			NetworkAliases: map[string][]string{e.appNet.Name: {"wxpushd", fmt.Sprintf("wxpushd-%d", i)}},
			WaitingFor:     wait.ForHTTP("/readyz").WithPort("8080/tcp").WithStartupTimeout(60 * time.Second),
		}})
		if err != nil {
			t.Fatalf("wxpushd %d: %v", i, err)
		}
		e.instances[i] = c
		if e.urls[i], err = e.endpoint(ctx, c, "8080/tcp"); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// buildImages builds wxpushd and mockwx with CGO_ENABLED=0 and
// the images FROM scratch from the Dockerfiles in conformance/images; it
// also removes what earlier runs left behind.
func buildImages(t testing.TB, cli *testcontainers.DockerClient) {
	images.run = randomHex(6)
	sweep(t, cli, images.run)
	root, err := moduleRoot()
	if err != nil {
		images.err = err
		return
	}
	provider, err := testcontainers.NewDockerProvider()
	if err != nil {
		images.err = err
		return
	}
	defer provider.Close()
	for _, img := range []struct {
		name, pkg string
		dst       *string
	}{{"wxpushd", "./service/cmd/wxpushd", &images.wxpushd}, {"mockwx", "./mockwx/cmd/mockwx", &images.mockwx}} {
		dir, err := os.MkdirTemp("", "wxpush-image-")
		if err != nil {
			images.err = err
			return
		}
		defer os.RemoveAll(dir)
		for _, b := range [][3]string{{img.name, img.pkg, "timetzdata"}} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", b[2], "-ldflags", "-s -w", "-o", filepath.Join(dir, b[0]), b[1])
			cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
			out, err := cmd.CombinedOutput()
			cancel()
			if err != nil {
				images.err = fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
				return
			}
		}
		ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
		if err != nil {
			ca = nil // no CA bundle here: the images only talk to the mock
		}
		dockerfile, err := os.ReadFile(filepath.Join(root, "conformance", "images", img.name, "Dockerfile"))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "Dockerfile"), dockerfile, 0o644)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "ca-certificates.crt"), ca, 0o644)
		}
		if err != nil {
			images.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		tag, err := provider.BuildImage(ctx, &testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
			Context: dir, Repo: "wxpush-conformance/" + img.name, Tag: "test", KeepImage: true, BuildLogWriter: io.Discard,
		}})
		cancel()
		if err != nil {
			images.err = fmt.Errorf("image %s: %w", img.name, err)
			return
		}
		*img.dst = tag
	}
	t.Logf("containers backend: images %s and %s built FROM scratch (run %s)", images.wxpushd, images.mockwx, images.run)
}

// sweep removes containers and networks an earlier run left behind (a
// crashed run has no t.Cleanup): everything labelled wxpush.conformance
// that is not this run's.
func sweep(t testing.TB, cli *testcontainers.DockerClient, run string) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	f := make(client.Filters).Add("label", labelOwner+"=true")
	cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Logf("containers backend: listing leftovers: %v", err)
		return
	}
	removed := 0
	for _, c := range cs.Items {
		if c.Labels[labelRun] == run {
			continue
		}
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err == nil {
			removed++
		}
	}
	ns, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err == nil {
		for _, n := range ns.Items {
			if n.Labels[labelRun] != run {
				if _, err := cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err == nil {
					removed++
				}
			}
		}
	}
	if removed > 0 {
		t.Logf("containers backend: removed %d containers and networks left by an earlier run", removed)
	}
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the wxpush module")
	}
	return filepath.Dir(mod), nil
}

func (e *containerEnv) serviceEnv(i int) map[string]string {
	o := e.opts
	env := map[string]string{
		"WXPUSH_ADDR": ":8080", "WXPUSH_REDIS_URL": "redis://redis:6379/0", "WXPUSH_WECHAT_BASE_URL": "http://mockwx:9000",
		"WXPUSH_API_KEYS": e.apiKey, "WXPUSH_APP_ID": e.app.AppID, "WXPUSH_APP_SECRET": e.app.Secret,
		"WXPUSH_TOKEN_MODE": o.TokenMode, "WXPUSH_WORKERS": strconv.Itoa(o.Workers), "WXPUSH_MAX_ATTEMPTS": strconv.Itoa(o.MaxAttempts),
		"WXPUSH_BACKOFF_BASE": backoffBase.String(), "WXPUSH_BACKOFF_CAP": backoffCap.String(), "WXPUSH_SEND_TIMEOUT": sendTimeout.String(),
		"WXPUSH_VISIBILITY_TIMEOUT": o.Visibility.String(), "WXPUSH_SHUTDOWN_TIMEOUT": shutdownTimeout.String(), "WXPUSH_STORE_CHECK_INTERVAL": storeCheckEvery.String(),
		"WXPUSH_PACE_DELAY": o.PaceDelay.String(), "WXPUSH_QUOTA_DELAY": o.QuotaDelay.String(), "WXPUSH_APP_DELAY": o.AppDelay.String(),
		"WXPUSH_INSTANCE": fmt.Sprintf("conformance-%d", i), "LOG_LEVEL": "info",
		"WXPUSH_WEBHOOK_TIMEOUT": webhookTimeout.String(), "WXPUSH_WEBHOOK_BACKOFF_BASE": webhookBackoffBase.String(), "WXPUSH_WEBHOOK_BACKOFF_CAP": webhookBackoffCap.String(),
	}
	if o.EventWebhook != nil {
		env["WXPUSH_EVENT_WEBHOOK_URL"] = e.HandlersURL() + PathEventWebhook
		env["WXPUSH_EVENT_WEBHOOK_SECRET"] = o.EventWebhookSecret
	}
	if r := repliesJSON(o); r != "" {
		env["WXPUSH_REPLIES"] = r
	}
	if o.DedupWindow > 0 {
		env["WXPUSH_DEDUP_WINDOW"] = o.DedupWindow.String()
	}
	if o.ReadTimeout > 0 {
		env["WXPUSH_READ_TIMEOUT"], env["WXPUSH_WRITE_TIMEOUT"] = o.ReadTimeout.String(), (2 * o.ReadTimeout).String()
	}
	if o.InboundPerKey > 0 {
		env["WXPUSH_RATE_LIMIT_PER_KEY"], env["WXPUSH_RATE_BURST_PER_KEY"] = strconv.FormatFloat(o.InboundPerKey, 'f', -1, 64), strconv.Itoa(o.InboundBurst)
	}
	if o.CallbackMode != "" {
		env["WXPUSH_CALLBACK_TOKEN"] = e.app.CallbackToken
		env["WXPUSH_ENCODING_AES_KEY"] = e.app.EncodingAESKey
		env["WXPUSH_CALLBACK_MODE"] = o.CallbackMode
	}
	if o.RateLimit > 0 {
		// Per-app settings live in the apps file; its secrets come from
		// the environment through ${VAR}, as in a committed file.
		env["WXPUSH_CONFIG"] = appsFilePath
		env["CONFORMANCE_APP_SECRET"] = env["WXPUSH_APP_SECRET"]
		env["CONFORMANCE_EVENT_WEBHOOK_SECRET"] = o.EventWebhookSecret
		for _, k := range []string{"WXPUSH_APP_ID", "WXPUSH_APP_SECRET", "WXPUSH_CALLBACK_TOKEN", "WXPUSH_ENCODING_AES_KEY", "WXPUSH_CALLBACK_MODE",
			"WXPUSH_EVENT_WEBHOOK_URL", "WXPUSH_EVENT_WEBHOOK_SECRET", "WXPUSH_REPLIES"} {
			delete(env, k)
		}
	}
	return env
}

// appsFilePath is where a wxpushd container finds its apps file.
const appsFilePath = "/etc/wxpush/apps.yaml"

// appsFile is the apps file for the options that need one (nil: none).
func (e *containerEnv) appsFile() []testcontainers.ContainerFile {
	o := e.opts
	if o.RateLimit <= 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apps:\n  - name: default\n    appid: %s\n    secret: ${CONFORMANCE_APP_SECRET}\n    rate_limit: %g\n", e.app.AppID, o.RateLimit)
	if o.CallbackMode != "" {
		fmt.Fprintf(&b, "    callback_token: %s\n    encoding_aes_key: %s\n    callback_mode: %s\n", e.app.CallbackToken, e.app.EncodingAESKey, o.CallbackMode)
	}
	if o.EventWebhook != nil {
		fmt.Fprintf(&b, "    event_webhook_url: %s\n    event_webhook_secret: ${CONFORMANCE_EVENT_WEBHOOK_SECRET}\n", e.HandlersURL()+PathEventWebhook)
	}
	if r := repliesJSON(o); r != "" {
		fmt.Fprintf(&b, "    replies: %s\n", r) // JSON is YAML
	}
	return []testcontainers.ContainerFile{{Reader: strings.NewReader(b.String()), ContainerFilePath: appsFilePath, FileMode: 0o644}}
}

// probed returns where the first reachability probe came from and when
// ("" when none came).
func (h *testHandlers) probed() (string, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.probeFrom, h.probeAt
}

func (e *containerEnv) endpoint(ctx context.Context, c testcontainers.Container, port string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	host, err := c.Host(ctx)
	if err != nil {
		return "", err
	}
	p, err := c.MappedPort(ctx, port)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("http://%s:%s", host, p.Port()), nil
}

func (e *containerEnv) Backend() string      { return "containers" }
func (e *containerEnv) Instances() int       { return len(e.instances) }
func (e *containerEnv) Mock() *mockwx.Client { return e.admin }
func (e *containerEnv) App() mockwx.App      { return e.app }
func (e *containerEnv) APIKey() string       { return e.apiKey }
func (e *containerEnv) Reach() string        { return e.reach }

func (e *containerEnv) HandlersURL() string {
	if e.handlers == nil {
		return ""
	}
	return e.handlers.base
}

// serveHandlers serves the test's handlers where the containers reach
// them: on the app network's gateway address, which is an address of the
// Docker host (the test runs on it, or in a container sharing its network
// namespace). Nothing is pulled: a container of the wxpushd image on the
// app network probes the listener (wxpushd -healthcheck URL) before the
// deployment starts, and the probe's answer and time are reported.
func (e *containerEnv) serveHandlers(ctx context.Context, labels map[string]string) error {
	ictx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	res, err := e.cli.NetworkInspect(ictx, e.appNet.ID, client.NetworkInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect the app network: %w", err)
	}
	var gw string
	for _, c := range res.Network.IPAM.Config {
		if c.Gateway.IsValid() && c.Gateway.Is4() {
			gw = c.Gateway.String()
			break
		}
	}
	if gw == "" {
		return fmt.Errorf("the app network %s has no IPv4 gateway", e.appNet.Name)
	}
	// The gateway address itself first (reachable from the app network
	// only); any address when this process cannot bind it.
	bound := gw
	h, err := startHandlers(e.opts, net.JoinHostPort(gw, "0"))
	if err != nil {
		bound = "0.0.0.0"
		if h, err = startHandlers(e.opts, "0.0.0.0:0"); err != nil {
			return err
		}
	}
	e.handlers = h
	_, port, _ := net.SplitHostPort(h.ln.Addr().String())
	h.base = "http://" + net.JoinHostPort(gw, port)

	start := time.Now()
	pctx, pcancel := context.WithTimeout(ctx, opTimeout)
	defer pcancel()
	probe, err := testcontainers.GenericContainer(pctx, testcontainers.GenericContainerRequest{Started: true, ContainerRequest: testcontainers.ContainerRequest{
		Image:      images.wxpushd,
		Cmd:        []string{"-healthcheck", h.base + pathHandlersProbe},
		Labels:     labels,
		Networks:   []string{e.appNet.Name},
		WaitingFor: wait.ForExit().WithExitTimeout(30 * time.Second),
	}})
	if probe != nil {
		defer func() { _ = probe.Terminate(context.Background()) }()
	}
	if err != nil {
		return fmt.Errorf("probe container: %w", err)
	}
	st, err := probe.State(pctx)
	if err != nil {
		return fmt.Errorf("probe container state: %w", err)
	}
	took := time.Since(start)
	from, at := h.probed()
	if st.ExitCode != 0 || from == "" {
		logs := ""
		if rc, err := probe.Logs(pctx); err == nil {
			b, _ := io.ReadAll(rc)
			rc.Close()
			logs = strings.TrimSpace(string(b))
		}
		return fmt.Errorf("a container on the app network cannot reach %s (listening on %s): probe exit %d %q", h.base, bound, st.ExitCode, logs)
	}
	e.reach = fmt.Sprintf("app network gateway %s (Docker API), listener on %s:%s; a wxpushd -healthcheck container on the app network got 200 from %s%s (request from %s %s after its start; container run %s)",
		gw, bound, port, h.base, pathHandlersProbe, from, at.Sub(start).Round(time.Millisecond), took.Round(time.Millisecond))
	return nil
}

func (e *containerEnv) ServiceURL(i int) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i < 0 || i >= len(e.urls) {
		return "http://127.0.0.1:1"
	}
	return e.urls[i]
}

func (e *containerEnv) instance(i int) (testcontainers.Container, error) {
	if i < 0 || i >= len(e.instances) {
		return nil, errInstance(i, len(e.instances))
	}
	return e.instances[i], nil
}

// Kill sends SIGKILL through the Docker API.
func (e *containerEnv) Kill(ctx context.Context, i int) error {
	c, err := e.instance(i)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	_, err = e.cli.ContainerKill(ctx, c.GetContainerID(), client.ContainerKillOptions{Signal: "KILL"})
	return err
}

func (e *containerEnv) Stop(ctx context.Context, i int) error {
	c, err := e.instance(i)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	grace := 10 * time.Second
	return c.Stop(ctx, &grace)
}

// Start starts the container again (its wait strategy runs again) and
// reads its new host port.
func (e *containerEnv) Start(ctx context.Context, i int) error {
	c, err := e.instance(i)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		return err
	}
	u, err := e.endpoint(ctx, c, "8080/tcp")
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.urls[i] = u
	e.mu.Unlock()
	return nil
}

func (e *containerEnv) StopRedis(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	grace := 10 * time.Second // SIGTERM: Redis writes its append-only file
	return e.redis.Stop(ctx, &grace)
}

func (e *containerEnv) StartRedis(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	return e.redis.Start(ctx)
}

func (e *containerEnv) FlushRedis(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	u, err := e.endpoint(ctx, e.redis, "6379/tcp")
	if err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(u, "http://")})
	defer rdb.Close()
	return rdb.FlushAll(ctx).Err()
}

// CutRedis disconnects instance i from the network it shares with Redis
// only; the mock and the test still reach it.
func (e *containerEnv) CutRedis(ctx context.Context, i int) error {
	c, err := e.instance(i)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	_, err = e.cli.NetworkDisconnect(ctx, e.dataNet.ID, client.NetworkDisconnectOptions{Container: c.GetContainerID(), Force: true})
	return err
}

func (e *containerEnv) RestoreRedis(ctx context.Context, i int) error {
	c, err := e.instance(i)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	_, err = e.cli.NetworkConnect(ctx, e.dataNet.ID, client.NetworkConnectOptions{Container: c.GetContainerID()})
	return err
}

// close terminates everything, printing the instances' last logs when the
// test failed.
func (e *containerEnv) close(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*opTimeout)
	defer cancel()
	for i, c := range e.instances {
		if c == nil {
			continue
		}
		if t.Failed() {
			if rc, err := c.Logs(ctx); err == nil {
				b, _ := io.ReadAll(rc)
				rc.Close()
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				if len(lines) > 30 {
					lines = lines[len(lines)-30:]
				}
				t.Logf("wxpushd %d (container), last log lines:\n%s", i, strings.Join(lines, "\n"))
			}
		}
	}
	for _, c := range append(e.instances, e.mock, e.redis) {
		if c != nil {
			if err := c.Terminate(ctx); err != nil {
				t.Logf("terminate: %v", err)
			}
		}
	}
	e.handlers.close()
	for _, n := range []*testcontainers.DockerNetwork{e.appNet, e.dataNet} {
		if n != nil {
			if err := n.Remove(ctx); err != nil {
				t.Logf("network remove: %v", err)
			}
		}
	}
}
