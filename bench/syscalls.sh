#!/usr/bin/env bash
# `make bench-syscalls`: the kernel side of a proxied request — system calls by name, context
# switches and kernel CPU time per request — for Switchyard, bare Pingora (patched and unpatched),
# NGINX and HAProxy on the same load (issue #22: "kernel time per request within 10% of NGINX's,
# syscalls and wake-ups per request counted and compared").
#
# Set-up: the one of `make bench-instructions` (bench/lib/two-origins.sh, bench/lib/peers.sh):
# two demo origins, each proxy with one worker, round robin over both, keep-alive upstreams. The
# proxy runs alone on CPU 1, the origins and wrk on CPU 0 (as in `make bench`). For each peer:
#   1. warm-up: `wrk -t1 -cN` for SC_WARMUP seconds (not counted);
#   2. window A, nothing attached: `wrk` for SC_SECONDS; utime/stime of all the proxy's threads
#      (/proc/<pid>/stat), its minor page faults, and its voluntary + involuntary context switches
#      (/proc/<pid>/task/*/status) before and after, divided by the requests wrk completed;
#   3. window B: the same load with `perf trace -s -p <pid>` attached (tracepoints, not ptrace);
#      its per-thread summary, added up by system call, divided by the requests of that window.
# Counts per request are stable from run to run; CPU microseconds are not (a shared machine):
# compare peers measured in the same run.
#
# Environment:
#   SC_PEERS="switchyard bare bare0 nginx haproxy"   peers (labels as in bench/callgrind.sh,
#                                                     SC_EXTRA labels included)
#   SC_EXTRA="label=/path/to/switchyard[@file.toml] ..."   more Switchyard builds (as CG_EXTRA)
#   SC_SECONDS=5 SC_WARMUP=2 SC_CONNS=32             window length, warm-up, wrk connections
#   SC_PORT_BASE=18800                               ports BASE+1 .. BASE+4 on 127.0.0.1
#   SC_SKIP_BUILD=1                                  use the binaries already built
#   SC_PROFILE=1                                     window C: `perf record -p <pid>` (cpu-clock)
#                                                    under the same load; prints each peer's top
#                                                    kernel and user symbols by samples
#   SWITCHYARD_BIN, BARE_PINGORA_BIN, BARE_UNPATCHED_BIN, DEMO_ORIGIN_BIN
#
# Only 127.0.0.1 is used; every process started here is stopped on exit; every run is bounded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PEERS="${SC_PEERS:-switchyard bare bare0 nginx haproxy}"
SECS="${SC_SECONDS:-5}"
WARMUP="${SC_WARMUP:-2}"
CONNS="${SC_CONNS:-32}"
BASE="${SC_PORT_BASE:-18800}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SWITCHYARD_BIN="${SWITCHYARD_BIN:-$TARGET_DIR/release/switchyard}"
BARE_PINGORA_BIN="${BARE_PINGORA_BIN:-$TARGET_DIR/release/bare-pingora}"
BARE_UNPATCHED_BIN="${BARE_UNPATCHED_BIN:-$TARGET_DIR/release/bare-pingora-unpatched}"
DEMO_ORIGIN_BIN="${DEMO_ORIGIN_BIN:-$TARGET_DIR/release/demo-origin}"
P_O1=$((BASE + 1)); P_O2=$((BASE + 2)); P_PROXY=$((BASE + 3)); P_METRICS=$((BASE + 4))
EXTRA="${SC_EXTRA:-}"
CLK_TCK="$(getconf CLK_TCK)"

log() { printf '[syscalls] %s\n' "$*" >&2; }
die() { printf '[syscalls] error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=lib/two-origins.sh
. "$ROOT/bench/lib/two-origins.sh"
case "$SECS$WARMUP$CONNS$BASE" in *[!0-9]*) die "SC_SECONDS/WARMUP/CONNS/PORT_BASE must be integers" ;; esac

need=()
command -v perf >/dev/null 2>&1 || need+=(linux-perf)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
peer_tools_missing
install_missing "${need[@]}"
export PATH="$PATH:/usr/sbin"

