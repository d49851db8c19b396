package redisurl

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		raw  string
		want []string // substrings of the error; nil: no error
	}{
		{"redis://127.0.0.1:6379/0", nil},
		{"rediss://user:pass@example.com:6380/1", nil},
		{"redis://127.0.0.1:26379?master_name=mymaster", nil},
		{"cluster+redis://127.0.0.1:7000?addr=127.0.0.1:7001", nil},
		{"unix:///run/redis.sock", nil},
		{"REDIS://127.0.0.1:6379", nil},
		{"127.0.0.1:6379", []string{`"127.0.0.1:6379" has no scheme`, Hint, "redis://127.0.0.1:6379/0"}},
		{"localhost:6379/0", []string{`"localhost:6379/0" has no scheme`, Hint, "redis://localhost:6379/0)"}},
		{"[::1]:6379", []string{"has no scheme", "redis://[::1]:6379/0"}},
		{"localhost", []string{`"localhost" has no scheme: ` + Hint}},
		{"u:hunter2secret@redis.internal:6379", []string{"has no scheme", "redis://xxxxx@redis.internal:6379/0"}},
		{"http://127.0.0.1:6379", []string{`unknown scheme "http"`, Hint}},
		{"http://u:hunter2secret@127.0.0.1:6379", []string{`unknown scheme "http"`, "xxxxx"}},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			err := Check(tt.raw)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, err.Error(), "hunter2secret", "no password in an error")
		})
	}
}

func TestHideSecret(t *testing.T) {
	for _, raw := range []string{
		"redis://:s3cretpw%zz@127.0.0.1:6379/0",
		"redis://user:s3cretpw@127.0.0.1:port/0",
		"rediss://:s3cret/pw@host:6379/notadb",
		"user:s3cretpw@host:6379",
	} {
		err := HideSecret(fmt.Errorf("parse %q: boom", raw), raw)
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("HideSecret(%q) = %q: shows the password", raw, err)
		}
		if got := Redacted(raw); strings.Contains(got, "s3cret") {
			t.Errorf("Redacted(%q) = %q: shows the password", raw, got)
		}
	}
	base := errors.New("dial tcp 127.0.0.1:6379: refused")
	if got := HideSecret(base, "redis://127.0.0.1:6379/0"); got != base {
		t.Errorf("a URL without a password changed the error: %v", got)
	}
	if !errors.Is(HideSecret(base, "redis://:pw@h:1/0"), base) {
		t.Error("HideSecret breaks errors.Is")
	}
	if HideSecret(nil, "redis://:pw@h:1/0") != nil {
		t.Error("HideSecret(nil) is not nil")
	}
}
