package webhook

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestSign: the signature is HMAC-SHA256 over "timestamp.body", hex, with
// a "sha256=" prefix (vector computed with Python's hmac module).
func TestSign(t *testing.T) {
	body := []byte("{\"event\":\"message.status\"}\n")
	got := Sign("webhook-secret-0123456789abcdef", "1700000000", body)
	assert.Equal(t, "sha256=430da3b5311d35dc42400c85a997ab6d71c1d5a7a412fd9fb442c541a98c9bab", got)
	assert.True(t, Verify("webhook-secret-0123456789abcdef", "1700000000", body, got))
	assert.False(t, Verify("webhook-secret-0123456789abcdef", "1700000001", body, got), "another timestamp")
	assert.False(t, Verify("webhook-secret-0123456789abcdeX", "1700000000", body, got), "another secret")
	assert.False(t, Verify("webhook-secret-0123456789abcdef", "1700000000", append(body, ' '), got), "another body")
}

func TestNewNeedsOutbox(t *testing.T) {
	_, err := New(Options{})
	assert.Error(t, err)
}
