package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/loadtest"
)

// TestShardUsage: --shard and --run-id that cannot run are refused with
// exit 2 before anything starts.
func TestShardUsage(t *testing.T) {
	remote := []string{"--service", "http://127.0.0.1:1", "--mock", "http://127.0.0.1:1", "--api-key", "k", "--quiet", "--no-self-check"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "smoke", "--shard", "0/2", "--run-id", "r1"}, "running deployment"},
		{append([]string{"run", "smoke", "--shard", "2/2", "--run-id", "r1"}, remote...), "I must be 0 to 1"},
		{append([]string{"run", "smoke", "--shard", "1of2", "--run-id", "r1"}, remote...), "want I/N"},
		{append([]string{"run", "smoke", "--shard", "0/2"}, remote...), "--shard needs --run-id"},
		{append([]string{"run", "smoke", "--shard", "0/2", "--run-id", "a b"}, remote...), "--run-id"},
		{append([]string{"run", "smoke", "--run-id", "r1"}, remote...), "goes with --shard"},
		{[]string{"merge"}, "name the run directories"},
		{[]string{"merge", filepath.Join(t.TempDir(), "none")}, "is not a run directory"},
	} {
		out := filepath.Join(t.TempDir(), "out")
		code, _, stderr := wxload(t, nil, append(tc.args, "--out", out)...)
		assert.Equal(t, ExitUsage, code, "%q: %s", tc.args, stderr)
		assert.Contains(t, stderr, tc.want, "%q", tc.args)
		assert.NoDirExists(t, out, "%q: nothing ran", tc.args)
	}
}

// TestShardsAndMerge: two shards through the command line, then merge:
// a shard exits 0 although its share fails an expectation on absolute
// figures, the merge passes (exit 0) with every message accounted for,
// and a missing shard is exit 2.
func TestShardsAndMerge(t *testing.T) {
	const apiKey = "shard-test-key-0123456789"
	service, m := startRemote(t, apiKey)
	mock := m.URL
	// accept.requests >= 70 fails for each shard (about 45 requests)
	// and holds for the run (90).
	src := strings.Replace(shortScenario("short-shards",
		"delivery.lost == 0", "delivery.duplicates == 0", "delivery.delivered == delivery.accepted", "accept.requests >= 70"),
		"mock:\n  settings: {callback_delay_ms: 10}\n", "mock:\n  apps: [{name: default, callback_mode: \"off\"}]\n", 1)
	file := writeScenario(t, "short-shards", src)
	env := map[string]string{"WXLOAD_API_KEY": apiKey}
	var dirs []string
	for _, shard := range []string{"0/2", "1/2"} {
		dir := filepath.Join(t.TempDir(), "shard")
		code, stdout, stderr := wxload(t, env, "run", file, "--service", service, "--mock", mock, "--shard", shard, "--run-id", "cli-run-1",
			"--quiet", "--no-self-check", "--out", dir)
		require.Equal(t, ExitPassed, code, "shard %s: stdout:\n%s\nstderr:\n%s", shard, stdout, stderr)
		assert.Contains(t, stdout, "short-shards shard "+shard+" of run cli-run-1 done (its share: FAILED)")
		assert.Contains(t, stdout, "wxload merge")
		dirs = append(dirs, dir)
	}

	out := filepath.Join(t.TempDir(), "merged")
	code, stdout, stderr := wxload(t, nil, "merge", dirs[0], dirs[1], "--mock", mock, "--out", out, "--quiet")
	require.Equal(t, ExitPassed, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stdout, "short-shards PASSED (merged from 2 shards)")
	s, err := loadtest.ReadSummary(out)
	require.NoError(t, err)
	assert.True(t, s.Passed)
	assert.Equal(t, s.Delivery.Accepted, s.Delivery.Delivered)
	assert.Zero(t, s.Delivery.Lost)
	assert.Zero(t, s.Delivery.Duplicates)

	// One shard alone is not the run: exit 2, naming the missing one.
	code, _, stderr = wxload(t, nil, "merge", dirs[0], "--out", filepath.Join(t.TempDir(), "m"), "--quiet")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "shard 1 is missing")
}
