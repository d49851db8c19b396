package token

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/syncbuf"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/metrics"
)

const appName = "demo"

var modes = []Mode{ModeStable, ModeClassic}

// --- Redis ------------------------------------------------------------------

// testRedis is one Redis a test runs against, with a key prefix no other
// test uses.
type testRedis struct {
	rdb    redis.UniversalClient
	prefix string
	mr     *miniredis.Miniredis // nil for a real Redis
}

// eachRedis runs fn against miniredis and, when REDIS_URL is set, against
// that Redis too.
func eachRedis(t *testing.T, fn func(t *testing.T, r *testRedis)) {
	t.Helper()
	t.Run("miniredis", func(t *testing.T) { fn(t, newMiniredis(t)) })
	if u := os.Getenv("REDIS_URL"); u != "" {
		t.Run("redis", func(t *testing.T) { fn(t, newRealRedis(t, u)) })
	}
}

func newMiniredis(t *testing.T) *testRedis {
	return newMiniredisOpts(t, redis.Options{})
}

// newMiniredisOpts takes client options (the address is filled in).
func newMiniredisOpts(t *testing.T, opts redis.Options) *testRedis {
	mr := miniredis.RunT(t)
	mr.ClockTTL(true) // leases and TTLs run out in real time, as in Redis
	opts.Addr = mr.Addr()
	rdb := redis.NewClient(&opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return &testRedis{rdb: rdb, prefix: testPrefix(t), mr: mr}
}

func newRealRedis(t *testing.T, u string) *testRedis {
	opt, err := redis.ParseURL(u)
	require.NoError(t, err, "REDIS_URL")
	rdb := redis.NewClient(opt)
	r := &testRedis{rdb: rdb, prefix: testPrefix(t)}
	require.NoError(t, rdb.Ping(t.Context()).Err(), "REDIS_URL %s", opt.Addr)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, globEscape(r.prefix)+"*", 100).Iterator()
		for iter.Next(ctx) {
			_ = rdb.Del(ctx, iter.Val()).Err()
		}
		_ = rdb.Close()
	})
	return r
}

// testPrefix is unique per test and run: a real Redis keeps the keys of
// earlier runs (the budget counters live 48 h).
func testPrefix(t *testing.T) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "test:" + t.Name() + ":" + hex.EncodeToString(b[:]) + ":{wxp}:"
}

func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// --- WeChat mock ------------------------------------------------------------

// newMock serves the demo app alone, adjusted by tweak.
func newMock(t *testing.T, tweak func(*mockwx.Config)) *mockwxtest.Server {
	t.Helper()
	cfg := mockwx.Config{Apps: []mockwx.App{mockwx.DemoApp()}, NoDemoApp: true}
	if tweak != nil {
		tweak(&cfg)
	}
	return mockwxtest.NewServer(t, mockwxtest.Options{Config: cfg})
}

func shortLived(seconds int) func(*mockwx.Config) {
	return func(c *mockwx.Config) { c.Apps[0].TokenExpiresIn = seconds }
}

// tokenCalls is how many calls the mock got on the mode's token endpoint.
func tokenCalls(mock *mockwxtest.Server, mode Mode) int64 {
	st := mock.Mock.Stats()
	if mode == ModeClassic {
		return st.TokenCalls
	}
	return st.StableTokenCalls
}

// checkAtMock calls GET /cgi-bin/getcallbackip with tok: nil if the mock
// accepts the token, else its errcode.
func checkAtMock(ctx context.Context, mock *mockwxtest.Server, tok wechat.Secret) error {
	u := mock.URL + wechat.PathGetCallbackIP + "?access_token=" + url.QueryEscape(tok.Reveal())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := mock.HTTP.Client().Do(req)
	if err != nil {
		return errors.New("getcallbackip: request failed")
	}
	defer resp.Body.Close()
	var body wechat.CallbackIPResponse
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return errors.New("getcallbackip: bad body")
	}
	return body.Err(wechat.API("getcallbackip"))
}

func errcodeOf(err error) int {
	var we *wechat.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return 0
}

// --- instances --------------------------------------------------------------

// instance is one simulated wxpushd: its own Manager, metrics and logs, on
// the shared Redis and mock.
type instance struct {
	*Manager
	met  *metrics.Metrics
	logs *syncbuf.Buffer
}

// newInstance returns a manager for the mock's app. Its logs are checked
// for the appsecret when the test ends.
func newInstance(t *testing.T, r *testRedis, mock *mockwxtest.Server, opts Options) *instance {
	t.Helper()
	return newInstanceWithSecret(t, r, mock, wechat.Secret(mock.App.Secret), opts)
}

func newInstanceWithSecret(t *testing.T, r *testRedis, mock *mockwxtest.Server, secret wechat.Secret, opts Options) *instance {
	t.Helper()
	logs := &syncbuf.Buffer{}
	met := metrics.New()
	opts.Prefix = r.prefix
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Metrics = met
	m, err := NewManager(r.rdb, mock.WeChat(), []*apps.App{{Name: appName, AppID: mock.App.AppID, Secret: secret}}, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		assertNoSecret(t, "logs", logs.String(), mock.App.Secret, secret.Reveal())
	})
	return &instance{Manager: m, met: met, logs: logs}
}

