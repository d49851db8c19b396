// Package containers is harness's container backend: wxpushd and mockwx
// built with CGO_ENABLED=0 into images FROM scratch (deploy/*/Dockerfile),
// Redis from WXPUSH_REDIS_IMAGE, two private networks (app: the mock and
// the instances; data: Redis and the instances), kills through the Docker
// API (SIGKILL), partitions by network disconnect, a deadline on every
// call, and cleanup by label, leftovers of a crashed run included. It uses
// testcontainers-go and pulls nothing.
//
// Importing it (blank import) registers harness.KindContainers with
// harness.Start.
package containers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"
	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/wxpush/wxpush/internal/harness"
	"github.com/wxpush/wxpush/internal/imagebuild"
	"github.com/wxpush/wxpush/mockwx"
)

func init() {
	harness.Register(harness.KindContainers, func(ctx context.Context, spec harness.Spec) (harness.Deployment, error) {
		d, err := Start(ctx, spec)
		if err != nil {
			return nil, err // not a typed nil inside the interface
		}
		return d, nil
	})
}

// EnvRedisImage names the Redis image (default redis:7-alpine when it is
// in the local cache, else wxpush/redis:local, built by
// `deploy/build.sh redis` when missing).
const EnvRedisImage = "WXPUSH_REDIS_IMAGE"

// LabelOwnerPrefix prefixes the owner label on everything the backend
// creates (wxpush.conformance=true, wxpush.wxload=true): cleanup finds an
// owner's leftovers by it. The run label tells one process's from another's.
const (
	LabelOwnerPrefix = "wxpush."
	labelRunSuffix   = ".run"
)

// opTimeout bounds every Docker call the backend makes.
const opTimeout = 90 * time.Second

// Ports inside the containers.
const (
	servicePort = "8080/tcp"
	mockPort    = "9000/tcp"
	redisPort   = "6379/tcp"
	appsPath    = "/etc/wxpush/apps.yaml"
)

// images are built once per process (the only state shared between
// deployments): wxpushd and mockwx FROM scratch, from static binaries;
// leftovers of earlier runs are removed per owner, once.
var images struct {
	once            sync.Once
	wxpushd, mockwx string
	redis           string
	run             string
	err             error
	swept           sync.Map // owner: true
}

// Deployment is a deployment in containers.
type Deployment struct {
	spec    harness.Spec
	apiKey  string
	cli     *testcontainers.DockerClient
	labels  map[string]string
	appNet  *testcontainers.DockerNetwork // mockwx and wxpushd
	dataNet *testcontainers.DockerNetwork // Redis and wxpushd: cut by disconnecting an instance
	redis   testcontainers.Container
	mock    testcontainers.Container
	admin   *mockwx.Client
	// handlers serve Spec.Handler (nil without one), reached from the app
	// network at its gateway address.
	handlers *harness.HandlerServer
	base     string
	reach    string

	tcLog *os.File // testcontainers' log, in Spec.LogDir

	mu        sync.Mutex
	instances []testcontainers.Container
	urls      []string
	up        []bool
}

var _ harness.Deployment = (*Deployment)(nil)

