package scenarios

import (
	"encoding/json"

	"github.com/invopop/jsonschema"
)

// Schema returns the JSON Schema of the scenario format, generated from the
// Go types, for editors (e.g. a yaml-language-server modeline).
func Schema() ([]byte, error) {
	// The json tags name fields exactly as the yaml tags do (mockwx's
	// rule and settings types carry json tags too).
	r := &jsonschema.Reflector{}
	s := r.Reflect(&Scenario{})
	s.ID = "https://github.com/wxpush/wxpush/scenarios/scenario.schema.json"
	s.Title = "wxload scenario"
	return json.MarshalIndent(s, "", "  ")
}
