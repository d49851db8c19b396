package cli

import (
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/envscan"
	"github.com/wxpush/wxpush/internal/logging"
	"github.com/wxpush/wxpush/internal/version"
	"github.com/wxpush/wxpush/reports"
)

// TestHelpOnStdout: help, -h and --help, alone or after a command, print
// the usage to stdout and exit 0.
func TestHelpOnStdout(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"-help"}, {"run", "-h"}, {"run", "smoke", "--help"},
		{"compare", "-h"}, {"index", "--help"}, {"report", "-h"}, {"validate", "-h"}, {"merge", "-h"}, {"run", "smoke", "--shard", "0/2", "-h"}} {
		code, stdout, stderr := wxload(t, nil, args...)
		assert.Equal(t, ExitPassed, code, "%q: %s", args, stderr)
		assert.Equal(t, usage, stdout, "%q", args)
		assert.Empty(t, stderr, "%q", args)
	}
	// After "--" a -h is an argument, not a request for help.
	code, _, _ := wxload(t, nil, "validate", "--", "-h")
	assert.Equal(t, ExitUsage, code)
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "-version", "--version"} {
		code, stdout, _ := wxload(t, nil, arg)
		assert.Equal(t, ExitPassed, code, arg)
		assert.Equal(t, "wxload "+version.Version+"\n", stdout, arg)
	}
}

// TestHelpListsEverySetting: the usage names every environment variable
// wxload reads (found in the source of its packages) and, in each
// command's "CMD flags:" section, every flag that command's FlagSet
// defines (read from this package's source, so a flag added to a command
// fails this test until the usage lists it).
func TestHelpListsEverySetting(t *testing.T) {
	vars, err := envscan.Vars("../cmd/wxload", "loadtest", "scenarios", "reports", "internal")
	require.NoError(t, err)
	require.NotEmpty(t, vars, "the scan finds wxload's variables")
	for _, v := range vars {
		assert.Contains(t, usage, v.Name, "wxload reads %s (%s) but its usage does not list it", v.Name, v.Pos)
	}
	for _, want := range []string{"WXLOAD_API_KEY", "MOCKWX_ADMIN_TOKEN", "wxload version", "--version"} {
		assert.Contains(t, usage, want)
	}
	assert.Contains(t, usage, fmt.Sprintf("at most %d a minute", logging.DefaultRedisLogLimit))
	assert.Equal(t, time.Minute, logging.DefaultRedisLogInterval, "the usage says a minute")

	// Defaults the usage states that live in code elsewhere.
	tol := reports.DefaultTolerances()
	assert.Contains(t, usage, fmt.Sprintf("(default -%g%%)", tol.Throughput*100), "compare --throughput")
	assert.Contains(t, usage, fmt.Sprintf("(default +%g%%)", tol.P99*100), "compare --p99")
	assert.Contains(t, usage, "(default "+reports.DefaultIndex+")", "index --out")

	flags := flagSetFlags(t, ".")
	require.Contains(t, flags, "run", "the run command's FlagSet is found")
	require.Contains(t, flags["run"], "redis")
	for cmd, names := range flags {
		section := usageSection(usage, cmd+" flags:")
		if !assert.NotEmpty(t, section, "wxload %s has flags %v but the usage has no %q section", cmd, names, cmd+" flags:") {
			continue
		}
		for _, name := range names {
			assert.Regexp(t, `(?m)^\s+--`+regexp.QuoteMeta(name)+`\b`, section, "wxload %s --%s is missing from the usage's %q section", cmd, name, cmd+" flags:")
		}
	}
}

// usageSection returns the lines of u from the one that is title to the
// next blank line, or "".
func usageSection(u, title string) string {
	i := strings.Index(u, "\n"+title+"\n")
	if i < 0 {
		return ""
	}
	s := u[i+1:]
	if j := strings.Index(s, "\n\n"); j >= 0 {
		s = s[:j]
	}
	return s
}

