#!/usr/bin/env bash
# stores.sh runs saga-bench against Saga on its embedded store and on Redis,
# side by side, round after round with the order rotated, so that other
# work on the machine weighs on both alike. Everything is throwaway: a
# redis-server (or a 3-master Redis Cluster) on free loopback ports in a
# temp dir, Sagas on free ports with empty data dirs, all stopped after.
#
#   cmd/saga-bench/stores.sh bin/saga bin/saga-bench
#   STORES=redis SAGAS=3 cmd/saga-bench/stores.sh bin/saga bin/saga-bench
#
# STORES (default "embedded redis"; "cluster" is Redis Cluster), SAGAS
# (Sagas sharing the Redis, default 1: with more, one saga-bench per Saga
# runs at once, C/SAGAS clients each, and the rates are summed), RUNS
# (rounds, default 3), D (measured time per scenario, 10s), C (clients, 32)
# and SCENARIOS (lookup,heartbeat,register) tune it. BEFORE=path/to/saga adds
# each store again run by that other build ("redis-before"), to compare
# two builds in one run.
#
# Besides each scenario's rate and latency it prints, measured over the
# middle of each run: the CPU the Sagas spent per request (from /proc), and
# on Redis the CPU Redis spent per request (INFO cpu) and the commands it
# ran per request with their usec_per_call (INFO commandstats).
set -euo pipefail

saga=$(realpath "${1:?usage: stores.sh SAGA SAGA-BENCH}")
bench=$(realpath "${2:?usage: stores.sh SAGA SAGA-BENCH}")
read -r -a stores <<<"${STORES:-embedded redis}"
sagas=${SAGAS:-1}
runs=${RUNS:-3}
duration=${D:-10s}
clients=${C:-32}
scenarios=${SCENARIOS:-lookup,heartbeat,register}
warmup=1
tick=$(getconf CLK_TCK)

dir=$(mktemp -d)
# shellcheck source=cmd/saga-bench/benchlib.sh
. "$(dirname "$0")/benchlib.sh"
trap 'exit 1' INT TERM

# freePort prints a loopback port that nothing listens on, nor on the port
# 10000 above it (a Cluster node's bus); both below Linux's ephemeral
# ports, where the Sagas' own connections could already hold them.
freePort() {
	local p
	while :; do
		p=$((20000 + RANDOM % 2700))
		(exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && continue
		(exec 3<>/dev/tcp/127.0.0.1/$((p + 10000))) 2>/dev/null || { echo "$p"; return; }
	done
}

# startRedis NAME [ARGS]... starts a redis-server on a free port; sets port.
startRedis() {
	local name=$1
	shift
	port=$(freePort)
	mkdir -p "$dir/$name"
	redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/$name" --save '' --appendonly yes "$@" \
		>"$dir/$name/redis.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.1; done
	cat "$dir/$name/redis.log" >&2
	exit 1
}

# start NAME URL starts a Saga (on the embedded store when URL is empty) and
# appends its address to addrs[NAME] and its pid to spids[NAME].
declare -A addrs spids redisports
start() {
	local name=$1 url=$2 addr=
	mkdir -p "$dir/$name"
	env SAGA_CONFIG_DIR="$dir/$name" SAGA_LOG_FORMAT=json SAGA_LIMITS_READ_RATE=0 SAGA_LIMITS_WRITE_RATE=0 \
		REDIS_URL="$url" "$bin" serve --port 0 --data-dir "$dir/$name/data" >"$dir/$name/saga.log" 2>&1 &
	pids+=($!)
	spids[${name%%.*}]+=" $!"
	addr=$(servingAddr "$dir/$name/saga.log") || { echo "stores.sh: saga ($name) did not start" >&2; exit 1; }
	addrs[${name%%.*}]+=" $addr"
}

configs=()
for store in "${stores[@]}"; do
	configs+=("$store")
	[ -n "${BEFORE:-}" ] && configs+=("$store-before")
done
for store in "${configs[@]}"; do
	bin=$saga
	[ "$store" != "${store%-before}" ] && bin=$(realpath "$BEFORE")
	case ${store%-before} in
	embedded) start "$store" "" ;;
	redis)
		startRedis "$store"
		redisports[$store]=$port
		for i in $(seq "$sagas"); do start "$store.$i" "redis://127.0.0.1:$port"; done
		;;
	cluster)
		nodes=()
		for i in 1 2 3; do
			startRedis "$store-node$i" --cluster-enabled yes --cluster-config-file nodes.conf
			nodes+=("127.0.0.1:$port")
			redisports[$store]+=" $port"
		done
		redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$dir/cluster.log" 2>&1
		for _ in $(seq 100); do
			[ "$(redis-cli -p "${nodes[0]#*:}" cluster info | tr -d '\r' | sed -n 's/^cluster_state://p')" = ok ] && break
			sleep 0.1
		done
		for i in $(seq "$sagas"); do start "$store.$i" "redis-cluster://$(
			IFS=,
			echo "${nodes[*]}"
		)"; done
		;;
	*) echo "stores.sh: unknown store $store (embedded, redis, cluster)" >&2 && exit 2 ;;
	esac
done