func newInstances(t *testing.T, n int, r *testRedis, mock *mockwxtest.Server, opts Options) []*instance {
	t.Helper()
	insts := make([]*instance, n)
	for i := range insts {
		insts[i] = newInstance(t, r, mock, opts)
	}
	return insts
}

func assertNoSecret(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s contain a secret (%d chars)", what, len(s))
		}
	}
}

func counter(t *testing.T, c *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	var d dto.Metric
	require.NoError(t, c.WithLabelValues(labels...).Write(&d))
	return d.GetCounter().GetValue()
}

func gauge(t *testing.T, g *prometheus.GaugeVec, labels ...string) float64 {
	t.Helper()
	var d dto.Metric
	require.NoError(t, g.WithLabelValues(labels...).Write(&d))
	return d.GetGauge().GetValue()
}

// sumRefreshes adds the TokenRefreshes counters of all instances.
func sumRefreshes(t *testing.T, insts []*instance, result string) float64 {
	var n float64
	for _, in := range insts {
		n += counter(t, in.met.TokenRefreshes, appName, result)
	}
	return n
}

// fakeClock is an injected clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// concurrently runs fn(i) in n goroutines released at once and waits.
func concurrently(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// --- tests ------------------------------------------------------------------

func TestTokenFetchesOnceThenCaches(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			eachRedis(t, func(t *testing.T, r *testRedis) {
				ctx := t.Context()
				mock := newMock(t, nil)
				a := newInstance(t, r, mock, Options{Mode: mode})

				tok, err := a.Token(ctx, appName)
				require.NoError(t, err)
				require.NoError(t, checkAtMock(ctx, mock, tok), "token valid at the mock")
				again, err := a.Token(ctx, appName)
				require.NoError(t, err)
				assert.Equal(t, tok, again, "second call")

				// Another instance finds it in Redis.
				b := newInstance(t, r, mock, Options{Mode: mode})
				fromB, err := b.Token(ctx, appName)
				require.NoError(t, err)
				assert.Equal(t, tok, fromB, "other instance")
				assert.EqualValues(t, 1, tokenCalls(mock, mode), "token calls at the mock")
				assert.EqualValues(t, 1, counter(t, a.met.TokenRefreshes, appName, "ok"))
				assert.EqualValues(t, 1, gauge(t, a.met.TokenBudgetUsed, appName))

				st, err := b.State(ctx, appName)
				require.NoError(t, err)
				wantBudget := 10000
				if mode == ModeClassic {
					wantBudget = 1000
				}
				assert.True(t, st.Cached)
				assert.Equal(t, mode, st.Mode)
				assert.Equal(t, 1, st.BudgetUsedToday)
				assert.Equal(t, wantBudget, st.DailyBudget)
				assert.WithinDuration(t, time.Now().Add(2*time.Hour), st.ExpiresAt, time.Minute, "expires_at")
				assert.WithinDuration(t, time.Now(), st.FetchedAt, time.Minute, "fetched_at")
				js, err := json.Marshal(st)
				require.NoError(t, err)
				assertNoSecret(t, "State JSON", string(js), tok.Reveal())
				assertNoSecret(t, "logs", a.logs.String()+b.logs.String(), tok.Reveal())

				// The cached JSON has the documented shape and TTL.
				raw, err := r.rdb.Get(ctx, r.prefix+"token:"+appName).Bytes()
				require.NoError(t, err)
				var c map[string]any
				require.NoError(t, json.Unmarshal(raw, &c))
				assert.Equal(t, tok.Reveal(), c["token"])
				assert.InDelta(t, float64(st.ExpiresAt.UnixMilli()), c["expires_at"], 0)
				assert.InDelta(t, float64(st.FetchedAt.UnixMilli()), c["fetched_at"], 0)
				ttl, err := r.rdb.PTTL(ctx, r.prefix+"token:"+appName).Result()
				require.NoError(t, err)
				assert.InDelta(t, (2 * time.Hour).Seconds(), ttl.Seconds(), 60, "TTL = remaining lifetime")
			})
		})
	}
}

func TestTokenOneCallAcrossInstances(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			eachRedis(t, func(t *testing.T, r *testRedis) {
				ctx := t.Context()
				mock := newMock(t, nil)
				insts := newInstances(t, 4, r, mock, Options{Mode: mode})
				const perInstance = 16
				toks := make([]wechat.Secret, len(insts)*perInstance)
				errs := make([]error, len(toks))
				concurrently(len(toks), func(i int) {
					toks[i], errs[i] = insts[i/perInstance].Token(ctx, appName)
				})
				for i := range toks {
					require.NoError(t, errs[i], "goroutine %d", i)
					assert.Equal(t, toks[0], toks[i], "goroutine %d got another token", i)
				}
				calls := tokenCalls(mock, mode)
				t.Logf("%s: 4 instances x %d goroutines: %d token call(s)", mode, perInstance, calls)
				assert.EqualValues(t, 1, calls, "token calls at the mock")
				assert.EqualValues(t, 1, sumRefreshes(t, insts, "ok"))
				require.NoError(t, checkAtMock(ctx, mock, toks[0]))
			})
		})
	}
}

