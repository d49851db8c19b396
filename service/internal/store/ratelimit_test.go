package store_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service/internal/store"
)

var (
	clientA = []byte("0123456789abcdef0123456789abcdef")
	clientB = []byte("fedcba9876543210fedcba9876543210")
)

// TestAllowRequestPerKey: a key gets its burst at once, then is refused
// with the time to its next slot, while another key is still served; once
// that time has passed the key is served again.
func TestAllowRequestPerKey(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	limits := store.RequestLimits{PerKey: store.RequestLimit{PerSecond: 5, Burst: 3}}
	for i := range 3 {
		d, err := s.AllowRequest(ctx, clientA, limits)
		require.NoError(t, err)
		assert.True(t, d.Allowed, "request %d is within the burst", i)
	}
	d, err := s.AllowRequest(ctx, clientA, limits)
	require.NoError(t, err)
	assert.False(t, d.Allowed, "the burst is used up")
	assert.Equal(t, store.ScopeKey, d.Scope)
	assert.Greater(t, d.RetryAfter, time.Duration(0))
	assert.LessOrEqual(t, d.RetryAfter, 200*time.Millisecond, "one emission interval at most")
	retry := d.RetryAfter

	d, err = s.AllowRequest(ctx, clientB, limits)
	require.NoError(t, err)
	assert.True(t, d.Allowed, "another key has its own budget")

	// A refusal takes nothing: after RetryAfter exactly one more fits.
	time.Sleep(retry + 20*time.Millisecond)
	d, err = s.AllowRequest(ctx, clientA, limits)
	require.NoError(t, err)
	assert.True(t, d.Allowed, "a slot came back")
	d, err = s.AllowRequest(ctx, clientA, limits)
	require.NoError(t, err)
	assert.False(t, d.Allowed, "only one slot came back")
}

// TestAllowRequestGlobal: the global budget is shared by all keys; a
// request refused by it takes nothing from its key's budget.
func TestAllowRequestGlobal(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	limits := store.RequestLimits{
		PerKey: store.RequestLimit{PerSecond: 1, Burst: 2},
		Global: store.RequestLimit{PerSecond: 1, Burst: 3},
	}
	for _, c := range [][]byte{clientA, clientA, clientB} {
		d, err := s.AllowRequest(ctx, c, limits)
		require.NoError(t, err)
		require.True(t, d.Allowed)
	}
	d, err := s.AllowRequest(ctx, clientB, limits)
	require.NoError(t, err)
	assert.False(t, d.Allowed)
	assert.Equal(t, store.ScopeGlobal, d.Scope, "B has room; the service has not")
	assert.InDelta(t, time.Second.Seconds(), d.RetryAfter.Seconds(), 0.2)

	// Without a key (no authentication) only the global limit applies.
	d, err = s.AllowRequest(ctx, nil, store.RequestLimits{PerKey: store.RequestLimit{PerSecond: 1, Burst: 1}})
	require.NoError(t, err)
	assert.True(t, d.Allowed)
	d, err = s.AllowRequest(ctx, nil, store.RequestLimits{PerKey: store.RequestLimit{PerSecond: 1, Burst: 1}})
	require.NoError(t, err)
	assert.True(t, d.Allowed, "no key: no per-key limit")
}

// TestAllowRequestKeysHoldNoAPIKey: the Redis keys name a hash of the
// client, under the store's prefix, and expire.
func TestAllowRequestKeysHoldNoAPIKey(t *testing.T) {
	s, r := newStore(t)
	ctx := t.Context()
	limits := store.RequestLimits{PerKey: store.RequestLimit{PerSecond: 10, Burst: 1}, Global: store.RequestLimit{PerSecond: 100, Burst: 1}}
	_, err := s.AllowRequest(ctx, clientA, limits)
	require.NoError(t, err)
	keys, err := r.Client.Keys(ctx, r.Prefix+"*").Result()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{r.Prefix + "rate:key:30313233343536373839616263646566", r.Prefix + "rate:global"}, keys)
	for _, k := range keys {
		assert.False(t, strings.Contains(k, string(clientA[16:])), "only a prefix of the client hash")
		ttl, err := r.Client.PTTL(ctx, k).Result()
		require.NoError(t, err)
		assert.Greater(t, ttl, time.Duration(0), "%s expires", k)
	}
}

// TestAllowRequestDefaultBurst: without a burst, a limit allows one
// second's worth at once.
func TestAllowRequestDefaultBurst(t *testing.T) {
	s, _ := newStore(t)
	limits := store.RequestLimits{PerKey: store.RequestLimit{PerSecond: 2.5}}
	allowed := 0
	for range 6 {
		d, err := s.AllowRequest(t.Context(), clientA, limits)
		require.NoError(t, err)
		if d.Allowed {
			allowed++
		}
	}
	assert.Equal(t, 3, allowed, "2.5/s rounded up")
}
