package builtin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// decodeParams decodes a task's params into v, rejecting unknown fields and
// trailing data so that a misspelt param is an error at schedule time rather
// than a silent default at run time.
func decodeParams(raw json.RawMessage, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return paramsError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("params: unexpected data after the JSON object")
	}
	return nil
}

// paramsError rewrites a JSON decoding error so that it names the param at
// fault in the words of the params, not of Go types.
func paramsError(err error) error {
	var (
		typeErr   *json.UnmarshalTypeError
		syntaxErr *json.SyntaxError
	)
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return fmt.Errorf("params: %s must be %s, not %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()),
			typeErr.Value)
	case errors.As(err, &typeErr):
		return fmt.Errorf("params must be a JSON object, not %s", typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("params: malformed JSON: %v", err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("params: unknown param %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		// Errors of our own UnmarshalJSON methods already name their param.
		return fmt.Errorf("params: %w", err)
	}
}

// jsonKind names a Go kind the way a JSON user would.
func jsonKind(k string) string {
	switch {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"), strings.HasPrefix(k, "float"):
		return "a number"
	case k == "string":
		return "a string"
	case k == "bool":
		return "true or false"
	case k == "map", k == "struct":
		return "an object"
	case k == "slice", k == "array":
		return "a list"
	default:
		return "a " + k
	}
}