// TestTokenShortLifetimes drives 4 instances for about 7 s of real time
// with 4 s tokens: the calls stay near one per lifetime, and every token
// handed out is valid at the mock.
func TestTokenShortLifetimes(t *testing.T) {
	t.Parallel()
	const (
		lifetime = 4 * time.Second
		ahead    = time.Second
		run      = 7 * time.Second
	)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			eachRedis(t, func(t *testing.T, r *testRedis) {
				t.Parallel()
				ctx := t.Context()
				mock := newMock(t, shortLived(int(lifetime/time.Second)))
				insts := newInstances(t, 4, r, mock, Options{Mode: mode, RefreshAhead: ahead})
				var (
					mu       sync.Mutex
					failures []string
					seen     = map[wechat.Secret]bool{}
					gets     atomic.Int64
				)
				fail := func(format string, args ...any) {
					mu.Lock()
					defer mu.Unlock()
					if len(failures) < 10 {
						failures = append(failures, fmt.Sprintf(format, args...))
					}
				}
				start := time.Now()
				deadline := start.Add(run)
				concurrently(16, func(i int) {
					in := insts[i%len(insts)]
					for time.Now().Before(deadline) {
						tok, err := in.Token(ctx, appName)
						if err != nil {
							fail("Token: %v", err)
							return
						}
						gets.Add(1)
						if err := checkAtMock(ctx, mock, tok); err != nil {
							fail("token handed out at %v was rejected: %v", time.Since(start).Round(time.Millisecond), err)
						}
						mu.Lock()
						seen[tok] = true
						mu.Unlock()
					}
				})
				elapsed := time.Since(start)
				calls := tokenCalls(mock, mode)
				bound := int64(math.Ceil(float64(elapsed)/float64(lifetime-ahead))) + 1
				floor := int64(math.Ceil(float64(elapsed) / float64(lifetime)))
				t.Logf("%s: %d token calls, %d distinct tokens, %d Token calls in %v (bound %d)",
					mode, calls, len(seen), gets.Load(), elapsed.Round(time.Millisecond), bound)
				assert.Empty(t, failures)
				assert.LessOrEqual(t, calls, bound, "token calls at the mock")
				assert.GreaterOrEqual(t, calls, floor, "tokens were refreshed")
				assert.EqualValues(t, calls, sumRefreshes(t, insts, "ok"))
			})
		})
	}
}

// TestInvalidateStorm: 64 goroutines on 4 instances see 40001 for one
// token at once: one deletion, one refresh, and an old token reported
// afterwards does not wipe the new one.
func TestInvalidateStorm(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			eachRedis(t, func(t *testing.T, r *testRedis) {
				ctx := t.Context()
				mock := newMock(t, nil)
				insts := newInstances(t, 4, r, mock, Options{Mode: mode, MinInterval: 50 * time.Millisecond})
				old, err := insts[0].Token(ctx, appName)
				require.NoError(t, err)
				for _, in := range insts { // every instance holds a local copy
					got, err := in.Token(ctx, appName)
					require.NoError(t, err)
					require.Equal(t, old, got)
				}

				const perInstance = 16
				n := len(insts) * perInstance
				var deleted atomic.Int64
				concurrently(n, func(i int) {
					ok, err := insts[i/perInstance].Invalidate(ctx, appName, old)
					assert.NoError(t, err)
					if ok {
						deleted.Add(1)
					}
				})
				assert.EqualValues(t, 1, deleted.Load(), "invalidations that deleted")

				toks := make([]wechat.Secret, n)
				errs := make([]error, n)
				concurrently(n, func(i int) { toks[i], errs[i] = insts[i/perInstance].Token(ctx, appName) })
				for i := range toks {
					require.NoError(t, errs[i], "goroutine %d", i)
					require.Equal(t, toks[0], toks[i], "goroutine %d", i)
				}
				fresh := toks[0]
				assert.NotEqual(t, old, fresh, "a new token after invalidation")
				require.NoError(t, checkAtMock(ctx, mock, fresh))
				// One refresh: classic 1 call; stable 2, because stable_token
				// hands the invalidated token out again and the manager forces
				// one refresh, which revokes it.
				wantCalls := int64(2)
				if mode == ModeStable {
					wantCalls = 3
					assert.Equal(t, wechat.CodeInvalidCredential, errcodeOf(checkAtMock(ctx, mock, old)), "force-refreshed token revoked")
				}
				calls := tokenCalls(mock, mode)
				t.Logf("%s: invalidate storm of %d goroutines: %d deletion, %d token calls in all", mode, n, deleted.Load(), calls)
				assert.Equal(t, wantCalls, calls, "token calls at the mock")

				// A late 40001 for the old token: stale, the new one stays.
				ok, err := insts[3].Invalidate(ctx, appName, old)
				require.NoError(t, err)
				assert.False(t, ok, "late invalidation of the old token")
				st, err := insts[3].State(ctx, appName)
				require.NoError(t, err)
				assert.True(t, st.Cached)
				got, err := insts[3].Token(ctx, appName)
				require.NoError(t, err)
				assert.Equal(t, fresh, got)

				var del, stale float64
				for _, in := range insts {
					del += counter(t, in.met.TokenInvalid, appName, "deleted")
					stale += counter(t, in.met.TokenInvalid, appName, "stale")
				}
				assert.EqualValues(t, 1, del, "TokenInvalid deleted")
				assert.EqualValues(t, n, stale, "TokenInvalid stale")
				for _, in := range insts {
					assertNoSecret(t, "logs", in.logs.String(), old.Reveal(), fresh.Reveal())
				}
			})
		})
	}
}

