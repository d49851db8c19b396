package wxpushd

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service/internal/console"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

// TestConsoleOnAndOff: wxpushd serves the console by default, with its
// headers, and not at all with --console=false; the API is the same
// either way.
func TestConsoleOnAndOff(t *testing.T) {
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(t *testing.T, url string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		require.NoError(t, err)
		resp, err := noRedirect.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp
	}
	for _, off := range []bool{false, true} {
		t.Run(map[bool]string{false: "on", true: "off"}[off], func(t *testing.T) {
			mock := mockwxtest.NewServer(t, mockwxtest.Options{})
			cfg := testConfig(mock, redistest.New(t))
			cfg.NoConsole = off
			in := startInstance(t, cfg)
			resp := get(t, in.URL()+"/console")
			login := get(t, in.URL()+"/console/login")
			if off {
				assert.Equal(t, http.StatusNotFound, resp.StatusCode)
				assert.Equal(t, http.StatusNotFound, login.StatusCode)
				assert.Empty(t, resp.Header.Get("Content-Security-Policy"))
			} else {
				assert.Equal(t, http.StatusSeeOther, resp.StatusCode, "signed out: to the sign-in page")
				assert.Equal(t, "/console/login?next=%2Fconsole", resp.Header.Get("Location"))
				assert.Equal(t, http.StatusOK, login.StatusCode)
				assert.Equal(t, console.ContentSecurityPolicy, login.Header.Get("Content-Security-Policy"))
				assert.NotEmpty(t, login.Header.Get("X-Request-Id"), "the API's middleware runs too")
			}
			assert.Equal(t, http.StatusOK, get(t, in.URL()+"/healthz").StatusCode)
		})
	}
}
