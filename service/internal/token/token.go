// Package token keeps one WeChat access_token per app, shared by every
// wxpushd instance through Redis, so that N instances under any load make
// about one token call per token lifetime and app, never a refresh storm.
//
// WeChat's classic /cgi-bin/token mints a new token on every call and kills
// the previous one about five minutes later: instances that each fetch their
// own token invalidate each other (the "40001 token war"). The Manager
// therefore fetches a token once for all instances and shares it:
//
//   - the token lives in Redis under Prefix+"token:"+name as JSON
//     {token, expires_at, fetched_at} (unix ms) with a TTL equal to its
//     remaining lifetime; each process keeps a copy in memory that it
//     trusts for at most a second before checking Redis again, so the hot
//     path costs no Redis round trip;
//   - a refresh is single-flighted per app inside a process and serialised
//     across processes by a lock (SET Prefix+"tokenlock:"+name owner NX PX
//     lease, released by a compare-and-delete script); the winner re-reads
//     the cache before it calls WeChat, the others poll the cache until the
//     winner has stored the token or the lease has expired;
//   - a daily budget counter (Prefix+"tokenbudget:"+name+":"+yyyymmdd, the
//     Asia/Shanghai day) caps the token calls of all instances together;
//   - Prefix+"tokenfetched:"+name records when WeChat was last called for
//     the app, so that no two calls are closer than MinInterval, even when
//     a storm of 40001 answers invalidates every token as soon as it is
//     fetched: this is the loop guard;
//   - Invalidate deletes the cached token only if the cache still holds the
//     token that failed (compare-and-delete), so a late failure of an old
//     token never wipes its fresh successor. It also records a fingerprint
//     of the bad token (Prefix+"tokeninvalid:"+name): in stable mode,
//     stable_token may hand that same token out again, and the refresh then
//     asks once more with force_refresh.
//
// A token due for refresh that still has half its refresh-ahead window left
// is handed out while another instance refreshes, or when the refresh
// fails; after that, callers wait for the refresh or get its error.
//
// Every key starts with Options.Prefix. Invalidate runs a script over two of
// them, so on Redis Cluster the prefix must carry a hash tag (e.g. "{wxp}").
//
// Neither the appsecret nor an access_token appears in an error or a log
// line of this package.
package token

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/metrics"
)

// Mode selects the WeChat endpoint tokens are fetched from.
type Mode string

// The token endpoints.
const (
	// ModeStable fetches from POST /cgi-bin/stable_token, which returns the
	// same token while it is valid and never disturbs /cgi-bin/token users.
	ModeStable Mode = "stable"
	// ModeClassic fetches from GET /cgi-bin/token, which mints a new token
	// on every call and retires the previous one about 5 minutes later.
	ModeClassic Mode = "classic"
)

// Options configure a Manager. Zero values take the defaults shown.
type Options struct {
	// Prefix starts every Redis key, e.g. "wxp:{wxp}:" (keys: Prefix+"token:"+name,
	// Prefix+"tokenlock:"+name, Prefix+"tokenbudget:"+name+":"+yyyymmdd,
	// Prefix+"tokenfetched:"+name, Prefix+"tokeninvalid:"+name).
	Prefix string
	// Mode is the token endpoint of apps that do not set their own;
	// default ModeStable.
	Mode Mode
	// RefreshAhead: refresh when less than this remains; default
	// min(5 min, lifetime/4), computed per token from expires_in. A value
	// set here is capped at half the token's lifetime.
	RefreshAhead time.Duration
	// LockLease is how long a refresh lock lives if its holder dies;
	// default 15 s. It also bounds one token call.
	LockLease time.Duration
	// DailyBudget is the most token calls per app per day (Asia/Shanghai
	// day) across all instances; default 1000 for classic, 10000 for
	// stable. Beyond it Token returns ErrBudgetExhausted instead of calling
	// WeChat.
	DailyBudget int
	// MinInterval is the least time between two token calls for one app
	// across instances, even after invalidation (the loop guard); default 2 s.
	MinInterval time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Logger receives the manager's logs; nil discards them.
	Logger *slog.Logger
	// Metrics receives TokenRefreshes, TokenBudgetUsed, TokenBudget and
	// TokenInvalid; may be nil.
	Metrics *metrics.Metrics
}

// Errors callers branch on with errors.Is.
var (
	// ErrUnknownApp: no app of that name was given to NewManager.
	ErrUnknownApp = errors.New("token: unknown app")
	// ErrBudgetExhausted: the app's daily token budget is used up, so the
	// manager refuses to call WeChat.
	ErrBudgetExhausted = errors.New("token: daily token call budget exhausted: wait for the daily reset at midnight Asia/Shanghai or raise the daily budget")
)

