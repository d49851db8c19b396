package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/syncbuf"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
)

func TestRunServesAndShutsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	env := map[string]string{mockwx.EnvSeed: "5", mockwx.EnvAdminToken: "adm"}
	var stdout, stderr syncbuf.Buffer
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, func(k string) string { return env[k] }, &stdout, &stderr, func(a string) { addrc <- a })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("run exited early: %v\n%s", err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("mockwx did not start")
	}
	base := "http://" + addr
	wc, err := wechat.NewClient(base, nil)
	require.NoError(t, err)
	tok, err := wc.Token(t.Context(), mockwx.DemoAppID, mockwx.DemoAppSecret)
	require.NoError(t, err)
	m := &wechat.TemplateMessage{ToUser: "oUser-cmd-0000001", TemplateID: "notice", Data: map[string]wechat.DataItem{"keyword1": {Value: "a"}, "keyword2": {Value: "b"}}}
	_, err = wc.SendTemplate(t.Context(), tok.AccessToken, m)
	require.NoError(t, err)
	st, err := mockwx.NewClient(base, "adm", nil).Stats(t.Context())
	require.NoError(t, err)
	assert.Equal(t, int64(1), st.Delivered)

	out := stdout.String()
	assert.Contains(t, out, "seed: 5")
	assert.Contains(t, out, mockwx.DemoAppID)
	assert.Contains(t, out, "order_shipped")
	assert.Contains(t, out, "never expose it")

	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("mockwx did not shut down")
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"bad seed", []string{"-seed", "x"}, nil},
		{"bad log level", []string{"-log-level", "loud"}, nil},
		{"unknown flag", []string{"-nope"}, nil},
		{"bad mode", nil, map[string]string{mockwx.EnvCallbackMode: "loud"}},
		{"missing config", []string{"-config", "/nonexistent/mock.yaml"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut syncbuf.Buffer
			args := append([]string{"-addr", "127.0.0.1:0"}, tt.args...)
			err := run(t.Context(), args, func(k string) string { return tt.env[k] }, &out, &errOut, func(string) {
				t.Errorf("should not have started")
			})
			assert.Error(t, err)
		})
	}
}

// TestRunHealthcheck: -healthcheck probes instead of serving: a 2xx answer
// is success, anything else (or nothing listening) an error.
func TestRunHealthcheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	var out, errOut bytes.Buffer
	getenv := func(string) string { return "" }
	require.NoError(t, run(t.Context(), []string{"-healthcheck", srv.URL}, getenv, &out, &errOut, nil))
	status = http.StatusServiceUnavailable
	require.Error(t, run(t.Context(), []string{"-healthcheck", srv.URL}, getenv, &out, &errOut, nil))
	assert.Empty(t, out.String(), "a probe prints no banner")
}