// TestSendStormNoRefreshLoop: template sends answer 40001 for 600 ms while
// 16 senders on 4 instances invalidate and retry without pause: the token
// calls stay bounded by MinInterval, and sends succeed once it is over.
func TestSendStormNoRefreshLoop(t *testing.T) {
	t.Parallel()
	const (
		storm       = 600 * time.Millisecond
		minInterval = 150 * time.Millisecond
		run         = 1500 * time.Millisecond
	)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			eachRedis(t, func(t *testing.T, r *testRedis) {
				ctx := t.Context()
				mock := newMock(t, nil)
				insts := newInstances(t, 4, r, mock, Options{Mode: mode, MinInterval: minInterval})
				_, err := insts[0].Token(ctx, appName)
				require.NoError(t, err)
				_, err = mock.Mock.Faults().Add(mockwx.Rule{Endpoint: mockwx.EndpointTemplateSend, ErrCode: wechat.CodeInvalidCredential, ForMS: int(storm / time.Millisecond)})
				require.NoError(t, err)

				wc := mock.WeChat()
				msg := &wechat.TemplateMessage{ToUser: "oTokenStormUser0001", TemplateID: "notice",
					Data: map[string]wechat.DataItem{"keyword1": {Value: "storm"}, "keyword2": {Value: "test"}}}
				var invalid, sent atomic.Int64
				lastOK := make([]bool, 16)
				deadline := time.Now().Add(run)
				concurrently(16, func(i int) {
					in := insts[i%len(insts)]
					for time.Now().Before(deadline) {
						tok, err := in.Token(ctx, appName)
						if !assert.NoError(t, err) {
							return
						}
						_, err = wc.SendTemplate(ctx, tok, msg)
						lastOK[i] = err == nil
						switch {
						case err == nil:
							sent.Add(1)
						case wechat.TokenInvalid(err):
							invalid.Add(1)
							_, err := in.Invalidate(ctx, appName, tok)
							assert.NoError(t, err)
						default:
							t.Errorf("send: %v", err)
							return
						}
					}
				})
				perRefresh := int64(1)
				if mode == ModeStable {
					perRefresh = 2 // the invalidated token comes back once, then a force refresh
				}
				bound := 1 + perRefresh*(int64(math.Ceil(float64(storm)/float64(minInterval)))+2)
				calls := tokenCalls(mock, mode)
				t.Logf("%s: %d sends answered 40001, %d sent, %d token calls (bound %d)", mode, invalid.Load(), sent.Load(), calls, bound)
				// The storm must have been felt; how many sends it caught
				// depends on the machine's load (senders wait for the
				// refresh), so only its presence is a precondition.
				assert.Positive(t, invalid.Load(), "the storm answered 40001")
				assert.LessOrEqual(t, calls, bound, "token calls at the mock")
				assert.GreaterOrEqual(t, calls, int64(2), "the storm caused refreshes")
				for i, ok := range lastOK {
					assert.True(t, ok, "sender %d: last send after the storm", i)
				}
			})
		})
	}
}

func TestDailyBudget(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			eachRedis(t, func(t *testing.T, r *testRedis) {
				ctx := t.Context()
				clock := newFakeClock()
				mock := newMock(t, nil)
				opts := Options{Mode: mode, DailyBudget: 2, Now: clock.Now}
				a := newInstance(t, r, mock, opts)
				b := newInstance(t, r, mock, opts)

				// Fetch, invalidate, repeat, until the budget says no.
				var refused error
				for i := range 4 {
					tok, err := a.Token(ctx, appName)
					if err != nil {
						refused = err
						break
					}
					ok, err := a.Invalidate(ctx, appName, tok)
					require.NoError(t, err)
					require.True(t, ok, "invalidation %d", i)
					clock.Advance(2 * time.Second) // past MinInterval
				}
				require.ErrorIs(t, refused, ErrBudgetExhausted)
				assert.Contains(t, refused.Error(), "raise the daily budget", "the error says what to do")
				assert.Contains(t, refused.Error(), "daily reset")
				assert.EqualValues(t, 2, tokenCalls(mock, mode), "token calls at the mock")
				assert.EqualValues(t, 1, counter(t, a.met.TokenRefreshes, appName, "budget_refused"))
				assert.EqualValues(t, 2, counter(t, a.met.TokenRefreshes, appName, "ok"))
				assert.EqualValues(t, 2, gauge(t, a.met.TokenBudgetUsed, appName))
				assert.EqualValues(t, 2, gauge(t, a.met.TokenBudget, appName), "the configured budget is exported")

				// Right after a refusal the instance answers without Redis.
				_, err := a.Token(ctx, appName)
				require.ErrorIs(t, err, ErrBudgetExhausted)
				assert.EqualValues(t, 1, counter(t, a.met.TokenRefreshes, appName, "budget_refused"))

				// The budget is shared: another instance is refused too.
				clock.Advance(2 * time.Second) // past MinInterval after the last call
				_, err = b.Token(ctx, appName)
				require.ErrorIs(t, err, ErrBudgetExhausted)
				assert.EqualValues(t, 2, tokenCalls(mock, mode))
				st, err := b.State(ctx, appName)
				require.NoError(t, err)
				assert.Equal(t, 2, st.BudgetUsedToday)
				assert.Equal(t, 2, st.DailyBudget)
				assert.False(t, st.Cached)

				// A new Asia/Shanghai day brings a new budget.
				clock.Advance(24 * time.Hour)
				tok, err := b.Token(ctx, appName)
				require.NoError(t, err)
				require.NoError(t, checkAtMock(ctx, mock, tok))
				st, err = b.State(ctx, appName)
				require.NoError(t, err)
				assert.GreaterOrEqual(t, st.BudgetUsedToday, 1)
			})
		})
	}
}

