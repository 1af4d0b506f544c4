#!/usr/bin/env bash
# `make bench`: Switchyard beside NGINX, HAProxy and a bare Pingora load balancer, in one run.
#
# Layout (2-core machine): two NGINX origins and wrk on CPU 0; the proxy under test alone on
# CPU 1 (`taskset -c 1`). Every proxy load-balances round robin over both origins with keep-alive
# upstream connections. Peers are run in interleaved rounds (A B C D, A B C D, ...) so that drift
# on the machine hits every peer alike; each cell is the median over the rounds.
#
# Scenarios: `small` (plain HTTP, tiny body), `4k` (plain HTTP, 4 KiB body), `tls` (TLS
# termination on the proxy, tiny body), `overhead` (Switchyard with metrics + active HTTP health
# checks + ewma vs Switchyard with plain wrr and neither).
#
# Environment:
#   BENCH_SECONDS=10       duration of one wrk run
#   BENCH_ROUNDS=3         interleaved rounds per scenario
#   BENCH_CONNS=32         wrk connections (one wrk thread)
#   BENCH_SCENARIOS="small 4k tls overhead"
#                          (also `levers`: Switchyard with work_stealing = true, with mimalloc or
#                          jemalloc preloaded, SWITCHYARD_BIN_B if set, beside default Switchyard;
#                          the preloads only matter for a build with the system allocator,
#                          `cargo build --release -p switchyard --no-default-features`)
#   SWITCHYARD_BIN_B, BENCH_B_LABEL   a second Switchyard build for the `levers` scenario (also
#                          _C and _D: up to three builds or wrapper scripts beside the default)
#   BENCH_LEVERS="sy-ws sy-mi sy-je"  the built-in lever variants to run (empty: only B, C, D)
#   BENCH_PORT_BASE=18000  ports BASE+1 .. BASE+99 on 127.0.0.1 (checked free first)
#   BENCH_SKIP_BUILD=1     use the binaries already built
#   SWITCHYARD_BIN, BARE_PINGORA_BIN   binaries to measure (default: $CARGO_TARGET_DIR/release/…)
#   BARE_UNPATCHED_BIN     bare-pingora built against Pingora 0.9.1 as published, without the
#                          vendor patches (bench/bare-pingora-unpatched; default: built here)
#   BARE_PINGORA_ARGS      extra arguments for bare-pingora (e.g. "--work-stealing true")
#   BENCH_REV              the source revision to print (default: git HEAD of this checkout)
#   BENCH_LABEL            a note printed in the results header (e.g. a profile variant)
#   BENCH_NICE=-10         run everything measured at nice -10 (root; shields it from other jobs)
#   BENCH_WAIT_QUIET=1     first wait (up to BENCH_WAIT_MAX=1200 s) for 1-min load < 0.7
#   BENCH_OUT              output directory (default target/bench)
#
# Output: a Markdown report on stdout, also saved to $BENCH_OUT/results-<date>[-<label>].md, and
# the raw per-run rows in $BENCH_OUT/raw-<date>[-<label>].tsv. Only 127.0.0.1 is used; every
# process started here is stopped on exit; every run is bounded by `timeout`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
ROUNDS="${BENCH_ROUNDS:-3}"
CONNS="${BENCH_CONNS:-32}"
SCENARIOS="${BENCH_SCENARIOS:-small 4k tls overhead}"
PORT_BASE="${BENCH_PORT_BASE:-18000}"
OUT_DIR="${BENCH_OUT:-$ROOT/target/bench}"
LABEL="${BENCH_LABEL:-}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SWITCHYARD_BIN="${SWITCHYARD_BIN:-$TARGET_DIR/release/switchyard}"
BARE_PINGORA_BIN="${BARE_PINGORA_BIN:-$TARGET_DIR/release/bare-pingora}"
BARE_UNPATCHED_BIN="${BARE_UNPATCHED_BIN:-$TARGET_DIR/release/bare-pingora-unpatched}"
CLK_TCK="$(getconf CLK_TCK)"
# BENCH_NICE=-10 runs origins, proxies and wrk at a higher priority than the machine's other work
# (root only): on a shared, busy machine this keeps other jobs off the measured CPUs.
NICE=()
if [ -n "${BENCH_NICE:-}" ] && [ "${BENCH_NICE}" != 0 ]; then NICE=(nice -n "$BENCH_NICE"); fi

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

case "$SECONDS_PER_RUN$ROUNDS$CONNS" in *[!0-9]*) die "BENCH_SECONDS/ROUNDS/CONNS must be integers" ;; esac

