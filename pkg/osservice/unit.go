package osservice

import (
	"errors"
	"fmt"
	"strings"

	initfiles "github.com/sagaproject/saga/init"
)

// DefaultExecutable is where the packages put the binary; the shipped unit
// runs it.
const DefaultExecutable = "/usr/bin/saga"

// errTemplateSyntax: kardianos/service renders the unit as a template, so
// text that looks like a template action would be mangled on the way.
var errTemplateSyntax = errors.New(`must not contain "{{"`)

// Command is what the service runs: an absolute executable and its arguments
// (the first being "serve").
type Command struct {
	Executable string
	Args       []string
}

// DefaultCommand is the shipped unit's command: /usr/bin/saga serve.
func DefaultCommand() Command {
	return Command{Executable: DefaultExecutable, Args: []string{"serve"}}
}

// SystemdUnit renders the system unit for cmd. For DefaultCommand it is
// init/saga.service byte for byte; otherwise only ExecStart differs.
func SystemdUnit(cmd Command) (string, error) {
	execStart, err := execStartLine(cmd)
	if err != nil {
		return "", err
	}
	lines := strings.SplitAfter(initfiles.SystemdUnit(), "\n")
	for i, line := range lines {
		if strings.HasPrefix(line, "ExecStart=") {
			lines[i] = execStart + "\n"
		}
	}
	return strings.Join(lines, ""), nil
}

// userUnitDropped lists the directives of the system unit that a per-user
// unit leaves out: the account and system-wide files belong to the system
// service, and the namespace-based sandboxing needs privileges that a user's
// service manager does not have. The seccomp-based hardening stays.
var userUnitDropped = map[string]bool{
	"Wants": true, "After": true, // network-online.target exists only in the system manager
	"Environment": true, "EnvironmentFile": true, "User": true, "Group": true, "WorkingDirectory": true,
	"ConfigurationDirectory": true, "ConfigurationDirectoryMode": true,
	"CapabilityBoundingSet": true, "AmbientCapabilities": true,
	"ProtectSystem": true, "ProtectHome": true, "PrivateTmp": true, "PrivateDevices": true,
	"DevicePolicy": true, "PrivateUsers": true, "PrivateIPC": true, "PrivateMounts": true,
	"ProtectHostname": true, "ProtectClock": true, "ProtectKernelTunables": true,
	"ProtectKernelModules": true, "ProtectKernelLogs": true, "ProtectControlGroups": true,
	"ProtectProc": true, "ProcSubset": true, "RemoveIPC": true,
}

// SystemdUserUnit renders the per-user unit (`saga service install --user`)
// from the system unit: same service, started with the user's session
// (default.target), without the directives that need privileges.
func SystemdUserUnit(cmd Command) (string, error) {
	system, err := SystemdUnit(cmd)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("# Saga service registry: the per-user unit written by\n# `saga service install --user`.\n")
	for line := range strings.SplitAfterSeq(system, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		key, _, isDirective := strings.Cut(trimmed, "=")
		switch {
		case isDirective && userUnitDropped[key]:
			continue
		case trimmed == "WantedBy=multi-user.target":
			line = "WantedBy=default.target\n"
		}
		b.WriteString(line)
	}
	return b.String(), nil
}

func execStartLine(cmd Command) (string, error) {
	if !strings.HasPrefix(cmd.Executable, "/") {
		return "", fmt.Errorf("executable %q: must be an absolute path", cmd.Executable)
	}
	words := []string{systemdQuote(cmd.Executable)}
	for _, arg := range cmd.Args {
		if strings.ContainsAny(arg, "\n\r") {
			return "", fmt.Errorf("argument %q: must not contain a line break", arg)
		}
		words = append(words, systemdQuote(arg))
	}
	line := "ExecStart=" + strings.Join(words, " ")
	if strings.Contains(line, "{{") {
		return "", fmt.Errorf("command line %q: %w", line, errTemplateSyntax)
	}
	return line, nil
}

// systemdQuote makes one word of a unit's command line: "%" and "$" are
// escaped so systemd does not expand them, and a word with spaces or quotes
// is double-quoted.
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`
}
