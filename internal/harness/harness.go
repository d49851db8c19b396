// Package harness starts the wxpush deployment that conformance's suites
// and wxload's scenarios run against, in one of three ways, and controls
// it: in-process (mockwx and N wxpushd instances on loopback, with
// miniredis, a private redis-server, a private Redis Cluster of 3 masters
// and 3 replicas, or a given Redis), in containers
// (package harness/containers: images built FROM scratch, kills through
// the Docker API, partitions by network disconnect) or external (URLs of
// a running deployment; control operations refused).
//
// Both callers describe the deployment the same way (Spec: the wxpushd
// settings and the mock's, built once the harness knows where each part
// reaches the others) and drive it through Deployment, so a fix to how a
// stack starts, stops or is torn down lands once.
package harness

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"

	"github.com/wxpush/wxpush/internal/rediscluster"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/service/wxpushd"
)

// Deployment is one running deployment: wxpushd instances sharing a
// Redis, a mockwx standing in for WeChat, and the control operations.
// Instances are numbered from 0. Every operation is bounded by its
// context; the backends add their own deadline. A control operation a
// backend cannot do returns an error wrapping ErrUnsupported.
type Deployment interface {
	// Kind names the backend: KindInProcess, KindContainers or KindExternal.
	Kind() string
	// Instances is the number of wxpushd instances, up or down.
	Instances() int
	// ServiceURL is instance i's base URL as this process reaches it (it
	// may change across a restart).
	ServiceURL(i int) string
	// Up reports whether instance i is running (not killed or stopped).
	Up(i int) bool
	// Mock is the mock's admin client; Mock().BaseURL() is WeChat's base
	// URL as this process reaches it.
	Mock() *mockwx.Client
	// APIKey is a bearer key the service accepts.
	APIKey() string
	// HandlersURL is the base URL at which the deployment reaches
	// Spec.Handler, and Reach says how that was established; both empty
	// without a handler.
	HandlersURL() string
	Reach() string
	// Redis describes the deployment's Redis (for reports).
	Redis() string

	// Kill stops instance i as kill -9 would: no drain, no hand-back.
	Kill(ctx context.Context, i int) error
	// Stop stops instance i gracefully (SIGTERM).
	Stop(ctx context.Context, i int) error
	// Start starts a stopped or killed instance i again and waits until
	// it answers.
	Start(ctx context.Context, i int) error
	// StopRedis makes Redis unavailable to every instance, keeping its
	// data: it stops, or (in-process with gates) becomes unreachable.
	StopRedis(ctx context.Context) error
	// StartRedis makes it available again and waits until it answers.
	StartRedis(ctx context.Context) error
	// FlushRedis deletes everything the service stored.
	FlushRedis(ctx context.Context) error
	// CutRedis cuts the network between instance i and Redis; the rest of
	// the deployment still reaches both.
	CutRedis(ctx context.Context, i int) error
	// RestoreRedis undoes CutRedis.
	RestoreRedis(ctx context.Context, i int) error

	// Logs returns the last n lines of instance i's log ("" when there is
	// none to read).
	Logs(ctx context.Context, i, n int) string
	// Close tears everything down; errors are reported, not fatal.
	Close(ctx context.Context) error
}

// Backend kinds.
const (
	KindInProcess  = "inprocess"
	KindContainers = "containers"
	KindExternal   = "external"
)

// ErrUnsupported is wrapped by the errors of control operations a backend
// cannot do (every one of them against an external deployment).
var ErrUnsupported = errors.New("operation not supported by this deployment")

// ErrNoDocker is wrapped by the container backend's error when Docker
// does not answer.
var ErrNoDocker = errors.New("docker does not answer")

// Endpoints are where the deployment's parts reach each other; a Spec's
// Configure receives them.
type Endpoints struct {
	// Service is the base URL at which the mock reaches the service (one
	// instance that is up): the prefix of the apps' callback URLs.
	Service string
	// Handlers is the base URL at which the service and the mock reach
	// Spec.Handler ("" without one).
	Handlers string
}

