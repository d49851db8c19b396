// Package other is imported from conf.
package other

import "os"

// Y is read at init.
var Y = os.Getenv("PROG_TRANSITIVE")
