// Package envscan finds the environment variables a program reads by
// reading its Go source, for the tests that check that a program's -h
// lists every one of them.
//
// Starting from a main package, it follows the imports that stay inside
// the module (and inside the given folders), and in every non-test file
// collects:
//
//   - the first argument of calls to Getenv, LookupEnv or getenv (os.Getenv,
//     a getenv func(string) string passed in, ...) when it is a string
//     literal or a string constant, local or of a package of the module;
//   - the same argument of calls to functions that pass one of their
//     parameters on to such a call (env(name, def), intVar(p, flag, envName,
//     ...), closures included), found by following calls to a fixed point;
//   - the string constants named Env... (a package's table of variables).
//
// An argument that is no constant (a variable named in a ${VAR} reference,
// say) is not a fixed setting and is left out.
package envscan

import (
	"bufio"
	"errors"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// readers are the names of the functions that read a variable named by
// their first argument.
var readers = []string{"Getenv", "LookupEnv", "getenv"}

// Var is one environment variable the program reads and where.
type Var struct {
	Name string
	Pos  string // file:line of the read or the constant
}

// Vars returns the variables read by the main package in dir and the
// packages of its module it imports, sorted by name, one Var per name.
// within, when given, limits the packages followed to those folders of
// the module (paths relative to the module root, such as "service").
func Vars(dir string, within ...string) ([]Var, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	root, modPath, err := findModule(dir)
	if err != nil {
		return nil, err
	}
	s := &scanner{root: root, modPath: modPath, within: within, fset: token.NewFileSet(),
		consts: map[string]map[string]constVal{}, found: map[string]string{}}
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return nil, err
	}
	start := modPath
	if rel != "." {
		start = modPath + "/" + filepath.ToSlash(rel)
	}
	seen := map[string]bool{start: true}
	queue := []string{start}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		imports, err := s.scan(p)
		if err != nil {
			return nil, err
		}
		for _, imp := range imports {
			if !seen[imp] && s.follow(imp) {
				seen[imp] = true
				queue = append(queue, imp)
			}
		}
	}
	out := make([]Var, 0, len(s.found))
	for name, pos := range s.found {
		out = append(out, Var{Name: name, Pos: pos})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

type constVal struct {
	value string
	pos   string
}

type scanner struct {
	root, modPath string
	within        []string
	fset          *token.FileSet
	consts        map[string]map[string]constVal // import path -> name -> value
	found         map[string]string              // variable -> first position
}

// follow reports whether the import path is a package of the module
// inside the folders given.
func (s *scanner) follow(path string) bool {
	rel, ok := strings.CutPrefix(path, s.modPath+"/")
	if !ok {
		return false
	}
	if len(s.within) == 0 {
		return true
	}
	for _, w := range s.within {
		w = strings.Trim(filepath.ToSlash(w), "/")
		if rel == w || strings.HasPrefix(rel, w+"/") {
			return true
		}
	}
	return false
}

func (s *scanner) dirOf(path string) string {
	if path == s.modPath {
		return s.root
	}
	return filepath.Join(s.root, filepath.FromSlash(strings.TrimPrefix(path, s.modPath+"/")))
}

// parse parses the non-test Go files of the package at path that build
// on this platform.
func (s *scanner) parse(path string) ([]*ast.File, *build.Package, error) {
	bp, err := build.Default.ImportDir(s.dirOf(path), 0)
	if err != nil {
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			return nil, bp, nil
		}
		return nil, nil, fmt.Errorf("envscan: %s: %w", path, err)
	}
	var files []*ast.File
	for _, name := range bp.GoFiles {
		f, err := parser.ParseFile(s.fset, filepath.Join(bp.Dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, nil, fmt.Errorf("envscan: %w", err)
		}
		files = append(files, f)
	}
	return files, bp, nil
}

// constsOf returns the package-level string constants of the module's
// package at path.
func (s *scanner) constsOf(path string) map[string]constVal {
	if c, ok := s.consts[path]; ok {
		return c
	}
	c := map[string]constVal{}
	s.consts[path] = c
	files, _, err := s.parse(path)
	if err != nil {
		return c
	}
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i >= len(vs.Values) {
						continue
					}
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						if v, err := strconv.Unquote(lit.Value); err == nil {
							c[name.Name] = constVal{value: v, pos: s.pos(name.Pos())}
						}
					}
				}
			}
		}
	}
	return c
}

func (s *scanner) pos(p token.Pos) string {
	ps := s.fset.Position(p)
	rel, err := filepath.Rel(s.root, ps.Filename)
	if err != nil {
		rel = ps.Filename
	}
	return fmt.Sprintf("%s:%d", filepath.ToSlash(rel), ps.Line)
}

func (s *scanner) add(name, pos string) {
	if _, ok := s.found[name]; !ok {
		s.found[name] = pos
	}
}

