package client_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/client"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/wxpushd"
)

const serviceKey = "client-test-key-0123456789abcdef"

// startService runs wxpushd in-process against a mock WeChat and the
// test's Redis, and returns a client of it and its URL.
func startService(t *testing.T) (*client.Client, string) {
	t.Helper()
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	r := redistest.New(t)
	cfg := wxpushd.Config{
		Addr: "127.0.0.1:0", RedisURL: r.URL, KeyPrefix: r.Prefix, WeChatBaseURL: mock.URL,
		APIKeys: []wechat.Secret{serviceKey},
		Apps:    []wxpushd.AppConfig{{Name: "default", AppID: mock.App.AppID, Secret: wechat.Secret(mock.App.Secret)}},
		Workers: 4, MaxAttempts: 2, BackoffBase: 20 * time.Millisecond, BackoffCap: 100 * time.Millisecond,
		SendTimeout: 2 * time.Second, Visibility: 3 * time.Second, ShutdownTimeout: 5 * time.Second,
		PaceDelay: 300 * time.Millisecond, QuotaDelay: 300 * time.Millisecond, AppDelay: 300 * time.Millisecond,
	}
	s, err := wxpushd.New(t.Context(), cfg, wxpushd.Options{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil && !errors.Is(err, wxpushd.ErrKilled) {
			t.Errorf("wxpushd Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		s.Close()
	})
	c, err := client.New(s.URL(), client.WithAPIKey(serviceKey))
	require.NoError(t, err)
	return c, s.URL()
}

func order(openid, template string) service.SendRequest {
	return service.SendRequest{ToUser: openid, TemplateID: template, Data: map[string]service.DataValue{
		"thing1": {Value: "巧克力礼盒"}, "character_string2": {Value: "SO-2026-000123"},
		"time3": {Value: "2026年11月23日 15:01"}, "phrase4": {Value: "已发货"},
	}}
}

// await polls a message until done accepts it.
func await(t *testing.T, c *client.Client, id string, done func(*service.Message) bool) *service.Message {
	t.Helper()
	var m *service.Message
	require.Eventually(t, func() bool {
		var err error
		m, err = c.Get(t.Context(), id)
		require.NoError(t, err)
		return done(m)
	}, 15*time.Second, 20*time.Millisecond, "message %s", id)
	return m
}

// TestAgainstTheService drives a real wxpushd through the client: send,
// replay, conflict, read, search and iterate, a failed message redriven
// (refused without force), the overview, apps and users, and errors.
func TestAgainstTheService(t *testing.T) {
	c, baseURL := startService(t)
	ctx := client.WithRequestID(t.Context(), "client-test-1")

	acc, replayed, err := c.Send(ctx, order("oClient-user-0001", "order_shipped"), "client-key-1")
	require.NoError(t, err)
	assert.False(t, replayed)
	again, replayed, err := c.Send(ctx, order("oClient-user-0001", "order_shipped"), "client-key-1")
	require.NoError(t, err)
	assert.True(t, replayed)
	assert.Equal(t, acc.ID, again.ID)
	_, _, err = c.Send(ctx, order("oClient-user-0002", "order_shipped"), "client-key-1")
	var e *client.Error
	require.True(t, errors.As(err, &e), "%v", err)
	assert.Equal(t, http.StatusConflict, e.StatusCode)
	assert.Equal(t, service.CodeIdempotencyConflict, e.API.Code)
	assert.Equal(t, service.HeaderIdempotencyKey, e.API.Field)
	assert.Equal(t, "client-test-1", e.RequestID)

	m := await(t, c, acc.ID, func(m *service.Message) bool {
		return m.Status == service.StatusSent || m.Status == service.StatusDelivered
	})
	assert.Equal(t, "client-test-1", m.RequestID)
	assert.NotEmpty(t, m.History)

	// A template the mock does not know fails for good (permanent_errcode),
	// which needs force to redrive.
	bad, _, err := c.Send(t.Context(), order("oClient-user-0003", "no_such_template"), "")
	require.NoError(t, err)
	await(t, c, bad.ID, func(m *service.Message) bool { return m.Status == service.StatusFailed })
	dl, err := c.DeadLetters(t.Context(), "", "", "", 10)
	require.NoError(t, err)
	require.Len(t, dl.Messages, 1)
	assert.Equal(t, bad.ID, dl.Messages[0].ID)
	_, err = c.Redrive(t.Context(), bad.ID, false)
	assert.True(t, client.IsCode(err, service.CodeForceRequired), "%v", err)
	_, err = c.Redrive(t.Context(), acc.ID, false)
	assert.True(t, client.IsCode(err, service.CodeNotFailed), "%v", err)
	redriven, err := c.Redrive(t.Context(), bad.ID, true)
	require.NoError(t, err)
	assert.Equal(t, 1, redriven.Redrives)
	await(t, c, bad.ID, func(m *service.Message) bool { return m.Status == service.StatusFailed && m.Redrives == 1 })
	bulk, err := c.RedriveBulk(t.Context(), service.BulkRedriveRequest{Reason: service.ReasonPermanentErrcode})
	require.NoError(t, err)
	assert.Equal(t, 1, bulk.Matched)
	assert.Equal(t, 0, bulk.Redriven)
	assert.Equal(t, 1, bulk.Skipped[service.CodeForceRequired])

	// Search and iterate: three more messages to one user, read a page of
	// two at a time.
	for i := range 3 {
		_, _, err := c.Send(t.Context(), order("oClient-user-0004", "order_shipped"), "")
		require.NoError(t, err, i)
	}
	page, err := c.Search(t.Context(), service.MessageQuery{ToUser: "oClient-user-0004", Limit: 2})
	require.NoError(t, err)
	assert.Len(t, page.Messages, 2)
	assert.NotEmpty(t, page.NextCursor)
	var seen []string
	for m, err := range c.Messages(t.Context(), service.MessageQuery{ToUser: "oClient-user-0004", Limit: 2}) {
		require.NoError(t, err)
		seen = append(seen, m.ID)
	}
	assert.Len(t, seen, 3)
	_, err = c.Search(t.Context(), service.MessageQuery{Status: "lost"})
	require.True(t, errors.As(err, &e), "%v", err)
	assert.Equal(t, http.StatusBadRequest, e.StatusCode)
	assert.Equal(t, "status", e.API.Field)

	o, err := c.Overview(t.Context())
	require.NoError(t, err)
	require.NotEmpty(t, o.Minutes)
	apps, err := c.Apps(t.Context())
	require.NoError(t, err)
	require.Len(t, apps, 1)
	assert.Equal(t, "default", apps[0].App)
	a, err := c.ResumeApp(t.Context(), "default")
	require.NoError(t, err)
	assert.Equal(t, service.AppActive, a.State)
	_, err = c.App(t.Context(), "nosuch")
	assert.True(t, client.IsCode(err, service.CodeNotFound), "%v", err)
	u, err := c.UserState(t.Context(), "default", "oClient-user-0001")
	require.NoError(t, err)
	assert.Nil(t, u.Following, "nothing is known of the user")

	_, err = c.Get(t.Context(), "nosuch-id")
	assert.True(t, client.IsCode(err, service.CodeNotFound), "%v", err)
	anon, err := client.New(baseURL)
	require.NoError(t, err)
	_, err = anon.Apps(t.Context())
	assert.True(t, client.IsCode(err, service.CodeUnauthorized), "%v", err)
}
