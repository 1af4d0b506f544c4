#!/usr/bin/env bash
# `make bench-scenarios`: failure scenarios with counts, Switchyard beside NGINX and HAProxy.
#
#   a  failover   three demo origins behind the proxy; one is killed (SIGKILL) SCEN_KILL_AT s into
#                 a SCEN_A_SECONDS wrk load and restarted at SCEN_RESTART_AT s. Counts non-2xx and
#                 socket errors, the time the proxy takes to mark the origin down and up again
#                 (polling its health state every 100 ms), and when the restarted origin gets
#                 traffic again (from the responses' `x-origin` header).
#   b  reloads    SCEN_RELOADS reloads, one every SCEN_RELOAD_EVERY s, during a SCEN_B_SECONDS wrk
#                 load, alternating two valid configurations (two origins / three origins).
#                 Switchyard: SIGHUP; NGINX: SIGHUP to the master (= `nginx -s reload`); HAProxy:
#                 master-worker (`-W`), SIGUSR2 to the master (new worker, old one `-sf`).
#   c  memory     SCEN_IDLE_CONNS keep-alive client connections, each sends one request and then
#                 idles; RSS growth of the proxy (VmRSS of all its processes) per connection. Once
#                 over plain HTTP and once over TLS (SCEN_C_MODES): every proxy terminates TLS 1.3
#                 with the same self-signed ECDSA P-256 certificate (made here with openssl),
#                 ALPN http/1.1, no session resumption.
#   d  overload   three demo origins, o2 slowed to SCEN_D_SLOW_MS per answer (the others
#                 SCEN_D_FAST_MS), under `wrk -tSCEN_D_THREADS -cSCEN_D_CONNS -dSCEN_D_SECONDS --latency`:
#                 Switchyard wrr without limits, wrr with max_in_flight_per_server = SCEN_D_LIMIT +
#                 queue_size = SCEN_D_QUEUE / queue_timeout_ms = SCEN_D_QUEUE_TIMEOUT_MS, and ewma;
#                 NGINX with `max_conns=SCEN_D_LIMIT` per server (NGINX OSS has no queue: a request
#                 that finds every server at max_conns gets 502); HAProxy with `maxconn SCEN_D_LIMIT`
#                 per server and its queue (`timeout queue SCEN_D_QUEUE_TIMEOUT_MS`). Request rate,
#                 p50/p90/p99/max latency and errors (non-2xx + socket errors) for each;
#                 SCEN_D_ROUNDS interleaved rounds (every variant once per round), the median
#                 round reported (one 10 s run on a busy machine is noise).
#
# Layout (2 cores): origins, wrk, pollers and the idle-connection client on CPU 0; the proxy alone
# on CPU 1. Every proxy runs one worker (Switchyard threads = 1, NGINX worker_processes 1, HAProxy
# nbthread 1). Health checking, same intent everywhere: Switchyard active HTTP `/health` every
# 1000 ms, timeout 500 ms, 2 failures down / 2 passes up; HAProxy `check inter 1s fall 2 rise 2`
# (`timeout check 500ms`, `option httpchk GET /health`) + `retries 3` + `option redispatch`;
# NGINX OSS has no active checks: `max_fails=2 fail_timeout=2s` + `proxy_next_upstream error
# timeout` (passive only). Every proxy retries a failed connect on another server.
#
# Environment:
#   SCENARIO="a b c"        which scenarios (`SCENARIO=a make bench-scenarios` runs one)
#   SCEN_PROXIES="switchyard nginx haproxy"
#   SCEN_CONNS=16           wrk connections (one wrk thread) for a and b
#   SCEN_A_SECONDS=20 SCEN_KILL_AT=5 SCEN_RESTART_AT=12
#   SCEN_B_SECONDS=15 SCEN_RELOADS=20 SCEN_RELOAD_EVERY=0.5 SCEN_RELOAD_START=2
#   SCEN_IDLE_CONNS=10000 SCEN_IDLE_HOLD=3   (c: seconds the connections stay idle before the
#                                             second RSS reading)
#   SCEN_C_MODES="plain tls"                  (c: over plain HTTP, over TLS, or both)
#   SCEN_C_TLS_CONNS=5000                     (c: at most this many over TLS: the Python client
#                                             needs ~6 ms per handshake, and connections idle for
#                                             60 s before the last one opens would be closed)
#   SCEN_D_SECONDS=10 SCEN_D_CONNS=64 SCEN_D_THREADS=2 SCEN_D_FAST_MS=2 SCEN_D_SLOW_MS=20
#   SCEN_D_LIMIT=16 SCEN_D_QUEUE=128 SCEN_D_QUEUE_TIMEOUT_MS=1000 SCEN_D_ROUNDS=3
#   SCEN_PORT_BASE=19000    ports BASE+1 .. BASE+40 on 127.0.0.1 (checked free first)
#   SCEN_SKIP_BUILD=1       use the binaries already built
#   SCEN_WAIT_QUIET=1       first wait (up to SCEN_WAIT_MAX=1200 s) for 1-min load < SCEN_QUIET=1.0
#   SWITCHYARD_BIN, DEMO_ORIGIN_BIN   (default: $CARGO_TARGET_DIR/release/…)
#   SCEN_OUT                output directory (default target/bench)
#
# Output: Markdown tables on stdout, also saved to $SCEN_OUT/scenarios-<date>.md. Only 127.0.0.0/8
# is used; every process started here is stopped on exit (trap); every step is bounded.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

SCENARIO="${SCENARIO:-a b c d}"
SCENARIO="$(echo "$SCENARIO" | tr ',' ' ')"
[ "$SCENARIO" = all ] && SCENARIO="a b c d"
PROXIES="${SCEN_PROXIES:-switchyard nginx haproxy}"
CONNS="${SCEN_CONNS:-16}"
A_SECONDS="${SCEN_A_SECONDS:-20}"
KILL_AT="${SCEN_KILL_AT:-5}"
RESTART_AT="${SCEN_RESTART_AT:-12}"
B_SECONDS="${SCEN_B_SECONDS:-15}"
RELOADS="${SCEN_RELOADS:-20}"
RELOAD_EVERY="${SCEN_RELOAD_EVERY:-0.5}"
RELOAD_START="${SCEN_RELOAD_START:-2}"
IDLE_CONNS="${SCEN_IDLE_CONNS:-10000}"
IDLE_HOLD="${SCEN_IDLE_HOLD:-3}"
C_MODES="${SCEN_C_MODES:-plain tls}"
C_TLS_CONNS="${SCEN_C_TLS_CONNS:-5000}"
D_SECONDS="${SCEN_D_SECONDS:-10}"
D_CONNS="${SCEN_D_CONNS:-64}"
D_THREADS="${SCEN_D_THREADS:-2}"
D_FAST_MS="${SCEN_D_FAST_MS:-2}"
D_SLOW_MS="${SCEN_D_SLOW_MS:-20}"
D_LIMIT="${SCEN_D_LIMIT:-16}"
D_QUEUE="${SCEN_D_QUEUE:-128}"
D_QUEUE_TIMEOUT_MS="${SCEN_D_QUEUE_TIMEOUT_MS:-1000}"
D_ROUNDS="${SCEN_D_ROUNDS:-3}"
PORT_BASE="${SCEN_PORT_BASE:-19000}"
OUT_DIR="${SCEN_OUT:-$ROOT/target/bench}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SWITCHYARD_BIN="${SWITCHYARD_BIN:-$TARGET_DIR/release/switchyard}"
DEMO_ORIGIN_BIN="${DEMO_ORIGIN_BIN:-$TARGET_DIR/release/demo-origin}"