// Start starts the deployment in containers; on error nothing is left
// running. Without Docker the error wraps harness.ErrNoDocker.
func Start(ctx context.Context, spec harness.Spec) (_ *Deployment, err error) {
	if spec.Instances < 1 || spec.Configure == nil || spec.Owner == "" {
		return nil, errors.New("containers: the spec needs Instances, Configure and Owner")
	}
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		// The reaper image cannot be pulled here; cleanup is by label instead.
		_ = os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	if os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") == "" && (os.Getenv("DOCKER_HOST") == "" || strings.HasPrefix(os.Getenv("DOCKER_HOST"), "unix://")) {
		// A local Docker publishes the ports on this host; testcontainers
		// guesses a gateway address instead when this process runs in a
		// container sharing the host's network.
		_ = os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	}
	var tcLog *os.File
	if spec.LogDir != "" {
		// testcontainers' own lines go to the log directory, not the
		// terminal.
		if err := os.MkdirAll(spec.LogDir, 0o755); err == nil {
			if tcLog, err = os.Create(filepath.Join(spec.LogDir, "testcontainers.log")); err == nil {
				tclog.SetDefault(stdlog.New(tcLog, "", stdlog.LstdFlags))
			}
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cli, err := testcontainers.NewDockerClientWithOpts(pctx)
	if err == nil {
		_, err = cli.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true})
	}
	cancel()
	if err != nil {
		closeLog(tcLog)
		return nil, fmt.Errorf("containers: %w: %v", harness.ErrNoDocker, err)
	}
	images.once.Do(func() { buildImages(ctx, spec, cli) })
	if images.err != nil {
		closeLog(tcLog)
		return nil, fmt.Errorf("containers: images: %w", images.err)
	}
	owner := LabelOwnerPrefix + spec.Owner
	if _, done := images.swept.LoadOrStore(owner, true); !done {
		sweep(ctx, spec, cli, owner, images.run)
	}
	e := &Deployment{spec: spec, cli: cli, tcLog: tcLog, labels: map[string]string{owner: "true", owner + labelRunSuffix: images.run}}
	defer func() {
		if err != nil {
			_ = e.Close(context.Background())
		}
	}()

	ctx, cancel = context.WithTimeout(ctx, 4*opTimeout)
	defer cancel()
	if e.appNet, err = tcnetwork.New(ctx, tcnetwork.WithLabels(e.labels)); err != nil {
		return nil, fmt.Errorf("containers: network: %w", err)
	}
	// The data network is internal (no gateway): an instance's default
	// route and published port always go through the app network, so
	// cutting the data network (CutRedis) cannot take the instance's API
	// off the host with it. Docker picks the gateway network by name
	// order otherwise.
	if e.dataNet, err = tcnetwork.New(ctx, tcnetwork.WithLabels(e.labels), tcnetwork.WithInternal()); err != nil {
		return nil, fmt.Errorf("containers: network: %w", err)
	}
	if spec.Handler != nil {
		if err := e.serveHandler(ctx); err != nil {
			return nil, fmt.Errorf("containers: the handler: %w", err)
		}
	}

	e.redis, err = testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{Started: true, ContainerRequest: testcontainers.ContainerRequest{
		Image:        images.redis,
		Cmd:          []string{"redis-server", "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--protected-mode", "no", "--dir", "/data"},
		ExposedPorts: []string{redisPort},
		Labels:       e.labels,
		// The app network too, only to publish the port to the host
		// (FlushRedis): the "redis" alias exists on the data network only.
		Networks:       []string{e.appNet.Name, e.dataNet.Name},
		NetworkAliases: map[string][]string{e.dataNet.Name: {"redis"}},
		WaitingFor:     wait.ForListeningPort(redisPort).SkipInternalCheck().WithStartupTimeout(60 * time.Second),
	}})
	if err != nil {
		return nil, fmt.Errorf("containers: redis (%s; set %s, or build one with deploy/build.sh redis): %w", images.redis, EnvRedisImage, err)
	}

	cfg, mcfg := spec.Configure(harness.Endpoints{Service: "http://wxpushd:8080", Handlers: e.base})
	if len(cfg.APIKeys) > 0 {
		e.apiKey = cfg.APIKeys[0].Reveal()
	}
	mockJSON, err := json.Marshal(mcfg)
	if err != nil {
		return nil, err
	}
	e.mock, err = testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{Started: true, ContainerRequest: testcontainers.ContainerRequest{
		Image:          images.mockwx,
		Env:            map[string]string{"MOCKWX_ADDR": ":9000", "MOCKWX_CONFIG": "/etc/mockwx.json", "MOCKWX_SEED": strconv.FormatInt(spec.MockSeed, 10), "LOG_LEVEL": "warn"},
		Files:          []testcontainers.ContainerFile{{Reader: strings.NewReader(string(mockJSON)), ContainerFilePath: "/etc/mockwx.json", FileMode: 0o644}},
		ExposedPorts:   []string{mockPort},
		Labels:         e.labels,
		Networks:       []string{e.appNet.Name},
		NetworkAliases: map[string][]string{e.appNet.Name: {"mockwx"}},
		WaitingFor:     wait.ForHTTP("/_mock/apps").WithPort(mockPort).WithStartupTimeout(60 * time.Second),
	}})
	if err != nil {
		return nil, fmt.Errorf("containers: mockwx: %w", err)
	}
	mockURL, err := e.endpoint(ctx, e.mock, mockPort)
	if err != nil {
		return nil, err
	}
	e.admin = mockwx.NewClient(mockURL, "", nil)

	e.instances = make([]testcontainers.Container, spec.Instances)
	e.urls = make([]string, spec.Instances)
	e.up = make([]bool, spec.Instances)
	for i := range spec.Instances {
		c := cfg
		c.Addr, c.RedisURL, c.WeChatBaseURL = ":8080", "redis://redis:6379/0", "http://mockwx:9000"
		c.KeyPrefix = "" // a private Redis
		c.Instance = fmt.Sprintf("%s-%d", cmpOr(cfg.Instance, spec.Owner), i)
		env, appsFile, err := harness.ServiceEnv(c, appsPath)
		if err != nil {
			return nil, err
		}
		var files []testcontainers.ContainerFile
		if appsFile != nil {
			files = append(files, testcontainers.ContainerFile{Reader: strings.NewReader(string(appsFile)), ContainerFilePath: appsPath, FileMode: 0o644})
		}
		ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{Started: true, ContainerRequest: testcontainers.ContainerRequest{
			Image:        images.wxpushd,
			Env:          env,
			Files:        files,
			ExposedPorts: []string{servicePort},
			Labels:       e.labels,
			Networks:     []string{e.appNet.Name, e.dataNet.Name},
			// "wxpushd" is shared: Docker's DNS spreads the mock's delivery
			// reports over the instances that are up, as a balancer would.
			NetworkAliases: map[string][]string{e.appNet.Name: {"wxpushd", fmt.Sprintf("wxpushd-%d", i)}},
			WaitingFor:     wait.ForHTTP("/readyz").WithPort(servicePort).WithStartupTimeout(60 * time.Second),
		}})
		if ctr != nil {
			e.instances[i] = ctr
		}
		if err != nil {
			return nil, fmt.Errorf("containers: wxpushd %d: %w", i, err)
		}
		if e.urls[i], err = e.endpoint(ctx, ctr, servicePort); err != nil {
			return nil, err
		}
		e.up[i] = true
	}
	return e, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// buildImages builds wxpushd and mockwx with CGO_ENABLED=0 and the images
