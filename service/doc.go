// Package service holds the public wire types of wxpushd's REST API: what
// clients send to POST /v1/messages and POST /v1/messages/batch, and what
// they get back from those and from GET /v1/messages/{id}. The
// implementation lives in service/internal/... and is started through
// package service/wxpushd; conformance and load tests use only these types
// and HTTP.
package service
