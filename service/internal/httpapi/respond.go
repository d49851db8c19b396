package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"

	"github.com/wxpush/wxpush/service"
)

// internalBody answers when even encoding a response failed.
const internalBody = `{"error":{"code":"internal","message":"internal error"}}`

// writeJSON writes v as JSON without HTML escaping.
func (a *api) writeJSON(c *gin.Context, status int, v any) {
	rb := respBufs.Get().(*respBuf)
	defer rb.put()
	if err := rb.enc.Encode(v); err != nil {
		a.log.ErrorContext(c.Request.Context(), "encoding response", "request_id", requestIDOf(c), "err", err)
		status = http.StatusInternalServerError
		rb.buf.Reset()
		rb.buf.WriteString(internalBody + "\n")
	}
	c.Data(status, "application/json; charset=utf-8", rb.buf.Bytes())
}

// respBuf is a reusable response buffer with its encoder (no HTML
// escaping). c.Data copies the bytes out before the buffer is reused.
type respBuf struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var respBufs = sync.Pool{New: func() any {
	rb := &respBuf{}
	rb.enc = json.NewEncoder(&rb.buf)
	rb.enc.SetEscapeHTML(false)
	return rb
}}

// put returns the buffer to the pool, unless a large answer grew it.
func (rb *respBuf) put() {
	if rb.buf.Cap() > 64<<10 {
		return
	}
	rb.buf.Reset()
	respBufs.Put(rb)
}

// abort writes an API error and stops the handler chain.
func (a *api) abort(c *gin.Context, status int, e *service.Error) {
	a.writeJSON(c, status, service.ErrorResponse{Error: *e})
	c.Abort()
}

// internalError is the body of every 500: details go to the log only.
func internalError() *service.Error {
	return &service.Error{Code: service.CodeInternal, Message: "internal error"}
}

// unavailable answers 503 when the store cannot be reached.
func (a *api) unavailable(c *gin.Context) {
	c.Header("Retry-After", "1")
	a.abort(c, http.StatusServiceUnavailable, &service.Error{Code: service.CodeUnavailable, Message: "the message store is unavailable; retry later"})
}

// invalid returns a 400 invalid_request error.
func invalid(field, format string, args ...any) *service.Error {
	return &service.Error{Code: service.CodeInvalidRequest, Message: fmt.Sprintf(format, args...), Field: field}
}

// decodeBody reads exactly one JSON value into v from a body of at most
// limit bytes, refusing unknown fields, trailing data and (through dups,
// given the body's bytes) duplicate keys. On failure it returns the status
// (400, 408 or 413) and the error to answer.
func decodeBody(c *gin.Context, limit int64, v any, dups func([]byte) *service.Error) (int, *service.Error) {
	body := http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	c.Request.Body = body
	buf := bodyBufs.Get().(*bytes.Buffer)
	defer putBodyBuf(buf)
	if _, err := buf.ReadFrom(body); err != nil {
		return decodeError(err, limit)
	}
	b := buf.Bytes()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, limit)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return http.StatusBadRequest, invalid("", "request body must hold exactly one JSON object; found data after it")
	}
	if e := dups(b); e != nil {
		return http.StatusBadRequest, e
	}
	return 0, nil
}

// bodyBufs holds the buffers request bodies are read into. Decoding copies
// what it keeps, so a buffer is reused once the body is decoded.
var bodyBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putBodyBuf returns a buffer to the pool, unless a large body grew it.
func putBodyBuf(b *bytes.Buffer) {
	if b.Cap() > 256<<10 {
		return
	}
	b.Reset()
	bodyBufs.Put(b)
}

// decodeError maps an encoding/json (or body) error to a 400, 408 or 413.
func decodeError(err error, limit int64) (int, *service.Error) {
	var (
		tooLarge  *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
		netErr    net.Error
	)
	switch {
	case errors.As(err, &netErr) && netErr.Timeout():
		// The server's read timeout passed while the body trickled in.
		return http.StatusRequestTimeout, &service.Error{
			Code:    service.CodeRequestTimeout,
			Message: "the request body did not arrive within the server's read timeout",
		}
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, &service.Error{
			Code:    service.CodePayloadTooLarge,
			Message: "request body is larger than " + strconv.FormatInt(limit, 10) + " bytes",
		}
	case errors.Is(err, io.EOF):
		return http.StatusBadRequest, invalid("", "request body is empty; expected a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadRequest, invalid("", "request body is not valid JSON: it ends too early")
	case errors.As(err, &syntaxErr):
		return http.StatusBadRequest, invalid("", "request body is not valid JSON (at byte %d)", syntaxErr.Offset)
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return http.StatusBadRequest, invalid("", "expected a JSON object, not a JSON %s", typeErr.Value)
		}
		// A batch item is a BatchItem, which embeds SendRequest: encoding/json
		// names the embedded struct in the path.
		field := clip(strings.TrimPrefix(typeErr.Field, "SendRequest."))
		return http.StatusBadRequest, invalid(field, "%s must be a JSON %s, not a JSON %s", field, jsonKind(typeErr.Type), typeErr.Value)
	}
	if name, ok := unknownField(err); ok {
		return http.StatusBadRequest, invalid(name, "unknown field %q", name)
	}
	return http.StatusBadRequest, invalid("", "request body is not valid JSON")
}

// jsonKind names the JSON kind a Go type decodes from.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "value"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return "object"
	default:
		return "value"
	}
}

// unknownField extracts the name from encoding/json's unknown-field error,
// which has no type of its own.
func unknownField(err error) (string, bool) {
	rest, ok := strings.CutPrefix(err.Error(), "json: unknown field ")
	if !ok {
		return "", false
	}
	name, uerr := strconv.Unquote(rest)
	if uerr != nil {
		name = rest
	}
	return clip(name), true
}

// clip shortens a client-supplied name echoed in an error.
func clip(s string) string {
	const maxLen = 128
	if len(s) <= maxLen {
		return s
	}
	return strings.ToValidUTF8(s[:maxLen], "") + "..."
}
