// Package initfiles holds the service-manager files that Saga ships: the
// systemd unit that the packages install and that `saga service install`
// writes, and the launchd property-list template for macOS. Keeping them
// here as plain files lets packaging take them verbatim.
package initfiles

import _ "embed"

//go:embed saga.service
var systemdUnit string

//go:embed saga.plist.tmpl
var launchdPlistTemplate string

// SystemdUnit returns the text of init/saga.service.
func SystemdUnit() string { return systemdUnit }

// LaunchdPlistTemplate returns the text/template source of the launchd
// property list (init/saga.plist.tmpl).
func LaunchdPlistTemplate() string { return launchdPlistTemplate }