log() { printf '[scenarios] %s\n' "$*" >&2; }
die() { printf '[scenarios] error: %s\n' "$*" >&2; exit 1; }

for v in "$C_TLS_CONNS" "$CONNS" "$A_SECONDS" "$KILL_AT" "$RESTART_AT" "$B_SECONDS" "$RELOADS" "$IDLE_CONNS" "$IDLE_HOLD" "$PORT_BASE" "$RELOAD_START" \
  "$D_SECONDS" "$D_CONNS" "$D_THREADS" "$D_FAST_MS" "$D_SLOW_MS" "$D_LIMIT" "$D_QUEUE" "$D_QUEUE_TIMEOUT_MS" "$D_ROUNDS"; do
  case "$v" in '' | *[!0-9]*) die "numeric settings must be integers (got '$v')" ;; esac
done
[ "$KILL_AT" -lt "$RESTART_AT" ] && [ "$RESTART_AT" -lt "$A_SECONDS" ] || die "need SCEN_KILL_AT < SCEN_RESTART_AT < SCEN_A_SECONDS"
for s in $SCENARIO; do case "$s" in a | b | c | d) ;; *) die "unknown scenario '$s' (a b c d)" ;; esac; done
for m in $C_MODES; do case "$m" in plain | tls) ;; *) die "unknown SCEN_C_MODES entry '$m' (plain tls)" ;; esac; done
for p in $PROXIES; do case "$p" in switchyard | nginx | haproxy) ;; *) die "unknown proxy '$p'" ;; esac; done

now_ms() { date +%s%3N; }

# ---------------------------------------------------------------------------------------------
# Tools, binaries, limits
# ---------------------------------------------------------------------------------------------
ensure_tools() {
  export PATH="$PATH:/usr/sbin:/sbin"
  local need=()
  command -v nginx >/dev/null 2>&1 || need+=(nginx)
  command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v taskset >/dev/null 2>&1 || need+=(util-linux)
  command -v ss >/dev/null 2>&1 || need+=(iproute2)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  if [ ${#need[@]} -gt 0 ]; then
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    log "installing: ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >&2
  fi
  # The real interpreter, not a pyenv shim (a shim forks: $! would not be the client's PID).
  PYTHON="$(python3 -c 'import sys; print(sys.executable)')"
  [ -x "$PYTHON" ] || die "cannot find the real python3 interpreter"
}

build() {
  if [ "${SCEN_SKIP_BUILD:-0}" = 1 ]; then
    log "SCEN_SKIP_BUILD=1: using $SWITCHYARD_BIN and $DEMO_ORIGIN_BIN"
  else
    ./scripts/ensure-build-deps.sh
    log "building release binaries (cargo may wait for the shared target dir's lock)"
    cargo build --release -p switchyard -p demo-origin >&2
  fi
  [ -x "$SWITCHYARD_BIN" ] || die "missing $SWITCHYARD_BIN"
  [ -x "$DEMO_ORIGIN_BIN" ] || die "missing $DEMO_ORIGIN_BIN"
}

raise_nofile() {
  # Each side of scenario c holds SCEN_IDLE_CONNS sockets (the proxy also its upstream ones).
  local want=$((IDLE_CONNS * 2 + 4096))
  [ "$want" -lt 65536 ] && want=65536
  if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
    ulimit -Hn "$want" 2>/dev/null || true
    ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  fi
  local have
  have="$(ulimit -n)"
  if [ "$have" != unlimited ] && [ "$have" -lt $((IDLE_CONNS + 1024)) ]; then
    case " $SCENARIO " in
      *" c "*) die "open-file limit is $have (hard $(ulimit -Hn)); scenario c needs at least $((IDLE_CONNS + 1024)): raise it (ulimit -Hn as root, or /etc/security/limits.conf)" ;;
    esac
  fi
  NOFILE="$have"
  [ "$NOFILE" = unlimited ] && NOFILE=1048576
  # HAProxy refuses to start unless the limit covers 2 × maxconn (+ a few): below that, it gets
  # the largest maxconn that fits, and scenario c holds that many connections less a margin.
  HAPROXY_MAXCONN=$((IDLE_CONNS + 1024))
  if [ $((2 * HAPROXY_MAXCONN + 200)) -gt "$NOFILE" ]; then
    HAPROXY_MAXCONN=$(((NOFILE - 200) / 2))
    log "open-file limit $NOFILE: HAProxy maxconn limited to $HAPROXY_MAXCONN"
  fi
  log "open-file limit: $have"
}

wait_quiet() {
  [ "${SCEN_WAIT_QUIET:-0}" = 1 ] || return 0
  local max="${SCEN_WAIT_MAX:-1200}" limit="${SCEN_QUIET:-1.0}" waited=0 load
  while :; do
    load="$(cut -d' ' -f1 /proc/loadavg)"
    if awk -v l="$load" -v m="$limit" 'BEGIN { exit !(l < m) }'; then
      log "1-min load $load < $limit: quiet enough"
      return 0
    fi
    if [ "$waited" -ge "$max" ]; then
      log "1-min load still $load after ${waited}s: running anyway"
      QUIET_NOTE="machine NOT quiet: 1-min load $load at start (waited ${waited}s)"
      return 0
    fi
    log "1-min load $load >= $limit: waiting (${waited}s of ${max}s)"
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
  # Stops one process started here and its children (NGINX/HAProxy workers): SIGINT, then SIGKILL.
  local pid="$1" kids k i
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

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  PIDS=()
}

cleanup() {
  local rc=$?
  stop_all
  [ -n "$TMP" ] && [ -d "$TMP" ] && [ "${SCEN_KEEP_TMP:-0}" != 1 ] && rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # PORT PID: true once PORT accepts connections; false if PID died or 10 s passed
  local port="$1" pid="$2" i
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 1
    port_busy "$port" && return 0
    sleep 0.1
  done
  return 1
}

wait_port_closed() { # PORT: true once nothing listens on PORT (5 s at most)
  local i
  for i in $(seq 1 50); do
    port_busy "$1" || return 0
    sleep 0.1
  done
  return 1
}

# start NAME CPU PORT CMD...: starts CMD pinned to CPU; sets STARTED_PID.
start() {
  local name="$1" cpu="$2" port="$3"
  shift 3
  taskset -c "$cpu" "$@" >>"$TMP/$name.out" 2>>"$TMP/$name.err" </dev/null &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  if ! wait_port "$port" "$STARTED_PID"; then
    log "$name did not start listening on 127.0.0.1:$port; its stderr:"
    tail -5 "$TMP/$name.err" >&2 || true
    stop_pid "$STARTED_PID"
    return 1
  fi
}

# VmRSS (KiB) summed over a process and its children (NGINX/HAProxy master + worker).
rss_kib() {
  local pid="$1" total=0 p v
  for p in "$pid" $(children_of "$pid"); do
    v="$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)"
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# ---------------------------------------------------------------------------------------------
# Ports and configurations
# ---------------------------------------------------------------------------------------------
P_O=($((PORT_BASE + 1)) $((PORT_BASE + 2)) $((PORT_BASE + 3)))
P_NGINX=$((PORT_BASE + 10))
P_HAPROXY=$((PORT_BASE + 20)); P_HAPROXY_STATS=$((PORT_BASE + 21))
P_SY=$((PORT_BASE + 30)); P_SY_METRICS=$((PORT_BASE + 31))
ALL_PORTS="${P_O[*]} $P_NGINX $P_HAPROXY $P_HAPROXY_STATS $P_SY $P_SY_METRICS"

proxy_port() { case "$1" in switchyard) echo "$P_SY" ;; nginx) echo "$P_NGINX" ;; haproxy) echo "$P_HAPROXY" ;; esac; }
proxy_label() { case "$1" in switchyard) echo "Switchyard" ;; nginx) echo "NGINX" ;; haproxy) echo "HAProxy" ;; esac; }

