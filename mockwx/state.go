package mockwx

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/wxpush/wxpush/internal/wechat"
)

// shanghai is WeChat's quota clock: daily budgets reset at midnight UTC+8.
var shanghai = time.FixedZone("Asia/Shanghai", 8*3600)

func dayIndex(t time.Time) int {
	y, m, d := t.In(shanghai).Date()
	return (y*12+int(m))*32 + d
}

func monthIndex(t time.Time) int {
	y, m, _ := t.In(shanghai).Date()
	return y*12 + int(m)
}

// appState is one app's configuration and mutable state. Guarded by
// Server.mu.
type appState struct {
	App
	crypter   *wechat.Crypter // nil without a callback URL
	templates map[string]*Template
	only      map[string]bool
	notFollow map[string]bool
	blocked   map[string]bool
	pages     map[string]map[string]bool // mini program appid -> released pages
	users     map[string]*userState      // openid -> what simulated events changed
	listOrder []string                   // the follower list's order: followers.only, then followers by events
	listIndex map[string]int             // openid -> index in listOrder

	classic     *tokenRec // the latest /cgi-bin/token token
	stable      *tokenRec // the current stable token
	day         int       // dayIndex of the counters below
	tokenCalls  int
	stableCalls int
	sends       int
	forces      int
	lastForce   time.Time
	month       int
	clears      int
}

func newAppState(a App) (*appState, error) {
	a = a.withDefaults()
	st := &appState{
		App:       a,
		templates: map[string]*Template{},
		only:      set(a.Followers.Only),
		notFollow: set(a.Followers.NotFollowing),
		blocked:   set(a.Followers.Blocked),
		pages:     map[string]map[string]bool{},
		users:     map[string]*userState{},
		listIndex: map[string]int{},
	}
	for _, o := range a.Followers.Only {
		st.listed(o)
	}
	for i := range a.Templates {
		st.templates[a.Templates[i].ID] = &a.Templates[i]
	}
	for _, mp := range a.MiniPrograms {
		st.pages[mp.AppID] = set(mp.Pages)
	}
	return st, nil
}

func set(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

// rollCounters resets the daily and monthly counters when the Shanghai date
// has changed since they were last touched.
func (a *appState) rollCounters(now time.Time) {
	if d := dayIndex(now); d != a.day {
		a.day, a.tokenCalls, a.stableCalls, a.sends, a.forces = d, 0, 0, 0, 0
	}
	if m := monthIndex(now); m != a.month {
		a.month, a.clears = m, 0
	}
}

// tokenRec is one issued access token.
type tokenRec struct {
	app        *appState
	value      string
	stable     bool
	expires    time.Time
	graceUntil time.Time // zero while current; set when superseded
	killed     bool      // POST /_mock/tokens/expire: answers 42001
	revoked    bool      // replaced by a stable force refresh: answers 40001
}

// tokenPrefix is the numeric prefix real tokens carry ("81_...").
const tokenPrefix = "86_"

// wellFormedToken reports whether s looks like a token this mock could
// have issued; other strings answer 40014.
func wellFormedToken(s string) bool {
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok || len(rest) < 32 || len(rest) > 512 {
		return false
	}
	for _, c := range rest {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// newTokenValue draws a token from the seeded RNG: "86_" and 136 URL-safe
// characters, about as long as WeChat's.
func newTokenValue(rng *rand.Rand) string {
	var b strings.Builder
	b.Grow(len(tokenPrefix) + 136)
	b.WriteString(tokenPrefix)
	for range 136 {
		b.WriteByte(tokenAlphabet[rng.IntN(len(tokenAlphabet))])
	}
	return b.String()
}

// newRID draws a request id "xxxxxxxx-xxxxxxxx-xxxxxxxx" (hex).
func newRID(rng *rand.Rand) string {
	return fmt.Sprintf("%08x-%08x-%08x", rng.Uint32(), rng.Uint32(), rng.Uint32())
}

// seededReader is an io.Reader of deterministic bytes, so envelopes and
// nonces are reproducible under -seed.
type seededReader struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func newSeededReader(seed uint64) *seededReader {
	return &seededReader{rng: rand.New(rand.NewPCG(seed, 0x7365656465640a))}
}

// Read implements io.Reader.
func (r *seededReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range p {
		p[i] = byte(r.rng.Uint32())
	}
	return len(p), nil
}
