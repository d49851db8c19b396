package healthcheck

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFromArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		url  string
		ok   bool
	}{
		{nil, "", false},
		{[]string{"-addr", ":1"}, "", false},
		{[]string{"-healthcheck"}, "http://def", true},
		{[]string{"--healthcheck", "http://x/readyz"}, "http://x/readyz", true},
		{[]string{"-healthcheck=http://y/healthz"}, "http://y/healthz", true},
		{[]string{"-addr", ":1", "-healthcheck"}, "", false}, // only as the first argument
	} {
		url, ok := FromArgs(tc.args, "http://def")
		assert.Equal(t, tc.ok, ok, "%v", tc.args)
		assert.Equal(t, tc.url, url, "%v", tc.args)
	}
}

func TestProbe(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	require.NoError(t, Probe(t.Context(), srv.URL))
	status = http.StatusServiceUnavailable
	err := Probe(t.Context(), srv.URL)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "503")
	require.Error(t, Probe(t.Context(), "http://127.0.0.1:1/"), "nothing listening")
}
