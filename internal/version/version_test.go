package version

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRequested(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"-version"}, true},
		{[]string{"--version"}, true},
		{[]string{"-addr", ":1", "--version"}, true},
		{[]string{"-version=true"}, true},
		{[]string{"-version=false"}, false},
		{[]string{"run", "smoke"}, false},
		{[]string{"-versions"}, false},
		{[]string{"--", "-version"}, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Requested(tt.args), "%q", tt.args)
	}
}