# PROXY_TLS=1: the proxies terminate TLS with $TMP/tls/{cert,key,combined}.pem (make_cert).
nginx_tls() {
  [ -n "${PROXY_TLS:-}" ] || return 0
  printf '    ssl_certificate %s/tls/cert.pem;\n    ssl_certificate_key %s/tls/key.pem;\n' "$TMP" "$TMP"
  printf '    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_tickets off;\n'
}

scheme() { if [ -n "${PROXY_TLS:-}" ]; then echo https; else echo http; fi; }

# make_cert: a self-signed ECDSA P-256 certificate for 127.0.0.1 in $TMP/tls (once).
make_cert() {
  [ -e "$TMP/tls/combined.pem" ] && return 0
  mkdir -p "$TMP/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$TMP/tls/key.pem" -out "$TMP/tls/cert.pem" >/dev/null 2>&1 || die "openssl could not make a test certificate"
  cat "$TMP/tls/cert.pem" "$TMP/tls/key.pem" >"$TMP/tls/combined.pem"
  chmod 644 "$TMP/tls/"*.pem
}

# nginx_conf FILE NSERVERS
nginx_conf() {
  local file="$1" n="$2" i servers=""
  for i in $(seq 0 $((n - 1))); do servers+="    server 127.0.0.1:${P_O[$i]} max_fails=2 fail_timeout=2s${NGINX_SERVER_EXTRA:-};"$'\n'; done
  mkdir -p "$TMP/nginx"
  cat >"$file.tmp" <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log notice;
worker_shutdown_timeout 10s;
events { worker_connections $((NOFILE - 16)); }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  upstream origins {
$servers    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$P_NGINX${PROXY_TLS:+ ssl};
$(nginx_tls)
    location / {
      proxy_pass http://origins;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_connect_timeout 1s;
      proxy_read_timeout 5s;
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 3;
    }
  }
}
EOF
  mv "$file.tmp" "$file"
}

# haproxy_conf FILE NSERVERS
haproxy_conf() {
  local file="$1" n="$2" i servers=""
  for i in $(seq 0 $((n - 1))); do servers+="  server o$((i + 1)) 127.0.0.1:${P_O[$i]}${HAPROXY_SERVER_EXTRA:-}"$'\n'; done
  cat >"$file.tmp" <<EOF
global
  nbthread 1
  maxconn $HAPROXY_MAXCONN
  hard-stop-after 10s
  stats socket $TMP/haproxy.sock mode 600 level admin expose-fd listeners

defaults
  mode http
  option http-keep-alive
  timeout connect 1s
  timeout client 120s
  timeout server 5s
  timeout http-keep-alive 120s
  timeout http-request 120s
  timeout check 500ms
  retries 3
  option redispatch

frontend fe
  bind 127.0.0.1:$P_HAPROXY${PROXY_TLS:+ ssl crt $TMP/tls/combined.pem alpn http/1.1 no-tls-tickets}
  default_backend origins

backend origins
  balance roundrobin
  option httpchk GET /health
  default-server check inter 1s fall 2 rise 2
${HAPROXY_BACKEND_EXTRA:-}
$servers
listen stats
  bind 127.0.0.1:$P_HAPROXY_STATS
  stats enable
  stats uri /stats
EOF
  mv "$file.tmp" "$file"
}

# switchyard_conf FILE NSERVERS
switchyard_conf() {
  local file="$1" n="$2" i
  {
    printf '[server]\ninstance_id = "scenarios"\nthreads = 1\ngrace_period_s = 1\n\n'
    printf '[metrics]\nlisten = "127.0.0.1:%s"\n\n' "$P_SY_METRICS"
    # Idle keep-alive client connections are closed after header_timeout_ms (default 10 s);
    # NGINX and HAProxy are given 120 s above, so Switchyard is too.
    printf '[limits]\nheader_timeout_ms = 120000\n\n'
    if [ -n "${PROXY_TLS:-}" ]; then
      printf '[[listeners]]\nname = "web"\nprotocol = "https"\nlisten = "127.0.0.1:%s"\n' "$P_SY"
      printf 'tls = { cert = "%s/tls/cert.pem", key = "%s/tls/key.pem" }\n\n' "$TMP" "$TMP"
    else
      printf '[[listeners]]\nname = "web"\nprotocol = "http"\nlisten = "127.0.0.1:%s"\n\n' "$P_SY"
    fi
    printf '[[routes]]\nname = "all"\nlisteners = ["web"]\npath_prefix = "/"\nupstream = "origins"\n'
    printf 'timeout_ms = 5000\nconnect_timeout_ms = 1000\n\n'
    # SY_ALGORITHM / SY_UPSTREAM_EXTRA: scenario d's variants (defaults: plain wrr).
    printf '[[upstreams]]\nname = "origins"\nalgorithm = "%s"\n%b\n\n' "${SY_ALGORITHM:-wrr}" "${SY_UPSTREAM_EXTRA:-}"
    printf '  [[upstreams.groups]]\n  name = "local"\n  weight = 1\n\n'
    for i in $(seq 0 $((n - 1))); do
      printf '    [[upstreams.groups.servers]]\n    address = "127.0.0.1"\n    port = %s\n\n' "${P_O[$i]}"
    done
    printf '  [upstreams.health.active]\n  protocol = "http"\n  path = "/health"\n  method = "GET"\n'
    printf '  interval_ms = 1000\n  timeout_ms = 500\n  healthy_threshold = 2\n  unhealthy_threshold = 2\n'
    printf '  status_codes = [200]\n'
  } >"$file.tmp"
  mv "$file.tmp" "$file"
}

