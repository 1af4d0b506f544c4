#!/usr/bin/env bash
# What active health checks cost an idle proxy: HI_SERVERS servers checked over HTTP (`GET /health`)
# every HI_INTERVAL_MS, no client traffic. The servers are HI_ORIGINS demo origins on 127.0.0.1,
# each listed once in each of HI_SERVERS / HI_ORIGINS upstreams (a server's host:port must be unique
# within its upstream only), so 200 servers need 20 origin processes, not 200.
#
# For each Switchyard build of HI_PEERS ("label=/path/to/switchyard ..."), in interleaved rounds:
# the CPU time of the proxy (all its threads, /proc/<pid>/task/*/schedstat, nanoseconds) over
# HI_SECONDS, per 1,000 checks; then, once per build, user-space instructions per check under
# `valgrind --tool=callgrind` over HI_CG_SECONDS (HI_CALLGRIND=0 skips it). Checks are counted from
# `switchyard_health_checks_total` (metrics endpoint) before and after each window. Under callgrind
# the proxy runs ~50x slower and falls behind the schedule: the count per check still holds, the
# checks per second do not.
#
# Environment:
#   HI_PEERS="switchyard=$CARGO_TARGET_DIR/release/switchyard"
#   HI_SERVERS=200  HI_ORIGINS=20  HI_INTERVAL_MS=100
#   HI_SECONDS=20   HI_ROUNDS=3    HI_WARMUP=3   HI_CG_SECONDS=10   HI_CALLGRIND=1
#   HI_PORT_BASE=18800             ports BASE+1 .. BASE+HI_ORIGINS+2 on 127.0.0.1
#   HI_OUT=target/bench            where the callgrind dumps are kept (callgrind-health-<label>.out)
#   DEMO_ORIGIN_BIN                (default: $CARGO_TARGET_DIR/release/demo-origin)
#
# Only 127.0.0.1 is used; every process started here is stopped on exit; every run is bounded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PEERS="${HI_PEERS:-switchyard=$TARGET_DIR/release/switchyard}"
SERVERS="${HI_SERVERS:-200}"; ORIGINS="${HI_ORIGINS:-20}"; INTERVAL="${HI_INTERVAL_MS:-100}"
SECS="${HI_SECONDS:-20}"; ROUNDS="${HI_ROUNDS:-3}"; WARMUP="${HI_WARMUP:-3}"
CG_SECS="${HI_CG_SECONDS:-10}"; BASE="${HI_PORT_BASE:-18800}"
OUT_DIR="${HI_OUT:-$TARGET_DIR/bench}"
DEMO_ORIGIN_BIN="${DEMO_ORIGIN_BIN:-$TARGET_DIR/release/demo-origin}"

log() { printf '[health-idle] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=lib/two-origins.sh
. "$ROOT/bench/lib/two-origins.sh"

case "$SERVERS$ORIGINS$INTERVAL$SECS$ROUNDS$WARMUP$CG_SECS$BASE" in
  *[!0-9]*) die "HI_* must be integers" ;;
esac
[ "$ORIGINS" -ge 1 ] && [ "$SERVERS" -ge "$ORIGINS" ] && [ $((SERVERS % ORIGINS)) -eq 0 ] ||
  die "HI_SERVERS must be a multiple of HI_ORIGINS (>= 1)"
[ "$SECS" -ge 1 ] && [ "$SECS" -le 600 ] && [ "$CG_SECS" -le 600 ] || die "HI_SECONDS, HI_CG_SECONDS: 1..600"
[ -x "$DEMO_ORIGIN_BIN" ] || die "missing binary $DEMO_ORIGIN_BIN"
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
[ "${HI_CALLGRIND:-1}" = 0 ] || command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
install_missing "${need[@]}"

scratch_dir health-idle
P_PROXY=$((BASE + ORIGINS + 1)); P_METRICS=$((BASE + ORIGINS + 2))
for ((i = 1; i <= ORIGINS + 2; i++)); do
  port_open $((BASE + i)) && die "port 127.0.0.1:$((BASE + i)) is in use (set HI_PORT_BASE)"
done
for ((i = 1; i <= ORIGINS; i++)); do
  "$DEMO_ORIGIN_BIN" --listen "127.0.0.1:$((BASE + i))" --name "o$i" >"$TMP/o$i.log" 2>&1 &
  PIDS+=($!)
done
for ((i = 1; i <= ORIGINS; i++)); do wait_port $((BASE + i)) 10 || die "origin $i did not start"; done

