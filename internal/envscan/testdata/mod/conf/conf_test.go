package conf

import "os"

var _ = os.Getenv("PROG_IN_A_TEST")
