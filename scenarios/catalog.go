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
	entries, err := fs.ReadDir(catalogFS, "catalog")
	if err != nil {
		return nil, err
	}
	var out []Scenario
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		data, err := catalogFS.ReadFile(path.Join("catalog", e.Name()))
		if err != nil {
			return nil, err
		}
		sc, err := Parse(data, "catalog/"+e.Name())
		if err != nil {
			return nil, err
		}
		if want := strings.TrimSuffix(e.Name(), ".yaml"); sc.Name != want {
			return nil, fmt.Errorf("catalog/%s: name %q does not match the file name", e.Name(), sc.Name)
		}
		out = append(out, sc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Get returns the catalog scenario with that name.
func Get(name string) (Scenario, error) {
	data, err := catalogFS.ReadFile(path.Join("catalog", name+".yaml"))
	if err != nil {
		return Scenario{}, fmt.Errorf("%w: %q (wxload list shows the catalog)", ErrNotFound, name)
	}
	return Parse(data, "catalog/"+name+".yaml")
}

// Source returns the YAML text of a catalog scenario.
func Source(name string) ([]byte, error) {
	data, err := catalogFS.ReadFile(path.Join("catalog", name+".yaml"))
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return data, nil
}