// Defaults and internal timings.
const (
	defaultLockLease     = 15 * time.Second
	defaultMinInterval   = 2 * time.Second
	defaultBudgetClassic = 1000
	defaultBudgetStable  = 10000
	maxDefaultAhead      = 5 * time.Minute
	// localTrust is how long a process serves its in-memory copy before it
	// checks the shared cache again (another instance may have invalidated
	// or replaced the token).
	localTrust = time.Second
	// pollMin and pollMax bound the pause between two looks at the cache
	// while another instance refreshes.
	pollMin = 25 * time.Millisecond
	pollMax = 50 * time.Millisecond
	// unlockTimeout bounds the lock release, which runs even when the
	// caller's context has ended.
	unlockTimeout = 2 * time.Second
	budgetTTL     = 48 * time.Hour
	fetchedTTL    = 24 * time.Hour
	// invalidTTL keeps the fingerprint of the last invalidated token longer
	// than any token lives (7200 s).
	invalidTTL = 3 * time.Hour
)

// Manager fetches, caches and shares access tokens. It is safe for
// concurrent use and starts no goroutines.
type Manager struct {
	rdb     redis.UniversalClient
	wc      *wechat.Client
	apps    map[string]*appState
	opts    Options // defaults applied
	now     func() time.Time
	log     *slog.Logger
	met     *metrics.Metrics
	flights singleflight.Group
	scripts scripts
}

// appState is one app: its keys and this process's copy of its token.
type appState struct {
	Name                                                    string        // the name callers use; part of the Redis keys
	AppID                                                   string        // WeChat's appid
	Secret                                                  wechat.Secret // the appsecret
	Mode                                                    Mode          // the app's token endpoint
	tokenKey, lockKey, fetchedKey, invalidKey, budgetPrefix string
	budget                                                  int // daily token calls across instances
	local                                                   atomic.Pointer[localToken]
	// refusedUntil (unix ns) is set when the budget refused a call: until
	// then this process answers ErrBudgetExhausted without asking Redis.
	refusedUntil atomic.Int64
}

// entry is a cached token.
type entry struct {
	token     wechat.Secret
	expiresAt time.Time
	fetchedAt time.Time // when the call that fetched it started
}

// localToken is the process's copy of the shared entry and when it was last
// seen in Redis.
type localToken struct {
	entry
	checkedAt time.Time
}

// cached is the JSON stored in Redis. Token is a plain string on purpose:
// wechat.Secret would marshal as "[REDACTED]".
type cached struct {
	Token     string `json:"token"`
	ExpiresAt int64  `json:"expires_at"` // unix ms
	FetchedAt int64  `json:"fetched_at"` // unix ms
}