# write_conf PROXY NSERVERS: the proxy's configuration file (written atomically); prints its path.
conf_path() { case "$1" in switchyard) echo "$TMP/switchyard.toml" ;; nginx) echo "$TMP/nginx.conf" ;; haproxy) echo "$TMP/haproxy.cfg" ;; esac; }
write_conf() {
  case "$1" in
    switchyard) switchyard_conf "$(conf_path "$1")" "$2" ;;
    nginx) nginx_conf "$(conf_path "$1")" "$2" ;;
    haproxy) haproxy_conf "$(conf_path "$1")" "$2" ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# Origins and proxies
# ---------------------------------------------------------------------------------------------
declare -A ORIGIN_PID
start_origin() { # INDEX (0..2) [DELAY_MS: before every answer but /health]
  local i="$1" delay=()
  [ "${2:-0}" -gt 0 ] && delay=(--delay-ms "$2")
  start "origin$((i + 1))" 0 "${P_O[$i]}" "$DEMO_ORIGIN_BIN" --listen "127.0.0.1:${P_O[$i]}" --name "o$((i + 1))" \
    "${delay[@]}" || die "origin o$((i + 1)) did not start"
  ORIGIN_PID[$i]=$STARTED_PID
}
start_origins() { local i; for i in 0 1 2; do start_origin "$i"; done; }

# start_proxy PROXY NSERVERS MASTER_WORKER(0|1): sets PROXY_PID.
start_proxy() {
  local p="$1" n="$2" mw="${3:-0}" conf
  write_conf "$p" "$n"
  conf="$(conf_path "$p")"
  case "$p" in
    switchyard)
      "$SWITCHYARD_BIN" check -c "$conf" >"$TMP/switchyard.check" 2>&1 \
        || { tail -5 "$TMP/switchyard.check" >&2; die "switchyard check rejects $conf"; }
      RUST_LOG=info start switchyard 1 "$P_SY" "$SWITCHYARD_BIN" run -c "$conf" || die "switchyard did not start"
      ;;
    nginx)
      nginx -t -q -p "$TMP/nginx/" -e "$TMP/nginx/stderr.log" -c "$conf" 2>"$TMP/nginx.check" \
        || { cat "$TMP/nginx.check" >&2; die "nginx -t rejects $conf"; }
      start nginx 1 "$P_NGINX" nginx -p "$TMP/nginx/" -e "$TMP/nginx/stderr.log" -c "$conf" || die "nginx did not start"
      ;;
    haproxy)
      haproxy -c -q -f "$conf" >"$TMP/haproxy.check" 2>&1 || { cat "$TMP/haproxy.check" >&2; die "haproxy -c rejects $conf"; }
      if [ "$mw" = 1 ]; then
        start haproxy 1 "$P_HAPROXY" haproxy -W -db -f "$conf" || die "haproxy did not start"
      else
        start haproxy 1 "$P_HAPROXY" haproxy -db -f "$conf" || die "haproxy did not start"
      fi
      ;;
  esac
  PROXY_PID=$STARTED_PID
}

stop_proxy() {
  local port
  port="$(proxy_port "$1")"
  stop_pid "$PROXY_PID"
  wait_port_closed "$port" || log "warning: 127.0.0.1:$port still accepts connections after stopping $1"
}

stop_origins() {
  local i
  for i in 0 1 2; do stop_pid "${ORIGIN_PID[$i]:-}"; done
}

# warm PROXY: a few requests until n answers are 200 (10 s at most).
warm() {
  local port i ok=0
  port="$(proxy_port "$1")"
  for i in $(seq 1 100); do
    if [ "$(curl -sk -o /dev/null -m 2 -w '%{http_code}' "$(scheme)://127.0.0.1:$port/")" = 200 ]; then
      ok=$((ok + 1))
      [ "$ok" -ge 6 ] && break
    fi
    sleep 0.1
  done
  [ "$ok" -ge 6 ] || log "warning: $1 answered only $ok × 200 while warming up"
  timeout 10 taskset -c 0 wrk -t1 -c"$CONNS" -d1s "$(scheme)://127.0.0.1:$port/" >/dev/null 2>&1 || true
}

# health_state PROXY ORIGIN_INDEX: 1 if the proxy has the origin in rotation, 0 if not, ? if unknown.
health_state() {
  local p="$1" i="$2" port="${P_O[$2]}"
  case "$p" in
    switchyard)
      curl -s -m 0.5 "http://127.0.0.1:$P_SY_METRICS/metrics" 2>/dev/null \
        | awk -v s=":$port\"" '/^switchyard_backend_healthy\{/ && index($0, s) { v = $NF } END { print (v == "" ? "?" : v) }'
      ;;
    haproxy)
      # CSV: pxname,svname,...; column 18 is status (UP, DOWN, "UP 1/2" = still up, "DOWN 1/2" = still down).
      curl -s -m 0.5 "http://127.0.0.1:$P_HAPROXY_STATS/stats;csv" 2>/dev/null \
        | awk -F, -v s="o$((i + 1))" '$1 == "origins" && $2 == s { v = ($18 ~ /^UP/ ? 1 : 0) } END { print (v == "" ? "?" : v) }'
      ;;
    *) echo "?" ;;
  esac
}

# poll_health PROXY ORIGIN_INDEX SECONDS OUTFILE: "ms state" every 100 ms (run in background).
poll_health() {
  local p="$1" i="$2" secs="$3" out="$4" end
  end=$(($(now_ms) + secs * 1000))
  while [ "$(now_ms)" -lt "$end" ]; do
    echo "$(now_ms) $(health_state "$p" "$i")" >>"$out"
    sleep 0.1
  done
}

sleep_until() { # MS (wall clock)
  local d
  d=$(($1 - $(now_ms)))
  [ "$d" -gt 0 ] && sleep "$(awk -v d="$d" 'BEGIN { printf "%.3f", d / 1000 }')"
  return 0
}

# wrk_counts FILE: "requests non2xx socket_errors errors_detail"
wrk_counts() {
  awk '
    /requests in/ { r = $1 }
    /Non-2xx or 3xx/ { n += $NF }
    /Socket errors/ { gsub(",", ""); c = $4; rd = $6; w = $8; t = $10 }
    END { printf "%d %d %d connect=%d,read=%d,write=%d,timeout=%d\n", r, n, c + rd + w + t, c, rd, w, t }' "$1"
}

