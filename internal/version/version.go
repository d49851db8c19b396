// Package version holds the build's version, set at link time by the
// Makefile (-ldflags "-X github.com/wxpush/wxpush/internal/version.Version=...").
package version

// Version is the build's version: a git describe string, or "dev" when the
// binary was built without the Makefile.
var Version = "dev"