func TestLockHolderDies(t *testing.T) {
	t.Parallel()
	eachRedis(t, func(t *testing.T, r *testRedis) {
		ctx := t.Context()
		mock := newMock(t, nil)
		a := newInstance(t, r, mock, Options{})
		lockKey := r.prefix + "tokenlock:" + appName
		const lease = 300 * time.Millisecond
		require.NoError(t, r.rdb.Set(ctx, lockKey, "a-dead-instance", lease).Err())

		start := time.Now()
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		tok, err := a.Token(tctx, appName)
		waited := time.Since(start)
		require.NoError(t, err)
		require.NoError(t, checkAtMock(ctx, mock, tok))
		assert.GreaterOrEqual(t, waited, lease-20*time.Millisecond, "fetched before the dead holder's lease ran out")
		assert.EqualValues(t, 1, tokenCalls(mock, ModeStable))
		n, err := r.rdb.Exists(ctx, lockKey).Result()
		require.NoError(t, err)
		assert.Zero(t, n, "lock released")
	})
}

// TestLeaderContextEnds: the caller whose refresh the others share goes
// away; the others still get a token.
func TestLeaderContextEnds(t *testing.T) {
	t.Parallel()
	eachRedis(t, func(t *testing.T, r *testRedis) {
		ctx := t.Context()
		mock := newMock(t, nil)
		a := newInstance(t, r, mock, Options{})
		// A held lock keeps the refresh waiting for a while.
		require.NoError(t, r.rdb.Set(ctx, r.prefix+"tokenlock:"+appName, "someone-else", 400*time.Millisecond).Err())

		leaderCtx, cancelLeader := context.WithCancel(ctx)
		var leaderErr, followerErr error
		var followerTok wechat.Secret
		var wg sync.WaitGroup
		wg.Go(func() { _, leaderErr = a.Token(leaderCtx, appName) })
		time.Sleep(20 * time.Millisecond)
		wg.Go(func() { followerTok, followerErr = a.Token(ctx, appName) })
		time.Sleep(50 * time.Millisecond)
		cancelLeader()
		wg.Wait()
		require.ErrorIs(t, leaderErr, context.Canceled)
		require.NoError(t, followerErr)
		require.NoError(t, checkAtMock(ctx, mock, followerTok))
		assert.EqualValues(t, 1, tokenCalls(mock, ModeStable))
	})
}

func TestMinIntervalAfterInvalidation(t *testing.T) {
	t.Parallel()
	eachRedis(t, func(t *testing.T, r *testRedis) {
		ctx := t.Context()
		clock := newFakeClock()
		mock := newMock(t, nil)
		const minInterval = 10 * time.Second
		a := newInstance(t, r, mock, Options{Mode: ModeClassic, MinInterval: minInterval, Now: clock.Now})
		b := newInstance(t, r, mock, Options{Mode: ModeClassic, MinInterval: minInterval, Now: clock.Now})
		t0 := clock.Now()
		old, err := a.Token(ctx, appName)
		require.NoError(t, err)
		ok, err := a.Invalidate(ctx, appName, old)
		require.NoError(t, err)
		require.True(t, ok)

		// Before MinInterval has passed, no instance calls WeChat: Token
		// waits, bounded by its context.
		for _, step := range []time.Duration{0, minInterval - time.Second} {
			clock.Advance(step)
			for name, in := range map[string]*instance{"a": a, "b": b} {
				wctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
				_, err := in.Token(wctx, appName)
				cancel()
				require.ErrorIs(t, err, context.DeadlineExceeded, "instance %s at t0+%v", name, clock.Now().Sub(t0))
			}
			assert.EqualValues(t, 1, tokenCalls(mock, ModeClassic), "token calls at t0+%v", clock.Now().Sub(t0))
		}

		// A waiter is released once the clock passes t0+MinInterval.
		done := make(chan wechat.Secret, 1)
		go func() {
			tok, err := b.Token(ctx, appName)
			assert.NoError(t, err)
			done <- tok
		}()
		clock.Advance(time.Second)
		var fresh wechat.Secret
		select {
		case fresh = <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Token still waiting after MinInterval")
		}
		assert.NotEqual(t, old, fresh)
		assert.EqualValues(t, 2, tokenCalls(mock, ModeClassic))
		st, err := a.State(ctx, appName)
		require.NoError(t, err)
		assert.False(t, st.FetchedAt.Before(t0.Add(minInterval).Truncate(time.Millisecond)),
			"second fetch at %v, first at %v", st.FetchedAt, t0)
	})
}