ms_or_na() { if [ -z "$1" ] || [ "$1" = "-" ]; then echo "n/a"; else awk -v v="$1" 'BEGIN { printf "%.1f s", v / 1000 }'; fi; }

# ---------------------------------------------------------------------------------------------
# a: failover
# ---------------------------------------------------------------------------------------------
scenario_a() {
  local p="$1" port victim=1 t0 t_kill t_restart
  port="$(proxy_port "$p")"
  log "a/$p: 3 origins, wrk -c$CONNS -d${A_SECONDS}s, kill o2 at ${KILL_AT}s, restart at ${RESTART_AT}s"
  start_origins
  start_proxy "$p" 3
  warm "$p"
  local events="$TMP/a-$p.events" health="$TMP/a-$p.health" wrkout="$TMP/a-$p.wrk"
  : >"$health"
  if [ "$p" != nginx ]; then
    poll_health "$p" "$victim" $((A_SECONDS + 2)) "$health" &
    local poller=$!
  fi
  t0="$(now_ms)"
  SCEN_EVENTS="$events" timeout $((A_SECONDS + 20)) taskset -c 0 \
    wrk -t1 -c"$CONNS" -d"${A_SECONDS}s" --timeout 5s -s "$HERE/record.lua" "http://127.0.0.1:$port/" >"$wrkout" 2>&1 &
  local wrkpid=$!
  sleep_until $((t0 + KILL_AT * 1000))
  t_kill="$(now_ms)"
  kill -KILL "${ORIGIN_PID[$victim]}"
  wait "${ORIGIN_PID[$victim]}" 2>/dev/null || true
  sleep_until $((t0 + RESTART_AT * 1000))
  t_restart="$(now_ms)"
  start_origin "$victim"
  wait "$wrkpid" || true
  [ "$p" != nginx ] && { wait "$poller" || true; }
  stop_proxy "$p"
  stop_origins

  local counts req non2xx sockerr detail
  counts="$(wrk_counts "$wrkout")"
  read -r req non2xx sockerr detail <<<"$counts"
  [ "$req" -gt 0 ] || { log "a/$p: wrk gave no result:"; tail -5 "$wrkout" >&2; }
  # Down: first poll at/after the kill showing 0. Up: first poll at/after the restart showing 1.
  local down="-" up="-"
  if [ "$p" != nginx ]; then
    down="$(awk -v k="$t_kill" -v r="$t_restart" '$1 >= k && $1 < r && $2 == "0" { print $1 - k; exit }' "$health")"
    up="$(awk -v r="$t_restart" '$1 >= r && $2 == "1" { print $1 - r; exit }' "$health")"
  fi
  # Traffic back: first response from o2 at/after the restart; last response from o2 before it.
  local back last_before bad_first bad_last
  back="$(awk -v r="$t_restart" '$1 == "run" && $2 == "o2" && $3 >= r { if (m == "" || $3 < m) m = $3 } END { if (m != "") print m - r }' "$events")"
  last_before="$(awk -v k="$t_kill" '$1 == "run" && $2 == "o2" && $3 < k + 2000 { if ($4 > m) m = $4 } END { if (m != "") print m - k }' "$events")"
  bad_first="$(awk -v k="$t_kill" '$1 == "bad" { print $2 - k; exit }' "$events")"
  bad_last="$(awk -v k="$t_kill" '$1 == "bad" { v = $2 - k } END { if (v != "") print v }' "$events")"
  local origins
  origins="$(awk '$1 == "run" { if ($4 - $3 > 0) seen[$2] = 1 } END { for (o in seen) printf "%s ", o }' "$events")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$req" "$non2xx" "$sockerr" "$detail" \
    "${down:--}" "${up:--}" "${back:--}" "${last_before:--}" "${bad_first:--}/${bad_last:--}" >>"$TMP/a.tsv"
  log "a/$p: requests $req, non-2xx $non2xx, socket errors $sockerr ($detail); down after ${down:--} ms, up after ${up:--} ms, o2 traffic back after ${back:--} ms; origins seen: $origins"
}

report_a() {
  echo "### (a) Failover: one of three origins killed mid-load, then restarted"
  echo
  echo "\`wrk -t1 -c$CONNS -d${A_SECONDS}s\` against the proxy; origin o2 is killed with SIGKILL at ${KILL_AT} s and restarted at ${RESTART_AT} s (same port)."
  echo
  echo "| proxy | requests | non-2xx | socket errors | time to detect down | time to detect up | o2 gets traffic again | last o2 response, ms after the kill |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  local p req non2xx sockerr detail down up back lastb badw
  while IFS=$'\t' read -r p req non2xx sockerr detail down up back lastb badw; do
    echo "| $(proxy_label "$p") | $req | $non2xx | $sockerr | $( [ "$p" = nginx ] && echo "n/a (passive only)" || ms_or_na "$down") | $( [ "$p" = nginx ] && echo "n/a" || ms_or_na "$up") | $(ms_or_na "$back") after restart | $( [ "$lastb" = - ] && echo "–" || echo "$lastb ms") |"
  done <"$TMP/a.tsv"
  echo
  echo "Socket errors by kind (wrk): $(awk -F'\t' '{ printf "%s%s %s", (NR > 1 ? "; " : ""), $1, $5 }' "$TMP/a.tsv"). Non-2xx window (first/last non-2xx response, ms after the kill): $(awk -F'\t' '{ printf "%s%s %s", (NR > 1 ? "; " : ""), $1, ($10 == "-/-" ? "none" : $10) }' "$TMP/a.tsv")."
  echo
  echo "Time to detect = from the kill (or restart) to the first 100 ms poll of the proxy's own health state showing the change (Switchyard: \`switchyard_backend_healthy\` on \`/metrics\`; HAProxy: the server's status on the stats page, \`UP\`/\`DOWN\`, \"UP 1/2\" counting as still up); resolution about 100 ms plus one \`curl\`. NGINX OSS has no health state to poll: it marks a server failed after \`max_fails\` errors on real requests and retries the next one. \"o2 gets traffic again\" = first response carrying \`x-origin: o2\` after the restart."
}

# ---------------------------------------------------------------------------------------------
# b: reloads
# ---------------------------------------------------------------------------------------------
reload_proxy() { # PROXY
  case "$1" in
    switchyard) kill -HUP "$PROXY_PID" ;;
    nginx) kill -HUP "$PROXY_PID" ;;          # what `nginx -s reload` sends to the master
    haproxy) kill -USR2 "$PROXY_PID" ;;       # master-worker: re-exec, new worker, old one -sf
  esac
}

