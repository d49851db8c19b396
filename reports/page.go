package reports

import (
	"bytes"
	_ "embed"
	"html/template"
	"io"
)

// CSP is the Content-Security-Policy every page carries: nothing may be
// loaded from anywhere, no script runs; inline styles and data: images
// are allowed.
const CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

var (
	//go:embed page.tmpl
	pageTmpl string
	//go:embed style.css
	styleCSS string
)

// pages holds the page templates. It is parsed once and only read.
var pages = template.Must(template.New("pages").Funcs(template.FuncMap{
	"css": func() template.CSS { return template.CSS(styleCSS) },
}).Parse(pageTmpl))

// execute runs the named page template into w.
func execute(w io.Writer, name string, data any) (int64, error) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		return 0, err
	}
	return buf.WriteTo(w)
}
