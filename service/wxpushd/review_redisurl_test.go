package wxpushd

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

// TestRedisURLErrorHidesPassword: a Redis URL that has a scheme (so
// redisurl.Check lets it through) but that go-redis cannot parse must not
// come back in New's error with its password: wxpushd prints that error.
func TestRedisURLErrorHidesPassword(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	for _, raw := range []string{
		"redis://:s3cretpw%zz@127.0.0.1:6379/0",   // a bad escape
		"redis://:s3cretpw@127.0.0.1:port/0",      // a bad port
		"redis://:s3cretpw@127.0.0.1:6379/notadb", // a bad database
	} {
		t.Run(raw, func(t *testing.T) {
			cfg := testConfig(mock, redistest.New(t))
			cfg.RedisURL = raw
			s, err := New(t.Context(), cfg, Options{})
			if s != nil {
				t.Skip("New accepted the URL")
			}
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "s3cretpw")
		})
	}
}
