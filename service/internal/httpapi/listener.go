package httpapi

import (
	"bytes"
	"net"
	"net/http"
	"strconv"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
)

// WrapListener returns ln whose connections answer the requests net/http
// cannot parse with the API's JSON error body instead of net/http's
// plain text: a malformed path (GET /v1/messages/%zz), a malformed
// header, headers too large. net/http answers those itself, before any
// handler runs, with one write straight to the connection that starts
// with the status line followed at once by
//
//	Content-Type: text/plain; charset=utf-8
//	Connection: close
//
// No answer of a handler starts that way (net/http adds Date and
// Content-Length to those, and writes the handler's headers first), so
// exactly those writes are replaced.
func WrapListener(ln net.Listener) net.Listener { return jsonErrorListener{ln} }

type jsonErrorListener struct{ net.Listener }

func (l jsonErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &jsonErrorConn{Conn: c}, nil
}

// jsonErrorConn rewrites net/http's own error answers (see WrapListener).
type jsonErrorConn struct {
	net.Conn
}

// serverErrorHeaders is what follows the status line of net/http's own
// error answers.
const serverErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

func (c *jsonErrorConn) Write(p []byte) (int, error) {
	status, detail, ok := serverError(p)
	if !ok {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(jsonErrorAnswer(status, detail)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// serverError recognizes net/http's own error answer in p and returns
// its status and detail (the text after "Bad Request: ", if any).
func serverError(p []byte) (int, string, bool) {
	const proto = "HTTP/1.1 "
	if len(p) < len(proto)+4 || !bytes.HasPrefix(p, []byte(proto)) || p[len(proto)] < '4' || p[len(proto)] > '5' {
		return 0, "", false
	}
	line, rest, ok := bytes.Cut(p, []byte("\r\n"))
	if !ok || !bytes.HasPrefix(rest, []byte(serverErrorHeaders[2:])) {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(line[len(proto) : len(proto)+3]))
	if err != nil {
		return 0, "", false
	}
	_, detail, _ := bytes.Cut(line[len(proto)+3:], []byte(": "))
	return status, string(detail), true
}

// jsonErrorAnswer is a complete HTTP answer with the API's error body.
func jsonErrorAnswer(status int, detail string) []byte {
	msg := "malformed request: the request line (method, path) or a header cannot be parsed"
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		msg = "request headers are too large"
	case http.StatusNotImplemented:
		msg = "unsupported transfer encoding"
	}
	if detail != "" {
		msg += " (" + detail + ")"
	}
	code := service.CodeInvalidRequest
	if status >= 500 && status != http.StatusNotImplemented {
		code = service.CodeInternal
	}
	body, _ := wechat.Marshal(service.ErrorResponse{Error: service.Error{Code: code, Message: msg}})
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	b.WriteString("Content-Type: application/json; charset=utf-8\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	b.WriteString("Connection: close\r\n\r\n")
	b.Write(body)
	return b.Bytes()
}