scenario_b() {
  local p="$1" port
  port="$(proxy_port "$p")"
  log "b/$p: wrk -c$CONNS -d${B_SECONDS}s, $RELOADS reloads every ${RELOAD_EVERY}s from ${RELOAD_START}s (2 ↔ 3 origins)"
  start_origins
  start_proxy "$p" 2 1
  warm "$p"
  local events="$TMP/b-$p.events" wrkout="$TMP/b-$p.wrk" t0 r n=2 every_ms
  every_ms="$(awk -v e="$RELOAD_EVERY" 'BEGIN { printf "%d", e * 1000 }')"
  t0="$(now_ms)"
  SCEN_EVENTS="$events" timeout $((B_SECONDS + 20)) taskset -c 0 \
    wrk -t1 -c"$CONNS" -d"${B_SECONDS}s" --timeout 5s -s "$HERE/record.lua" "http://127.0.0.1:$port/" >"$wrkout" 2>&1 &
  local wrkpid=$!
  for r in $(seq 1 "$RELOADS"); do
    sleep_until $((t0 + RELOAD_START * 1000 + (r - 1) * every_ms))
    if [ "$n" = 2 ]; then n=3; else n=2; fi
    write_conf "$p" "$n"
    reload_proxy "$p" || log "b/$p: reload $r: signal failed"
  done
  local t_last
  t_last="$(now_ms)"
  wait "$wrkpid" || true
  # How many reloads took effect?
  local applied="?"
  case "$p" in
    switchyard)
      applied="$(curl -s -m 2 "http://127.0.0.1:$P_SY_METRICS/metrics" | awk '/^switchyard_config_reloads_total\{.*result="success"/ { s += $NF } END { print s + 0 }')"
      ;;
    nginx) applied="$(grep -c 'signal 1 (SIGHUP) received' "$TMP/nginx/error.log" 2>/dev/null || true)" ;;
    haproxy) applied="$(grep -c 'Reloading HAProxy' "$TMP/haproxy.err" 2>/dev/null || true)" ;;
  esac
  sleep 0.5
  local leftover
  leftover="$(children_of "$PROXY_PID" | wc -l)"
  stop_proxy "$p"
  stop_origins
  local counts req non2xx sockerr detail o3
  counts="$(wrk_counts "$wrkout")"
  read -r req non2xx sockerr detail <<<"$counts"
  [ "$req" -gt 0 ] || { log "b/$p: wrk gave no result:"; tail -5 "$wrkout" >&2; }
  # Evidence the three-origin configuration was really applied: runs of responses from o3.
  o3="$(awk '$1 == "run" && $2 == "o3" { k[$3] = 1 } END { print length(k) + 0 }' "$events")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$req" "$non2xx" "$sockerr" "$detail" "$applied" "$o3" "$leftover" >>"$TMP/b.tsv"
  log "b/$p: requests $req, non-2xx $non2xx, socket errors $sockerr ($detail); reloads applied $applied; o3 traffic periods $o3; processes under the master at the end $leftover"
}

report_b() {
  echo "### (b) $RELOADS reloads during load"
  echo
  echo "\`wrk -t1 -c$CONNS -d${B_SECONDS}s\`; from ${RELOAD_START} s on, one reload every ${RELOAD_EVERY} s, alternating a configuration with origins o1, o2 and one with o1, o2, o3."
  echo
  echo "| proxy | reload mechanism | requests | non-2xx | socket errors | failed requests | reloads applied | periods with o3 traffic |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  local p req non2xx sockerr detail applied o3 left mech
  while IFS=$'\t' read -r p req non2xx sockerr detail applied o3 left; do
    case "$p" in
      switchyard) mech="SIGHUP (in-process)" ;;
      nginx) mech="SIGHUP to master (\`nginx -s reload\`)" ;;
      haproxy) mech="\`-W\` + SIGUSR2 (new worker, old \`-sf\`)" ;;
    esac
    echo "| $(proxy_label "$p") | $mech | $req | $non2xx | $sockerr | $((non2xx + sockerr)) | $applied / $RELOADS | $o3 |"
  done <"$TMP/b.tsv"
  echo
  echo "Socket errors by kind (wrk): $(awk -F'\t' '{ printf "%s%s %s", (NR > 1 ? "; " : ""), $1, $5 }' "$TMP/b.tsv"). Reloads applied: Switchyard \`switchyard_config_reloads_total{result=\"success\"}\`; NGINX \"signal 1 (SIGHUP) received\" lines in its error log; HAProxy master's \"Reloading HAProxy\" lines. \"Periods with o3 traffic\" counts separate runs of responses from o3 (the origin only the second configuration has), showing the configuration really changed under load."
}

# ---------------------------------------------------------------------------------------------
# c: memory per idle keep-alive connection
# ---------------------------------------------------------------------------------------------
scenario_c() {
  local m
  for m in $C_MODES; do
    if [ "$m" = tls ]; then
      make_cert
      PROXY_TLS=1 scenario_c_mode "$1" tls
    else
      PROXY_TLS="" scenario_c_mode "$1" plain
    fi
  done
}

# scenario_c_mode PROXY MODE: one run of scenario c (PROXY_TLS set for MODE tls).
scenario_c_mode() {
  local p="$1" mode="$2" port
  port="$(proxy_port "$p")"
  local conns="$IDLE_CONNS"
  if [ "$mode" = tls ] && [ "$conns" -gt "$C_TLS_CONNS" ]; then conns="$C_TLS_CONNS"; fi
  if [ "$p" = haproxy ] && [ "$conns" -gt $((HAPROXY_MAXCONN - 50)) ]; then
    conns=$((HAPROXY_MAXCONN - 50))
    log "c/haproxy: only $conns connections (maxconn $HAPROXY_MAXCONN fits the open-file limit $NOFILE)"
  fi
  log "c/$p/$mode: $conns idle keep-alive connections"
  start_origins
  start_proxy "$p" 3
  warm "$p"
  sleep 1
  local before after released est ready="$TMP/c-$p.ready" release="$TMP/c-$p.release" out="$TMP/c-$p.client"
  rm -f "$ready" "$release"
  before="$(rss_kib "$PROXY_PID")"
  taskset -c 0 "$PYTHON" "$HERE/idle_conns.py" --port "$port" --conns "$conns" ${PROXY_TLS:+--tls} \
    --hold-max 120 --timeout 120 --ready-file "$ready" --release-file "$release" >"$out" 2>&1 &
  local cpid=$! i
  PIDS+=("$cpid")
  for i in $(seq 1 1500); do
    [ -e "$ready" ] && break
    kill -0 "$cpid" 2>/dev/null || break
    sleep 0.1
  done
  [ -e "$ready" ] || { tail -5 "$out" >&2; die "c/$p: the idle-connection client did not get ready"; }
  sleep "$IDLE_HOLD"
  after="$(rss_kib "$PROXY_PID")"
  est="$(ss -Htn state established "( sport = :$port )" 2>/dev/null | wc -l)"
  touch "$release"
  wait "$cpid" || true
  sleep 2
  released="$(rss_kib "$PROXY_PID")"
  local left
  left="$(ss -Htn state established "( sport = :$port )" 2>/dev/null | wc -l)"
  stop_proxy "$p"
  stop_origins
  local line ok bad failed open closed
  line="$(cat "$ready")"
  ok="$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$line")"
  bad="$(sed -n 's/.* bad=\([0-9]*\).*/\1/p' <<<"$line")"
  failed="$(sed -n 's/.* failed=\([0-9]*\).*/\1/p' <<<"$line")"
  open="$(sed -n 's/.* open=\([0-9]*\).*/\1/p' <<<"$line")"
  closed="$(awk '/^CLOSED_BY_PEER/ { print $2 }' "$out")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$before" "$after" "$released" "$ok" "$bad" "$failed" "$open" "$est" "${closed:-?}" "$conns" "$left" "$mode" >>"$TMP/c.tsv"
  log "c/$p/$mode: RSS $before → $after KiB with $open open ($est established at the proxy), $released KiB after closing; ok $ok bad $bad failed $failed; closed by the proxy while idle: ${closed:-?}"
}

