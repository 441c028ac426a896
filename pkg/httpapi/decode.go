package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sagaproject/saga/pkg/registry"
)

// decodeBody decodes the request body, one JSON object of at most
// MaxBodyBytes, into dst strictly: unknown fields, values of the wrong type,
// anything after the object and text that is not UTF-8 are errors naming
// the field. An empty body is an error unless optional.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any, optional bool) error {
	if r.ContentLength > MaxBodyBytes {
		// Refuse a declared oversize body before reading any of it, so the
		// answer is 413 whatever the body holds.
		return &http.MaxBytesError{Limit: MaxBodyBytes}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return decodeError(err)
	}
	if err := decodeJSON(body, dst, optional); err != nil {
		return err
	}
	// encoding/json turns bytes that are not UTF-8 into U+FFFD without a
	// word; storing that would silently change what the client sent.
	if !utf8.Valid(body) {
		return &registry.FieldError{Field: invalidUTF8Field(body), Message: "is not valid UTF-8"}
	}
	return nil
}

// invalidUTF8Field names the top-level field of a JSON object whose value
// holds bytes that are not UTF-8: the first such name in sorted order, or
// "body" when none can be told. (Names need no look: by now every name is
// a known field.)
func invalidUTF8Field(body []byte) string {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return "body"
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if !utf8.Valid(fields[name]) {
			return name
		}
	}
	return "body"
}

// decodeJSON decodes body, one JSON object, into dst; see decodeBody.
func decodeJSON(body []byte, dst any, optional bool) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		if errors.Is(err, io.EOF) {
			if optional {
				return nil
			}
			return &registry.FieldError{Field: "body", Message: "must be a JSON object, not empty"}
		}
		return decodeError(err)
	}
	switch _, err := dec.Token(); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return decodeError(err)
	default:
		return &registry.FieldError{Field: "body", Message: "must hold one JSON object and nothing after it"}
	}
}

// unknownFieldPrefix starts the error that json.Decoder returns for an
// unknown field; encoding/json has no typed error for it, so its text is
// the only way to learn the field's name.
const unknownFieldPrefix = "json: unknown field "

// decodeError turns a decoding failure into an error naming the field.
func decodeError(err error) error {
	var (
		tooBig   *http.MaxBytesError
		syntax   *json.SyntaxError
		wrongTyp *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooBig):
		return err
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &registry.FieldError{Field: "body", Message: "did not arrive in time (limits.body_timeout)"}
	case errors.As(err, &syntax):
		return &registry.FieldError{Field: "body", Message: fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, syntax)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &registry.FieldError{Field: "body", Message: "malformed JSON: the body ends too early"}
	case errors.As(err, &wrongTyp):
		field := wrongTyp.Field
		if field == "" {
			field = "body"
		}
		return &registry.FieldError{Field: field, Message: fmt.Sprintf("must be %s, not %s", jsonKind(wrongTyp.Type), wrongTyp.Value)}
	case strings.HasPrefix(err.Error(), unknownFieldPrefix):
		name, unquoteErr := strconv.Unquote(strings.TrimPrefix(err.Error(), unknownFieldPrefix))
		if unquoteErr != nil {
			name = strings.TrimPrefix(err.Error(), unknownFieldPrefix)
		}
		return &registry.FieldError{Field: name, Message: "unknown field"}
	default:
		return &registry.FieldError{Field: "body", Message: fmt.Sprintf("invalid JSON: %v", err)}
	}
}

// jsonKind names, in JSON's terms, what a Go type expects.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(jsonKind(t.Elem()), "a "), "an ") + "s"
	case reflect.Map:
		return "an object of " + strings.TrimPrefix(strings.TrimPrefix(jsonKind(t.Elem()), "a "), "an ") + "s"
	case reflect.Struct:
		return "a JSON object"
	default:
		return "another type"
	}
}
