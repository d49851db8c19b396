// Package version holds the build's version, set at link time by the
// Makefile (-ldflags "-X github.com/wxpush/wxpush/internal/version.Version=..."),
// and the -version flag the programs share.
package version

import "strings"

// Version is the build's version: a git describe string, or "dev" when the
// binary was built without the Makefile.
var Version = "dev"

// Requested reports whether args ask for the version: -version or
// --version (or =true) anywhere before a "--" that ends the flags.
func Requested(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		name, value, hasValue := strings.Cut(a, "=")
		if (name == "-version" || name == "--version") && (!hasValue || value == "true") {
			return true
		}
	}
	return false
}
