package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/sagaproject/saga/pkg/registry"
)

// decodeBody decodes the request body, one JSON object of at most
// MaxBodyBytes, into dst strictly: unknown fields, values of the wrong type
// and anything after the object are errors naming the field. An empty body
// is an error unless optional.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any, optional bool) error {
	if r.ContentLength > MaxBodyBytes {
		// Refuse a declared oversize body before reading any of it, so the
		// answer is 413 whatever the body holds.
		return &http.MaxBytesError{Limit: MaxBodyBytes}
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(r.Body)
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
