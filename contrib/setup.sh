#!/bin/sh
# Sets Saga up on this machine, for those who expect a setup script: it runs
# `saga setup`, which writes the configuration and, on a server, installs and
# starts the service. Arguments are passed on, e.g.
#   sudo sh contrib/setup.sh --non-interactive --systemd
# SAGA names the binary to use (default: saga on PATH).
set -eu

saga=${SAGA:-$(command -v saga || true)}
if [ -z "$saga" ]; then
	echo "setup.sh: saga is not on PATH: install it first (see docs/install.md), or set SAGA=/path/to/saga" >&2
	exit 1
fi
exec "$saga" setup "$@"
