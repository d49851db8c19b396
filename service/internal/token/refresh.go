package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wxpush/wxpush/internal/wechat"
)

// scripts are the manager's Lua scripts.
type scripts struct {
	store, invalidate, unlock, budget *redis.Script
}

func newScripts() scripts {
	return scripts{
		// KEYS[1] token key; ARGV json, ttl ms, fetched_at ms. Stores the
		// entry unless the cache holds one fetched later (a slow refresher
		// whose lease ran out must not overwrite its successor's token).
		store: redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, v = pcall(cjson.decode, cur)
  if ok and type(v) == 'table' and tonumber(v.fetched_at) and tonumber(v.fetched_at) > tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`),
		// KEYS[1] token key, KEYS[2] invalid-token key; ARGV bad token, its
		// fingerprint, fingerprint ttl ms. Deletes the cached token only if
		// it is the bad one, and remembers the bad one's fingerprint.
		invalidate: redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local ok, v = pcall(cjson.decode, cur)
if not ok or type(v) ~= 'table' or v.token ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1`),
		// KEYS[1] lock key; ARGV owner. Releases the lock only if still ours.
		unlock: redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`),
		// KEYS[1] day counter; ARGV budget, ttl ms. Counts one token call if
		// the budget allows it: {1, used} taken, {0, used} refused.
		budget: redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if n > tonumber(ARGV[1]) then
  n = redis.call('DECR', KEYS[1])
  return {0, n}
end
return {1, n}`),
	}
}

// leaderGone is the error of a refresh that stopped because the context of
// the caller running it ended: the callers that shared it try again.
type leaderGone struct{ err error }

func (e *leaderGone) Error() string { return e.err.Error() }
func (e *leaderGone) Unwrap() error { return e.err }

// refresh gets a fresh token, sharing the work with the process's other
// callers for the same app.
func (m *Manager) refresh(ctx context.Context, a *appState) (wechat.Secret, error) {
	for {
		v, err, _ := m.flights.Do(a.Name, func() (any, error) {
			tok, err := m.acquire(ctx, a)
			if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil, &leaderGone{err: err}
			}
			return tok, err
		})
		var lg *leaderGone
		if errors.As(err, &lg) {
			if ctx.Err() == nil {
				continue // another caller's context ended, not ours
			}
			return "", lg.err
		}
		if err != nil {
			return "", err
		}
		return v.(wechat.Secret), nil
	}
}

// snapshot is what Redis holds about an app's token.
type snapshot struct {
	e         entry
	ok        bool
	lastFetch time.Time // the last token call for the app; zero if none known
	invalid   string    // fingerprint of the last invalidated token
}

func (m *Manager) snapshot(ctx context.Context, a *appState) (snapshot, error) {
	var tokCmd, fetchedCmd, invalidCmd *redis.StringCmd
	_, _ = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		tokCmd = p.Get(ctx, a.tokenKey)
		fetchedCmd = p.Get(ctx, a.fetchedKey)
		invalidCmd = p.Get(ctx, a.invalidKey)
		return nil
	})
	for _, c := range []*redis.StringCmd{tokCmd, fetchedCmd, invalidCmd} {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return snapshot{}, fmt.Errorf("token: app %q: read cache from redis: %w", a.Name, err)
		}
	}
	var s snapshot
	s.e, s.ok = m.decode(ctx, a, tokCmd)
	if ms, err := fetchedCmd.Int64(); err == nil {
		s.lastFetch = time.UnixMilli(ms)
	}
	s.invalid = invalidCmd.Val()
	return s, nil
}

// fetchGuard enforces MinInterval after each token call it observes,
// measured on this process's clock: a peer whose clock runs ahead delays
// a fetch by at most MinInterval per call it makes.
type fetchGuard struct {
	seen, until time.Time
}

// wait returns how long to wait before calling WeChat, given the last call.
func (g *fetchGuard) wait(last, now time.Time, minInterval time.Duration) time.Duration {
	if last.IsZero() {
		return 0
	}
	if !last.Equal(g.seen) {
		g.seen = last
		g.until = now.Add(min(last.Add(minInterval).Sub(now), minInterval))
	}
	return g.until.Sub(now)
}