func TestMinIntervalRealClock(t *testing.T) {
	t.Parallel()
	eachRedis(t, func(t *testing.T, r *testRedis) {
		ctx := t.Context()
		mock := newMock(t, nil)
		const minInterval = 200 * time.Millisecond
		a := newInstance(t, r, mock, Options{Mode: ModeClassic, MinInterval: minInterval})
		var fetched []time.Time
		tok, err := a.Token(ctx, appName)
		require.NoError(t, err)
		for range 3 {
			st, err := a.State(ctx, appName)
			require.NoError(t, err)
			fetched = append(fetched, st.FetchedAt)
			_, err = a.Invalidate(ctx, appName, tok)
			require.NoError(t, err)
			tok, err = a.Token(ctx, appName)
			require.NoError(t, err)
		}
		assert.EqualValues(t, 4, tokenCalls(mock, ModeClassic))
		for i := 1; i < len(fetched); i++ {
			assert.GreaterOrEqual(t, fetched[i].Sub(fetched[i-1]), minInterval, "fetch %d came %v after fetch %d", i, fetched[i].Sub(fetched[i-1]), i-1)
		}
	})
}

// TestLocalCopyRevalidated: an instance's in-memory copy is checked against
// Redis after at most a second, and dropped on Invalidate.
func TestLocalCopyRevalidated(t *testing.T) {
	t.Parallel()
	eachRedis(t, func(t *testing.T, r *testRedis) {
		ctx := t.Context()
		clock := newFakeClock()
		mock := newMock(t, nil)
		opts := Options{Mode: ModeClassic, MinInterval: 100 * time.Millisecond, Now: clock.Now}
		a, b := newInstance(t, r, mock, opts), newInstance(t, r, mock, opts)
		old, err := a.Token(ctx, appName)
		require.NoError(t, err)
		got, err := b.Token(ctx, appName)
		require.NoError(t, err)
		require.Equal(t, old, got)

		_, err = a.Invalidate(ctx, appName, old)
		require.NoError(t, err)
		clock.Advance(100 * time.Millisecond)
		fresh, err := a.Token(ctx, appName)
		require.NoError(t, err)
		require.NotEqual(t, old, fresh)

		got, err = b.Token(ctx, appName)
		require.NoError(t, err)
		assert.Equal(t, old, got, "b trusts its copy for up to a second")
		clock.Advance(time.Second)
		got, err = b.Token(ctx, appName)
		require.NoError(t, err)
		assert.Equal(t, fresh, got, "b re-read Redis")

		// Invalidate drops the local copy.
		ok, err := b.Invalidate(ctx, appName, fresh)
		require.NoError(t, err)
		assert.True(t, ok)
		assert.Nil(t, b.apps[appName].local.Load(), "local copy dropped")
		assert.EqualValues(t, 2, tokenCalls(mock, ModeClassic))
	})
}

func TestCorruptCacheIsRefetched(t *testing.T) {
	t.Parallel()
	eachRedis(t, func(t *testing.T, r *testRedis) {
		ctx := t.Context()
		mock := newMock(t, nil)
		a := newInstance(t, r, mock, Options{})
		require.NoError(t, r.rdb.Set(ctx, r.prefix+"token:"+appName, "{not json", time.Hour).Err())
		tok, err := a.Token(ctx, appName)
		require.NoError(t, err)
		require.NoError(t, checkAtMock(ctx, mock, tok))
		ok, err := a.Invalidate(ctx, appName, "86_not-the-cached-token")
		require.NoError(t, err)
		assert.False(t, ok)
	})
}

// TestStoreKeepsNewerToken: a refresher whose lease ran out does not
// overwrite the token a later refresher stored.
func TestStoreKeepsNewerToken(t *testing.T) {
	t.Parallel()
	eachRedis(t, func(t *testing.T, r *testRedis) {
		ctx := t.Context()
		mock := newMock(t, nil)
		a := newInstance(t, r, mock, Options{})
		now := time.Now()
		newer := entry{token: "86_newer", expiresAt: now.Add(time.Hour), fetchedAt: now}
		older := entry{token: "86_older", expiresAt: now.Add(time.Hour), fetchedAt: now.Add(-time.Second)}
		st := a.apps[appName]
		require.NoError(t, a.store(ctx, st, newer))
		require.NoError(t, a.store(ctx, st, older))
		e, ok, err := a.readToken(ctx, st)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, newer.token, e.token)
	})
}

