#!/usr/bin/env bash
# `make bench-instructions`: user-space instructions per proxied request, counted by
# `valgrind --tool=callgrind`, for Switchyard, bare Pingora, NGINX and HAProxy.
#
# Why: on this shared VM, req/s and even requests per CPU-second move by ±20% from one 10-second
# round to the next (bench/run.sh interleaves rounds to cope). Instruction counts do not: they are
# the same for the same binary and load whatever else the machine does, so they resolve levers of
# a few percent that wall-clock rounds cannot. They leave out the kernel (the same syscalls per
# request for every peer here) and cache and branch effects, so they complement `make bench`,
# never replace it.
#
# For each peer: two demo origins (Rust, `bin/demo-origin`) on 127.0.0.1; the proxy under
# callgrind, round robin over both with keep-alive upstreams, one worker thread; `wrk -t1 -cN`
# warms it up for CG_WARMUP seconds, instrumentation starts (`callgrind_control -i on`), wrk runs
# CG_SECONDS more, the counters are dumped (`callgrind_control -d`) and divided by the requests
# wrk completed in that window.
#
# Environment:
#   CG_PEERS="switchyard bare bare0 nginx haproxy"  peers to count (also any label of CG_EXTRA,
#                                               `switchyard-full`: ewma + active checks + metrics,
#                                               and `bare0`: bare Pingora 0.9.1 without the vendor
#                                               patches, BARE_UNPATCHED_BIN)
#   CG_EXTRA="label=/path/to/switchyard ..."   more Switchyard builds or wrapper scripts;
#                                               label=BIN@FILE appends FILE (TOML) to the config
#   CG_SECONDS=8 CG_WARMUP=2 CG_CONNS=4        measured seconds, warm-up seconds, wrk connections
#   CG_WRK_SCRIPT=file.lua                      a wrk script for another request (e.g.
#                                               bench/scenarios/post1.lua: a 1-byte POST, which
#                                               takes Pingora's piped path, not the direct one)
#   CG_PORT_BASE=18500                          ports BASE+1 .. BASE+9 on 127.0.0.1
#   CG_TARGET_PORT=BASE+3                       the port wrk loads: another listener a label's
#                                               @FILE adds (e.g. a `tcp` listener on BASE+5
#                                               proxying to the upstream "origins")
#   CG_SKIP_BUILD=1                             use the binaries already built
#   CG_CACHE_SIM=1                              also simulate the caches (L1i/L1d/LL misses in
#                                               the dumps: `callgrind_annotate` shows them)
#   SWITCHYARD_BIN, BARE_PINGORA_BIN, DEMO_ORIGIN_BIN   (default: $CARGO_TARGET_DIR/release/…)
#   CG_TOP=15                                   also print the top functions of each Pingora-based peer
#   CG_OUT=target/bench                         where the dumps are kept (callgrind-<peer>.out)
#
# Only 127.0.0.1 is used; every process started here is stopped on exit; every run is bounded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PEERS="${CG_PEERS:-switchyard bare bare0 nginx haproxy}"
SECS="${CG_SECONDS:-8}"
WARMUP="${CG_WARMUP:-2}"
CONNS="${CG_CONNS:-4}"
BASE="${CG_PORT_BASE:-18500}"
TOP="${CG_TOP:-15}"
OUT_DIR="${CG_OUT:-$ROOT/target/bench}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SWITCHYARD_BIN="${SWITCHYARD_BIN:-$TARGET_DIR/release/switchyard}"
BARE_PINGORA_BIN="${BARE_PINGORA_BIN:-$TARGET_DIR/release/bare-pingora}"
DEMO_ORIGIN_BIN="${DEMO_ORIGIN_BIN:-$TARGET_DIR/release/demo-origin}"
BARE_UNPATCHED_BIN="${BARE_UNPATCHED_BIN:-$TARGET_DIR/release/bare-pingora-unpatched}"
P_O1=$((BASE + 1)); P_O2=$((BASE + 2)); P_PROXY=$((BASE + 3))
P_TARGET="${CG_TARGET_PORT:-$P_PROXY}"
EXTRA="${CG_EXTRA:-}"
WRK_SCRIPT=()
[ -n "${CG_WRK_SCRIPT:-}" ] && WRK_SCRIPT=(-s "$CG_WRK_SCRIPT")

log() { printf '[callgrind] %s\n' "$*" >&2; }
die() { printf '[callgrind] error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=lib/two-origins.sh
. "$ROOT/bench/lib/two-origins.sh"
case "$SECS$WARMUP$CONNS$BASE$P_TARGET" in *[!0-9]*) die "CG_SECONDS/WARMUP/CONNS/PORT_BASE/TARGET_PORT must be integers" ;; esac

need=()
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
peer_tools_missing
install_missing "${need[@]}"
export PATH="$PATH:/usr/sbin"

if [ "${CG_SKIP_BUILD:-0}" != 1 ]; then
  case " $PEERS " in *" bare0 "*) build_release 1 ;; *) build_release 0 ;; esac
fi
case " $PEERS " in *" bare0 "*) [ -x "$BARE_UNPATCHED_BIN" ] || die "missing binary $BARE_UNPATCHED_BIN" ;; esac
case " $PEERS " in *" bare "*) [ -x "$BARE_PINGORA_BIN" ] || die "missing binary $BARE_PINGORA_BIN" ;; esac
for b in "$SWITCHYARD_BIN" "$DEMO_ORIGIN_BIN"; do
  [ -x "$b" ] || die "missing binary $b"
done

