package wxpushd

import (
	"context"
	"time"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/console"
)

// consoleBackend serves the web console from what serves the operator's
// API: the store's search, message and redrive, the overview, and the
// app admin's resume.
type consoleBackend struct {
	op  *operator
	now func() time.Time
}

var _ console.Backend = (*consoleBackend)(nil)

// Overview is GET /v1/overview's.
func (b *consoleBackend) Overview(ctx context.Context) (*service.Overview, error) {
	return b.op.Overview(ctx)
}

// Search is GET /v1/messages'.
func (b *consoleBackend) Search(ctx context.Context, q service.MessageQuery) (*service.MessagePage, error) {
	return b.op.Search(ctx, q)
}

// Message returns the message with its history.
func (b *consoleBackend) Message(ctx context.Context, id string) (*service.Message, error) {
	return b.op.Get(ctx, id)
}

// Redrive is POST /v1/messages/{id}/redrive's.
func (b *consoleBackend) Redrive(ctx context.Context, id string, req service.RedriveRequest, requestID string) (*service.Message, error) {
	return b.op.Redrive(ctx, id, req.Force, requestID, b.now())
}

// ResumeApp is POST /v1/apps/{app}/resume's.
func (b *consoleBackend) ResumeApp(ctx context.Context, app string) (*service.AppStatus, error) {
	return b.op.admin.ResumeApp(ctx, app)
}

// newConsole returns the web console on op, signing in with the API's
// keys and signing its sessions with the secret kept in Redis; nil when
// the config turns it off (--console=false).
func (s *Server) newConsole(op *operator) (*console.Console, error) {
	if s.cfg.NoConsole {
		s.log.Info("web console off (--console=false)")
		return nil, nil
	}
	con, err := console.New(console.Options{
		Backend: &consoleBackend{op: op, now: time.Now}, APIKeys: s.cfg.APIKeys, InsecureNoAuth: s.cfg.InsecureNoAuth,
		Secret: s.store.ConsoleSecret, Logger: s.log, Now: time.Now,
	})
	if err != nil {
		return nil, err
	}
	if len(s.cfg.APIKeys) == 0 {
		s.log.Warn("WEB CONSOLE OPEN (--insecure-no-auth): anyone who can reach /console can redrive messages and resume apps")
	}
	return con, nil
}