func TestTokenErrors(t *testing.T) {
	t.Parallel()
	// A Redis that is down fails at once instead of after go-redis's retries.
	failFast := redis.Options{MaxRetries: -1, DialerRetries: 1}
	t.Run("wrong secret", func(t *testing.T) {
		for _, mode := range modes {
			t.Run(string(mode), func(t *testing.T) {
				eachRedis(t, func(t *testing.T, r *testRedis) {
					ctx := t.Context()
					mock := newMock(t, nil)
					const wrong = "0123456789abcdef0123456789abcdef"
					a := newInstanceWithSecret(t, r, mock, wrong, Options{Mode: mode})
					_, err := a.Token(ctx, appName)
					require.Error(t, err)
					var we *wechat.Error
					require.ErrorAs(t, err, &we)
					assert.Equal(t, wechat.CodeInvalidAppSecret, we.Code)
					assert.Equal(t, wechat.ClassPermanentApp, wechat.Classify(err))
					assertNoSecret(t, "error", err.Error(), wrong, mock.App.Secret)
					assertNoSecret(t, "logs", a.logs.String(), wrong, mock.App.Secret)
					assert.EqualValues(t, 1, counter(t, a.met.TokenRefreshes, appName, "error"))
				})
			})
		}
	})
	t.Run("wechat busy", func(t *testing.T) {
		for _, mode := range modes {
			t.Run(string(mode), func(t *testing.T) {
				eachRedis(t, func(t *testing.T, r *testRedis) {
					ctx := t.Context()
					clock := newFakeClock()
					mock := newMock(t, nil)
					_, err := mock.Mock.Faults().Add(mockwx.Rule{Endpoint: mockwx.EndpointAny, ErrCode: wechat.CodeSystemBusy, Times: 1})
					require.NoError(t, err)
					a := newInstance(t, r, mock, Options{Mode: mode, Now: clock.Now})
					_, err = a.Token(ctx, appName)
					require.Error(t, err)
					assert.Equal(t, wechat.CodeSystemBusy, errcodeOf(err))
					assert.Equal(t, wechat.ClassRetry, wechat.Classify(err))
					clock.Advance(2 * time.Second)
					tok, err := a.Token(ctx, appName)
					require.NoError(t, err)
					require.NoError(t, checkAtMock(ctx, mock, tok))
					assert.EqualValues(t, 2, tokenCalls(mock, mode))
				})
			})
		}
	})
	t.Run("transport error", func(t *testing.T) {
		eachRedis(t, func(t *testing.T, r *testRedis) {
			ctx := t.Context()
			mock := newMock(t, nil)
			_, err := mock.Mock.Faults().Add(mockwx.Rule{Endpoint: mockwx.EndpointStableToken, Fault: mockwx.FaultReset})
			require.NoError(t, err)
			a := newInstance(t, r, mock, Options{})
			_, err = a.Token(ctx, appName)
			require.Error(t, err)
			var ce *wechat.CallError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, wechat.ClassRetry, wechat.Classify(err))
			assertNoSecret(t, "error", err.Error(), mock.App.Secret)
		})
	})
	t.Run("redis down", func(t *testing.T) {
		for _, mode := range modes {
			t.Run(string(mode), func(t *testing.T) {
				ctx := t.Context()
				r := newMiniredisOpts(t, failFast)
				mock := newMock(t, nil)
				a := newInstance(t, r, mock, Options{Mode: mode})
				r.mr.Close()
				tok, err := a.Token(ctx, appName)
				require.Error(t, err)
				assert.Empty(t, tok)
				assert.Equal(t, wechat.ClassRetry, wechat.Classify(err), "callers treat it as transient")
				assertNoSecret(t, "error", err.Error(), mock.App.Secret)
				_, err = a.Invalidate(ctx, appName, "86_some-token")
				require.Error(t, err)
				assertNoSecret(t, "error", err.Error(), "86_some-token")
				_, err = a.State(ctx, appName)
				require.Error(t, err)
				assert.Zero(t, tokenCalls(mock, mode), "no token call without Redis")
			})
		}
	})
	t.Run("redis down after fetch", func(t *testing.T) {
		ctx := t.Context()
		r := newMiniredisOpts(t, failFast)
		mock := newMock(t, nil)
		clock := newFakeClock()
		a := newInstance(t, r, mock, Options{Now: clock.Now})
		tok, err := a.Token(ctx, appName)
		require.NoError(t, err)
		r.mr.Close()
		clock.Advance(2 * time.Second) // past the local copy's trust
		_, err = a.Token(ctx, appName)
		require.Error(t, err)
		assertNoSecret(t, "error", err.Error(), tok.Reveal(), mock.App.Secret)
		_, err = a.Invalidate(ctx, appName, tok)
		require.Error(t, err)
		assertNoSecret(t, "error", err.Error(), tok.Reveal())
		assertNoSecret(t, "logs", a.logs.String(), tok.Reveal())
	})
	t.Run("unknown app", func(t *testing.T) {
		ctx := t.Context()
		r := newMiniredis(t)
		a := newInstance(t, r, newMock(t, nil), Options{})
		_, err := a.Token(ctx, "nope")
		assert.ErrorIs(t, err, ErrUnknownApp)
		_, err = a.Invalidate(ctx, "nope", "x")
		assert.ErrorIs(t, err, ErrUnknownApp)
		_, err = a.State(ctx, "nope")
		assert.ErrorIs(t, err, ErrUnknownApp)
	})
}

