package store_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// TestConsoleSecret: the first call creates a random 32-byte secret, later
// calls and other instances on the same Redis get the same one, another
// prefix gets another, and a malformed stored value is an error that does
// not show it.
func TestConsoleSecret(t *testing.T) {
	r := redistest.New(t)
	ctx := t.Context()
	a := store.New(r.Client, store.Options{Prefix: r.Prefix})
	b := store.New(r.Client, store.Options{Prefix: r.Prefix})

	s1, err := a.ConsoleSecret(ctx)
	require.NoError(t, err)
	require.Len(t, s1, 32)
	assert.NotEqual(t, make([]byte, 32), s1, "random, not zero")
	s2, err := b.ConsoleSecret(ctx)
	require.NoError(t, err)
	assert.Equal(t, s1, s2, "every instance signs with the same secret")
	s3, err := a.ConsoleSecret(ctx)
	require.NoError(t, err)
	assert.Equal(t, s1, s3, "stable")

	ttl, err := r.Client.TTL(ctx, r.Prefix+"console:secret").Result()
	require.NoError(t, err)
	assert.Equal(t, ttl, time.Duration(-1), "no expiry")

	other := store.New(r.Client, store.Options{Prefix: r.Prefix + "other:"})
	s4, err := other.ConsoleSecret(ctx)
	require.NoError(t, err)
	assert.False(t, bytes.Equal(s1, s4), "another deployment has its own secret")

	// A store that lost its data gets a new secret: old sessions end.
	require.NoError(t, r.Client.Del(ctx, r.Prefix+"console:secret").Err())
	s5, err := a.ConsoleSecret(ctx)
	require.NoError(t, err)
	assert.False(t, bytes.Equal(s1, s5))

	const bad = "not-hex-but-secret-looking-value"
	require.NoError(t, r.Client.Set(ctx, r.Prefix+"console:secret", bad, 0).Err())
	_, err = a.ConsoleSecret(ctx)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), bad)
	require.NoError(t, r.Client.Set(ctx, r.Prefix+"console:secret", strings.Repeat("ab", 16), 0).Err())
	_, err = a.ConsoleSecret(ctx)
	assert.Error(t, err, "too short")
}

// TestConsoleSecretConcurrentFirstUse: instances racing to create the
// secret all end up with the one that was stored.
func TestConsoleSecretConcurrentFirstUse(t *testing.T) {
	r := redistest.New(t)
	const n = 8
	got := make(chan []byte, n)
	for range n {
		go func() {
			s, err := store.New(r.Client, store.Options{Prefix: r.Prefix}).ConsoleSecret(t.Context())
			assert.NoError(t, err)
			got <- s
		}()
	}
	first := <-got
	for range n - 1 {
		assert.Equal(t, first, <-got)
	}
}

// TestConsoleSecretUnavailable: a Redis that does not answer is
// ErrUnavailable.
func TestConsoleSecretUnavailable(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := store.New(c, store.Options{}).ConsoleSecret(ctx)
	assert.ErrorIs(t, err, store.ErrUnavailable)
}
