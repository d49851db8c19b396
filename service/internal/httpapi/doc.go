// Package httpapi is the HTTP layer of wxpushd, built on Gin: the REST API
// of design §4 (POST /v1/messages, POST /v1/messages/batch,
// GET /v1/messages/{id}), the probes (/healthz, /readyz), /metrics and the
// OpenAPI document of it all (GET /openapi.json, package service/openapi).
//
// It validates and normalizes requests, authenticates callers with bearer
// API keys, and hands accepted messages to a Queue (the store) in one call
// per request, so a 202 is only answered for messages the Queue stored.
// Every error is JSON of the form {"error":{"code","message","field"}},
// with the codes of package service.
//
// The handler returned by New carries its own middleware: a request id
// (X-Request-Id), an access log through log/slog, Prometheus metrics
// labelled by route template, and panic recovery. Nothing is global: each
// call to New builds an independent handler.
package httpapi
