// Command wxprobe is the healthcheck of the FROM-scratch images, which have
// no shell or curl: it GETs a URL and exits 0 on a 2xx answer, 1 otherwise.
//
//	wxprobe http://127.0.0.1:8080/readyz
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: wxprobe URL")
		os.Exit(2)
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "wxprobe:", err)
		os.Exit(1)
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		fmt.Fprintln(os.Stderr, "wxprobe:", resp.Status)
		os.Exit(1)
	}
}
