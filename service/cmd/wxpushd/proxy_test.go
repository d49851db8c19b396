package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx/mockwxtest"
)

// TestRunsAgainstMockThroughProxy: wxpushd with its default WeChat base URL
// (https://api.weixin.qq.com) reaches mockwx through the mock's HTTPS proxy
// mode, with nothing set but HTTPS_PROXY and SSL_CERT_FILE: the way to test
// an unmodified deployment offline. A message sent through the API lands in
// the mock's ledger.
func TestRunsAgainstMockThroughProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a wxpushd process")
	}
	mock := mockwxtest.NewServer(t, mockwxtest.Options{Seed: 21})
	ca, err := mock.Mock.CA()
	require.NoError(t, err)
	caFile := filepath.Join(t.TempDir(), "mockwx-ca.pem")
	require.NoError(t, os.WriteFile(caFile, ca.CertPEM(), 0o644))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const key = "proxy-test-key-0123456789abcdef"
	cmd := exec.CommandContext(ctx, os.Args[0], "-addr", addr)
	cmd.Env = []string{
		runMainEnv + "=1",
		"WXPUSH_API_KEYS=" + key, "WXPUSH_APP_ID=" + mock.App.AppID, "WXPUSH_APP_SECRET=" + mock.App.Secret,
		"WXPUSH_INSTANCE=proxy-test", "WXPUSH_SHUTDOWN_TIMEOUT=2s", "WXPUSH_CONSOLE=false", "LOG_LEVEL=warn",
		"HTTPS_PROXY=" + mock.URL, "SSL_CERT_FILE=" + caFile,
	}
	if d := os.Getenv("GOCOVERDIR"); d != "" {
		cmd.Env = append(cmd.Env, "GOCOVERDIR="+d)
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	base := "http://" + addr
	hc := &http.Client{Timeout: 5 * time.Second}
	call := func(method, path, body string) (int, map[string]any) {
		req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		var m map[string]any
		dec := json.NewDecoder(resp.Body)
		dec.UseNumber() // msgids are beyond float64's integers
		_ = dec.Decode(&m)
		return resp.StatusCode, m
	}
	require.Eventually(t, func() bool {
		code, _ := call(http.MethodGet, "/readyz", "")
		return code == http.StatusOK
	}, time.Minute, 100*time.Millisecond, "wxpushd did not become ready:\n%s", &stderr)

	code, acc := call(http.MethodPost, "/v1/messages",
		`{"touser":"oProxy-wxpushd-1","template_id":"notice","data":{"keyword1":{"value":"through the proxy"},"keyword2":{"value":"x"}}}`)
	require.Equal(t, http.StatusAccepted, code, "%v", acc)
	id, _ := acc["id"].(string)
	var last map[string]any
	require.Eventually(t, func() bool {
		_, last = call(http.MethodGet, "/v1/messages/"+id, "")
		return last["status"] == "sent" || last["status"] == "failed"
	}, time.Minute, 100*time.Millisecond, "the message did not settle:\n%s", &stderr)
	assert.Equal(t, "sent", last["status"], "%v\n%s", last, &stderr)

	page, err := mock.Admin.Messages(t.Context(), 0, 100)
	require.NoError(t, err)
	require.Len(t, page.Messages, 1, "the send reached the mock through the proxy")
	assert.Equal(t, "oProxy-wxpushd-1", page.Messages[0].ToUser)
	assert.Equal(t, fmt.Sprint(last["msgid"]), fmt.Sprint(page.Messages[0].MsgID))
	st, err := mock.Admin.Stats(t.Context())
	require.NoError(t, err)
	assert.Positive(t, st.TokenCalls+st.StableTokenCalls, "the token came from the mock too")
}
