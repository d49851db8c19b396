package loadtest

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/harness"
	"github.com/wxpush/wxpush/scenarios"
)

func urlPath(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u.Path
}

// get answers the status of a GET (0: no answer).
func get(u string) int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func crashScenario(t *testing.T) scenarios.Scenario {
	t.Helper()
	sc, err := scenarios.Get("crash-recovery")
	require.NoError(t, err)
	return sc.WithDefaults()
}

// TestEmbeddedStack: the in-process stack runs the timeline's control
// operations, applies the scenario's rules and writes its logs.
func TestEmbeddedStack(t *testing.T) {
	sc := crashScenario(t)
	logDir := filepath.Join(t.TempDir(), "logs")
	s, err := startEmbedded(t.Context(), sc, RedisMini, logDir, 1000, nil)
	require.NoError(t, err)
	t.Cleanup(s.Close)

	mode, redis := s.Describe()
	assert.Equal(t, StackEmbedded, mode)
	assert.Equal(t, "miniredis (in-process)", redis)
	require.Len(t, s.ServiceURLs(), 2)
	rules, err := s.Mock().Faults(t.Context())
	require.NoError(t, err)
	assert.Len(t, rules, len(sc.Mock.Rules), "the scenario's rules")
	require.Contains(t, s.MockApps(), "default")
	assert.Equal(t, "/wechat/callback/default", urlPath(t, s.MockApps()["default"].CallbackURL))

	require.NoError(t, s.KillInstance(1))
	assert.Len(t, s.ServiceURLs(), 1, "a killed instance is not attacked")
	require.NoError(t, s.StartInstance(t.Context(), 1))
	assert.Len(t, s.ServiceURLs(), 2)
	require.NoError(t, s.RestartRedis(t.Context(), 10*time.Millisecond))
	for _, u := range s.ServiceURLs() {
		require.Eventually(t, func() bool { return get(u+"/readyz") == http.StatusOK }, 20*time.Second, 50*time.Millisecond, u)
	}
	for _, name := range []string{"mockwx.log", "wxpushd-0.1.log", "wxpushd-1.1.log", "wxpushd-1.2.log"} {
		assert.FileExists(t, filepath.Join(logDir, name))
	}
}

// TestStackRefusals: what cannot run says why and starts nothing.
func TestStackRefusals(t *testing.T) {
	sc := crashScenario(t)
	// A Redis the stack does not run (a private one: the stack's keys
	// have the default prefix).
	given := "redis://" + miniredis.RunT(t).Addr() + "/0"
	t.Run("restart_redis on a given Redis", func(t *testing.T) {
		s, err := startEmbedded(t.Context(), sc, given, t.TempDir(), 1000, nil)
		require.NoError(t, err)
		t.Cleanup(s.Close)
		assert.ErrorContains(t, s.RestartRedis(t.Context(), time.Millisecond), "needs a Redis the stack runs")
	})
	for name, tc := range map[string]struct {
		opts  Options
		usage bool
		want  string
	}{
		"unknown stack":         {Options{Stack: "vm"}, true, `stack "vm"`},
		"stack and service":     {Options{Stack: StackContainers, Services: []string{"http://x"}, MockURL: "http://m"}, true, "--stack starts a stack"},
		"redis with containers": {Options{Stack: StackContainers, RedisURL: given}, true, "--redis applies to the embedded stack"},
		"containers not linked": {Options{Stack: StackContainers}, false, "built without the container backend"},
	} {
		t.Run(name, func(t *testing.T) {
			tc.opts.OutDir, tc.opts.NoSelfCheck = t.TempDir(), true
			_, err := Run(t.Context(), sc, tc.opts)
			require.Error(t, err)
			assert.Equal(t, tc.usage, errors.Is(err, ErrUsage), err.Error())
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	t.Run("remote refuses control", func(t *testing.T) {
		d, err := harness.ConnectExternal([]string{"http://127.0.0.1:1"}, "http://127.0.0.1:1", "", "k")
		require.NoError(t, err)
		r := &deployment{d: d, mode: "remote"}
		assert.ErrorIs(t, r.KillInstance(0), errRemote)
		assert.ErrorIs(t, r.StartInstance(context.Background(), 0), errRemote)
		assert.ErrorIs(t, r.RestartRedis(context.Background(), 0), errRemote)
	})
}