scratch_dir callgrind
for p in $P_O1 $P_O2 $P_PROXY $((BASE + 4)); do
  port_open "$p" && die "port 127.0.0.1:$p is in use (set CG_PORT_BASE)"
done

start_two_origins
write_two_origin_config callgrind
P_METRICS=$((BASE + 4))
# shellcheck source=lib/peers.sh
. "$ROOT/bench/lib/peers.sh"
write_peer_configs

RESULTS=()
measure() { # PEER
  local peer="$1" cmd pid out reqs ir dump
  cmd="$(command_of "$peer")" || { log "unknown peer $peer"; return 0; }
  out="$TMP/cg-$peer.out"
  # shellcheck disable=SC2086
  RUST_LOG=warn timeout $((SECS + WARMUP + 120)) valgrind --tool=callgrind ${CG_CACHE_SIM:+--cache-sim=yes} --trace-children=no --instr-atstart=no \
    --callgrind-out-file="$out" $cmd >"$TMP/$peer.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  if ! wait_port "$P_PROXY" 60 || ! wait_port "$P_TARGET" 30; then
    log "$peer did not start under valgrind:"; tail -5 "$TMP/$peer.log" >&2
    kill "$pid" 2>/dev/null || true
    return 0
  fi
  # callgrind_control needs valgrind's own pid: the child of `timeout`.
  local vg
  vg="$(pgrep -P "$pid" | head -1)"
  [ -n "$vg" ] || vg="$pid"
  timeout $((WARMUP + 20)) wrk -t1 -c"$CONNS" -d"${WARMUP}s" "${WRK_SCRIPT[@]}" "http://127.0.0.1:$P_TARGET/" >/dev/null 2>&1 || true
  # Instrumentation starts only now (start-up and warm-up run uninstrumented and uncounted).
  callgrind_control -i on "$vg" >/dev/null 2>&1 || { log "$peer: callgrind_control -i on failed"; }
  timeout $((SECS + 20)) wrk -t1 -c"$CONNS" -d"${SECS}s" "${WRK_SCRIPT[@]}" "http://127.0.0.1:$P_TARGET/" >"$TMP/wrk-$peer.txt" 2>&1 || true
  callgrind_control -d "$vg" >/dev/null 2>&1 || { log "$peer: callgrind_control -d failed"; }
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  reqs="$(awk '/requests in/ { print $1 }' "$TMP/wrk-$peer.txt")"
  dump="$(ls "$out".*.1 "$out".1 2>/dev/null | head -1 || true)"
  [ -n "$dump" ] || dump="$(ls "$out"* 2>/dev/null | grep -v '\.out$' | head -1 || true)"
  if [ -z "$reqs" ] || [ -z "$dump" ]; then
    log "$peer: no result (requests: ${reqs:-none}, dump: ${dump:-none}; files: $(ls "$TMP" | tr "\n" " "))"
    return 0
  fi
  ir="$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")"
  mkdir -p "$OUT_DIR" && cp "$dump" "$OUT_DIR/callgrind-$peer.out"
  RESULTS+=("$peer $reqs $ir")
  log "$(printf '%-12s %8s requests  %14s instructions  %8.0f per request' "$peer" "$reqs" "$ir" "$(awk -v i="$ir" -v r="$reqs" 'BEGIN { print i / r }')")"
  if [ "$TOP" -gt 0 ] && [ "$peer" != nginx ] && [ "$peer" != haproxy ] && command -v callgrind_annotate >/dev/null; then
    {
      echo "#### $peer: top functions by their own instructions (over the counted window)"
      echo
      echo '```'
      callgrind_annotate --inclusive=no "$dump" 2>/dev/null | grep -E '^ *[0-9,]+ \( *[0-9.]+%\) ' | grep -v 'PROGRAM TOTALS' | head -"$TOP" | cut -c1-170 || true
      echo '```'
      echo
    } >>"$TMP/top.md"
  fi
}

for peer in $PEERS; do measure "$peer"; done

echo "## Instructions per request (callgrind)"
echo
echo "- Date: $(date -u '+%F %H:%M UTC'); revision $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- crates bin 2>/dev/null || echo ', dirty tree')"
echo "- Command: \`$(env | grep -E '^(CG_[A-Z_]+|SWITCHYARD_BIN|BARE_PINGORA_BIN)=' | sort | tr '\n' ' ')bench/callgrind.sh\`"
echo "- Load: \`wrk -t1 -c$CONNS\`, ${WARMUP} s warm-up then ${SECS} s counted; ${CG_WRK_SCRIPT:-GET /} to port $P_TARGET through round robin over two demo origins; user-space instructions of the proxy process only"
echo
echo "| proxy | requests counted | instructions | per request | ÷ NGINX |"
echo "|---|---:|---:|---:|---:|"
nginx_per=
for r in "${RESULTS[@]}"; do
  set -- $r
  [ "$1" = nginx ] && nginx_per="$(awk -v i="$3" -v n="$2" 'BEGIN { print i / n }')"
done
for r in "${RESULTS[@]}"; do
  set -- $r
  per="$(awk -v i="$3" -v n="$2" 'BEGIN { printf "%.0f", i / n }')"
  ratio="n/a"
  [ -n "$nginx_per" ] && ratio="$(awk -v p="$per" -v n="$nginx_per" 'BEGIN { printf "%.2f×", p / n }')"
  echo "| $1 | $2 | $3 | $per | $ratio |"
done
if [ -s "$TMP/top.md" ]; then
  echo
  cat "$TMP/top.md"
fi