// Spec describes a deployment.
type Spec struct {
	// Instances is the number of wxpushd instances (at least 1).
	Instances int
	// Configure returns the settings of every wxpushd instance and the
	// mock's configuration, given the endpoints. The harness fills in
	// the service's Addr, RedisURL, WeChatBaseURL and Listener, and makes
	// Instance (a prefix) unique per instance and start.
	Configure func(Endpoints) (wxpushd.Config, mockwx.Config)
	// MockSeed seeds the mock's randomness.
	MockSeed int64
	// Handler, when set, is served from this process where the deployment
	// reaches it (Endpoints.Handlers): in-process on loopback, in
	// containers on the app network's gateway address.
	Handler http.Handler
	// Redis (in-process): RedisAuto, RedisMini, RedisProcess,
	// RedisCluster, or the URL of a Redis the deployment does not own. With a URL, set the
	// service's KeyPrefix to a private one: FlushRedis and Close then
	// delete its keys (a shared Redis is never flushed whole).
	Redis string
	// Gates (in-process) puts a TCP gate between each instance and Redis,
	// which CutRedis needs; StopRedis then closes every gate instead of
	// stopping Redis (which a Redis the deployment does not own needs).
	// RedisCluster refuses gates.
	Gates bool
	// ClusterPorts (in-process, RedisCluster) is the loopback port range
	// of the cluster's nodes (each node's bus port is its port + 10000);
	// the zero value takes free ports.
	ClusterPorts rediscluster.PortRange
	// ServiceAddrs (in-process) fixes instance i's listen address to
	// ServiceAddrs[i] ("" or missing: a free loopback port); MockAddr
	// fixes the mock's ("": a free loopback port). A developer's stack
	// (wxload up) uses them; tests leave them empty.
	ServiceAddrs []string
	MockAddr     string
	// LogDir, when set, receives each part's log (wxpushd-I.GEN.log,
	// mockwx.log, redis/); otherwise the logs are kept in memory, bounded.
	LogDir string
	// Owner names who started the deployment ("conformance", "wxload"):
	// container labels and instance names carry it.
	Owner string
	// Logf, when set, receives progress lines (image builds, cleanup).
	Logf func(format string, args ...any)
}

func (s Spec) check() error {
	if s.Instances < 1 {
		return fmt.Errorf("harness: %d instances: need at least 1", s.Instances)
	}
	if s.Configure == nil {
		return errors.New("harness: Spec.Configure is missing")
	}
	if s.Owner == "" {
		return errors.New("harness: Spec.Owner is missing")
	}
	return nil
}

// Progress passes a progress line to Logf, when set.
func (s Spec) Progress(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// Starter starts a deployment of one kind.
type Starter func(ctx context.Context, spec Spec) (Deployment, error)

var (
	startersMu sync.Mutex
	starters   = map[string]Starter{KindInProcess: func(ctx context.Context, spec Spec) (Deployment, error) {
		d, err := StartInProcess(ctx, spec)
		if err != nil {
			return nil, err // not a typed nil inside the interface
		}
		return d, nil
	}}
)

// Register makes a backend available to Start under kind; package
// harness/containers registers KindContainers when it is linked in (a
// blank import), so binaries without it do not link Docker's client.
func Register(kind string, s Starter) {
	startersMu.Lock()
	defer startersMu.Unlock()
	starters[kind] = s
}

// Start starts a deployment of the given kind.
func Start(ctx context.Context, kind string, spec Spec) (Deployment, error) {
	startersMu.Lock()
	s, ok := starters[kind]
	var kinds []string
	for k := range starters {
		kinds = append(kinds, k)
	}
	startersMu.Unlock()
	if !ok {
		sort.Strings(kinds)
		if kind == KindContainers {
			return nil, fmt.Errorf("harness: this binary was built without the container backend (import github.com/wxpush/wxpush/internal/harness/containers); it has %v", kinds)
		}
		return nil, fmt.Errorf("harness: unknown deployment kind %q (have %v)", kind, kinds)
	}
	return s(ctx, spec)
}

// ErrInstance is the error of an instance number out of range.
func ErrInstance(i, n int) error {
	return fmt.Errorf("harness: instance %d out of range (0..%d)", i, n-1)
}
