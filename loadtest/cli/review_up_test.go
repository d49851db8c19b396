package cli

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestUpRedisFlagIsCheckedLikeRun: wxload up --redis takes the same
// values as run --redis, so a Redis URL without a scheme is bad usage
// (exit 2) with run's hint ("here redis://HOST:PORT/0"), and the error
// never shows the URL's password.
func TestUpRedisFlagIsCheckedLikeRun(t *testing.T) {
	code, stdout, stderr := wxload(t, nil, "up", "--redis", "user:s3cretpw@127.0.0.1:6379", "--addr", "127.0.0.1:0", "--mock-addr", "127.0.0.1:0")
	assert.Equal(t, ExitUsage, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stderr, "redis://host:6379/0")
	assert.Contains(t, stderr, "here redis://")
	assert.NotContains(t, stderr+stdout, "s3cretpw")
}
