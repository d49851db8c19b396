package openapi_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi/datamodel"

	"github.com/wxpush/wxpush/service/openapi"
)

// TestDocumentIsValidOpenAPI31 checks openapi.json against the OpenAPI
// 3.1 schema (libopenapi-validator), builds its model (every $ref
// resolves) and checks what the schema cannot: operation ids are unique,
// and every operation has a summary and answers documented responses.
func TestDocumentIsValidOpenAPI31(t *testing.T) {
	raw := openapi.JSON()
	if !json.Valid(raw) {
		t.Fatal("openapi.json is not valid JSON")
	}
	doc, err := libopenapi.NewDocument(raw)
	if err != nil {
		t.Fatalf("parsing openapi.json: %v", err)
	}
	if info := doc.GetSpecInfo(); info.SpecFormat != datamodel.OAS31 || !strings.HasPrefix(info.Version, "3.1.") {
		t.Fatalf("openapi.json is %s %q, want OpenAPI 3.1.x", info.SpecFormat, info.Version)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("building the validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("openapi.json: %s: %s", e.Message, e.Reason)
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  at %s (line %d): %s", se.FieldPath, se.Line, se.Reason)
			}
		}
		t.FailNow()
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("building the model (unresolved $ref?): %v", err)
	}
	ids := map[string]string{}
	for path, item := range model.Model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			where := strings.ToUpper(method) + " " + path
			switch {
			case op.OperationId == "":
				t.Errorf("%s has no operationId", where)
			case ids[op.OperationId] != "":
				t.Errorf("%s and %s share operationId %q", ids[op.OperationId], where, op.OperationId)
			}
			ids[op.OperationId] = where
			if op.Summary == "" {
				t.Errorf("%s has no summary", where)
			}
			if op.Responses == nil || op.Responses.Codes.Len() == 0 {
				t.Errorf("%s documents no response", where)
			}
		}
	}
	if len(ids) == 0 {
		t.Error("openapi.json documents no operation")
	}
}

// TestJSONIsACopy checks that a caller cannot change the served document.
func TestJSONIsACopy(t *testing.T) {
	a := openapi.JSON()
	a[0] = 'X'
	if b := openapi.JSON(); bytes.Equal(a, b) || b[0] != '{' {
		t.Errorf("changing the result of JSON changed the document: it starts with %q", b[:1])
	}
}

// TestOperations checks Operations against libopenapi's reading of the
// document.
func TestOperations(t *testing.T) {
	ops, err := openapi.Operations()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := libopenapi.NewDocument(openapi.JSON())
	if err != nil {
		t.Fatal(err)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for path, item := range model.Model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			want = append(want, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(want)
	if !slices.Equal(ops, want) {
		t.Errorf("Operations() = %q, want %q", ops, want)
	}
	for _, op := range []string{"GET /v1/messages/{id}", "POST /wechat/callback/{app}", "GET /openapi.json"} {
		if !slices.Contains(ops, op) {
			t.Errorf("Operations() lacks %s", op)
		}
	}
}

func TestFromGinPath(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/messages":                "/v1/messages",
		"/v1/messages/:id/redrive":    "/v1/messages/{id}/redrive",
		"/v1/apps/:app/users/:openid": "/v1/apps/{app}/users/{openid}",
		"/console/assets/*name":       "/console/assets/{name}",
		"/":                           "/",
	} {
		if got := openapi.FromGinPath(in); got != want {
			t.Errorf("FromGinPath(%q) = %q, want %q", in, got, want)
		}
	}
}