// acquire returns the token another instance stores, or takes the lock and
// fetches it. It calls WeChat at most once (twice for a stable force
// refresh) and waits at most until ctx ends.
func (m *Manager) acquire(ctx context.Context, a *appState) (wechat.Secret, error) {
	var guard fetchGuard
	for {
		s, err := m.snapshot(ctx, a)
		if err != nil {
			return "", err
		}
		now := m.now()
		if s.ok && m.fresh(s.e, now) {
			a.remember(s.e, now)
			return s.e.token, nil
		}
		usable := s.ok && m.usable(s.e, now)
		if now.UnixNano() < a.refusedUntil.Load() {
			// The budget refused moments ago: answer without the lock and
			// the budget round trips (and their log lines).
			if usable {
				return s.e.token, nil
			}
			return "", fmt.Errorf("token: app %q: %w", a.Name, ErrBudgetExhausted)
		}
		if wait := guard.wait(s.lastFetch, now, m.opts.MinInterval); wait > 0 {
			// WeChat was called moments ago: by a refresher that is about
			// to store its token, or for a token that was invalidated
			// right away (the loop guard).
			if usable {
				return s.e.token, nil
			}
			if err := m.pause(ctx, a, wait); err != nil {
				return "", err
			}
			continue
		}
		owner := newOwner()
		got, err := m.rdb.SetNX(ctx, a.lockKey, owner, m.opts.LockLease).Result()
		if err != nil {
			return "", fmt.Errorf("token: app %q: take refresh lock in redis: %w", a.Name, err)
		}
		if !got {
			// Another instance refreshes: use the old token while it lasts,
			// else wait for the new one, or for the lease to run out.
			if usable {
				return s.e.token, nil
			}
			if err := m.pause(ctx, a, pollMax); err != nil {
				return "", err
			}
			continue
		}
		tok, again, err := m.fetchLocked(ctx, a, owner, s)
		if again {
			continue
		}
		return tok, err
	}
}

// pause sleeps for a jittered poll interval, at most limit, or until ctx ends.
func (m *Manager) pause(ctx context.Context, a *appState, limit time.Duration) error {
	d := min(limit, pollMin+rand.N(pollMax-pollMin))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("token: app %q: waiting for a token: %w", a.Name, ctx.Err())
	}
}

// fetchLocked runs with the refresh lock held and releases it. prev is the
// snapshot taken before the lock: if a token call happened since, it asks
// the caller to go round again (again true).
func (m *Manager) fetchLocked(ctx context.Context, a *appState, owner string, prev snapshot) (tok wechat.Secret, again bool, err error) {
	defer m.unlock(ctx, a, owner)
	s, err := m.snapshot(ctx, a)
	if err != nil {
		return "", false, err
	}
	now := m.now()
	if s.ok && m.fresh(s.e, now) {
		a.remember(s.e, now)
		return s.e.token, false, nil
	}
	if !s.lastFetch.Equal(prev.lastFetch) {
		return "", true, nil // another instance called WeChat meanwhile
	}
	e, err := m.fetch(ctx, a, s.invalid)
	if err != nil {
		if s.ok && m.usable(s.e, now) {
			m.log.WarnContext(ctx, "token: refresh failed, using the cached token while it lasts",
				"app", a.Name, "expires_at", s.e.expiresAt, "err", err)
			return s.e.token, false, nil
		}
		return "", false, err
	}
	return e.token, false, nil
}

// unlock releases the lock if this caller still holds it, even when ctx has
// ended (else peers wait for the lease).
func (m *Manager) unlock(ctx context.Context, a *appState, owner string) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
	defer cancel()
	if err := m.scripts.unlock.Run(uctx, m.rdb, []string{a.lockKey}, owner).Err(); err != nil {
		m.log.WarnContext(ctx, "token: cannot release refresh lock; it expires with its lease",
			"app", a.Name, "lease", m.opts.LockLease, "err", err)
	}
}

