#!/bin/sh
# Generates what the packages, archives and image ship besides the binary:
# shell completions and gzipped man pages made by running the built saga,
# the commented config file, and the host's CA bundle for the image.
#
#   packaging/assets.sh BINARY OUTDIR
#
# BINARY must run on this machine. SOURCE_DATE_EPOCH, when set, dates the
# man pages (the Makefile sets it to the last commit's time).
set -eu

bin=$1
out=$2
here=$(dirname "$0")
config_example=$here/../pkg/config/config.example.toml
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

rm -rf "$out/completions" "$out/man"
mkdir -p "$out/completions" "$out/man"

"$bin" completion bash >"$out/completions/saga.bash"
"$bin" completion zsh >"$out/completions/_saga"
"$bin" completion fish >"$out/completions/saga.fish"

"$bin" gen-man "$out/man"
# -n: no name or time stamp in the gzip header, so builds are reproducible.
gzip -9nf "$out"/man/*.1

if [ ! -f "$config_example" ]; then
	echo "assets.sh: $config_example is missing" >&2
	exit 1
fi
cp "$config_example" "$out/config.toml"

if [ -f "$ca_bundle" ]; then
	cp "$ca_bundle" "$out/ca-certificates.crt"
else
	echo "assets.sh: no CA bundle at $ca_bundle (install ca-certificates); the image needs one" >&2
	exit 1
fi
