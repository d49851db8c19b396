// Package openapi holds the OpenAPI 3.1 document of wxpushd's HTTP API,
// openapi.json, embedded in the binary: wxpushd serves it at
// GET /openapi.json, and the tests of package httpapi check it against the
// router (every route documented, every documented operation routed) and
// its examples against the handlers.
package openapi

import (
	_ "embed"
)

// document is openapi.json.
//
//go:embed openapi.json
var document []byte

// ContentType is the media type of the document.
const ContentType = "application/json; charset=utf-8"

// JSON returns the document. The slice is a copy: callers may keep or
// change it.
func JSON() []byte {
	return append([]byte(nil), document...)
}