min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }

report_c() {
  echo "### (c) Memory per idle keep-alive client connection"
  echo
  echo "$IDLE_CONNS client connections over plain HTTP, at most $C_TLS_CONNS over TLS (source addresses 127.0.0.1–127.0.0.8), each sends one \`GET /\`, reads the 200 and stays open and idle; RSS = \`VmRSS\` summed over the proxy's processes (NGINX and HAProxy: master + worker), read before opening, ${IDLE_HOLD} s after the last connection got its response, and 2 s after all were closed."
  echo
  echo "| proxy | transport | RSS before | RSS with connections | growth | KiB per connection | MiB per 10,000 | RSS after closing (connections left) | connections held (client / at proxy) | errors | closed by proxy while idle |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  local p before after released ok bad failed open est closed n left mode
  while IFS=$'\t' read -r p before after released ok bad failed open est closed n left mode; do
    echo "| $(proxy_label "$p") | $(if [ "$mode" = tls ]; then echo "TLS 1.3"; else echo "plain"; fi) | $(awk -v v="$before" 'BEGIN { printf "%.1f MiB", v / 1024 }') | $(awk -v v="$after" 'BEGIN { printf "%.1f MiB", v / 1024 }') | $(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.1f MiB", (a - b) / 1024 }') | $(awk -v a="$after" -v b="$before" -v n="$(min "$open" "$est")" 'BEGIN { if (n > 0) printf "%.2f", (a - b) / n; else print "n/a" }') | $(awk -v a="$after" -v b="$before" -v n="$(min "$open" "$est")" 'BEGIN { if (n > 0) printf "%.1f", (a - b) / n * 10000 / 1024; else print "n/a" }') | $(awk -v v="$released" 'BEGIN { printf "%.1f MiB", v / 1024 }') ($left left) | $open / $est | $((bad + failed)) | $closed |"
  done <"$TMP/c.tsv"
  echo
  echo "KiB per connection = (RSS with connections − RSS before) ÷ connections held (the smaller of the client's and the proxy's count); MiB per 10,000 = that × 10,000. This is user-space memory of the proxy only; the kernel's socket buffers are not in RSS. TLS: each client (Python's \`ssl\`) completes a TLS 1.3 handshake with ALPN \`http/1.1\`, no session resumption, against the same self-signed ECDSA P-256 certificate on every proxy."
  if [ "$HAPROXY_MAXCONN" -lt $((IDLE_CONNS + 50)) ] && grep -q '^haproxy' "$TMP/c.tsv"; then
    echo "HAProxy refuses to start unless the open-file limit covers 2 × \`maxconn\`; the limit here is $NOFILE (the hard limit cannot be raised in this container), so HAProxy ran with \`maxconn $HAPROXY_MAXCONN\` and held fewer connections (see the table)."
  fi
}

# ---------------------------------------------------------------------------------------------
# d: overload — one slow origin of three
# ---------------------------------------------------------------------------------------------
# wrk_latency_ms FILE PERCENT: the latency at PERCENT (50, 90, 99) of wrk --latency, in ms;
# "max" for the maximum.
wrk_latency_ms() {
  awk -v want="$2" '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /m$/) return substr(v, 1, length(v) - 1) * 60000
      if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
      return v + 0
    }
    want == "max" && $1 == "Latency" && NF >= 4 { printf "%.1f", ms($4); exit }
    $1 == want "%" { printf "%.1f", ms($2); exit }' "$1"
}

# run_d PROXY VARIANT ROUND: one measured run of scenario d.
run_d() {
  local p="$1" v="$2" round="$3" port wrkout="$TMP/d-$1-$2-$3.wrk"
  port="$(proxy_port "$p")"
  SY_ALGORITHM=wrr SY_UPSTREAM_EXTRA="" NGINX_SERVER_EXTRA="" HAPROXY_SERVER_EXTRA="" HAPROXY_BACKEND_EXTRA=""
  case "$v" in
    limits) SY_UPSTREAM_EXTRA="max_in_flight_per_server = $D_LIMIT\nqueue_size = $D_QUEUE\nqueue_timeout_ms = $D_QUEUE_TIMEOUT_MS" ;;
    ewma) SY_ALGORITHM=ewma ;;
    max_conns) NGINX_SERVER_EXTRA=" max_conns=$D_LIMIT" ;;
    maxconn)
      HAPROXY_SERVER_EXTRA=" maxconn $D_LIMIT"
      HAPROXY_BACKEND_EXTRA="  timeout queue ${D_QUEUE_TIMEOUT_MS}ms"
      ;;
  esac
  log "d/$p/$v (round $round): o2 answers in ${D_SLOW_MS} ms, o1/o3 in ${D_FAST_MS} ms; wrk -t$D_THREADS -c$D_CONNS -d${D_SECONDS}s"
  start_origin 0 "$D_FAST_MS"
  start_origin 1 "$D_SLOW_MS"
  start_origin 2 "$D_FAST_MS"
  start_proxy "$p" 3
  warm "$p"
  timeout $((D_SECONDS + 20)) taskset -c 0 \
    wrk -t"$D_THREADS" -c"$D_CONNS" -d"${D_SECONDS}s" --timeout 5s --latency "http://127.0.0.1:$port/" >"$wrkout" 2>&1 || true
  stop_proxy "$p"
  stop_origins
  SY_ALGORITHM=wrr SY_UPSTREAM_EXTRA="" NGINX_SERVER_EXTRA="" HAPROXY_SERVER_EXTRA="" HAPROXY_BACKEND_EXTRA=""
  local counts req non2xx sockerr detail rps p50 p90 p99 max
  counts="$(wrk_counts "$wrkout")"
  read -r req non2xx sockerr detail <<<"$counts"
  [ "$req" -gt 0 ] || { log "d/$p/$v: wrk gave no result:"; tail -5 "$wrkout" >&2; }
  rps="$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$wrkout")"
  p50="$(wrk_latency_ms "$wrkout" 50)"
  p90="$(wrk_latency_ms "$wrkout" 90)"
  p99="$(wrk_latency_ms "$wrkout" 99)"
  max="$(wrk_latency_ms "$wrkout" max)"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$v" "$req" "${rps:-0}" "${p50:-0}" "${p90:-0}" "${p99:-0}" "${max:-0}" \
    "$non2xx" "$sockerr" "$detail" >>"$TMP/d-rounds.tsv"
  log "d/$p/$v: $req requests (${rps:-?}/s), p50 ${p50:-?} ms, p99 ${p99:-?} ms, max ${max:-?} ms; non-2xx $non2xx, socket errors $sockerr ($detail)"
}