if [ "${SC_SKIP_BUILD:-0}" != 1 ]; then
  case " $PEERS " in *" bare0 "*) build_release 1 ;; *) build_release 0 ;; esac
fi
for b in "$SWITCHYARD_BIN" "$DEMO_ORIGIN_BIN"; do
  [ -x "$b" ] || die "missing binary $b"
done

scratch_dir syscalls
for p in $P_O1 $P_O2 $P_PROXY $P_METRICS; do
  port_open "$p" && die "port 127.0.0.1:$p is in use (set SC_PORT_BASE)"
done
start_two_origins
for p in "${PIDS[@]}"; do taskset -pc 0 "$p" >/dev/null; done
write_two_origin_config syscalls
# shellcheck source=lib/peers.sh
. "$ROOT/bench/lib/peers.sh"
write_peer_configs

# cpu_ticks PID: the whole process's "utime stime minflt" (clock ticks, ticks, minor page faults).
cpu_ticks() { awk '{ print $14, $15, $10 }' "/proc/$1/stat"; }
# ctx_switches PID: voluntary + involuntary context switches summed over the process's threads.
ctx_switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null |
    awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}
load() { # SECONDS OUTFILE
  timeout $(($1 + 20)) taskset -c 0 wrk -t1 -c"$CONNS" -d"$1s" "http://127.0.0.1:$P_PROXY/" >"$2" 2>&1 || true
}
requests_of() { awk '/requests in/ { print $1 }' "$1"; }

ROWS=()
measure() { # PEER
  local peer="$1" cmd pid
  cmd="$(command_of "$peer")" || { log "unknown peer $peer"; return 0; }
  # shellcheck disable=SC2086
  RUST_LOG=warn taskset -c 1 $cmd >"$TMP/$peer.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  if ! wait_port "$P_PROXY" 30; then
    log "$peer did not start:"; tail -5 "$TMP/$peer.log" >&2
    kill "$pid" 2>/dev/null || true
    return 0
  fi
  load "$WARMUP" /dev/null

  local t0 t1 c0 c1 reqs_a
  t0="$(cpu_ticks "$pid")"; c0="$(ctx_switches "$pid")"
  load "$SECS" "$TMP/wrk-a-$peer.txt"
  t1="$(cpu_ticks "$pid")"; c1="$(ctx_switches "$pid")"
  reqs_a="$(requests_of "$TMP/wrk-a-$peer.txt")"

  local tp reqs_b
  timeout $((SECS + 30)) perf trace -s -p "$pid" -o "$TMP/trace-$peer.txt" >/dev/null 2>&1 &
  tp=$!
  sleep 1
  load "$SECS" "$TMP/wrk-b-$peer.txt"
  kill -INT "$tp" 2>/dev/null || true
  wait "$tp" 2>/dev/null || true
  reqs_b="$(requests_of "$TMP/wrk-b-$peer.txt")"
  if [ "${SC_PROFILE:-0}" = 1 ]; then
    timeout $((SECS + 30)) perf record -q -e cpu-clock -F 4999 -p "$pid" -o "$TMP/perf-$peer.data" >/dev/null 2>&1 &
    tp=$!
    sleep 1
    load "$SECS" /dev/null
    kill -INT "$tp" 2>/dev/null || true
    wait "$tp" 2>/dev/null || true
    {
      echo "#### $peer: where its CPU time goes (perf record, cpu-clock samples)"
      echo
      echo '```'
      perf report -i "$TMP/perf-$peer.data" --stdio --no-children --sort dso,sym --percent-limit 1 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -40 || true
      echo '```'
      echo
    } >>"$TMP/profile.md"
  fi
  kill -INT "$pid" 2>/dev/null || true
  sleep 0.3
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  sleep 0.3
  if [ -z "$reqs_a" ] || [ -z "$reqs_b" ] || [ "$reqs_a" = 0 ] || [ "$reqs_b" = 0 ]; then
    log "$peer: no requests counted (wrk: ${reqs_a:-none} / ${reqs_b:-none})"
    return 0
  fi
  # Window B's summary: one table per thread; rows "name calls errors total min avg max stddev".
  awk -v r="$reqs_b" -v peer="$peer" '
    $1 ~ /^[a-z_0-9]+$/ && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ && NF >= 8 { n[$1] += $2; t += $2 }
    END { for (s in n) printf "%s\t%s\t%.3f\n", peer, s, n[s] / r; printf "%s\t(all)\t%.3f\n", peer, t / r }
  ' "$TMP/trace-$peer.txt" >>"$TMP/by-syscall.tsv"
  local row
  row="$(awk -v a="$t0" -v b="$t1" -v c0="$c0" -v c1="$c1" -v r="$reqs_a" -v hz="$CLK_TCK" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    printf "%.2f %.2f %.3f %.3f", (y[1] - x[1]) / hz / r * 1e6, (y[2] - x[2]) / hz / r * 1e6, (c1 - c0) / r, (y[3] - x[3]) / r }')"
  ROWS+=("$peer $reqs_a $row $reqs_b")
  log "$peer: $reqs_a requests; user/kernel µs, context switches and minor faults per request: $row"
}

