// Package outside is left out when the scan is limited to cmd and conf.
package outside

import "os"

// X is read at init.
var X = os.Getenv("PROG_OUTSIDE")
