// Package osservice installs and controls Saga as a native OS service: a
// hardened systemd unit on Linux, a launchd job on macOS and a Windows
// service, through github.com/kardianos/service. It renders the unit and the
// property list from the files in init/, refuses the places where a service
// makes no sense (a container without a service manager, a Homebrew
// install, a system service without root), and reports the service's state.
// For `saga setup` it also puts a downloaded binary on the PATH
// (Host.PlaceBinary).
package osservice
