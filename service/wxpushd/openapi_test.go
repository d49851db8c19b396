package wxpushd

import (
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/openapi"
)

// TestOpenAPIDocumentsTheServedRoutes compares the router wxpushd really
// serves (API, callbacks, console) with the operations of openapi.json:
// every route but the HTML console's (under /console, left out of the
// document by rule) is documented, and every documented operation is
// served. (Package httpapi checks the examples against the handlers.)
func TestOpenAPIDocumentsTheServedRoutes(t *testing.T) {
	in := startInstance(t, testConfig(mockwxtest.NewServer(t, mockwxtest.Options{}), redistest.New(t)))
	engine, ok := in.Handler().(*gin.Engine)
	require.True(t, ok, "the handler is a %T, not a *gin.Engine", in.Handler())
	var served []string
	console := 0
	for _, r := range engine.Routes() {
		if r.Path == "/console" || strings.HasPrefix(r.Path, "/console/") {
			console++
			continue
		}
		served = append(served, r.Method+" "+openapi.FromGinPath(r.Path))
	}
	require.NotZero(t, console, "the console is on by default: its routes must be there to be left out")
	documented, err := openapi.Operations()
	require.NoError(t, err)
	var undocumented, unserved []string
	for _, r := range served {
		if !slices.Contains(documented, r) {
			undocumented = append(undocumented, r)
		}
	}
	for _, op := range documented {
		if !slices.Contains(served, op) {
			unserved = append(unserved, op)
		}
	}
	if len(undocumented) > 0 {
		t.Errorf("routes missing from openapi.json:\n  %s", strings.Join(undocumented, "\n  "))
	}
	if len(unserved) > 0 {
		t.Errorf("operations of openapi.json wxpushd does not serve:\n  %s", strings.Join(unserved, "\n  "))
	}
}
