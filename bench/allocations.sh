#!/usr/bin/env bash
# `make bench-allocations`: heap allocations per proxied request, and the code that makes them.
#
# Switchyard's allocator is mimalloc (statically linked), which valgrind's DHAT cannot see, so the
# allocations are counted as calls into mimalloc's entry points (`mi_malloc_aligned`,
# `mi_zalloc_aligned`, `mi_realloc_aligned` — what Rust's `GlobalAlloc` calls) under
# `valgrind --tool=callgrind`, with each call's chain of callers kept
# (`--separate-callers<N>=<entry>`), so the sites are exact, not estimated. A build with the
# system allocator (bare Pingora) is counted through `malloc`/`calloc`/`realloc` the same way.
#
# Same load as bench/callgrind.sh: two demo origins on 127.0.0.1, the proxy (one worker thread,
# round robin over both, keep-alive upstreams); `wrk -t1 -cN` warms it up uninstrumented, then
# AL_SECONDS more are counted and divided by the requests completed in that window.
#
# Environment:
#   AL_PEERS="switchyard"                      labels to count: `switchyard`, `bare`, `bare0`, or a
#                                               label of AL_EXTRA (as in bench/callgrind.sh)
#   AL_EXTRA="label=/path/to/switchyard[@file.toml] ..."   more Switchyard builds
#   AL_SECONDS=6 AL_WARMUP=2 AL_CONNS=4 AL_PORT_BASE=18600 AL_TOP=20 AL_DEPTH=12
#   AL_OUT=target/bench                         where the dumps are kept (allocations-<peer>.out)
#   AL_WRK_SCRIPT=file.lua                      a wrk script for another request (e.g.
#                                               bench/scenarios/post1.lua: a 1-byte POST)
#   SWITCHYARD_BIN, BARE_PINGORA_BIN, DEMO_ORIGIN_BIN   (default: $CARGO_TARGET_DIR/release/…)
#
# Only 127.0.0.1 is used; every process started here is stopped on exit; every run is bounded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PEERS="${AL_PEERS:-switchyard}"
SECS="${AL_SECONDS:-6}"
WARMUP="${AL_WARMUP:-2}"
DEPTH="${AL_DEPTH:-12}"
CONNS="${AL_CONNS:-4}"
BASE="${AL_PORT_BASE:-18600}"
TOP="${AL_TOP:-20}"
OUT_DIR="${AL_OUT:-$ROOT/target/bench}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SWITCHYARD_BIN="${SWITCHYARD_BIN:-$TARGET_DIR/release/switchyard}"
BARE_PINGORA_BIN="${BARE_PINGORA_BIN:-$TARGET_DIR/release/bare-pingora}"
DEMO_ORIGIN_BIN="${DEMO_ORIGIN_BIN:-$TARGET_DIR/release/demo-origin}"
P_O1=$((BASE + 1)); P_O2=$((BASE + 2)); P_PROXY=$((BASE + 3)); P_METRICS=$((BASE + 4))
BARE_UNPATCHED_BIN="${BARE_UNPATCHED_BIN:-$TARGET_DIR/release/bare-pingora-unpatched}"
EXTRA="${AL_EXTRA:-}"
WRK_SCRIPT=()
[ -n "${AL_WRK_SCRIPT:-}" ] && WRK_SCRIPT=(-s "$AL_WRK_SCRIPT")

log() { printf '[allocations] %s\n' "$*" >&2; }
die() { printf '[allocations] error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=lib/two-origins.sh
. "$ROOT/bench/lib/two-origins.sh"
case "$SECS$WARMUP$DEPTH$CONNS$BASE$TOP" in *[!0-9]*) die "AL_SECONDS/WARMUP/DEPTH/CONNS/PORT_BASE/TOP must be integers" ;; esac
for tool in valgrind callgrind_control wrk python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (apt-get install valgrind wrk python3)"
done
[ -x "$DEMO_ORIGIN_BIN" ] || die "missing $DEMO_ORIGIN_BIN (cargo build --release -p demo-origin)"

