// Package e2e holds Saga's end-to-end tests: they boot a real Debian 12
// under systemd-nspawn and drive the real saga binary, systemd and the
// packages inside it. The tests build only with the e2e tag and need root,
// debootstrap and systemd-container; `make e2e` installs those and runs them.
package e2e
