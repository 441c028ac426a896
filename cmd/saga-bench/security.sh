#!/usr/bin/env bash
# security.sh measures what auth and TLS cost. It starts three throwaway
# Sagas on free loopback ports (embedded store, temp data dirs, no
# per-client rate limits): plain; auth on, driven with a write token; auth
# and TLS on, with a self-signed certificate. Then it runs saga-bench's
# lookup and heartbeat scenarios against each, round after round with the
# order rotated, so that other work on the machine weighs on all three
# alike, and prints each configuration's medians beside the plain one's.
#
#   cmd/saga-bench/security.sh bin/saga bin/saga-bench
#
# RUNS (rounds, default 3), D (measured time per scenario, 10s), C
# (clients, 32) and SCENARIOS (lookup,heartbeat) tune it. Needs openssl.
set -euo pipefail

saga=$(realpath "${1:?usage: security.sh SAGA SAGA-BENCH}")
bench=$(realpath "${2:?usage: security.sh SAGA SAGA-BENCH}")
runs=${RUNS:-3}
duration=${D:-10s}
clients=${C:-32}
scenarios=${SCENARIOS:-lookup,heartbeat}
configs=(plain auth auth+tls)

dir=$(mktemp -d)
# shellcheck source=cmd/saga-bench/benchlib.sh
. "$(dirname "$0")/benchlib.sh"

# An ECDSA P-256 certificate for 127.0.0.1, as a small deployment would use.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
	-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
	-keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null

# start NAME [VAR=VALUE]... starts a Saga with the settings given and sets
# addr to its address once it listens. SAGA_CONFIG_DIR points at an empty
# directory, so that no config file of this machine's applies.
start() {
	local name=$1
	addr=
	shift
	mkdir -p "$dir/$name"
	env SAGA_CONFIG_DIR="$dir/$name" SAGA_LOG_FORMAT=json SAGA_LOG_AUDIT_FILE="$dir/$name/audit.log" \
		SAGA_LIMITS_READ_RATE=0 SAGA_LIMITS_WRITE_RATE=0 "$@" \
		"$saga" serve --port 0 --data-dir "$dir/$name/data" >"$dir/$name/saga.log" 2>&1 &
	pids+=($!)
	addr=$(servingAddr "$dir/$name/saga.log") || { echo "security.sh: saga ($name) did not start" >&2; exit 1; }
}

# secret prints the secret of `saga token … -o json`'s answer.
secret() { sed -n 's/.*"secret": *"\([^"]*\)".*/\1/p'; }

# writeToken ADDR prints a write token of the Saga at ADDR: the first admin
# token (bootstrap, answered on loopback only) makes it, as an operator would.
writeToken() {
	local admin write
	# Their stderr only says to keep the secret; it is shown when they fail.
	admin=$(SAGA_ADDR=$1 "$saga" token bootstrap -o json 2>"$dir/token.err" | secret)
	write=$(SAGA_ADDR=$1 SAGA_TOKEN=$admin "$saga" token create --role write --description saga-bench -o json 2>"$dir/token.err" | secret)
	[ -n "$write" ] || { cat "$dir/token.err" >&2; exit 1; }
	echo "$write"
}

declare -A url token
start plain
url[plain]=http://$addr
start auth SAGA_AUTH_ENABLED=true
url[auth]=http://$addr
start tls SAGA_AUTH_ENABLED=true SAGA_SERVER_TLS_CERT_FILE="$dir/cert.pem" SAGA_SERVER_TLS_KEY_FILE="$dir/key.pem"
url[auth+tls]=https://$addr
export SAGA_CACERT=$dir/cert.pem # for the token commands and saga-bench
token[plain]=
token[auth]=$(writeToken "${url[auth]}")
token[auth+tls]=$(writeToken "${url[auth+tls]}")

echo "security.sh: $runs rounds of $scenarios, $clients clients, $duration each, against plain, auth and auth+tls"
# rows: round config scenario per-second p50 p99 failed, a line per scenario and round.
for round in $(seq "$runs"); do
	for i in 0 1 2; do
		config=${configs[$(((i + round - 1) % 3))]}
		echo "== round $round: $config (${url[$config]})"
		SAGA_TOKEN=${token[$config]} "$bench" -addr "${url[$config]}" -c "$clients" -d "$duration" \
			-scenario "$scenarios" | tee "$dir/out" | sed -n '/^scenario /,$p'
		# The final table's Saga rows: scenario saga ok failed per-second p50 p99 max share.
		awk -v round="$round" -v config="$config" '/^scenario /{t=1; next} t && $2 == "saga" {print round, config, $1, $5, $6, $7, $4}' "$dir/out" >>"$dir/rows"
	done
done

# The medians of each configuration and scenario. The change from plain is
# the median of each round's change, since a round's three runs met much the
# same load from the rest of the machine.
echo
awk -v order="${configs[*]}" "$statsAwk"'
{
	k = $2 SUBSEP $3
	rate[k] = rate[k] " " $4; p50[k] = p50[k] " " ms($5); p99[k] = p99[k] " " ms($6)
	failed[k] += $7; runs[k]++
	byRound[$1, k] = $4
	if (!($3 in seen)) { seen[$3] = 1; scenarios[++ns] = $3 }
	rounds = $1 > rounds ? $1 : rounds
}
END {
	nc = split(order, configs, " ")
	printf "%-10s %-9s %12s %9s %9s %9s %6s %7s\n", "scenario", "config", "per second", "vs plain", "p50 ms", "p99 ms", "runs", "failed"
	for (s = 1; s <= ns; s++) {
		plain = configs[1] SUBSEP scenarios[s]
		for (c = 1; c <= nc; c++) {
			k = configs[c] SUBSEP scenarios[s]
			if (!(k in runs)) continue
			change = ""
			for (r = 1; r <= rounds; r++)
				if (byRound[r, plain] > 0 && (r, k) in byRound) change = change " " 100 * (byRound[r, k] / byRound[r, plain] - 1)
			printf "%-10s %-9s %12.0f %+8.1f%% %9.2f %9.2f %6d %7d\n", scenarios[s], configs[c], median(rate[k]),
				median(change), median(p50[k]), median(p99[k]), runs[k], failed[k]
		}
	}
}' "$dir/rows"