// FROM scratch from the Dockerfiles in deploy/, and finds the
// Redis image.
func buildImages(ctx context.Context, spec harness.Spec, cli *testcontainers.DockerClient) {
	images.run = randomHex(6)
	root, err := imagebuild.ModuleRoot(ctx)
	if err != nil {
		images.err = err
		return
	}
	if images.redis, err = redisImage(ctx, cli, root); err != nil {
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
	}{{"wxpushd", "service/cmd/wxpushd", &images.wxpushd}, {"mockwx", "mockwx/cmd/mockwx", &images.mockwx}} {
		// A build context of its own per run, so that a run never touches
		// the contexts compose builds from, under a tag of its own.
		tag, err := imagebuild.Build(ctx, provider, imagebuild.Image{
			Name: img.name, Package: imagebuild.ModulePath + "/" + img.pkg, Repo: "wxpush-harness/" + img.name, Tag: "test",
		})
		if err != nil {
			images.err = err
			return
		}
		*img.dst = tag
	}
	spec.Progress("containers: images %s and %s built FROM scratch, Redis %s (run %s)", images.wxpushd, images.mockwx, images.redis, images.run)
}

// redisImage is WXPUSH_REDIS_IMAGE, else redis:7-alpine when it is in the
// local cache, else wxpush/redis:local (built from Debian's redis-server by
// `deploy/build.sh redis` when it is missing too): nothing is
// pulled.
func redisImage(ctx context.Context, cli *testcontainers.DockerClient, root string) (string, error) {
	if img := os.Getenv(EnvRedisImage); img != "" {
		return img, nil
	}
	ictx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	for _, img := range []string{"redis:7-alpine", "wxpush/redis:local"} {
		if _, err := cli.ImageInspect(ictx, img); err == nil {
			return img, nil
		}
	}
	bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	script := filepath.Join(root, "deploy", "build.sh")
	out, err := exec.CommandContext(bctx, script, "redis").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("no Redis image here (redis:7-alpine cannot be pulled); %s failed: %w\n%s (set %s to one)", script, err, out, EnvRedisImage)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1]), nil
}

// sweep removes containers and networks an earlier run of the same owner
// left behind (a crashed run has no teardown): everything with the
// owner's label that is not of this run.
func sweep(ctx context.Context, spec harness.Spec, cli *testcontainers.DockerClient, owner, run string) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	f := make(client.Filters).Add("label", owner+"=true")
	cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		spec.Progress("containers: listing leftovers: %v", err)
		return
	}
	removed := 0
	for _, c := range cs.Items {
		if c.Labels[owner+labelRunSuffix] == run {
			continue
		}
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err == nil {
			removed++
		}
	}
	ns, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err == nil {
		for _, n := range ns.Items {
			if n.Labels[owner+labelRunSuffix] != run {
				if _, err := cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err == nil {
					removed++
				}
			}
		}
	}
	if removed > 0 {
		spec.Progress("containers: removed %d containers and networks left by an earlier run", removed)
	}
}