// NewManager returns a manager for the apps of list (their Name, AppID, Secret and
// TokenMode; an empty TokenMode is Options.Mode), sharing tokens through
// rdb and fetching them with wc.
func NewManager(rdb redis.UniversalClient, wc *wechat.Client, list []*apps.App, opts Options) (*Manager, error) {
	if rdb == nil {
		return nil, errors.New("token: nil redis client")
	}
	if wc == nil {
		return nil, errors.New("token: nil wechat client")
	}
	switch opts.Mode {
	case "":
		opts.Mode = ModeStable
	case ModeStable, ModeClassic:
	default:
		return nil, fmt.Errorf("token: mode %q: want %q or %q", opts.Mode, ModeStable, ModeClassic)
	}
	if opts.RefreshAhead < 0 || opts.LockLease < 0 || opts.MinInterval < 0 || opts.DailyBudget < 0 {
		return nil, errors.New("token: RefreshAhead, LockLease, MinInterval and DailyBudget must not be negative")
	}
	if opts.LockLease == 0 {
		opts.LockLease = defaultLockLease
	}
	if opts.MinInterval == 0 {
		opts.MinInterval = defaultMinInterval
	}
	m := &Manager{
		rdb:     rdb,
		wc:      wc,
		apps:    make(map[string]*appState, len(list)),
		opts:    opts,
		now:     opts.Now,
		log:     opts.Logger,
		met:     opts.Metrics,
		scripts: newScripts(),
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	for i, app := range list {
		a := appState{Name: app.Name, AppID: app.AppID, Secret: app.Secret, Mode: Mode(app.TokenMode)}
		switch {
		case a.Name == "":
			return nil, fmt.Errorf("token: apps[%d]: empty name", i)
		case a.AppID == "":
			return nil, fmt.Errorf("token: app %q: empty appid", a.Name)
		case a.Secret == "":
			return nil, fmt.Errorf("token: app %q: empty secret", a.Name)
		case m.apps[a.Name] != nil:
			return nil, fmt.Errorf("token: app %q: listed twice", a.Name)
		case a.Mode != "" && a.Mode != ModeStable && a.Mode != ModeClassic:
			return nil, fmt.Errorf("token: app %q: mode %q: want %q or %q", a.Name, a.Mode, ModeStable, ModeClassic)
		}
		if a.Mode == "" {
			a.Mode = opts.Mode
		}
		budget := opts.DailyBudget
		if budget == 0 {
			budget = defaultBudgetStable
			if a.Mode == ModeClassic {
				budget = defaultBudgetClassic
			}
		}
		p := opts.Prefix
		m.apps[a.Name] = &appState{
			Name: a.Name, AppID: a.AppID, Secret: a.Secret, Mode: a.Mode,
			tokenKey:     p + "token:" + a.Name,
			lockKey:      p + "tokenlock:" + a.Name,
			fetchedKey:   p + "tokenfetched:" + a.Name,
			invalidKey:   p + "tokeninvalid:" + a.Name,
			budgetPrefix: p + "tokenbudget:" + a.Name + ":",
			budget:       budget,
		}
		if m.met != nil {
			m.met.TokenBudget.WithLabelValues(a.Name).Set(float64(budget))
		}
	}
	return m, nil
}

// Token returns a valid access token for the app (by Name), from the shared
// cache when it is fresh enough, else fetched once across all instances.
// WeChat's errors come back wrapped and keep their *wechat.Error or
// *wechat.CallError, for wechat.Classify.
func (m *Manager) Token(ctx context.Context, app string) (wechat.Secret, error) {
	a, err := m.app(app)
	if err != nil {
		return "", err
	}
	now := m.now()
	if l := a.local.Load(); l != nil && now.Sub(l.checkedAt) < localTrust && m.fresh(l.entry, now) {
		return l.token, nil
	}
	e, ok, err := m.readToken(ctx, a)
	if err != nil {
		return "", err
	}
	if ok && m.fresh(e, now) {
		a.remember(e, now)
		return e.token, nil
	}
	return m.refresh(ctx, a)
}

// Invalidate is called when WeChat answered 40001/40014/42001 for token bad.
// It deletes the cached token only if the cache still holds bad
// (compare-and-delete in a Lua script), so a late failure never wipes a fresh
// token. Reports whether it deleted. The process's own copy of bad is
// dropped either way. An empty bad deletes nothing.
func (m *Manager) Invalidate(ctx context.Context, app string, bad wechat.Secret) (bool, error) {
	a, err := m.app(app)
	if err != nil {
		return false, err
	}
	if bad == "" {
		return false, nil
	}
	if l := a.local.Load(); l != nil && l.token == bad {
		a.local.CompareAndSwap(l, nil)
	}
	n, err := m.scripts.invalidate.Run(ctx, m.rdb, []string{a.tokenKey, a.invalidKey},
		bad.Reveal(), fingerprint(bad), invalidTTL.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("token: app %q: invalidate in redis: %w", a.Name, err)
	}
	if n == 1 {
		m.countInvalid(a.Name, "deleted")
		m.log.InfoContext(ctx, "token: invalidated cached access token", "app", a.Name)
		return true, nil
	}
	m.countInvalid(a.Name, "stale")
	m.log.DebugContext(ctx, "token: invalidation of a token no longer cached ignored", "app", a.Name)
	return false, nil
}

// State describes the app's token without the token itself (for
// GET /v1/apps/{app}).
type State struct {
	Cached          bool      `json:"cached"`
	ExpiresAt       time.Time `json:"expires_at,omitzero"`
	FetchedAt       time.Time `json:"fetched_at,omitzero"`
	Mode            Mode      `json:"mode"`
	BudgetUsedToday int       `json:"budget_used_today"`
	DailyBudget     int       `json:"daily_budget"`
}

// State reports whether the app has a cached token, when it expires and was
// fetched, and how much of today's token budget all instances have used.
func (m *Manager) State(ctx context.Context, app string) (State, error) {
	a, err := m.app(app)
	if err != nil {
		return State{}, err
	}
	now := m.now()
	var tokCmd, budgetCmd *redis.StringCmd
	_, err = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		tokCmd = p.Get(ctx, a.tokenKey)
		budgetCmd = p.Get(ctx, m.budgetKey(a, now))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return State{}, fmt.Errorf("token: app %q: read state from redis: %w", a.Name, err)
	}
	st := State{Mode: a.Mode, DailyBudget: a.budget}
	if e, ok := m.decode(ctx, a, tokCmd); ok && now.Before(e.expiresAt) {
		st.Cached, st.ExpiresAt, st.FetchedAt = true, e.expiresAt.UTC(), e.fetchedAt.UTC()
	}
	if n, err := budgetCmd.Int(); err == nil {
		st.BudgetUsedToday = n
	}
	return st, nil
}