for peer in $PEERS; do measure "$peer"; done
[ ${#ROWS[@]} -gt 0 ] || die "no peer was measured"

total_of() { awk -F'\t' -v p="$1" '$1 == p && $2 == "(all)" { print $3 }' "$TMP/by-syscall.tsv"; }
nginx_kernel=; nginx_sys=
for r in "${ROWS[@]}"; do
  set -- $r
  [ "$1" = nginx ] && { nginx_kernel="$4"; nginx_sys="$(total_of nginx)"; }
done
ratio() { [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }' || echo n/a; }

echo "## System calls, context switches and kernel time per request"
echo
echo "- Date: $(date -u '+%F %H:%M UTC'); revision $(git rev-parse --short HEAD 2>/dev/null || echo '?'); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- Command: \`$(env | grep -E '^(SC_[A-Z_]+|SWITCHYARD_BIN|BARE_PINGORA_BIN|BARE_UNPATCHED_BIN)=' | sort | tr '\n' ' ')bench/syscalls.sh\`"
echo "- Load: \`wrk -t1 -c$CONNS\` GET / (CPU 0) through a one-worker proxy (CPU 1), round robin over two demo origins (CPU 0); ${SECS} s per window after ${WARMUP} s warm-up"
echo
echo "| proxy | requests (window A) | user µs / req | kernel µs / req | kernel ÷ NGINX | context switches / req | minor page faults / req | syscalls / req (window B, perf trace) | syscalls ÷ NGINX |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in "${ROWS[@]}"; do
  set -- $r
  sys="$(total_of "$1")"
  echo "| $1 | $2 | $3 | $4 | $(ratio "$4" "$nginx_kernel") | $5 | $6 | ${sys:-n/a} | $(ratio "${sys:-0}" "$nginx_sys") |"
done
echo
echo "### By system call (calls per request; window B)"
echo
peers_measured=()
for r in "${ROWS[@]}"; do set -- $r; peers_measured+=("$1"); done
printf '| syscall |'; for p in "${peers_measured[@]}"; do printf ' %s |' "$p"; done; echo
printf '|---|'; for p in "${peers_measured[@]}"; do printf -- '---:|'; done; echo
# Rows: every syscall some peer makes at least 0.01 times per request, most frequent (summed) first.
awk -F'\t' '$2 != "(all)" { s[$2] += $3 } END { for (k in s) if (s[k] >= 0.01) printf "%s\t%.3f\n", k, s[k] }' "$TMP/by-syscall.tsv" |
  sort -t$'\t' -k2,2 -gr | cut -f1 | while read -r sc; do
    printf '| %s |' "$sc"
    for p in "${peers_measured[@]}"; do
      v="$(awk -F'\t' -v p="$p" -v s="$sc" '$1 == p && $2 == s { print $3 }' "$TMP/by-syscall.tsv")"
      printf ' %s |' "${v:-0}"
    done
    echo
  done
if [ -s "$TMP/profile.md" ]; then
  echo
  cat "$TMP/profile.md"
fi