func (e *Deployment) endpoint(ctx context.Context, c testcontainers.Container, port string) (string, error) {
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

// Kind is harness.KindContainers.
func (e *Deployment) Kind() string { return harness.KindContainers }

// Instances is the number of instances.
func (e *Deployment) Instances() int { return len(e.instances) }

// Mock is the mock's admin client.
func (e *Deployment) Mock() *mockwx.Client { return e.admin }

// APIKey is the service's first API key.
func (e *Deployment) APIKey() string { return e.apiKey }

// HandlersURL is where the containers reach Spec.Handler.
func (e *Deployment) HandlersURL() string { return e.base }

// Reach says how that was established.
func (e *Deployment) Reach() string { return e.reach }

// Redis describes the Redis container.
func (e *Deployment) Redis() string {
	return "container " + images.redis + " (append-only file)"
}

// serveHandler serves Spec.Handler where the containers reach it: on the
// app network's gateway address, which is an address of the Docker host
// (this process runs on it, or in a container sharing its network
// namespace). Nothing is pulled: a container of the wxpushd image on the
// app network probes the listener (wxpushd -healthcheck URL) before the
// deployment starts, and the probe's answer and time are reported.
func (e *Deployment) serveHandler(ctx context.Context) error {
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
	h, err := harness.ServeHandler(e.spec.Handler, net.JoinHostPort(gw, "0"))
	if err != nil {
		bound = "0.0.0.0"
		if h, err = harness.ServeHandler(e.spec.Handler, "0.0.0.0:0"); err != nil {
			return err
		}
	}
	e.handlers = h
	_, port, _ := net.SplitHostPort(h.Addr())
	e.base = "http://" + net.JoinHostPort(gw, port)

	start := time.Now()
	pctx, pcancel := context.WithTimeout(ctx, opTimeout)
	defer pcancel()
	probe, err := testcontainers.GenericContainer(pctx, testcontainers.GenericContainerRequest{Started: true, ContainerRequest: testcontainers.ContainerRequest{
		Image:      images.wxpushd,
		Cmd:        []string{"-healthcheck", e.base + harness.ProbePath},
		Labels:     e.labels,
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
	from, at := h.Probed()
	if st.ExitCode != 0 || from == "" {
		return fmt.Errorf("a container on the app network cannot reach %s (listening on %s): probe exit %d %q", e.base, bound, st.ExitCode, containerLogs(pctx, probe, 10))
	}
	e.reach = fmt.Sprintf("app network gateway %s (Docker API), listener on %s:%s; a wxpushd -healthcheck container on the app network got 200 from %s%s (request from %s %s after its start; container run %s)",
		gw, bound, port, e.base, harness.ProbePath, from, at.Sub(start).Round(time.Millisecond), took.Round(time.Millisecond))
	return nil
}

// ServiceURL is instance i's base URL on the host.
func (e *Deployment) ServiceURL(i int) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i < 0 || i >= len(e.urls) {
		return "http://127.0.0.1:1"
	}
	return e.urls[i]
}

// Up reports whether instance i runs (as far as this process made it).
func (e *Deployment) Up(i int) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return i >= 0 && i < len(e.up) && e.up[i]
}

func (e *Deployment) instance(i int) (testcontainers.Container, error) {
	if i < 0 || i >= len(e.instances) {
		return nil, harness.ErrInstance(i, len(e.instances))
	}
	return e.instances[i], nil
}

// onInstance runs op on instance i's container, within opTimeout.
func (e *Deployment) onInstance(ctx context.Context, i int, op func(ctx context.Context, c testcontainers.Container) error) error {
	c, err := e.instance(i)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	return op(ctx, c)
}

func (e *Deployment) setUp(i int, up bool) {
	e.mu.Lock()
	e.up[i] = up
	e.mu.Unlock()
}

// Kill sends SIGKILL through the Docker API.
func (e *Deployment) Kill(ctx context.Context, i int) error {
	return e.onInstance(ctx, i, func(ctx context.Context, c testcontainers.Container) error {
		e.setUp(i, false)
		_, err := e.cli.ContainerKill(ctx, c.GetContainerID(), client.ContainerKillOptions{Signal: "KILL"})
		return err
	})
}

// Stop stops instance i (SIGTERM, then SIGKILL after 10 s).
func (e *Deployment) Stop(ctx context.Context, i int) error {
	return e.onInstance(ctx, i, func(ctx context.Context, c testcontainers.Container) error {
		e.setUp(i, false)
		grace := 10 * time.Second
		return c.Stop(ctx, &grace)
	})
}

// Start starts the container again (its wait strategy runs again) and
// reads its new host port.
func (e *Deployment) Start(ctx context.Context, i int) error {
	return e.onInstance(ctx, i, func(ctx context.Context, c testcontainers.Container) error {
		if err := c.Start(ctx); err != nil {
			return err
		}
		u, err := e.endpoint(ctx, c, servicePort)
		if err != nil {
			return err
		}
		e.mu.Lock()
		e.urls[i], e.up[i] = u, true
		e.mu.Unlock()
		return nil
	})
}

// StopRedis stops the Redis container (SIGTERM: it writes its append-only
// file).
func (e *Deployment) StopRedis(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	grace := 10 * time.Second
	return e.redis.Stop(ctx, &grace)
}

// StartRedis starts it again and waits until it listens.
func (e *Deployment) StartRedis(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	return e.redis.Start(ctx)
}

// FlushRedis runs FLUSHALL through the Redis container's published port.
func (e *Deployment) FlushRedis(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	u, err := e.endpoint(ctx, e.redis, redisPort)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(u, "http://")})
	defer rdb.Close()
	return rdb.FlushAll(ctx).Err()
}