// flagSetFlags reads the package's non-test source in dir and returns, by
// command, the flags defined on each flag.NewFlagSet("wxload CMD", ...):
// the name argument of every fs.String, fs.StringVar, fs.Var, fs.Func...
// call on the variable the FlagSet is assigned to, in the same function.
func flagSetFlags(t *testing.T, dir string) map[string][]string {
	t.Helper()
	bp, err := build.Default.ImportDir(dir, 0)
	require.NoError(t, err)
	fset := token.NewFileSet()
	out := map[string][]string{}
	for _, name := range bp.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, 0)
		require.NoError(t, err)
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			sets := map[string]string{} // variable -> command
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				as, ok := n.(*ast.AssignStmt)
				if !ok || len(as.Lhs) != 1 || len(as.Rhs) != 1 {
					return true
				}
				call, ok := as.Rhs[0].(*ast.CallExpr)
				if !ok || !isSelector(call.Fun, "flag", "NewFlagSet") || len(call.Args) == 0 {
					return true
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				id, okID := as.Lhs[0].(*ast.Ident)
				if !ok || !okID {
					return true
				}
				if name, err := strconv.Unquote(lit.Value); err == nil {
					if cmd, ok := strings.CutPrefix(name, "wxload "); ok {
						sets[id.Name] = cmd
					}
				}
				return true
			})
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				x, ok := sel.X.(*ast.Ident)
				if !ok {
					return true
				}
				cmd, ok := sets[x.Name]
				if !ok {
					return true
				}
				nameArg := flagNameArg(sel.Sel.Name)
				if nameArg < 0 {
					return true
				}
				pos := fset.Position(call.Pos())
				require.Greater(t, len(call.Args), nameArg, "%s: a flag call without its name", pos)
				lit, ok := call.Args[nameArg].(*ast.BasicLit)
				require.True(t, ok, "%s: wxload %s defines a flag whose name is not a string literal: this test cannot check it", pos, cmd)
				name, err := strconv.Unquote(lit.Value)
				require.NoError(t, err, "%s", pos)
				out[cmd] = append(out[cmd], name)
				return true
			})
		}
	}
	return out
}

// flagNameArg is the position of the flag name among the arguments of a
// flag.FlagSet method, -1 for a method that defines no flag.
func flagNameArg(method string) int {
	switch {
	case strings.HasSuffix(method, "Var"): // StringVar(&v, name, ...), Var(value, name, ...), TextVar...
		return 1
	case method == "String", method == "Bool", method == "Int", method == "Int64", method == "Uint", method == "Uint64",
		method == "Float64", method == "Duration", method == "Func", method == "BoolFunc":
		return 0
	}
	return -1
}

func isSelector(e ast.Expr, pkg, name string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	x, ok := sel.X.(*ast.Ident)
	return ok && x.Name == pkg
}

// TestRunRedisURLWithoutScheme: --redis host:port is refused with the
// hint before anything starts.
func TestRunRedisURLWithoutScheme(t *testing.T) {
	for _, v := range []string{"127.0.0.1:6379", "localhost:6379/0", "http://127.0.0.1:6379"} {
		out := filepath.Join(t.TempDir(), "run")
		code, _, stderr := wxload(t, nil, "run", "smoke", "--redis", v, "--quiet", "--out", out)
		assert.Equal(t, ExitUsage, code, v)
		assert.Contains(t, stderr, "use redis://host:6379/0", v)
		_, err := os.Stat(out)
		assert.True(t, os.IsNotExist(err), "%s: nothing ran", v)
	}
	code, _, stderr := wxload(t, nil, "run", "smoke", "--redis", "localhost:6379")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "redis://localhost:6379/0")
}

// TestRunSuggestsScenario: an unknown catalog name is refused with the
// nearest name.
func TestRunSuggestsScenario(t *testing.T) {
	for _, tt := range []struct{ arg, want string }{{"smok", `did you mean "smoke"?`}, {"crash-recovry", `did you mean "crash-recovery"?`}} {
		code, _, stderr := wxload(t, nil, "run", tt.arg, "--quiet")
		assert.Equal(t, ExitUsage, code, tt.arg)
		assert.Contains(t, stderr, tt.want, tt.arg)
	}
}
