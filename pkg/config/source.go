package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Layer is one level of the configuration, each overriding the one before.
type Layer int

// The layers, lowest first.
const (
	LayerNone    Layer = iota // not set by Load (a Config built by hand)
	LayerDefault              // built-in defaults
	LayerFile                 // the TOML file
	LayerEnv                  // the environment
	LayerFlag                 // command-line flags
)

func (l Layer) String() string {
	switch l {
	case LayerDefault:
		return "default"
	case LayerFile:
		return "file"
	case LayerEnv:
		return "environment"
	case LayerFlag:
		return "flag"
	}
	return "none"
}

// Source says where a value came from: the layer and, within it, the file
// path, the environment variable or the flag.
type Source struct {
	Layer Layer
	Name  string
}

// String reads as "environment SAGA_SERVER_PORT", "flag --port",
// "file /etc/saga/config.toml" or "default".
func (s Source) String() string {
	switch s.Layer {
	case LayerFlag:
		return "flag --" + s.Name
	case LayerFile, LayerEnv:
		return s.Layer.String() + " " + s.Name
	}
	return s.Layer.String()
}

// Error is a configuration value that Saga cannot use. It prints as one
// line: `config: server.port: "abc" is not a port (from environment SAGA_SERVER_PORT)`.
type Error struct {
	Key    string
	Value  string // quoted for display, secrets masked; empty for an unknown key
	Reason string
	Source Source
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	b.WriteString(e.Key)
	b.WriteString(": ")
	if e.Value != "" {
		b.WriteString(e.Value)
		b.WriteString(" ")
	}
	b.WriteString(e.Reason)
	if e.Source.Layer != LayerNone {
		fmt.Fprintf(&b, " (from %s)", e.Source)
	}
	return b.String()
}

// display renders a raw value for an error message: strings quoted, other
// TOML values as written, secrets masked.
func display(k key, raw any) string {
	s, isString := raw.(string)
	if !isString {
		s = fmt.Sprint(raw)
	}
	s = k.masked(s)
	if isString {
		return strconv.Quote(s)
	}
	return s
}
