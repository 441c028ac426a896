package osservice

import (
	"encoding/xml"
	"fmt"
	"slices"
	"strings"
	"text/template"

	initfiles "github.com/sagaproject/saga/init"
)

// EnvVar is one variable handed to the launchd job.
type EnvVar struct{ Name, Value string }

// Plist is what the launchd property list is rendered from.
type Plist struct {
	Label            string
	Command          Command
	Environment      []EnvVar // sorted by name for a stable file
	WorkingDirectory string
	LogDir           string // ~/.saga/logs for an agent, /var/log/saga for a daemon
}

// LaunchdPlist renders init/saga.plist.tmpl.
func LaunchdPlist(p Plist) (string, error) {
	tmpl, err := template.New("saga.plist").
		Funcs(template.FuncMap{"xml": xmlEscape}).
		Parse(initfiles.LaunchdPlistTemplate())
	if err != nil {
		return "", fmt.Errorf("parse plist template: %w", err)
	}
	env := slices.Clone(p.Environment)
	slices.SortFunc(env, func(a, b EnvVar) int { return strings.Compare(a.Name, b.Name) })
	var b strings.Builder
	err = tmpl.Execute(&b, map[string]any{
		"Label":            p.Label,
		"Executable":       p.Command.Executable,
		"Arguments":        p.Command.Args,
		"Environment":      env,
		"WorkingDirectory": p.WorkingDirectory,
		"LogDir":           p.LogDir,
	})
	if err != nil {
		return "", fmt.Errorf("render plist: %w", err)
	}
	if strings.Contains(b.String(), "{{") {
		return "", fmt.Errorf("plist: %w", errTemplateSyntax)
	}
	return b.String(), nil
}

func xmlEscape(s string) (string, error) {
	var b strings.Builder
	if err := xml.EscapeText(&b, []byte(s)); err != nil {
		return "", err
	}
	return b.String(), nil
}
