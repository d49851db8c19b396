package wechat

import (
	"bytes"
	"encoding/json"
)

// Marshal encodes v as JSON without HTML escaping: WeChat mishandles the
// \u003c, \u003e and \u0026 escapes that encoding/json writes by default.
// The result carries no trailing newline.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