// fetch spends budget, calls WeChat and stores the token. invalid is the
// fingerprint of the last invalidated token: in stable mode, WeChat handing
// it out again is answered by one force refresh.
func (m *Manager) fetch(ctx context.Context, a *appState, invalid string) (entry, error) {
	fctx, cancel := context.WithTimeout(ctx, m.opts.LockLease)
	defer cancel()
	start, t, err := m.call(fctx, a, false)
	if err != nil {
		return entry{}, err
	}
	if a.Mode == ModeStable && invalid != "" && fingerprint(t.AccessToken) == invalid {
		m.log.InfoContext(ctx, "token: stable_token returned the invalidated token; forcing a refresh", "app", a.Name)
		start, t, err = m.call(fctx, a, true)
		if err != nil {
			return entry{}, err
		}
	}
	e := entry{token: t.AccessToken, expiresAt: start.Add(t.ExpiresIn), fetchedAt: start}
	if err := m.store(ctx, a, e); err != nil {
		return entry{}, err
	}
	return e, nil
}

// call makes one token call, within the daily budget, and records it.
func (m *Manager) call(ctx context.Context, a *appState, force bool) (time.Time, *wechat.Token, error) {
	if err := m.spend(ctx, a); err != nil {
		return time.Time{}, nil, err
	}
	start := m.now()
	if err := m.rdb.Set(ctx, a.fetchedKey, start.UnixMilli(), fetchedTTL).Err(); err != nil {
		return time.Time{}, nil, fmt.Errorf("token: app %q: record token call in redis: %w", a.Name, err)
	}
	var (
		t   *wechat.Token
		err error
	)
	if a.Mode == ModeClassic {
		t, err = m.wc.Token(ctx, a.AppID, a.Secret)
	} else {
		t, err = m.wc.StableToken(ctx, a.AppID, a.Secret, force)
	}
	if err != nil {
		m.countRefresh(a.Name, "error")
		m.log.WarnContext(ctx, "token: token call failed", "app", a.Name, "mode", a.Mode,
			"class", wechat.Classify(err).String(), "err", err)
		return time.Time{}, nil, fmt.Errorf("token: app %q: fetch access token: %w", a.Name, err)
	}
	m.countRefresh(a.Name, "ok")
	m.log.InfoContext(ctx, "token: fetched access token", "app", a.Name, "mode", a.Mode,
		"expires_in", t.ExpiresIn, "force_refresh", force)
	return start, t, nil
}

// spend takes one token call from today's shared budget, or refuses.
func (m *Manager) spend(ctx context.Context, a *appState) error {
	now := m.now()
	res, err := m.scripts.budget.Run(ctx, m.rdb, []string{m.budgetKey(a, now)},
		a.budget, budgetTTL.Milliseconds()).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("unexpected budget script reply of %d values", len(res))
	}
	if err != nil {
		return fmt.Errorf("token: app %q: count token call in redis: %w", a.Name, err)
	}
	m.setBudgetUsed(a.Name, res[1])
	if res[0] == 0 {
		a.refusedUntil.Store(now.Add(m.opts.MinInterval).UnixNano())
		m.countRefresh(a.Name, "budget_refused")
		m.log.ErrorContext(ctx, "token: daily token budget exhausted; not calling WeChat",
			"app", a.Name, "daily_budget", a.budget)
		return fmt.Errorf("token: app %q: %w", a.Name, ErrBudgetExhausted)
	}
	return nil
}

// storeTimeout bounds the write of a fetched token.
const storeTimeout = 2 * time.Second

// store writes e to the shared cache, even if ctx has just ended: a token
// WeChat minted and nobody stored makes the next caller mint another.
func (m *Manager) store(ctx context.Context, a *appState, e entry) error {
	now := m.now()
	ttl := e.expiresAt.Sub(now)
	if ttl < time.Millisecond {
		return fmt.Errorf("token: app %q: wechat returned a token that expired before it could be cached", a.Name)
	}
	b, err := json.Marshal(cached{Token: e.token.Reveal(), ExpiresAt: e.expiresAt.UnixMilli(), FetchedAt: e.fetchedAt.UnixMilli()})
	if err != nil {
		return fmt.Errorf("token: app %q: encode cache entry: %w", a.Name, err)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	stored, err := m.scripts.store.Run(sctx, m.rdb, []string{a.tokenKey}, b, ttl.Milliseconds(), e.fetchedAt.UnixMilli()).Int()
	if err != nil {
		return fmt.Errorf("token: app %q: store token in redis: %w", a.Name, err)
	}
	if stored == 1 {
		a.remember(e, now)
	} else {
		m.log.DebugContext(ctx, "token: a token fetched later is already cached; keeping it", "app", a.Name)
	}
	return nil
}
