#!/usr/bin/env bash
# System calls per proxied request (issue 22, point 2: "the syscalls and wake-ups per request"),
# for Switchyard beside NGINX under the same bounded load: `strace -c -f` attached to the proxy
# (every thread) for the counted window only, divided by the requests wrk completed in it.
#
# Same set-up as bench/callgrind.sh: two demo origins on 127.0.0.1, the proxy with one worker,
# round robin over both with keep-alive upstreams, `wrk -t1 -cN` GET /. strace slows the proxy
# down (every syscall stops it twice), so only the counts per request mean something, not rates.
#
# Environment:
#   SC_PEERS="switchyard nginx"                 peers: switchyard, nginx, haproxy, or a label of
#   SC_EXTRA="label=/path/to/switchyard ..."    more Switchyard builds
#   SC_SECONDS=5 SC_WARMUP=2 SC_CONNS=4 SC_PORT_BASE=18800
#   SWITCHYARD_BIN, DEMO_ORIGIN_BIN              (default: $CARGO_TARGET_DIR/release/…)
#
# Only 127.0.0.1 is used; every process started here is stopped on exit; every run is bounded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PEERS="${SC_PEERS:-switchyard nginx}"
SECS="${SC_SECONDS:-5}"
WARMUP="${SC_WARMUP:-2}"
CONNS="${SC_CONNS:-4}"
BASE="${SC_PORT_BASE:-18800}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SWITCHYARD_BIN="${SWITCHYARD_BIN:-$TARGET_DIR/release/switchyard}"
DEMO_ORIGIN_BIN="${DEMO_ORIGIN_BIN:-$TARGET_DIR/release/demo-origin}"
P_O1=$((BASE + 1)); P_O2=$((BASE + 2)); P_PROXY=$((BASE + 3))

log() { printf '[syscalls] %s\n' "$*" >&2; }
die() { printf '[syscalls] error: %s\n' "$*" >&2; exit 1; }
case "$SECS$WARMUP$CONNS$BASE" in *[!0-9]*) die "SC_SECONDS/WARMUP/CONNS/PORT_BASE must be integers" ;; esac
for tool in strace wrk; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (apt-get install strace wrk)"
done
[ -x "$DEMO_ORIGIN_BIN" ] || die "missing $DEMO_ORIGIN_BIN (cargo build --release -p demo-origin)"

TMP="$(mktemp -d /tmp/switchyard-syscalls.XXXXXX)"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# shellcheck source=lib/two-origins.sh
. "$ROOT/bench/lib/two-origins.sh"
for p in $P_O1 $P_O2 $P_PROXY; do
  port_open "$p" && die "port 127.0.0.1:$p is in use (set SC_PORT_BASE)"
done
start_two_origins
write_two_origin_config syscalls
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  upstream origins { server 127.0.0.1:$P_O1; server 127.0.0.1:$P_O2; keepalive 64; }
  server {
    listen 127.0.0.1:$P_PROXY;
    location / { proxy_pass http://origins; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF

command_of() { # PEER
  local extra
  case "$1" in
    switchyard) echo "$SWITCHYARD_BIN run -c $TMP/switchyard.toml" ;;
    nginx) echo "nginx -p $TMP/nginx/ -c $TMP/nginx.conf" ;;
    *)
      for extra in ${SC_EXTRA:-}; do
        [ "${extra%%=*}" = "$1" ] || continue
        echo "${extra#*=} run -c $TMP/switchyard.toml"
        return 0
      done
      return 1
      ;;
  esac
}

echo "## System calls per request (strace -c -f)"
echo
echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); revision $(git rev-parse --short HEAD 2>/dev/null || echo '?'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- Load: \`wrk -t1 -c$CONNS\`, ${WARMUP} s warm-up, then ${SECS} s with strace attached to every thread of the proxy"
for peer in $PEERS; do
  cmd="$(command_of "$peer")" || die "unknown peer $peer"
  # shellcheck disable=SC2086
  $cmd >"$TMP/$peer.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_port "$P_PROXY" 20 || die "$peer did not listen on $P_PROXY"
  wrk -t1 -c"$CONNS" -d"${WARMUP}s" "http://127.0.0.1:$P_PROXY/" >/dev/null
  strace -c -f -p "$pid" -o "$TMP/$peer.strace" 2>/dev/null &
  spid=$!
  sleep 0.5
  reqs="$(wrk -t1 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$P_PROXY/" | awk '/requests in/ { print $1 }')"
  kill -INT "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do port_open "$P_PROXY" || break; sleep 0.1; done
  [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || die "$peer: wrk completed no request"
  echo
  echo "### $peer: $reqs requests"
  echo
  echo "| syscall | calls | per request | errors |"
  echo "|---|---:|---:|---:|"
  awk -v n="$reqs" '
    /^-/ || /^%/ || NF < 5 { next }
    $NF == "total" { printf "| **total** | %d | **%.2f** | |\n", $4, $4 / n; next }
    { errs = (NF == 6) ? $5 : ""; printf "| %s | %d | %.2f | %s |\n", $NF, $4, $4 / n, errs }
  ' "$TMP/$peer.strace"
done