# cpuTicks PID... prints the user+system clock ticks the processes used.
cpuTicks() {
	local sum=0 pid
	for pid in "$@"; do sum=$((sum + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
	echo "$sum"
}

# redisCPU PORT... prints the CPU seconds the Redis servers used.
redisCPU() {
	local p
	for p in "$@"; do redis-cli -p "$p" info cpu; done | tr -d '\r' |
		awk -F: '/^used_cpu_(sys|user):/{s += $2} END {printf "%.4f\n", s}'
}

# commandStats PORT... prints "command calls usec", summed over the servers.
commandStats() {
	local p
	for p in "$@"; do redis-cli -p "$p" info commandstats; done | tr -d '\r' |
		sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),usec=\([0-9]*\),.*/\1 \2 \3/p' |
		awk '{c[$1] += $2; u[$1] += $3} END {for (k in c) print k ":" c[k] ":" u[k]}'
}

IFS=, read -r -a scenarioList <<<"$scenarios"
seconds=${duration%s}
echo "stores.sh: $runs rounds of $scenarios, $clients clients over $sagas saga(s) per Redis, $duration each; stores: ${configs[*]}; load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$runs"); do
	for i in $(seq 0 $((${#configs[@]} - 1))); do
		store=${configs[$(((i + round - 1) % ${#configs[@]}))]}
		read -r -a targets <<<"${addrs[$store]}"
		read -r -a procs <<<"${spids[$store]}"
		read -r -a ports <<<"${redisports[$store]:-}"
		per=$((clients / ${#targets[@]}))
		for scenario in "${scenarioList[@]}"; do
			benchPids=()
			for t in "${!targets[@]}"; do
				"$bench" -addr "${targets[$t]}" -c "$per" -d "$duration" -warmup "${warmup}s" -scenario "$scenario" \
					>"$dir/out.$t" 2>&1 &
				benchPids+=($!)
			done
			# Sample the middle of the measured time: set-up and warm-up excluded.
			sleep $((warmup + 1))
			[ ${#ports[@]} -gt 0 ] && for p in "${ports[@]}"; do redis-cli -p "$p" config resetstat >/dev/null; done
			c0=$(cpuTicks "${procs[@]}")
			r0=$([ ${#ports[@]} -gt 0 ] && redisCPU "${ports[@]}" || echo 0)
			t0=$(date +%s.%N)
			sleep $((seconds - 2))
			c1=$(cpuTicks "${procs[@]}")
			r1=$([ ${#ports[@]} -gt 0 ] && redisCPU "${ports[@]}" || echo 0)
			t1=$(date +%s.%N)
			stats=$([ ${#ports[@]} -gt 0 ] && commandStats "${ports[@]}" | tr '\n' ';' || true)
			for pid in "${benchPids[@]}"; do wait "$pid" || true; done
			# saga-bench's table: scenario against ok failed per-second p50 p99 max share.
			cat "$dir"/out.* | awk -v round="$round" -v store="$store" -v s="$scenario" \
				-v cpu=$((c1 - c0)) -v tick="$tick" -v rcpu="$r0 $r1" -v span="$t0 $t1" -v stats="$stats" '
				$1 == s && $2 == "saga" { rate += $5; failed += $4; p50 = p50 " " $6; p99 = p99 " " $7 }
				END {
					split(span, t, " "); split(rcpu, r, " ")
					reqs = rate * (t[2] - t[1])
					if (reqs <= 0) reqs = 1
					sub(/^ /, "", p50); sub(/^ /, "", p99); gsub(/ /, ",", p50); gsub(/ /, ",", p99)
					printf "%s %s %s %.0f %s %s %d %.1f %.1f %.0f %s\n", round, store, s, rate, p50, p99, failed,
						1e6 * cpu / tick / reqs, 1e6 * (r[2] - r[1]) / reqs, reqs, stats == "" ? "-" : stats
				}' | tee -a "$dir/rows"
		done
	done
done

echo "stores.sh: load at the end $(cut -d" " -f1-3 /proc/loadavg)"
# Medians per store and scenario; per request: the Sagas' CPU, Redis's CPU,
# and each Redis command's calls and usec_per_call.
echo
awk "$statsAwk"'
{
	k = $2 " " $3
	if (!(k in runs)) order[++nk] = k
	runs[k]++
	rate[k] = rate[k] " " $4; failed[k] += $7; scpu[k] = scpu[k] " " $8; rcpu[k] = rcpu[k] " " $9
	split($5, a, ","); p50[k] = p50[k] " " ms(a[1]); split($6, a, ","); p99[k] = p99[k] " " ms(a[1])
	if ($11 != "-") {
		n = split($11, cmds, ";")
		for (i = 1; i <= n; i++) if (split(cmds[i], f, ":") == 3) {
			calls[k, f[1]] += f[2]; usec[k, f[1]] += f[3]; reqs[k, f[1]] += $10
			if (!((k, f[1]) in seen)) { seen[k, f[1]] = 1; names[k] = names[k] " " f[1] }
		}
	}
}
END {
	printf "%-15s %-10s %10s %8s %8s %6s %10s %10s  %s\n", "store", "scenario", "per second", "p50 ms", "p99 ms", "failed", "saga µs/req", "redis µs/req", "redis commands: calls per request, usec_per_call"
	for (o = 1; o <= nk; o++) {
		k = order[o]; split(k, ks, " ")
		line = ""
		n = split(names[k], cs, " ")
		for (i = 1; i <= n; i++) if (calls[k, cs[i]] >= 0.01 * reqs[k, cs[i]])
			line = line sprintf(" %s %.2f×%.2fµs", cs[i], calls[k, cs[i]] / reqs[k, cs[i]], usec[k, cs[i]] / calls[k, cs[i]])
		printf "%-15s %-10s %10.0f %8.2f %8.2f %6d %10.1f %10.1f %s\n", ks[1], ks[2], median(rate[k]), median(p50[k]), median(p99[k]), failed[k], median(scpu[k]), median(rcpu[k]), line
	}
}' "$dir/rows"