{
  cat <<EOF
[server]
instance_id = "health-idle"
threads = 1
grace_period_s = 1

[[listeners]]
name = "web"
listen = "127.0.0.1:$P_PROXY"

[metrics]
listen = "127.0.0.1:$P_METRICS"

[[routes]]
name = "all"
path_prefix = "/"
upstream = "u1"
EOF
  for ((u = 1; u <= SERVERS / ORIGINS; u++)); do
    printf '\n[[upstreams]]\nname = "u%d"\n  [[upstreams.groups]]\n  name = "g"\n' "$u"
    for ((i = 1; i <= ORIGINS; i++)); do
      printf '    [[upstreams.groups.servers]]\n    address = "127.0.0.1"\n    port = %d\n' $((BASE + i))
    done
    printf '  [upstreams.health.active]\n  protocol = "http"\n  path = "/health"\n  interval_ms = %d\n' "$INTERVAL"
  done
} >"$TMP/switchyard.toml"

# checks: active checks done so far (pass + fail), from the metrics endpoint.
checks() {
  curl -s --max-time 10 "http://127.0.0.1:$P_METRICS/metrics" |
    awk '/^switchyard_health_checks_total\{/ { n += $NF } END { printf "%.0f", n }'
}
# cpu_ns PID: run time of all the threads of PID, in nanoseconds.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ n += $1 } END { printf "%.0f", n }'; }
# stop PID: SIGINT, then wait until the proxy's port is free (SO_REUSEPORT: no stale instance).
stop() {
  kill -INT "$1" 2>/dev/null || true
  local _
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  for _ in $(seq 1 50); do port_open "$P_METRICS" || break; sleep 0.1; done
}

echo "## Active health checks on an idle proxy ($SERVERS servers, HTTP GET /health every ${INTERVAL} ms)"
echo
echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); revision $(git rev-parse --short HEAD 2>/dev/null || echo unknown); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- $SERVERS servers = $((SERVERS / ORIGINS)) upstreams x $ORIGINS demo origins, one worker thread; ${WARMUP} s warm-up, then ${SECS} s measured per round"
echo
echo "| round | build | checks | checks/s | proxy CPU ms | CPU ms per 1,000 checks |"
echo "|---:|---|---:|---:|---:|---:|"
for ((r = 1; r <= ROUNDS; r++)); do
  for peer in $PEERS; do
    label="${peer%%=*}"; bin="${peer#*=}"
    [ -x "$bin" ] || die "missing binary $bin"
    RUST_LOG=warn "$bin" run -c "$TMP/switchyard.toml" >"$TMP/$label.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$P_METRICS" 20 || { tail -5 "$TMP/$label.log" >&2; die "$label did not start"; }
    sleep "$WARMUP"
    c0=$(checks); t0=$(cpu_ns "$pid")
    sleep "$SECS"
    t1=$(cpu_ns "$pid"); c1=$(checks)
    stop "$pid"
    awk -v r="$r" -v l="$label" -v c=$((c1 - c0)) -v s="$SECS" -v t=$((t1 - t0)) 'BEGIN {
      printf "| %d | %s | %d | %.0f | %.0f | %s |\n", r, l, c, c / s, t / 1e6, (c > 0 ? sprintf("%.1f", t / 1e6 / c * 1000) : "n/a") }'
  done
done

[ "${HI_CALLGRIND:-1}" = 0 ] && exit 0
mkdir -p "$OUT_DIR"
echo
echo "| build (callgrind, ${CG_SECS} s counted) | checks | instructions | per check |"
echo "|---|---:|---:|---:|"
for peer in $PEERS; do
  label="${peer%%=*}"; bin="${peer#*=}"
  out="$TMP/cg-$label.out"
  RUST_LOG=warn timeout $((CG_SECS + WARMUP + 180)) valgrind --tool=callgrind --trace-children=no --instr-atstart=no \
    --callgrind-out-file="$out" "$bin" run -c "$TMP/switchyard.toml" >"$TMP/cg-$label.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_port "$P_METRICS" 90 || { tail -5 "$TMP/cg-$label.log" >&2; die "$label did not start under valgrind"; }
  vg="$(pgrep -P "$pid" | head -1 || true)"; [ -n "$vg" ] || vg="$pid"
  sleep "$WARMUP"
  c0=$(checks)
  callgrind_control -i on "$vg" >/dev/null 2>&1
  sleep "$CG_SECS"
  callgrind_control -d "$vg" >/dev/null 2>&1
  c1=$(checks)
  stop "$pid"
  dump="$(ls "$out".*1 "$out".1 2>/dev/null | head -1 || true)"
  [ -n "$dump" ] || die "no callgrind dump for $label"
  cp "$dump" "$OUT_DIR/callgrind-health-$label.out"
  ir="$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")"
  awk -v l="$label" -v c=$((c1 - c0)) -v i="$ir" 'BEGIN {
    printf "| %s | %d | %s | %s |\n", l, c, i, (c > 0 ? sprintf("%.0f", i / c) : "n/a") }'
done