// scan collects the variables the package at path reads and returns its
// imports.
func (s *scanner) scan(path string) ([]string, error) {
	files, bp, err := s.parse(path)
	if err != nil || bp == nil {
		return nil, err
	}
	consts := s.constsOf(path)
	for name, c := range consts {
		if strings.HasPrefix(name, "Env") && len(name) > 3 && c.value != "" {
			s.add(c.value, c.pos)
		}
	}
	// fwd: function name -> the argument positions it passes to a reader.
	fwd := map[string]map[int]bool{}
	for _, r := range readers {
		fwd[r] = map[int]bool{0: true}
	}
	funcs := funcsOf(files)
	for changed := true; changed; {
		changed = false
		for _, fn := range funcs {
			for _, pos := range forwarded(fn, fwd) {
				if fwd[fn.name] == nil {
					fwd[fn.name] = map[int]bool{}
				}
				if !fwd[fn.name][pos] {
					fwd[fn.name][pos], changed = true, true
				}
			}
		}
	}
	for _, f := range files {
		imports := importsOf(f)
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			for pos := range fwd[calleeName(call)] {
				if pos < len(call.Args) {
					if v, ok := s.resolve(call.Args[pos], consts, imports); ok {
						s.add(v, s.pos(call.Args[pos].Pos()))
					}
				}
			}
			return true
		})
	}
	return bp.Imports, nil
}

// resolve returns the value of a string literal or constant expression.
func (s *scanner) resolve(e ast.Expr, consts map[string]constVal, imports map[string]string) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING {
			v, err := strconv.Unquote(e.Value)
			return v, err == nil
		}
	case *ast.Ident:
		c, ok := consts[e.Name]
		return c.value, ok
	case *ast.SelectorExpr:
		x, ok := e.X.(*ast.Ident)
		if !ok {
			return "", false
		}
		path, ok := imports[x.Name]
		if !ok || !strings.HasPrefix(path, s.modPath) {
			return "", false
		}
		c, ok := s.constsOf(path)[e.Sel.Name]
		return c.value, ok
	case *ast.ParenExpr:
		return s.resolve(e.X, consts, imports)
	}
	return "", false
}

// fn is a function declaration or a function literal bound to a name.
type fn struct {
	name   string
	params []string
	body   *ast.BlockStmt
}

func funcsOf(files []*ast.File) []fn {
	var out []fn
	params := func(ft *ast.FuncType) []string {
		var ps []string
		for _, f := range ft.Params.List {
			if len(f.Names) == 0 {
				ps = append(ps, "_")
			}
			for _, n := range f.Names {
				ps = append(ps, n.Name)
			}
		}
		return ps
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				if n.Body != nil {
					out = append(out, fn{n.Name.Name, params(n.Type), n.Body})
				}
			case *ast.AssignStmt:
				for i, rhs := range n.Rhs {
					lit, ok := rhs.(*ast.FuncLit)
					if !ok || i >= len(n.Lhs) {
						continue
					}
					if id, ok := n.Lhs[i].(*ast.Ident); ok {
						out = append(out, fn{id.Name, params(lit.Type), lit.Body})
					}
				}
			}
			return true
		})
	}
	return out
}

// forwarded returns the positions of fn's parameters that fn passes on,
// as is, at a position where a known function reads a variable name.
func forwarded(f fn, fwd map[string]map[int]bool) []int {
	var out []int
	ast.Inspect(f.body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		for pos := range fwd[calleeName(call)] {
			if pos >= len(call.Args) {
				continue
			}
			id, ok := call.Args[pos].(*ast.Ident)
			if !ok {
				continue
			}
			for i, p := range f.params {
				if p == id.Name {
					out = append(out, i)
				}
			}
		}
		return true
	})
	return out
}

func calleeName(call *ast.CallExpr) string {
	switch f := call.Fun.(type) {
	case *ast.Ident:
		return f.Name
	case *ast.SelectorExpr:
		return f.Sel.Name
	}
	return ""
}

// importsOf maps a file's import names to their paths.
func importsOf(f *ast.File) map[string]string {
	m := map[string]string{}
	for _, imp := range f.Imports {
		path, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			continue
		}
		name := path[strings.LastIndexByte(path, '/')+1:]
		if imp.Name != nil {
			name = imp.Name.Name
		}
		m[name] = path
	}
	return m
}

// findModule returns the root and the module path of the module holding
// dir.
func findModule(dir string) (root, modPath string, err error) {
	for d := dir; ; d = filepath.Dir(d) {
		f, err := os.Open(filepath.Join(d, "go.mod"))
		if err == nil {
			defer f.Close()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if p, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
					return d, strings.Trim(strings.TrimSpace(p), `"`), nil
				}
			}
			return "", "", fmt.Errorf("envscan: %s/go.mod names no module", d)
		}
		if filepath.Dir(d) == d {
			return "", "", fmt.Errorf("envscan: no go.mod above %s", dir)
		}
	}
}
