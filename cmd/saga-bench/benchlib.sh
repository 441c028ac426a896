# benchlib.sh: what the benchmark scripts share (security.sh, stores.sh),
# sourced after they set dir, the temp dir they work in.

# pids are the processes started; cleanup stops them and removes dir.
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT

# servingAddr LOG waits up to 10 s for a Saga's "serving" line in LOG and
# prints its address, or prints the log and fails.
servingAddr() {
	local addr=
	for _ in $(seq 100); do
		addr=$(sed -n 's/.*"msg":"serving".*"addr":"\([^"]*\)".*/\1/p' "$1")
		[ -n "$addr" ] && { echo "$addr"; return; }
		sleep 0.1
	done
	cat "$1" >&2
	return 1
}

# statsAwk holds awk functions for the summaries: ms turns a Go duration as
# printed ("850µs", "1.2ms", "1.5s") into milliseconds; median takes a
# space-separated list.
statsAwk='
function ms(d) {
	if (sub(/µs$/, "", d)) return d / 1000
	if (sub(/ns$/, "", d)) return d / 1e6
	if (sub(/ms$/, "", d)) return d + 0
	if (sub(/s$/, "", d)) return d * 1000
	return d + 0
}
function median(list,   v, n, i, j, x) {
	n = split(list, v, " ")
	for (i = 2; i <= n; i++) { x = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
'