func TestNewManagerValidates(t *testing.T) {
	t.Parallel()
	r := newMiniredis(t)
	wc, err := wechat.NewClient("http://127.0.0.1:1", nil)
	require.NoError(t, err)
	good := &apps.App{Name: "a", AppID: "wx0123456789", Secret: "s3cr3t-value-0123456789"}
	tests := []struct {
		name string
		rdb  redis.UniversalClient
		wc   *wechat.Client
		apps []*apps.App
		opts Options
		want string // substring of the error; "" means no error
	}{
		{name: "ok", rdb: r.rdb, wc: wc, apps: []*apps.App{good}},
		{name: "nil redis", wc: wc, apps: []*apps.App{good}, want: "redis"},
		{name: "nil wechat", rdb: r.rdb, apps: []*apps.App{good}, want: "wechat"},
		{name: "bad mode", rdb: r.rdb, wc: wc, apps: []*apps.App{good}, opts: Options{Mode: "both"}, want: "mode"},
		{name: "negative", rdb: r.rdb, wc: wc, apps: []*apps.App{good}, opts: Options{MinInterval: -1}, want: "negative"},
		{name: "no name", rdb: r.rdb, wc: wc, apps: []*apps.App{{AppID: "wx1", Secret: "s3cr3t-value-0123456789"}}, want: "empty name"},
		{name: "no appid", rdb: r.rdb, wc: wc, apps: []*apps.App{{Name: "a", Secret: "s3cr3t-value-0123456789"}}, want: "empty appid"},
		{name: "no secret", rdb: r.rdb, wc: wc, apps: []*apps.App{{Name: "a", AppID: "wx1"}}, want: "empty secret"},
		{name: "twice", rdb: r.rdb, wc: wc, apps: []*apps.App{good, good}, want: "twice"},
		{name: "bad app mode", rdb: r.rdb, wc: wc, apps: []*apps.App{{Name: "a", AppID: "wx1", Secret: "s3cr3t-value-0123456789", TokenMode: "fast"}}, want: "mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewManager(tt.rdb, tt.wc, tt.apps, tt.opts)
			if tt.want == "" {
				require.NoError(t, err)
				assert.Equal(t, ModeStable, m.opts.Mode)
				for _, a := range m.apps {
					assert.Equal(t, defaultBudgetStable, a.budget)
					assert.Equal(t, ModeStable, a.Mode)
				}
				assert.Equal(t, defaultMinInterval, m.opts.MinInterval)
				assert.Equal(t, defaultLockLease, m.opts.LockLease)
				return
			}
			require.ErrorContains(t, err, tt.want)
			assertNoSecret(t, "error", err.Error(), string(good.Secret))
		})
	}
}

func TestRefreshAheadDefault(t *testing.T) {
	m := &Manager{}
	now := time.Now()
	tests := []struct {
		lifetime time.Duration
		want     time.Duration
	}{
		{7200 * time.Second, 5 * time.Minute},
		{600 * time.Second, 150 * time.Second},
		{4 * time.Second, time.Second},
	}
	for _, tt := range tests {
		e := entry{fetchedAt: now, expiresAt: now.Add(tt.lifetime)}
		assert.Equal(t, tt.want, m.ahead(e), "lifetime %v", tt.lifetime)
	}
	m.opts.RefreshAhead = 10 * time.Second
	assert.Equal(t, 10*time.Second, m.ahead(entry{fetchedAt: now, expiresAt: now.Add(time.Hour)}))
	assert.Equal(t, 5*time.Second, m.ahead(entry{fetchedAt: now, expiresAt: now.Add(10 * time.Second)}), "capped at half the lifetime")
}

// TestRefreshFailureServesValidToken: while the cached token still has
// half its refresh-ahead window left, a failed refresh hands it out; after
// that the error comes through.
func TestRefreshFailureServesValidToken(t *testing.T) {
	t.Parallel()
	eachRedis(t, func(t *testing.T, r *testRedis) {
		ctx := t.Context()
		clock := newFakeClock()
		mock := newMock(t, nil)
		a := newInstance(t, r, mock, Options{Mode: ModeClassic, Now: clock.Now})
		tok, err := a.Token(ctx, appName)
		require.NoError(t, err)
		_, err = mock.Mock.Faults().Add(mockwx.Rule{Endpoint: mockwx.EndpointToken, ErrCode: wechat.CodeSystemBusy})
		require.NoError(t, err)

		clock.Advance(7200*time.Second - 200*time.Second) // 200 s left: due (5 min ahead), still usable
		got, err := a.Token(ctx, appName)
		require.NoError(t, err)
		assert.Equal(t, tok, got)
		assert.EqualValues(t, 2, tokenCalls(mock, ModeClassic), "a refresh was tried")
		assert.EqualValues(t, 1, counter(t, a.met.TokenRefreshes, appName, "error"))

		clock.Advance(100 * time.Second) // 100 s left: too little to hand out
		_, err = a.Token(ctx, appName)
		require.Error(t, err)
		assert.Equal(t, wechat.CodeSystemBusy, errcodeOf(err))
		assert.EqualValues(t, 3, tokenCalls(mock, ModeClassic))
	})
}

// TestPerAppMode: an app's own mode overrides the manager's, with the
// budget default of its mode.
func TestPerAppMode(t *testing.T) {
	r := newMiniredis(t)
	wc, err := wechat.NewClient("http://127.0.0.1:1", nil)
	require.NoError(t, err)
	met := metrics.New()
	m, err := NewManager(r.rdb, wc, []*apps.App{
		{Name: "a", AppID: "wx1", Secret: "s3cr3t-value-0123456789"},
		{Name: "b", AppID: "wx2", Secret: "s3cr3t-value-0123456789", TokenMode: string(ModeClassic)},
	}, Options{Mode: ModeStable, Metrics: met})
	require.NoError(t, err)
	sa, err := m.State(t.Context(), "a")
	require.NoError(t, err)
	sb, err := m.State(t.Context(), "b")
	require.NoError(t, err)
	assert.Equal(t, ModeStable, sa.Mode)
	assert.Equal(t, defaultBudgetStable, sa.DailyBudget)
	assert.Equal(t, ModeClassic, sb.Mode)
	assert.Equal(t, defaultBudgetClassic, sb.DailyBudget)
	// Each app's budget is exported from the start, before any token call.
	assert.EqualValues(t, defaultBudgetStable, gauge(t, met.TokenBudget, "a"))
	assert.EqualValues(t, defaultBudgetClassic, gauge(t, met.TokenBudget, "b"))
}