d_variants() { # PROXY
  case "$1" in
    switchyard) echo "wrr limits ewma" ;;
    nginx) echo "max_conns" ;;
    haproxy) echo "maxconn" ;;
  esac
}

# Scenario d runs every proxy's variants in interleaved rounds (see main), then keeps, per
# variant, the round with the median p99 (its own figures, so a row is one real run).
scenario_d_rounds() {
  local r p v
  : >"$TMP/d-rounds.tsv"
  for r in $(seq 1 "$D_ROUNDS"); do
    for p in $PROXIES; do
      for v in $(d_variants "$p"); do run_d "$p" "$v" "$r"; done
    done
  done
  awk -F'\t' '
    { key = $1 "\t" $2; n[key]++; row[key, n[key]] = $0; p99[key, n[key]] = $7 + 0; all[key] = all[key] (all[key] == "" ? "" : ", ") $7
      if (!(key in order)) { order[key] = ++k; keys[k] = key } }
    END {
      for (i = 1; i <= k; i++) {
        key = keys[i]; m = n[key]
        for (a = 1; a <= m; a++) idx[a] = a
        for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (p99[key, idx[b]] < p99[key, idx[a]]) { t = idx[a]; idx[a] = idx[b]; idx[b] = t }
        print row[key, idx[int((m + 1) / 2)]] "\t" all[key]
      }
    }' "$TMP/d-rounds.tsv" >"$TMP/d.tsv"
}

d_setup() { # PROXY VARIANT: the table's description of a run
  case "$1/$2" in
    switchyard/wrr) echo "\`wrr\`, no limits" ;;
    switchyard/limits) echo "\`wrr\` + \`max_in_flight_per_server = $D_LIMIT\`, \`queue_size = $D_QUEUE\`, \`queue_timeout_ms = $D_QUEUE_TIMEOUT_MS\`" ;;
    switchyard/ewma) echo "\`ewma\`, no limits" ;;
    nginx/max_conns) echo "round robin + \`max_conns=$D_LIMIT\` per server (no queue in NGINX OSS)" ;;
    haproxy/maxconn) echo "\`roundrobin\` + \`maxconn $D_LIMIT\` per server + queue (\`timeout queue ${D_QUEUE_TIMEOUT_MS}ms\`)" ;;
  esac
}

report_d() {
  echo "### (d) Overload: one of three origins ten times slower"
  echo
  echo "Origins o1 and o3 answer after ${D_FAST_MS} ms, o2 after ${D_SLOW_MS} ms; \`wrk -t$D_THREADS -c$D_CONNS -d${D_SECONDS}s --timeout 5s --latency\` against the proxy (a closed loop: $D_CONNS requests always in flight). $D_ROUNDS interleaved rounds; each row is the round with the median p99 (the p99 of every round in brackets, in round order)."
  echo
  echo "| proxy | setup | requests/s | p50 | p90 | p99 | max | non-2xx | socket errors | errors % |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  local p v req rps p50 p90 p99 max non2xx sockerr detail rounds
  while IFS=$'\t' read -r p v req rps p50 p90 p99 max non2xx sockerr detail rounds; do
    echo "| $(proxy_label "$p") | $(d_setup "$p" "$v") | $rps | $p50 ms | $p90 ms | $p99 ms ($rounds) | $max ms | $non2xx | $sockerr | $(awk -v e=$((non2xx + sockerr)) -v r="$req" 'BEGIN { if (r > 0) printf "%.2f", 100 * e / r; else print "n/a" }') |"
  done <"$TMP/d.tsv"
  echo
  echo "Socket errors by kind (wrk): $(awk -F'\t' '{ printf "%s%s/%s %s", (NR > 1 ? "; " : ""), $1, $2, $11 }' "$TMP/d.tsv"). Latencies are wrk's, client side, across all requests (fast and slow origin alike). NGINX OSS refuses a request that finds every server at \`max_conns\` with 502 (\"no live upstreams\"): it has no queue (NGINX Plus's \`queue\` directive is commercial)."
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
main() {
  ensure_tools
  build
  raise_nofile
  local p s
  for p in $ALL_PORTS; do
    port_busy "$p" && die "port 127.0.0.1:$p is in use (set SCEN_PORT_BASE to move the scenarios' ports)"
  done
  QUIET_NOTE=""
  wait_quiet
  local load_start
  load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
  TMP="$(mktemp -d /tmp/switchyard-scenarios.XXXXXX)"
  chmod 755 "$TMP"
  : >"$TMP/a.tsv"; : >"$TMP/b.tsv"; : >"$TMP/c.tsv"; : >"$TMP/d.tsv"
  for s in $SCENARIO; do
    if [ "$s" = d ]; then
      scenario_d_rounds
      continue
    fi
    for p in $PROXIES; do
      "scenario_$s" "$p"
    done
  done
  local load_end
  load_end="$(cut -d' ' -f1-3 /proc/loadavg)"

  local date out
  date="$(date +%F)"
  mkdir -p "$OUT_DIR"
  out="$OUT_DIR/scenarios-$date.md"
  {
    echo "# Switchyard failure scenarios beside NGINX and HAProxy — $date"
    echo
    echo "- Command: \`$(env | grep -E '^(SCENARIO|SCEN_[A-Z_]+)=' | sort | tr '\n' ' ')bench/scenarios/run.sh\` (\`make bench-scenarios\`)"
    echo "- Machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), kernel $(uname -r); 1/5/15-min load at start: $load_start, at end: $load_end${QUIET_NOTE:+ — **$QUIET_NOTE**}"
    echo "- Pinning: 3 demo origins, wrk, pollers and the idle-connection client on CPU 0; the proxy alone on CPU 1; one worker per proxy"
    echo "- Versions: $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v 2>&1 | head -1 | awk '{ print "HAProxy " $3 }'), $(wrk -v 2>&1 | head -1 | awk '{ print "wrk " $2 }'), $("$SWITCHYARD_BIN" --version 2>&1 | head -1) ($(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- crates bin 2>/dev/null || echo ', dirty tree'))"
    echo
    for s in $SCENARIO; do
      "report_$s"
      echo
    done
  } >"$out"
  cat "$out"
  log "saved $out"
}

main "$@"
