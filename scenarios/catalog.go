package scenarios

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

//go:embed catalog/*.yaml
var catalogFS embed.FS

// Catalog returns the embedded scenarios, sorted by name.
func Catalog() ([]Scenario, error) {
	var out []Scenario
	for _, name := range Names() {
		file := path.Join("catalog", name+".yaml")
		data, err := catalogFS.ReadFile(file)
		if err != nil {
			return nil, err
		}
		sc, err := Parse(data, file)
		if err != nil {
			return nil, err
		}
		if sc.Name != name {
			return nil, fmt.Errorf("%s: name %q does not match the file name", file, sc.Name)
		}
		out = append(out, sc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Get returns the catalog scenario with that name. For an unknown name
// the error (ErrNotFound) suggests the nearest catalog name, if one is
// near.
func Get(name string) (Scenario, error) {
	data, err := catalogFS.ReadFile(path.Join("catalog", name+".yaml"))
	if err != nil {
		return Scenario{}, notFound(name)
	}
	return Parse(data, "catalog/"+name+".yaml")
}

// Source returns the YAML text of a catalog scenario.
func Source(name string) ([]byte, error) {
	data, err := catalogFS.ReadFile(path.Join("catalog", name+".yaml"))
	if err != nil {
		return nil, notFound(name)
	}
	return data, nil
}

// Names returns the catalog's scenario names, sorted, without parsing
// the scenarios.
func Names() []string {
	entries, _ := fs.ReadDir(catalogFS, "catalog") // embedded: cannot fail
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			names = append(names, n)
		}
	}
	return names
}

func notFound(name string) error {
	shown := name
	if len(shown) > 64 {
		shown = shown[:64] + "..."
	}
	if near, ok := Nearest(name, Names()); ok {
		return fmt.Errorf("%w: %q: did you mean %q? (wxload list shows the catalog)", ErrNotFound, shown, near)
	}
	return fmt.Errorf("%w: %q (wxload list shows the catalog)", ErrNotFound, shown)
}

// Nearest returns the name in names nearest to s: the fewest single-letter
// edits (insert, delete, replace, or swap two neighbours), ignoring case,
// and a name that starts with s when s is at least 3 letters; ok is false
// when none is near enough to be the one meant (more edits than a third of
// the longer name's letters, and at least 1 allowed).
func Nearest(s string, names []string) (name string, ok bool) {
	ls := strings.ToLower(s)
	best := -1
	for _, n := range names {
		ln := strings.ToLower(n)
		d := editDistance(ls, ln)
		if len(ls) >= 3 && strings.HasPrefix(ln, ls) {
			d = min(d, 1)
		}
		if d > max(1, max(len(ls), len(ln))/3) {
			continue
		}
		if best < 0 || d < best {
			name, best = n, d
		}
	}
	return name, best >= 0
}

// editDistance is the optimal string alignment distance of a and b (in
// bytes): Levenshtein's insert, delete and replace, plus the swap of two
// adjacent letters.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
