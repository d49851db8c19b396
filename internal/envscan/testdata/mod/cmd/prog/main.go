// Command prog reads variables every way envscan knows.
package main

import (
	"fmt"
	"os"

	"example.com/mod/conf"
	"example.com/mod/outside"
)

const envLocal = "PROG_LOCAL"

func main() {
	fmt.Println(os.Getenv("PROG_DIRECT"), os.Getenv(envLocal), os.Getenv(conf.EnvQualified))
	_, _ = os.LookupEnv("PROG_LOOKUP")
	name := "PROG_NOT_A_CONSTANT"
	fmt.Println(os.Getenv(name), conf.Load(os.Getenv), outside.X)
}
