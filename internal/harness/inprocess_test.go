package harness_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/harness"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/service/wxpushd"
)

const testKey = "harness-test-key-0123456789abcdef"

// testSpec is a small deployment: the demo app, callbacks to the service,
// a handler answering "hello".
func testSpec(instances int) harness.Spec {
	return harness.Spec{
		Instances: instances, Owner: "harness-test", Gates: true, MockSeed: 1,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") }),
		Configure: func(ep harness.Endpoints) (wxpushd.Config, mockwx.Config) {
			app := mockwx.DemoApp()
			app.CallbackURL = ep.Service + "/wechat/callback/default"
			return wxpushd.Config{
					APIKeys: []wechat.Secret{testKey}, Workers: 2, ShutdownTimeout: 2 * time.Second, StoreCheckInterval: 100 * time.Millisecond,
					Apps: []wxpushd.AppConfig{{Name: "default", AppID: app.AppID, Secret: wechat.Secret(app.Secret)}},
				},
				mockwx.Config{NoDemoApp: true, Apps: []mockwx.App{app}}
		},
	}
}

// ready answers whether url's /readyz says 200.
func ready(url string) bool {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 20*time.Second, 50*time.Millisecond, what)
}

// TestInProcess drives every control operation on each kind of Redis and
// checks what the instances answer.
func TestInProcess(t *testing.T) {
	type kind struct {
		name, redis string
	}
	kinds := []kind{{"miniredis", harness.RedisMini}}
	if _, err := exec.LookPath("redis-server"); err == nil {
		kinds = append(kinds, kind{"redis-server", harness.RedisProcess})
	}
	if u := os.Getenv("REDIS_URL"); u != "" {
		kinds = append(kinds, kind{"given URL", u})
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			ctx := t.Context()
			spec := testSpec(2)
			spec.Redis = k.redis
			if k.redis != harness.RedisMini && k.redis != harness.RedisProcess {
				configure := spec.Configure
				spec.Configure = func(ep harness.Endpoints) (wxpushd.Config, mockwx.Config) {
					cfg, m := configure(ep)
					cfg.KeyPrefix = "harness-test:{" + t.Name() + "}:"
					return cfg, m
				}
			}
			d, err := harness.StartInProcess(ctx, spec)
			require.NoError(t, err)
			t.Cleanup(func() { assert.NoError(t, d.Close(context.Background())) })

			assert.Equal(t, harness.KindInProcess, d.Kind())
			assert.Equal(t, testKey, d.APIKey())
			require.Equal(t, 2, d.Instances())
			for i := range 2 {
				assert.True(t, d.Up(i))
				eventually(t, "instance ready", func() bool { return ready(d.ServiceURL(i)) })
			}
			apps, err := d.Mock().Apps(ctx)
			require.NoError(t, err)
			require.Len(t, apps, 1)

			resp, err := http.Get(d.HandlersURL() + "/anything")
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, "hello", string(body))

			require.NoError(t, d.Kill(ctx, 1))
			assert.False(t, d.Up(1))
			assert.False(t, ready(d.ServiceURL(1)), "a killed instance answers")
			assert.Error(t, d.Kill(ctx, 1), "killing a dead instance")
			require.NoError(t, d.Start(ctx, 1))
			assert.True(t, d.Up(1))
			eventually(t, "restarted instance ready", func() bool { return ready(d.ServiceURL(1)) })

			require.NoError(t, d.CutRedis(ctx, 0))
			eventually(t, "cut instance not ready", func() bool { return !ready(d.ServiceURL(0)) })
			assert.True(t, ready(d.ServiceURL(1)), "the other instance lost Redis too")
			require.NoError(t, d.RestoreRedis(ctx, 0))
			eventually(t, "restored instance ready", func() bool { return ready(d.ServiceURL(0)) })

			require.NoError(t, d.StopRedis(ctx))
			eventually(t, "no instance ready without Redis", func() bool { return !ready(d.ServiceURL(0)) && !ready(d.ServiceURL(1)) })
			require.NoError(t, d.StartRedis(ctx))
			eventually(t, "ready again", func() bool { return ready(d.ServiceURL(0)) && ready(d.ServiceURL(1)) })
			require.NoError(t, d.FlushRedis(ctx))

			assert.Error(t, d.Kill(ctx, 2), "an instance out of range")
			require.NoError(t, d.Stop(ctx, 0))
			assert.NotEmpty(t, d.Logs(ctx, 0, 5), "instance 0's log")
		})
	}
}

