package wxpushd

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

// TestPartitionCountCheckedWhenRedisAnswers: an instance that starts while
// Redis does not answer (here: it refuses every command until a password
// is lifted) acknowledges nothing until it has checked its partition
// count; with the recorded count it then accepts and sends, with another
// it stops with the error it would have given at start.
func TestPartitionCountCheckedWhenRedisAnswers(t *testing.T) {
	for _, recorded := range []string{"2", "4"} {
		t.Run("recorded="+recorded, func(t *testing.T) {
			srv := redistest.NewProcess(t, "--requirepass", "lock-0123456789")
			o, err := redis.ParseURL(srv.URL())
			require.NoError(t, err)
			o.Password = "lock-0123456789"
			admin := redis.NewClient(o)
			t.Cleanup(func() { _ = admin.Close() })

			mock := mockwxtest.NewServer(t, mockwxtest.Options{})
			cfg := testConfig(mock, &redistest.Redis{URL: srv.URL(), Prefix: "wxp:{wxp}:"})
			cfg.Partitions = 2
			s, err := New(t.Context(), cfg, Options{})
			require.NoError(t, err, "Redis not answering is no reason not to start")
			t.Cleanup(s.Close)
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			ran := make(chan error, 1)
			go func() { ran <- s.Run(ctx) }()

			a := api{t: t, base: s.URL(), key: testAPIKey}
			code, body, _ := a.do(http.MethodPost, "/v1/messages", order(openid(1)), nil)
			assert.Equal(t, http.StatusServiceUnavailable, code, "nothing acknowledged before the count is checked: %s", body)

			require.NoError(t, admin.Set(t.Context(), "wxp:{wxp}:partitions", recorded, 0).Err())
			require.NoError(t, admin.ConfigSet(t.Context(), "requirepass", "").Err())
			if recorded == "4" {
				select {
				case err := <-ran:
					require.ErrorIs(t, err, ErrUsage)
					assert.Contains(t, err.Error(), "holds a queue of 4 partitions")
				case <-time.After(15 * time.Second):
					t.Fatal("the instance did not stop on another partition count")
				}
				return
			}
			// Redis answers now, but the check cannot read the count (a key
			// of another type stands in its place): sends still wait.
			require.NoError(t, admin.Del(t.Context(), "wxp:{wxp}:partitions").Err())
			require.NoError(t, admin.HSet(t.Context(), "wxp:{wxp}:partitions", "not", "a count").Err())
			time.Sleep(1500 * time.Millisecond) // the instance retries its check every second
			code, body, _ = a.do(http.MethodPost, "/v1/messages", order(openid(1)), nil)
			assert.Equal(t, http.StatusServiceUnavailable, code, "Redis answers, the count is not checked yet: %s", body)
			require.NoError(t, admin.Del(t.Context(), "wxp:{wxp}:partitions").Err())
			require.NoError(t, admin.Set(t.Context(), "wxp:{wxp}:partitions", recorded, 0).Err())
			var id string
			require.Eventually(t, func() bool {
				code, body, _ := a.do(http.MethodPost, "/v1/messages", order(openid(1)), nil)
				if code == http.StatusAccepted {
					id = string(body)
				}
				return code == http.StatusAccepted
			}, 15*time.Second, 50*time.Millisecond, "sends accepted once Redis answers")
			require.NotEmpty(t, id)
			var acc service.Accepted
			require.NoError(t, json.Unmarshal([]byte(id), &acc))
			a.waitStatus(acc.ID, service.StatusSent, 15*time.Second)
			cancel()
			select {
			case err := <-ran:
				if err != nil && !errors.Is(err, ErrKilled) {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the instance did not stop")
			}
		})
	}
}