// CutRedis disconnects instance i from the network it shares with Redis
// only; the mock and this process still reach it.
func (e *Deployment) CutRedis(ctx context.Context, i int) error {
	return e.onInstance(ctx, i, func(ctx context.Context, c testcontainers.Container) error {
		_, err := e.cli.NetworkDisconnect(ctx, e.dataNet.ID, client.NetworkDisconnectOptions{Container: c.GetContainerID(), Force: true})
		return err
	})
}

// RestoreRedis connects it again.
func (e *Deployment) RestoreRedis(ctx context.Context, i int) error {
	return e.onInstance(ctx, i, func(ctx context.Context, c testcontainers.Container) error {
		_, err := e.cli.NetworkConnect(ctx, e.dataNet.ID, client.NetworkConnectOptions{Container: c.GetContainerID()})
		return err
	})
}

// Logs returns the last n lines of instance i's container log.
func (e *Deployment) Logs(ctx context.Context, i, n int) string {
	c, err := e.instance(i)
	if err != nil || c == nil {
		return ""
	}
	return containerLogs(ctx, c, n)
}

func containerLogs(ctx context.Context, c testcontainers.Container, n int) string {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	rc, err := c.Logs(ctx)
	if err != nil {
		return ""
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return harness.Tail(strings.TrimSpace(string(b)), n)
}

// Close saves the containers' logs to Spec.LogDir (when set) and removes
// the containers and the networks.
func (e *Deployment) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*opTimeout)
	defer cancel()
	var errs []error
	if e.spec.LogDir != "" {
		named := map[string]testcontainers.Container{"mockwx.log": e.mock, "redis.log": e.redis}
		for i, c := range e.instances {
			named[fmt.Sprintf("wxpushd-%d.log", i)] = c
		}
		if err := os.MkdirAll(e.spec.LogDir, 0o755); err == nil {
			for name, c := range named {
				if c != nil {
					_ = os.WriteFile(filepath.Join(e.spec.LogDir, name), []byte(containerLogs(ctx, c, 1<<30)+"\n"), 0o644)
				}
			}
		}
	}
	for _, c := range append(e.instances, e.mock, e.redis) {
		if c != nil {
			if err := c.Terminate(ctx); err != nil {
				errs = append(errs, fmt.Errorf("terminate: %w", err))
			}
		}
	}
	e.handlers.Close()
	for _, n := range []*testcontainers.DockerNetwork{e.appNet, e.dataNet} {
		if n != nil {
			if err := n.Remove(ctx); err != nil {
				errs = append(errs, fmt.Errorf("network remove: %w", err))
			}
		}
	}
	closeLog(e.tcLog)
	return errors.Join(errs...)
}

// closeLog sends testcontainers' lines nowhere again and closes f (nil:
// nothing to do).
func closeLog(f *os.File) {
	if f != nil {
		tclog.SetDefault(tclog.NewNoopLogger())
		_ = f.Close()
	}
}
