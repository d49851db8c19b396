package scenarios

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCatalog: every catalog scenario parses, is named after its file and
// sets expectations; the catalog holds the scenarios the docs promise.
func TestCatalog(t *testing.T) {
	all, err := Catalog()
	require.NoError(t, err)
	var names []string
	for _, sc := range all {
		names = append(names, sc.Name)
		assert.NotEmpty(t, sc.Expect, sc.Name)
		assert.Greater(t, sc.Load.TotalHits(), 0.0, sc.Name)
		got, err := Get(sc.Name)
		require.NoError(t, err)
		assert.Equal(t, sc, got)
	}
	for _, want := range []string{"smoke", "steady", "ramp-to-saturation", "token-expiry-storm", "system-busy",
		"quota-45009", "latency-spike", "duplicate-flood", "crash-recovery", "redis-restart", "callback-safe-mode", "multi-app", "rate-limited", "user-events", "cluster"} {
		assert.Contains(t, names, want)
	}
	_, err = Get("nope")
	require.ErrorIs(t, err, ErrNotFound)
}

// TestGetSuggestsNearestName: an unknown name is ErrNotFound, with the
// nearest catalog name when one is near (a typo, a swap, another case, a
// prefix) and none when nothing is.
func TestGetSuggestsNearestName(t *testing.T) {
	tests := []struct {
		name string
		want string // "" : no suggestion
	}{
		{"smok", "smoke"},
		{"smoek", "smoke"},
		{"Smoke", "smoke"},
		{"smokee", "smoke"},
		{"steddy", "steady"},
		{"qouta-45009", "quota-45009"},
		{"crash", "crash-recovery"},
		{"redis-restrat", "redis-restart"},
		{"token-expiry-strom", "token-expiry-storm"},
		{"nope", ""},
		{"x", ""},
		{"latency", "latency-spike"},
		{"completely-different-name", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Get(tt.name)
			require.ErrorIs(t, err, ErrNotFound)
			_, srcErr := Source(tt.name)
			require.ErrorIs(t, srcErr, ErrNotFound)
			if tt.want == "" {
				assert.NotContains(t, err.Error(), "did you mean", err.Error())
				return
			}
			assert.Contains(t, err.Error(), `did you mean "`+tt.want+`"?`)
			assert.Contains(t, srcErr.Error(), `did you mean "`+tt.want+`"?`)
		})
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"", "abc", 3}, {"abc", "", 3}, {"smoke", "smoke", 0}, {"smok", "smoke", 1}, {"smoek", "smoke", 1},
		{"kitten", "sitting", 3}, {"ca", "abc", 3}, {"abcd", "acbd", 1}} {
		assert.Equal(t, tt.want, editDistance(tt.a, tt.b), "%q %q", tt.a, tt.b)
		assert.Equal(t, tt.want, editDistance(tt.b, tt.a), "%q %q", tt.b, tt.a)
	}
}

func TestNames(t *testing.T) {
	all, err := Catalog()
	require.NoError(t, err)
	var want []string
	for _, sc := range all {
		want = append(want, sc.Name)
	}
	assert.Equal(t, want, Names())
}