# ---------------------------------------------------------------------------------------------
# Tools and binaries
# ---------------------------------------------------------------------------------------------
ensure_tools() {
  local need=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v taskset >/dev/null 2>&1 || need+=(util-linux)
  case " $SCENARIOS " in
    *" levers "*)
      [ -n "$(preload_lib mimalloc)" ] || need+=(libmimalloc2.0)
      [ -n "$(preload_lib jemalloc)" ] || need+=(libjemalloc2)
      ;;
  esac
  if [ ${#need[@]} -gt 0 ]; then
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    log "installing: ${need[*]}"
    $sudo apt-get update -qq
    # policy-rc.d on containers usually stops the packages' services from starting; if one does
    # start, it listens on its default port, not on ours.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >&2
  fi
  export PATH="$PATH:/usr/sbin:/sbin"
}

build() {
  if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
    log "BENCH_SKIP_BUILD=1: using $SWITCHYARD_BIN and $BARE_PINGORA_BIN"
  else
    ./scripts/ensure-build-deps.sh
    log "building release binaries (cargo may wait for the shared target dir's lock)"
    cargo build --release -p switchyard -p bare-pingora >&2
    # The unpatched substrate: its own lock file and workspace (no [patch.crates-io]), built into
    # the same target directory so the dependencies it shares are compiled once.
    CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release \
      --manifest-path bench/bare-pingora-unpatched/Cargo.toml >&2
  fi
  [ -x "$SWITCHYARD_BIN" ] || die "missing $SWITCHYARD_BIN"
  [ -x "$BARE_PINGORA_BIN" ] || die "missing $BARE_PINGORA_BIN"
  [ -x "$BARE_UNPATCHED_BIN" ] || log "no $BARE_UNPATCHED_BIN: the unpatched bare Pingora row is skipped"
}

wait_quiet() {
  [ "${BENCH_WAIT_QUIET:-0}" = 1 ] || return 0
  local max="${BENCH_WAIT_MAX:-1200}" waited=0 load
  while :; do
    load="$(cut -d' ' -f1 /proc/loadavg)"
    if awk -v l="$load" 'BEGIN { exit !(l < 0.7) }'; then
      log "1-min load $load: quiet enough"
      return 0
    fi
    if [ "$waited" -ge "$max" ]; then
      log "1-min load still $load after ${waited}s: running anyway"
      QUIET_NOTE="machine NOT quiet: 1-min load $load at start (waited ${waited}s)"
      return 0
    fi
    log "1-min load $load >= 0.7: waiting (${waited}s of ${max}s)"
    sleep 30
    waited=$((waited + 30))
  done
}

# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
PIDS=()
TMP=""

children_of() { cat "/proc/$1/task/"*/children 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+$' || true; }

stop_pid() {
  # Stops one process we started (and its children, e.g. NGINX workers): SIGINT, then SIGKILL.
  local pid="$1" kids i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kids="$(children_of "$pid")"
  kill -INT "$pid" 2>/dev/null || true
  for i in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  PIDS=()
  [ -n "$TMP" ] && [ -d "$TMP" ] && [ "${BENCH_KEEP_TMP:-0}" != 1 ] && rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  # wait_port PORT PID: true once PORT accepts connections, false if PID died or 10 s passed.
  local port="$1" pid="$2" i
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 1
    port_busy "$port" && return 0
    sleep 0.1
  done
  return 1
}

# start NAME CPU PORT CMD...: starts CMD pinned to CPU, records its PID in STARTED_PID.
start() {
  local name="$1" cpu="$2" port="$3"
  shift 3
  "${NICE[@]}" taskset -c "$cpu" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  if ! wait_port "$port" "$STARTED_PID"; then
    log "$name did not start listening on 127.0.0.1:$port; its stderr:"
    tail -5 "$TMP/$name.err" >&2 || true
    stop_pid "$STARTED_PID"
    return 1
  fi
}

# "utime stime" (clock ticks) of a process and its direct children (NGINX master + worker).
cpu_ticks() {
  local pid="$1" user=0 sys=0 p u s
  for p in "$pid" $(children_of "$pid"); do
    # Fields after the ")" of comm: state is $1, utime is $12, stime is $13.
    u=0; s=0
    read -r u s < <(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12, $13 }') || true
    user=$((user + ${u:-0})); sys=$((sys + ${s:-0}))
  done
  echo "$user $sys"
}

# Peak RSS (VmHWM, KiB) of the process doing the work: the NGINX worker (not the idle master),
# else the process itself.
peak_rss_kib() {
  local pid="$1" p kid
  kid="$(children_of "$pid" | head -1)"
  p="${kid:-$pid}"
  awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0
}

# ---------------------------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------------------------
P_O1=$((PORT_BASE + 1)); P_O2=$((PORT_BASE + 2))
P_NGINX=$((PORT_BASE + 10)); P_NGINX_TLS=$((PORT_BASE + 11))
P_HAPROXY=$((PORT_BASE + 20)); P_HAPROXY_TLS=$((PORT_BASE + 21))
P_SY=$((PORT_BASE + 30)); P_SY_TLS=$((PORT_BASE + 31)); P_SY_FULL=$((PORT_BASE + 32))
P_SY_PLAIN=$((PORT_BASE + 33))
P_SY_METRICS=$((PORT_BASE + 37)); P_SY_TLS_METRICS=$((PORT_BASE + 38))
P_SY_FULL_METRICS=$((PORT_BASE + 39))
P_BARE=$((PORT_BASE + 40)); P_BARE_TLS=$((PORT_BASE + 41))
P_BARE0=$((PORT_BASE + 42)); P_BARE0_TLS=$((PORT_BASE + 43))
P_SY_WS=$((PORT_BASE + 34)); P_SY_MI=$((PORT_BASE + 35)); P_SY_JE=$((PORT_BASE + 36)); P_SY_B=$((PORT_BASE + 50))
P_SY_WS_M=$((PORT_BASE + 44)); P_SY_MI_M=$((PORT_BASE + 45)); P_SY_JE_M=$((PORT_BASE + 46)); P_SY_B_M=$((PORT_BASE + 51))
P_SY_C=$((PORT_BASE + 52)); P_SY_C_M=$((PORT_BASE + 53)); P_SY_D=$((PORT_BASE + 54)); P_SY_D_M=$((PORT_BASE + 55))
ALL_PORTS="$P_O1 $P_O2 $P_NGINX $P_NGINX_TLS $P_HAPROXY $P_HAPROXY_TLS $P_SY $P_SY_TLS $P_SY_FULL
  $P_SY_PLAIN $P_SY_METRICS $P_SY_TLS_METRICS $P_SY_FULL_METRICS $P_BARE $P_BARE_TLS $P_BARE0 $P_BARE0_TLS
  $P_SY_WS $P_SY_MI $P_SY_JE $P_SY_B $P_SY_WS_M $P_SY_MI_M $P_SY_JE_M $P_SY_B_M
  $P_SY_C $P_SY_C_M $P_SY_D $P_SY_D_M"

write_configs() {
  mkdir -p "$TMP/www" "$TMP/nginx"
  printf 'ok\n' >"$TMP/www/index.txt"
  head -c 4096 /dev/zero | tr '\0' 'x' >"$TMP/www/4k.bin"
  chmod 755 "$TMP" "$TMP/www"
  chmod 644 "$TMP/www/"*

  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1 \
    || die "openssl could not create a self-signed certificate"
  cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/combined.pem"

  # Origins: one NGINX each, 1 worker; `/` returns a tiny body, `/4k.bin` a 4 KiB file.
  local o
  for o in 1 2; do
    local port=$P_O1; [ "$o" = 2 ] && port=$P_O2
    cat >"$TMP/origin$o.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/origin$o.pid;
error_log $TMP/nginx/origin$o.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path $TMP/nginx/o${o}_body;
  proxy_temp_path $TMP/nginx/o${o}_proxy;
  fastcgi_temp_path $TMP/nginx/o${o}_fcgi;
  uwsgi_temp_path $TMP/nginx/o${o}_uwsgi;
  scgi_temp_path $TMP/nginx/o${o}_scgi;
  server {
    listen 127.0.0.1:$port reuseport;
    root $TMP/www;
    location = / { default_type text/plain; return 200 "ok\n"; }
    location = /4k.bin { }
  }
}
EOF
  done

  # NGINX front: 1 worker, round robin, keep-alive pool of 64 per worker.
  local tls
  for tls in 0 1; do
    local listen="listen 127.0.0.1:$P_NGINX;" name=nginx ssl=""
    if [ "$tls" = 1 ]; then
      name=nginx-tls
      listen="listen 127.0.0.1:$P_NGINX_TLS ssl;"
      ssl="ssl_certificate $TMP/cert.pem; ssl_certificate_key $TMP/key.pem; ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:1m;"
    fi
    cat >"$TMP/$name.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/$name.pid;
error_log $TMP/nginx/$name.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path $TMP/nginx/${name}_body;
  proxy_temp_path $TMP/nginx/${name}_proxy;
  fastcgi_temp_path $TMP/nginx/${name}_fcgi;
  uwsgi_temp_path $TMP/nginx/${name}_uwsgi;
  scgi_temp_path $TMP/nginx/${name}_scgi;
  upstream origins {
    server 127.0.0.1:$P_O1;
    server 127.0.0.1:$P_O2;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    $listen
    $ssl
    location / {
      proxy_pass http://origins;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
  done

  # HAProxy: one thread, round robin, always reuse server connections, no logging.
  for tls in 0 1; do
    local name=haproxy bind="bind 127.0.0.1:$P_HAPROXY"
    if [ "$tls" = 1 ]; then
      name=haproxy-tls
      bind="bind 127.0.0.1:$P_HAPROXY_TLS ssl crt $TMP/combined.pem alpn http/1.1"
    fi
    cat >"$TMP/$name.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
  tune.ssl.default-dh-param 2048

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 120s

frontend fe
  $bind
  default_backend origins

backend origins
  balance roundrobin
  http-reuse always
  server o1 127.0.0.1:$P_O1
  server o2 127.0.0.1:$P_O2
EOF
  done

  # Switchyard: threads = 1, wrr over both origins; variants below.
  switchyard_conf() { # NAME PROTOCOL PORT METRICS_PORT ALGORITHM HEALTH(0|1) [WORK_STEALING]
    local name="$1" proto="$2" port="$3" mport="$4" algo="$5" health="$6" ws="${7:-}"
    {
      printf '[server]\ninstance_id = "bench"\nthreads = 1\ngrace_period_s = 1\n'
      [ -n "$ws" ] && printf 'work_stealing = %s\n' "$ws"
      printf '\n'
      [ -n "$mport" ] && printf '[metrics]\nlisten = "127.0.0.1:%s"\n\n' "$mport"
      printf '[[listeners]]\nname = "web"\nprotocol = "%s"\nlisten = "127.0.0.1:%s"\n' "$proto" "$port"
      [ "$proto" = https ] && printf 'tls = { cert = "%s", key = "%s" }\n' "$TMP/cert.pem" "$TMP/key.pem"
      printf '\n[[routes]]\nname = "all"\nlisteners = ["web"]\npath_prefix = "/"\nupstream = "origins"\n\n'
      printf '[[upstreams]]\nname = "origins"\nalgorithm = "%s"\n\n' "$algo"
      printf '  [[upstreams.groups]]\n  name = "local"\n  weight = 1\n\n'
      printf '    [[upstreams.groups.servers]]\n    address = "127.0.0.1"\n    port = %s\n\n' "$P_O1"
      printf '    [[upstreams.groups.servers]]\n    address = "127.0.0.1"\n    port = %s\n' "$P_O2"
      if [ "$health" = 1 ]; then
        printf '\n  [upstreams.health.active]\n  protocol = "http"\n  path = "/"\n  interval_ms = 1000\n'
      fi
    } >"$TMP/$name.toml"
  }
  switchyard_conf switchyard http "$P_SY" "$P_SY_METRICS" wrr 0
  switchyard_conf switchyard-tls https "$P_SY_TLS" "$P_SY_TLS_METRICS" wrr 0
  switchyard_conf switchyard-full http "$P_SY_FULL" "$P_SY_FULL_METRICS" ewma 1
  switchyard_conf switchyard-plain http "$P_SY_PLAIN" "" wrr 0
  # Levers: the same configuration as `switchyard`, one setting or process environment changed.
  switchyard_conf switchyard-ws http "$P_SY_WS" "$P_SY_WS_M" wrr 0 true
  switchyard_conf switchyard-mi http "$P_SY_MI" "$P_SY_MI_M" wrr 0
  switchyard_conf switchyard-je http "$P_SY_JE" "$P_SY_JE_M" wrr 0
  switchyard_conf switchyard-b http "$P_SY_B" "$P_SY_B_M" wrr 0
  switchyard_conf switchyard-c http "$P_SY_C" "$P_SY_C_M" wrr 0
  switchyard_conf switchyard-d http "$P_SY_D" "$P_SY_D_M" wrr 0
}

# Peers: KEY|label|port|scheme|start command (run from $TMP).
peer_label() {
  case "$1" in
    nginx) echo "NGINX" ;; haproxy) echo "HAProxy" ;;
    switchyard) echo "Switchyard" ;; bare) echo "bare Pingora (patched, vendor/)" ;;
    bare0) echo "bare Pingora 0.9.1 unpatched" ;;
    sy-full) echo "Switchyard full (ewma + active checks + metrics)" ;;
    sy-plain) echo "Switchyard plain (wrr, no metrics, no checks)" ;;
    sy-ws) echo "Switchyard, work_stealing = true" ;;
    sy-mi) echo "Switchyard, LD_PRELOAD mimalloc" ;;
    sy-je) echo "Switchyard, LD_PRELOAD jemalloc" ;;
    sy-b) echo "Switchyard B: ${BENCH_B_LABEL:-$SWITCHYARD_BIN_B}" ;;
    sy-c) echo "Switchyard C: ${BENCH_C_LABEL:-$SWITCHYARD_BIN_C}" ;;
    sy-d) echo "Switchyard D: ${BENCH_D_LABEL:-$SWITCHYARD_BIN_D}" ;;
  esac
}

