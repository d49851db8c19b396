// Package conf reads through helpers.
package conf

import "example.com/mod/other"

// Variables of the table.
const (
	EnvQualified = "PROG_QUALIFIED"
	EnvTable     = "PROG_TABLE_ONLY"
)

// Load reads through a closure and a named function that pass the name on.
func Load(getenv func(string) string) string {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	intVar := func(p *int, flag, envName string) { _ = env(envName, flag) }
	var n int
	intVar(&n, "workers", "PROG_TWICE_FORWARDED")
	return env("PROG_CLOSURE", "") + named(getenv, 1, "PROG_NAMED") + other.Y
}

func named(getenv func(string) string, _ int, key string) string { return getenv(key) }
