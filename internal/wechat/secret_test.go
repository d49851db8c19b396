package wechat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("hunter2-value")
	type config struct {
		AppID  string
		Secret Secret
	}
	cfg := config{AppID: "wx1", Secret: s}
	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s"} {
		fmt.Fprintf(&out, verb+" ", s)
		fmt.Fprintf(&out, verb+" ", cfg)
	}
	slog.New(slog.NewTextHandler(&out, nil)).Info("cfg", "secret", s, "cfg", cfg)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("cfg", "secret", s, "cfg", cfg)
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	out.Write(b)
	assert.NotContains(t, out.String(), "hunter2")
	assert.NotContains(t, out.String(), fmt.Sprintf("%x", "hunter2"))
	assert.Contains(t, out.String(), "[REDACTED]")
	assert.Equal(t, "hunter2-value", s.Reveal())
}

func TestMarshalDoesNotEscapeHTML(t *testing.T) {
	got, err := Marshal(map[string]string{"url": "https://a.b/?x=1&y=<z>"})
	require.NoError(t, err)
	assert.Equal(t, `{"url":"https://a.b/?x=1&y=<z>"}`, string(got))
	_, err = Marshal(make(chan int))
	assert.Error(t, err)
}