// TestInProcessWithoutGates: the operations that need gates say so, and
// a Redis the deployment does not own is flushed only of the deployment's
// own keys (the private prefix it gets), never of anyone else's.
func TestInProcessWithoutGates(t *testing.T) {
	mr := miniredis.RunT(t)
	require.NoError(t, mr.Set("wxp:{wxp}:someone-else", "kept"))
	spec := testSpec(1)
	spec.Gates, spec.Redis = false, "redis://"+mr.Addr()+"/0"
	d, err := harness.StartInProcess(t.Context(), spec)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, d.Close(context.Background())) })
	for name, op := range map[string]func(context.Context) error{
		"cut":  func(ctx context.Context) error { return d.CutRedis(ctx, 0) },
		"stop": d.StopRedis,
	} {
		err := op(t.Context())
		assert.True(t, errors.Is(err, harness.ErrUnsupported), "%s: %v", name, err)
	}
	eventually(t, "ready", func() bool { return ready(d.ServiceURL(0)) })
	// The deployment's prefix, from a key of its own; a key planted under
	// it must go, the other deployment's must stay.
	prefix := ""
	for _, k := range mr.Keys() {
		if i := strings.Index(k, "}:"); i > 0 && !strings.HasPrefix(k, "wxp:{wxp}:") {
			prefix = k[:i+2]
		}
	}
	require.NotEmpty(t, prefix, "the deployment wrote no key of its own in %v", mr.Keys())
	require.NoError(t, mr.Set(prefix+"planted", "x"))
	require.NoError(t, d.FlushRedis(t.Context()))
	assert.False(t, mr.Exists(prefix+"planted"), "the flush left the deployment's own key")
	got, err := mr.Get("wxp:{wxp}:someone-else")
	assert.NoError(t, err, "the flush deleted a key outside the deployment's prefix")
	assert.Equal(t, "kept", got)
	eventually(t, "still ready", func() bool { return ready(d.ServiceURL(0)) })
}

// TestStartRefuses: bad specs and unknown kinds change nothing.
func TestStartRefuses(t *testing.T) {
	good := testSpec(1)
	noConfigure := good
	noConfigure.Configure = nil
	noOwner := good
	noOwner.Owner = ""
	badRedis := good
	badRedis.Redis = "127.0.0.1:6379"
	for name, tc := range map[string]struct {
		kind string
		spec harness.Spec
		want string
	}{
		"no instances":   {harness.KindInProcess, testSpec(0), "need at least 1"},
		"no configure":   {harness.KindInProcess, noConfigure, "Configure"},
		"no owner":       {harness.KindInProcess, noOwner, "Owner"},
		"URL w/o scheme": {harness.KindInProcess, badRedis, "use redis://host:6379/0"},
		"unknown kind":   {"vm", good, `unknown deployment kind "vm"`},
		"not linked":     {harness.KindContainers, good, "built without the container backend"},
	} {
		t.Run(name, func(t *testing.T) {
			d, err := harness.Start(t.Context(), tc.kind, tc.spec)
			require.Error(t, err)
			assert.Nil(t, d)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestExternal: an external deployment names URLs and refuses every
// control operation.
func TestExternal(t *testing.T) {
	_, err := harness.ConnectExternal(nil, "http://mock", "", "k")
	require.Error(t, err)
	_, err = harness.ConnectExternal([]string{"http://a"}, " ", "", "k")
	require.Error(t, err)
	d, err := harness.ConnectExternal([]string{" http://a/ ", "", "http://b"}, "http://mock/", "", "k")
	require.NoError(t, err)
	assert.Equal(t, 2, d.Instances())
	assert.Equal(t, "http://a", d.ServiceURL(0))
	assert.Equal(t, "http://b", d.ServiceURL(3))
	assert.Equal(t, "http://mock", d.Mock().BaseURL())
	ctx := t.Context()
	for name, op := range map[string]func() error{
		"kill": func() error { return d.Kill(ctx, 0) }, "stop": func() error { return d.Stop(ctx, 0) },
		"start": func() error { return d.Start(ctx, 0) }, "stop redis": func() error { return d.StopRedis(ctx) },
		"start redis": func() error { return d.StartRedis(ctx) }, "flush": func() error { return d.FlushRedis(ctx) },
		"cut": func() error { return d.CutRedis(ctx, 0) }, "restore": func() error { return d.RestoreRedis(ctx, 0) },
	} {
		assert.ErrorIs(t, op(), harness.ErrUnsupported, name)
	}
	assert.NoError(t, d.Close(ctx))
}

// TestRedisServer: the private redis-server keeps its data across a
// restart (append-only file) and is gone after Stop.
func TestRedisServer(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "redis")
	p, err := harness.StartRedisServer(ctx, dir)
	require.NoError(t, err)
	t.Cleanup(p.Stop)
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	require.NoError(t, rdb.Set(ctx, "k", "v", 0).Err())
	p.Stop()
	assert.Error(t, rdb.Ping(ctx).Err(), "a stopped server answers")
	p.Stop() // twice is fine
	require.NoError(t, p.Start(ctx))
	got, err := rdb.Get(ctx, "k").Result()
	require.NoError(t, err)
	assert.Equal(t, "v", got)
	assert.FileExists(t, filepath.Join(dir, "redis.log"))
}

// TestRedisServerRelativeDir: a dir relative to the working directory
// (wxload's default run directory, runs/NAME-TIME, is one) works:
// redis-server changes to its --dir before it opens its log, so an
// in-process deployment on RedisAuto gets its redis-server there, not a
// fallback to miniredis.
func TestRedisServerRelativeDir(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	t.Chdir(t.TempDir())
	p, err := harness.StartRedisServer(t.Context(), filepath.Join("runs", "x", "redis"))
	require.NoError(t, err)
	t.Cleanup(p.Stop)
	assert.FileExists(t, filepath.Join("runs", "x", "redis", "redis.log"))
}