func (m *Manager) app(name string) (*appState, error) {
	a := m.apps[name]
	if a == nil {
		return nil, fmt.Errorf("token: app %q: %w", name, ErrUnknownApp)
	}
	return a, nil
}

// ahead is how long before its expiry e is refreshed. An explicit
// RefreshAhead is capped at half the token's lifetime: a token WeChat hands
// out with less life left than RefreshAhead must still count as fresh, or
// every call would refresh it again.
func (m *Manager) ahead(e entry) time.Duration {
	life := e.expiresAt.Sub(e.fetchedAt)
	if m.opts.RefreshAhead > 0 {
		return min(m.opts.RefreshAhead, life/2)
	}
	return min(maxDefaultAhead, life/4)
}

// fresh reports whether e needs no refresh yet.
func (m *Manager) fresh(e entry, now time.Time) bool {
	return now.Before(e.expiresAt.Add(-m.ahead(e)))
}

// usable reports whether e, though due for refresh, has enough life left
// (half the refresh-ahead window) to be handed out while a refresh is under
// way elsewhere or has just failed.
func (m *Manager) usable(e entry, now time.Time) bool {
	return now.Before(e.expiresAt.Add(-m.ahead(e) / 2))
}

// remember makes e this process's copy, checked against Redis at now.
func (a *appState) remember(e entry, now time.Time) {
	a.local.Store(&localToken{entry: e, checkedAt: now})
}

// readToken reads the shared cache.
func (m *Manager) readToken(ctx context.Context, a *appState) (entry, bool, error) {
	cmd := m.rdb.Get(ctx, a.tokenKey)
	if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
		return entry{}, false, fmt.Errorf("token: app %q: read cache from redis: %w", a.Name, err)
	}
	e, ok := m.decode(ctx, a, cmd)
	return e, ok, nil
}

// decode turns a GET of the token key into an entry; a missing or corrupt
// value is no entry (a corrupt one is overwritten by the next refresh).
func (m *Manager) decode(ctx context.Context, a *appState, cmd *redis.StringCmd) (entry, bool) {
	raw, err := cmd.Bytes()
	if err != nil {
		return entry{}, false
	}
	var c cached
	if err := json.Unmarshal(raw, &c); err != nil || c.Token == "" || c.ExpiresAt <= 0 {
		// The decoder's message could quote the value: do not log it.
		m.log.WarnContext(ctx, "token: ignoring a corrupt cache entry", "app", a.Name, "key", a.tokenKey)
		return entry{}, false
	}
	return entry{token: wechat.Secret(c.Token), expiresAt: time.UnixMilli(c.ExpiresAt), fetchedAt: time.UnixMilli(c.FetchedAt)}, true
}

func (m *Manager) budgetKey(a *appState, now time.Time) string {
	// WeChat's quota clock: budgets reset at midnight Asia/Shanghai (UTC+8).
	shanghai := time.FixedZone("Asia/Shanghai", 8*3600)
	return a.budgetPrefix + now.In(shanghai).Format("20060102")
}

// fingerprint identifies a token without revealing it.
func fingerprint(s wechat.Secret) string {
	sum := sha256.Sum256([]byte(s.Reveal()))
	return hex.EncodeToString(sum[:16])
}

// newOwner returns a random lock owner id.
func newOwner() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

func (m *Manager) countRefresh(app, result string) {
	if m.met != nil {
		m.met.TokenRefreshes.WithLabelValues(app, result).Inc()
	}
}

func (m *Manager) countInvalid(app, result string) {
	if m.met != nil {
		m.met.TokenInvalid.WithLabelValues(app, result).Inc()
	}
}

func (m *Manager) setBudgetUsed(app string, n int64) {
	if m.met != nil {
		m.met.TokenBudgetUsed.WithLabelValues(app).Set(float64(n))
	}
}