scratch_dir allocations
for p in $P_O1 $P_O2 $P_PROXY; do
  port_open "$p" && die "port 127.0.0.1:$p is in use (set AL_PORT_BASE)"
done

start_two_origins
write_two_origin_config allocations

# shellcheck source=lib/peers.sh
. "$ROOT/bench/lib/peers.sh"
write_peer_configs

ENTRIES="mi_malloc_aligned mi_zalloc_aligned mi_realloc_aligned malloc calloc realloc"

# run PEER DUMP: the proxy under callgrind, counted after the warm-up; prints the requests counted.
run() {
  local cmd pid vg reqs sep=() e
  cmd="$(command_of "$1")" || die "unknown peer $1"
  for e in $ENTRIES; do sep+=("--separate-callers$DEPTH=$e"); done
  # shellcheck disable=SC2086
  RUST_LOG=warn timeout $((SECS + WARMUP + 180)) valgrind --tool=callgrind --instr-atstart=no \
    "${sep[@]}" --callgrind-out-file="$2" $cmd >"$TMP/$1.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_port "$P_PROXY" 90 || { tail -5 "$TMP/$1.log" >&2; die "$1 did not start under valgrind"; }
  vg="$(pgrep -P "$pid" | head -1)"
  [ -n "$vg" ] || vg="$pid"
  timeout $((WARMUP + 20)) wrk -t1 -c"$CONNS" -d"${WARMUP}s" "${WRK_SCRIPT[@]}" "http://127.0.0.1:$P_PROXY/" >/dev/null 2>&1 || true
  callgrind_control -i on "$vg" >/dev/null 2>&1 || die "$1: callgrind_control -i on failed"
  timeout $((SECS + 30)) wrk -t1 -c"$CONNS" -d"${SECS}s" "${WRK_SCRIPT[@]}" "http://127.0.0.1:$P_PROXY/" \
    >"$TMP/wrk-$1.txt" 2>&1 || true
  callgrind_control -d "$vg" >/dev/null 2>&1 || die "$1: callgrind_control -d failed"
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  reqs="$(awk '/requests in/ { print $1 }' "$TMP/wrk-$1.txt")"
  echo "${reqs:-0}"
}

echo "## Heap allocations per request (callgrind, calls into the allocator)"
echo
echo "- Date: $(date -u '+%F %H:%M UTC'); revision $(git rev-parse --short HEAD 2>/dev/null || echo '?'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- Command: \`$(env | grep -E '^(AL_[A-Z_]+|SWITCHYARD_BIN|BARE_PINGORA_BIN)=' | sort | tr '\n' ' ')bench/allocations.sh\`"
echo "- Load: \`wrk -t1 -c$CONNS\`, ${WARMUP} s warm-up then ${SECS} s counted; ${AL_WRK_SCRIPT:+the requests of }${AL_WRK_SCRIPT:-GET /} through round robin over two demo origins"
echo
mkdir -p "$OUT_DIR"
for peer in $PEERS; do
  reqs="$(run "$peer" "$TMP/cg-$peer.out")"
  [ "$reqs" -gt 0 ] 2>/dev/null || die "$peer: no request completed under load"
  dump="$(ls "$TMP/cg-$peer.out".*1 "$TMP/cg-$peer.out".1 2>/dev/null | head -1 || true)"
  [ -n "$dump" ] || dump="$(ls "$TMP/cg-$peer.out"* | grep -v '\.out$' | head -1 || true)"
  [ -n "$dump" ] || die "$peer: no callgrind dump"
  cp "$dump" "$OUT_DIR/allocations-$peer.out"
  python3 "$ROOT/bench/allocation_sites.py" "$dump" "$reqs" "$peer" "$TOP" $ENTRIES
done
