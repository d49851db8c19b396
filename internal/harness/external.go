package harness

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/wxpush/wxpush/mockwx"
)

// External is a running deployment this process does not control: the
// instances' and the mock's URLs. Its control operations return errors
// wrapping ErrUnsupported.
type External struct {
	urls   []string
	admin  *mockwx.Client
	apiKey string
}

var _ Deployment = (*External)(nil)

// errExternal is the error of every control operation.
var errExternal = fmt.Errorf("not possible against a deployment this process does not run (external): %w", ErrUnsupported)

// ConnectExternal names a running deployment: the wxpushd base URLs, the
// mock's base URL and admin token (may be empty), and an API key.
func ConnectExternal(services []string, mockURL, mockToken, apiKey string) (*External, error) {
	var urls []string
	for _, u := range services {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		return nil, errors.New("harness: an external deployment needs at least one service URL")
	}
	if mockURL = strings.TrimRight(strings.TrimSpace(mockURL), "/"); mockURL == "" {
		return nil, errors.New("harness: an external deployment needs the mock's URL")
	}
	return &External{urls: urls, admin: mockwx.NewClient(mockURL, mockToken, nil), apiKey: apiKey}, nil
}

// Kind is KindExternal.
func (e *External) Kind() string { return KindExternal }

// Instances is the number of service URLs.
func (e *External) Instances() int { return len(e.urls) }

// ServiceURL is the i-th service URL (modulo their number).
func (e *External) ServiceURL(i int) string { return e.urls[(i%len(e.urls)+len(e.urls))%len(e.urls)] }

// Up is always true: the deployment is not watched.
func (e *External) Up(int) bool { return true }

// Mock is the mock's admin client.
func (e *External) Mock() *mockwx.Client { return e.admin }

// APIKey is the key given.
func (e *External) APIKey() string { return e.apiKey }

// HandlersURL is empty: an external deployment is not configured to reach
// this process.
func (e *External) HandlersURL() string { return "" }

// Reach is empty.
func (e *External) Reach() string { return "" }

// Redis describes the Redis as the deployment's own.
func (e *External) Redis() string { return "the deployment's" }

// Kill is refused.
func (e *External) Kill(context.Context, int) error { return errExternal }

// Stop is refused.
func (e *External) Stop(context.Context, int) error { return errExternal }

// Start is refused.
func (e *External) Start(context.Context, int) error { return errExternal }

// StopRedis is refused.
func (e *External) StopRedis(context.Context) error { return errExternal }

// StartRedis is refused.
func (e *External) StartRedis(context.Context) error { return errExternal }

// FlushRedis is refused.
func (e *External) FlushRedis(context.Context) error { return errExternal }

// CutRedis is refused.
func (e *External) CutRedis(context.Context, int) error { return errExternal }

// RestoreRedis is refused.
func (e *External) RestoreRedis(context.Context, int) error { return errExternal }

// Logs is empty: the logs are the deployment's.
func (e *External) Logs(context.Context, int, int) string { return "" }

// Close does nothing.
func (e *External) Close(context.Context) error { return nil }