# preload_lib mimalloc|jemalloc: the path of the allocator's shared library (empty if absent).
preload_lib() {
  local f
  for f in /usr/lib/*-linux-gnu/lib$1.so.2 /usr/lib/lib$1.so.2 /usr/lib64/lib$1.so.2; do
    [ -e "$f" ] && { echo "$f"; return 0; }
  done
  return 0
}

# start_peer KEY TLS(0|1): starts the peer; sets PEER_PID and PEER_URL_BASE, or returns 1.
start_peer() {
  local key="$1" tls="$2" port scheme=http
  [ "$tls" = 1 ] && scheme=https
  case "$key" in
    nginx)
      local name=nginx; port=$P_NGINX
      [ "$tls" = 1 ] && { name=nginx-tls; port=$P_NGINX_TLS; }
      start "$name" 1 "$port" nginx -p "$TMP/nginx/" -e "$TMP/nginx/$name.stderr.log" -c "$TMP/$name.conf" || return 1
      ;;
    haproxy)
      local name=haproxy; port=$P_HAPROXY
      [ "$tls" = 1 ] && { name=haproxy-tls; port=$P_HAPROXY_TLS; }
      start "$name" 1 "$port" haproxy -db -f "$TMP/$name.cfg" || return 1
      ;;
    switchyard | sy-full | sy-plain | sy-ws | sy-mi | sy-je | sy-b | sy-c | sy-d)
      local name=switchyard bin="$SWITCHYARD_BIN"
      local -a pre=()
      port=$P_SY
      [ "$key" = sy-ws ] && { name=switchyard-ws; port=$P_SY_WS; }
      [ "$key" = sy-mi ] && { name=switchyard-mi; port=$P_SY_MI; pre=(env "LD_PRELOAD=$(preload_lib mimalloc)"); }
      [ "$key" = sy-je ] && { name=switchyard-je; port=$P_SY_JE; pre=(env "LD_PRELOAD=$(preload_lib jemalloc)"); }
      [ "$key" = sy-b ] && { name=switchyard-b; port=$P_SY_B; bin="${SWITCHYARD_BIN_B:-}"; }
      [ "$key" = sy-c ] && { name=switchyard-c; port=$P_SY_C; bin="${SWITCHYARD_BIN_C:-}"; }
      [ "$key" = sy-d ] && { name=switchyard-d; port=$P_SY_D; bin="${SWITCHYARD_BIN_D:-}"; }
      [ -x "$bin" ] || { log "$key: no binary ($bin)"; return 1; }
      [ ${#pre[@]} -eq 0 ] || [ "${pre[1]}" != LD_PRELOAD= ] || { log "$key: allocator library not installed"; return 1; }
      [ "$key" = sy-full ] && { name=switchyard-full; port=$P_SY_FULL; }
      [ "$key" = sy-plain ] && { name=switchyard-plain; port=$P_SY_PLAIN; }
      [ "$tls" = 1 ] && { name=switchyard-tls; port=$P_SY_TLS; }
      if ! "$bin" check -c "$TMP/$name.toml" >"$TMP/$name.check" 2>&1; then
        log "switchyard check rejects $name.toml:"
        tail -3 "$TMP/$name.check" >&2
        return 1
      fi
      RUST_LOG=warn start "$name" 1 "$port" "${pre[@]}" "$bin" run -c "$TMP/$name.toml" || return 1
      ;;
    bare | bare0)
      local bbin="$BARE_PINGORA_BIN" bname=bare
      port=$P_BARE
      [ "$key" = bare0 ] && { bbin="$BARE_UNPATCHED_BIN"; bname=bare0; port=$P_BARE0; }
      [ -x "$bbin" ] || { log "$key: no binary ($bbin)"; return 1; }
      local tlsargs=()
      if [ "$tls" = 1 ]; then
        port=$P_BARE_TLS
        [ "$key" = bare0 ] && port=$P_BARE0_TLS
        tlsargs=(--tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem")
      fi
      start "$bname-$tls" 1 "$port" "$bbin" --listen "127.0.0.1:$port" \
        --upstream "127.0.0.1:$P_O1" --upstream "127.0.0.1:$P_O2" "${tlsargs[@]}" ${BARE_PINGORA_ARGS:-} || return 1
      ;;
  esac
  PEER_PID=$STARTED_PID
  PEER_URL_BASE="$scheme://127.0.0.1:$port"
}

# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------
to_ms() { # wrk latency ("441.00us", "1.79ms", "1.02s") to milliseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n = n / 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n = n * 1000
    printf "%.3f", n }'
}

# run_wrk SCENARIO KEY ROUND URL PID: one measured run; appends a row to $RAW.
run_wrk() {
  local scen="$1" key="$2" round="$3" url="$4" pid="$5" out u0 s0 u1 s1 reqs rps p50 p99 errs
  out="$TMP/wrk-$scen-$key-$round.txt"
  read -r u0 s0 < <(cpu_ticks "$pid")
  timeout $((SECONDS_PER_RUN + 20)) "${NICE[@]}" taskset -c 0 wrk -t1 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency "$url" >"$out" 2>&1 || true
  read -r u1 s1 < <(cpu_ticks "$pid")
  reqs="$(awk '/requests in/ { print $1 }' "$out")"
  rps="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
  p50="$(awk '$1 == "50%" { print $2 }' "$out")"
  p99="$(awk '$1 == "99%" { print $2 }' "$out")"
  errs="$(awk '/Non-2xx or 3xx/ { n += $NF } /Socket errors/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out")"
  if [ -z "$reqs" ] || [ -z "$rps" ]; then
    log "wrk gave no result for $key ($scen, round $round):"
    tail -3 "$out" >&2
    return 0
  fi
  local cpu user_us sys_us
  cpu="$(awk -v a="$((u0 + s0))" -v b="$((u1 + s1))" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / t }')"
  # CPU per request, split into user space and kernel (µs).
  user_us="$(awk -v d="$((u1 - u0))" -v t="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f", d / t * 1e6 / n }')"
  sys_us="$(awk -v d="$((s1 - s0))" -v t="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f", d / t * 1e6 / n }')"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$key" "$round" "$rps" "$(to_ms "$p50")" \
    "$(to_ms "$p99")" "$cpu" "$reqs" "$errs" "$user_us" "$sys_us" >>"$RAW"
  log "$(printf '%-9s %-10s round %s: %9s req/s  p50 %s  p99 %s  cpu %ss  errors %s' \
    "$scen" "$key" "$round" "$rps" "$p50" "$p99" "$cpu" "$errs")"
}

# scrape_metric PORT NAME: sum of a metric family on a local /metrics endpoint (empty if absent).
scrape_metric() {
  timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && cat <&3" 2>/dev/null \
    | awk -v m="$2" 'index($1, m) == 1 && (substr($1, length(m) + 1, 1) == "{" || $1 == m) { s += $NF; f = 1 } END { if (f) print s }' || true
}

# run_scenario SCENARIO TLS PATH KEY...: starts the peers, warms them, runs interleaved rounds,
# records peak RSS, stops them.
run_scenario() {
  local scen="$1" tls="$2" path="$3"
  shift 3
  local keys=() k
  declare -A pid url
  for k in "$@"; do
    if start_peer "$k" "$tls"; then
      keys+=("$k"); pid[$k]=$PEER_PID; url[$k]="$PEER_URL_BASE$path"
      # Warm-up: fill connection pools and caches (not measured).
      timeout 15 taskset -c 0 wrk -t1 -c"$CONNS" -d1s "${url[$k]}" >/dev/null 2>&1 || true
    else
      printf '%s\t%s\tna\n' "$scen" "$k" >>"$NA"
    fi
  done
  local r
  for r in $(seq 1 "$ROUNDS"); do
    for k in "${keys[@]}"; do
      run_wrk "$scen" "$k" "$r" "${url[$k]}" "${pid[$k]}"
    done
  done
  if [ "$scen" = overhead ] && [ -n "${pid[sy-full]:-}" ]; then
    # Did the active checks really run? Count them in the full variant's own metrics.
    HEALTH_CHECKS="$(scrape_metric "$P_SY_FULL_METRICS" switchyard_health_checks_total)"
  fi
  for k in "${keys[@]}"; do
    printf '%s\t%s\t%s\n' "$scen" "$k" "$(peak_rss_kib "${pid[$k]}")" >>"$RSS"
    stop_pid "${pid[$k]}"
  done
}

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
# Medians per scenario and peer: scen key rps p50 p99 cpu reqs_per_cpu_s errs rss_mib
summarise() {
  awk -F'\t' -v rssfile="$RSS" '
    function median(s,   a, n, i, j, t) {
      n = split(s, a, " ")
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
      if (n == 0) return 0
      if (n % 2) return a[(n + 1) / 2]
      return (a[n / 2] + a[n / 2 + 1]) / 2
    }
    BEGIN { while ((getline line < rssfile) > 0) { split(line, f, "\t"); rss[f[1] SUBSEP f[2]] = f[3] } }
    {
      id = $1 SUBSEP $2
      if (!(id in seen)) { seen[id] = 1; order[++n] = id }
      rps[id] = rps[id] " " $4; p50[id] = p50[id] " " $5; p99[id] = p99[id] " " $6
      cpu[id] = cpu[id] " " $7
      eff[id] = eff[id] " " ($7 > 0 ? $8 / $7 : 0)
      errs[id] += $9
      usr[id] = usr[id] " " $10; krn[id] = krn[id] " " $11
    }
    END {
      for (i = 1; i <= n; i++) {
        id = order[i]; split(id, k, SUBSEP)
        printf "%s\t%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.0f\t%d\t%.1f\t%.1f\t%.1f\n", k[1], k[2], median(rps[id]),
          median(p50[id]), median(p99[id]), median(cpu[id]), median(eff[id]), errs[id], rss[id] / 1024,
          median(usr[id]), median(krn[id])
      }
    }' "$RAW"
}

fmt_int() { awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) } print s r }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "–"; else printf "%.2f×", a / b }'; }

report() {
  local sum="$TMP/summary.tsv"
  summarise >"$sum"
  local scen_title
  scen_title() {
    case "$1" in
      small) echo "plain HTTP, small body (\`/\`, 3 bytes)" ;;
      4k) echo "plain HTTP, 4 KiB body (\`/4k.bin\`)" ;;
      tls) echo "TLS termination (HTTPS to the proxy, HTTP to the origins), small body" ;;
      overhead) echo "framework overhead: Switchyard full vs plain, small body" ;;
    esac
  }
  get() { awk -F'\t' -v s="$1" -v k="$2" -v c="$3" '$1 == s && $2 == k { print $c }' "$sum"; }
  is_na() { awk -F'\t' -v s="$1" -v k="$2" '$1 == s && $2 == k { f = 1 } END { exit !f }' "$NA"; }

  echo "## Results"
  echo
  echo "| scenario | proxy | req/s | p50 ms | p99 ms | proxy CPU s / run | req per proxy CPU-s | peak RSS MiB | errors |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
  local s k
  for s in $SCENARIOS; do
    local keys="nginx haproxy switchyard bare bare0"
    [ "$s" = overhead ] && keys="sy-plain sy-full"
    [ "$s" = levers ] && keys="nginx switchyard sy-ws sy-mi sy-je sy-b sy-c sy-d bare"
    for k in $keys; do
      if is_na "$s" "$k"; then
        echo "| $s | $(peer_label "$k") | n/a (not yet implemented) | | | | | | |"
      elif [ -n "$(get "$s" "$k" 3)" ]; then
        echo "| $s | $(peer_label "$k") | $(fmt_int "$(get "$s" "$k" 3)") | $(get "$s" "$k" 4) | $(get "$s" "$k" 5) | $(get "$s" "$k" 6) | $(fmt_int "$(get "$s" "$k" 7)") | $(get "$s" "$k" 9) | $(get "$s" "$k" 8) |"
      fi
    done
  done
  case " $SCENARIOS " in *" small "*|*" 4k "*|*" tls "*) ;; *) SKIP_RATIOS=1 ;; esac
  if [ -z "${SKIP_RATIOS:-}" ]; then
    echo
    echo "### Ratios (Switchyard and bare Pingora over each peer; targets: req per CPU-s ≥ 1.05× the better peer, p99 ≤ 1.00×, RSS ≤ 1.00× NGINX)"
    echo
    echo "| scenario | proxy | req/s ÷ NGINX | req/s ÷ HAProxy | req/CPU-s ÷ NGINX | req/CPU-s ÷ HAProxy | p99 ÷ NGINX | p99 ÷ HAProxy | RSS ÷ NGINX |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for s in $SCENARIOS; do
      [ "$s" = overhead ] || [ "$s" = levers ] && continue
      for k in switchyard bare bare0; do
        if is_na "$s" "$k"; then
          echo "| $s | $(peer_label "$k") | n/a | n/a | n/a | n/a | n/a | n/a | n/a |"
          continue
        fi
        [ -n "$(get "$s" "$k" 3)" ] || continue
        echo "| $s | $(peer_label "$k") | $(ratio "$(get "$s" "$k" 3)" "$(get "$s" nginx 3)") | $(ratio "$(get "$s" "$k" 3)" "$(get "$s" haproxy 3)") | $(ratio "$(get "$s" "$k" 7)" "$(get "$s" nginx 7)") | $(ratio "$(get "$s" "$k" 7)" "$(get "$s" haproxy 7)") | $(ratio "$(get "$s" "$k" 5)" "$(get "$s" nginx 5)") | $(ratio "$(get "$s" "$k" 5)" "$(get "$s" haproxy 5)") | $(ratio "$(get "$s" "$k" 9)" "$(get "$s" nginx 9)") |"
      done
    done
    echo
    echo "### CPU per request: user space and kernel (µs, medians; from utime and stime)"
    echo
    echo "| scenario | proxy | user µs / req | kernel µs / req | total | user ÷ NGINX's | kernel ÷ NGINX's |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    for s in $SCENARIOS; do
      [ "$s" = overhead ] || [ "$s" = levers ] && continue
      for k in nginx haproxy switchyard bare bare0; do
        [ -n "$(get "$s" "$k" 10)" ] || continue
        echo "| $s | $(peer_label "$k") | $(get "$s" "$k" 10) | $(get "$s" "$k" 11) | $(awk -v u="$(get "$s" "$k" 10)" -v k="$(get "$s" "$k" 11)" 'BEGIN { printf "%.1f", u + k }') | $(ratio "$(get "$s" "$k" 10)" "$(get "$s" nginx 10)") | $(ratio "$(get "$s" "$k" 11)" "$(get "$s" nginx 11)") |"
      done
    done
  fi
  case " $SCENARIOS " in
    *" overhead "*)
      echo
      if is_na overhead sy-full || [ -z "$(get overhead sy-full 3)" ] || [ -z "$(get overhead sy-plain 3)" ]; then
        echo "**Framework overhead**: n/a (the full configuration is not accepted or did not start)."
      else
        echo "**Framework overhead** (full ÷ plain): req/s $(ratio "$(get overhead sy-full 3)" "$(get overhead sy-plain 3)"), req per CPU-s $(ratio "$(get overhead sy-full 7)" "$(get overhead sy-plain 7)"), p99 $(ratio "$(get overhead sy-full 5)" "$(get overhead sy-plain 5)"), peak RSS $(ratio "$(get overhead sy-full 9)" "$(get overhead sy-plain 9)"). Active health checks counted by the full variant (\`switchyard_health_checks_total\`): ${HEALTH_CHECKS:-none} (0 or none means the binary accepts the keys but does not run the checks yet)."
      fi
      ;;
  esac
  case " $SCENARIOS " in
    *" levers "*)
      echo
      echo "### Levers (plain HTTP, small body; each variant over default Switchyard in the same rounds)"
      echo
      echo "| variant | req/s ÷ default | req per CPU-s ÷ default | p99 ÷ default | req per CPU-s ÷ NGINX |"
      echo "|---|---:|---:|---:|---:|"
      for k in switchyard sy-ws sy-mi sy-je sy-b sy-c sy-d bare; do
        [ -n "$(get levers "$k" 3)" ] || continue
        echo "| $(peer_label "$k") | $(ratio "$(get levers "$k" 3)" "$(get levers switchyard 3)") | $(ratio "$(get levers "$k" 7)" "$(get levers switchyard 7)") | $(ratio "$(get levers "$k" 5)" "$(get levers switchyard 5)") | $(ratio "$(get levers "$k" 7)" "$(get levers nginx 7)") |"
      done
      ;;
  esac
  echo
  echo "Cells are medians over $ROUNDS interleaved rounds of \`wrk -t1 -c$CONNS -d${SECONDS_PER_RUN}s --latency\`. CPU = utime+stime of the proxy's processes from \`/proc/<pid>/stat\` during the run; req per proxy CPU-s = requests completed ÷ that CPU time. Peak RSS = \`VmHWM\` after the scenario (NGINX: the worker; its master is not counted). errors = non-2xx responses + socket errors, summed over rounds."
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
main() {
  ensure_tools
  build
  local p
  for p in $ALL_PORTS; do
    port_busy "$p" && die "port 127.0.0.1:$p is in use (set BENCH_PORT_BASE to move the bench's ports)"
  done
  BARE0_KEY=""
  [ -x "$BARE_UNPATCHED_BIN" ] && BARE0_KEY=bare0
  QUIET_NOTE=""
  wait_quiet
  local load_start
  load_start="$(cut -d' ' -f1-3 /proc/loadavg)"

  TMP="$(mktemp -d /tmp/switchyard-bench.XXXXXX)"
  RAW="$TMP/raw.tsv"; NA="$TMP/na.tsv"; RSS="$TMP/rss.tsv"
  : >"$RAW"; : >"$NA"; : >"$RSS"
  write_configs

  start origin1 0 "$P_O1" nginx -p "$TMP/nginx/" -e "$TMP/nginx/origin1.stderr.log" -c "$TMP/origin1.conf" || die "origin 1 did not start"
  start origin2 0 "$P_O2" nginx -p "$TMP/nginx/" -e "$TMP/nginx/origin2.stderr.log" -c "$TMP/origin2.conf" || die "origin 2 did not start"

  local s
  for s in $SCENARIOS; do
    case "$s" in
      small) run_scenario small 0 / nginx haproxy switchyard bare $BARE0_KEY ;;
      4k) run_scenario 4k 0 /4k.bin nginx haproxy switchyard bare $BARE0_KEY ;;
      tls) run_scenario tls 1 / nginx haproxy switchyard bare $BARE0_KEY ;;
      overhead) run_scenario overhead 0 / sy-plain sy-full ;;
      levers)
        local extra=()
        [ -n "${SWITCHYARD_BIN_B:-}" ] && extra+=(sy-b)
        [ -n "${SWITCHYARD_BIN_C:-}" ] && extra+=(sy-c)
        [ -n "${SWITCHYARD_BIN_D:-}" ] && extra+=(sy-d)
        # shellcheck disable=SC2086
        run_scenario levers 0 / nginx switchyard ${BENCH_LEVERS-sy-ws sy-mi sy-je} "${extra[@]}" bare
        ;;
      *) die "unknown scenario $s (small 4k tls overhead levers)" ;;
    esac
  done

  local date stamp out
  date="$(date +%F)"
  stamp="$date${LABEL:+-$LABEL}"
  mkdir -p "$OUT_DIR"
  out="$OUT_DIR/results-$stamp.md"
  {
    echo "# Switchyard beside NGINX and HAProxy — $date${LABEL:+ ($LABEL)}"
    echo
    echo "- Command: \`$(env | grep -E '^(BENCH_[A-Z_]+|SWITCHYARD_BIN(_B)?|BARE_PINGORA_(BIN|ARGS)|BARE_UNPATCHED_BIN|CARGO_PROFILE_[A-Z_]+)=' | sort | tr '\n' ' ')bench/run.sh\` (\`make bench\` = \`bench/run.sh\` with the defaults: $ROUNDS × ${SECONDS_PER_RUN} s here)"
    echo "- Machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), kernel $(uname -r); 1/5/15-min load at start: $load_start${QUIET_NOTE:+ — **$QUIET_NOTE**}"
    echo "- Pinning: origins (2 × NGINX, 1 worker each) and wrk on CPU 0; the proxy under test alone on CPU 1${NICE[0]:+; measured processes at nice $BENCH_NICE}"
    echo "- Versions: $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v 2>&1 | head -1 | awk '{ print "HAProxy " $3 }'), $(wrk -v 2>&1 | head -1 | awk '{ print "wrk " $2 }'), $("$SWITCHYARD_BIN" --version 2>&1 | head -1) (${BENCH_REV:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- crates bin 2>/dev/null || echo ', dirty tree')}), $(rustc -V | awk '{ print $1 " " $2 }')"
    echo
    report
  } >"$out"
  cp "$RAW" "$OUT_DIR/raw-$stamp.tsv"
  cat "$out"
  log "saved $out"
}

# `source bench/run.sh` (as bench/profile.sh does) defines the functions without running.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
