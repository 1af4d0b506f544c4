#!/usr/bin/env bash
# Profiles one proxy of the bench under load: the bench's origins on CPU 0, the proxy alone on
# CPU 1, wrk on CPU 0 for PROFILE_SECONDS (default 15), `perf record` (cpu-clock, DWARF call
# graphs) on the proxy for the middle of the run. Prints the top symbols, self and children.
#
#   bench/profile.sh [switchyard|bare|sy-full] [path]     # default: switchyard /
#
# Uses the binaries of `bench/run.sh` (SWITCHYARD_BIN, BARE_PINGORA_BIN; built with
# `cargo build --release -p switchyard -p bare-pingora` unless BENCH_SKIP_BUILD=1). Output:
# target/bench/perf-<peer>.data and perf-<peer>.txt. Needs `perf` (Debian: linux-perf); hardware
# counters are not needed.
set -euo pipefail
# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

PEER="${1:-switchyard}"
URL_PATH="${2:-/}"
PROFILE_SECONDS="${PROFILE_SECONDS:-15}"
command -v perf >/dev/null 2>&1 || die "perf is missing (apt-get install linux-perf)"
ensure_tools
build
for p in $ALL_PORTS; do
  port_busy "$p" && die "port 127.0.0.1:$p is in use"
done
TMP="$(mktemp -d /tmp/switchyard-profile.XXXXXX)"
write_configs
start origin1 0 "$P_O1" nginx -p "$TMP/nginx/" -e "$TMP/nginx/o1.stderr.log" -c "$TMP/origin1.conf" || die "origin 1"
start origin2 0 "$P_O2" nginx -p "$TMP/nginx/" -e "$TMP/nginx/o2.stderr.log" -c "$TMP/origin2.conf" || die "origin 2"
start_peer "$PEER" 0 || die "$PEER did not start"
pid=$PEER_PID
url="$PEER_URL_BASE$URL_PATH"
mkdir -p "$OUT_DIR"
data="$OUT_DIR/perf-$PEER.data"
timeout 15 taskset -c 0 wrk -t1 -c"$CONNS" -d1s "$url" >/dev/null 2>&1 || true
timeout $((PROFILE_SECONDS + 20)) taskset -c 0 wrk -t1 -c"$CONNS" -d"${PROFILE_SECONDS}s" --latency "$url" >"$TMP/wrk.txt" 2>&1 &
wrk_pid=$!
PIDS+=("$wrk_pid")
sleep 2
# perf runs on CPU 0 so that it does not take the proxy's CPU.
timeout $((PROFILE_SECONDS + 20)) taskset -c 0 perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 \
  -o "$data" -p "$pid" -- sleep $((PROFILE_SECONDS - 4)) >/dev/null 2>&1 || true
wait "$wrk_pid" || true
grep -E "Requests/sec|requests in" "$TMP/wrk.txt" >&2 || true
{
  echo "# perf: $PEER on $URL_PATH, $(grep 'Requests/sec' "$TMP/wrk.txt")"
  echo "## self"
  perf report -i "$data" --no-children --sort symbol --stdio --percent-limit 0.7 -g none 2>/dev/null | grep -v '^$' | head -70
  echo "## children (inclusive)"
  perf report -i "$data" --children --sort symbol --stdio --percent-limit 1.5 -g none 2>/dev/null | grep -v '^$' | head -90
} >"$OUT_DIR/perf-$PEER.txt"
cat "$OUT_DIR/perf-$PEER.txt"
log "saved $data and $OUT_DIR/perf-$PEER.txt"
