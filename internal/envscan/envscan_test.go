package envscan

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func names(vs []Var) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

func TestVars(t *testing.T) {
	tests := []struct {
		name   string
		within []string
		want   []string
	}{
		{"whole module", nil, []string{"PROG_CLOSURE", "PROG_DIRECT", "PROG_LOCAL", "PROG_LOOKUP", "PROG_NAMED", "PROG_OUTSIDE",
			"PROG_QUALIFIED", "PROG_TABLE_ONLY", "PROG_TRANSITIVE", "PROG_TWICE_FORWARDED"}},
		{"within cmd and conf", []string{"cmd", "conf/"}, []string{"PROG_CLOSURE", "PROG_DIRECT", "PROG_LOCAL", "PROG_LOOKUP", "PROG_NAMED",
			"PROG_QUALIFIED", "PROG_TABLE_ONLY", "PROG_TWICE_FORWARDED"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Vars("testdata/mod/cmd/prog", tt.within...)
			require.NoError(t, err)
			assert.Equal(t, tt.want, names(got))
			for _, v := range got {
				assert.Regexp(t, `^[a-z/]+\.go:\d+$`, v.Pos, v.Name)
			}
		})
	}
}

func TestVarsPositions(t *testing.T) {
	got, err := Vars("testdata/mod/cmd/prog")
	require.NoError(t, err)
	pos := map[string]string{}
	for _, v := range got {
		pos[v.Name] = v.Pos
	}
	assert.Equal(t, "cmd/prog/main.go:15", pos["PROG_DIRECT"])
	assert.Equal(t, "conf/conf.go:22", pos["PROG_TWICE_FORWARDED"])
}

func TestVarsErrors(t *testing.T) {
	_, err := Vars("/")
	require.Error(t, err)
	_, err = Vars("testdata/mod/nonexistent")
	require.Error(t, err)
}
