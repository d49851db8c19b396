// Package mockwxtest starts a mockwx server for a test, in the manner of
// net/http/httptest: on 127.0.0.1:0, closed by t.Cleanup, with its URL and
// ready clients.
//
//	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
//	wc := mock.WeChat()                       // a WeChat API client pointed at the mock
//	tok, err := wc.Token(ctx, mock.App.AppID, wechat.Secret(mock.App.Secret))
//	st, err := mock.Admin.Stats(ctx)          // the admin API
package mockwxtest

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
)

// Options configure the test server; the zero value serves the demo app.
type Options struct {
	Config     mockwx.Config
	Seed       int64
	Now        func() time.Time
	AdminToken string
}

// Server is a running mock.
type Server struct {
	// URL is the base URL, e.g. http://127.0.0.1:41234: the WeChat API base
	// URL and the admin API's.
	URL string
	// Mock is the in-process server, for direct access in tests.
	Mock *mockwx.Server
	// Admin drives the admin API over HTTP.
	Admin *mockwx.Client
	// App is the first app served (the demo app unless disabled).
	App mockwx.App
	// HTTP is the underlying httptest server.
	HTTP *httptest.Server
}

// NewServer starts a mock on 127.0.0.1:0 and registers its shutdown with
// t.Cleanup. It fails the test if the config is invalid.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	m, err := mockwx.New(opts.Config, mockwx.Options{Seed: opts.Seed, Now: opts.Now, AdminToken: opts.AdminToken})
	if err != nil {
		t.Fatalf("mockwxtest: %v", err)
	}
	hs := httptest.NewServer(m)
	t.Cleanup(func() {
		m.Close() // first: releases hung connections so the listener can close
		hs.Close()
	})
	s := &Server{URL: hs.URL, Mock: m, Admin: mockwx.NewClient(hs.URL, opts.AdminToken, hs.Client()), HTTP: hs}
	if apps := m.Apps(); len(apps) > 0 {
		s.App = apps[0]
	}
	return s
}

// WeChat returns a WeChat API client whose base URL is the mock.
func (s *Server) WeChat() *wechat.Client {
	c, err := wechat.NewClient(s.URL, s.HTTP.Client())
	if err != nil {
		panic("mockwxtest: " + err.Error()) // the URL comes from httptest: cannot be invalid
	}
	return c
}
