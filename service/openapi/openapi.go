// Package openapi holds the OpenAPI 3.1 document of wxpushd's HTTP API,
// openapi.json, embedded in the binary: wxpushd serves it at
// GET /openapi.json, and the tests of package httpapi check it against the
// router (every route documented, every documented operation routed) and
// its examples against the handlers.
package openapi

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
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

// Operations returns the document's operations as "METHOD /path", the
// method in upper case and the path as the document writes it
// ("/v1/messages/{id}"), sorted.
func Operations() ([]string, error) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(document, &doc); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	var ops []string
	for path, item := range doc.Paths {
		for key := range item {
			switch key {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				ops = append(ops, strings.ToUpper(key)+" "+path)
			}
		}
	}
	slices.Sort(ops)
	return ops, nil
}

// FromGinPath writes a gin route's path in the document's form: ":id"
// and "*rest" segments become "{id}" and "{rest}".
func FromGinPath(path string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") || strings.HasPrefix(p, "*") {
			parts[i] = "{" + p[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}
