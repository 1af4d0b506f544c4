#!/usr/bin/env bash
# `make bench-grpc`: gRPC unary calls through Switchyard (h2c in, h2c out) beside the same client
# calling the origin directly and through NGINX's `grpc_pass` (when nginx is installed; one worker,
# upstream keepalive), and calls per proxy CPU-second.
#
# Layout (2-core machine): the gRPC origin (`grpc-echo serve`) and the load generator
# (`grpc-echo load`: one h2c connection per worker, unary calls with a 64-byte payload) on CPU 0,
# the proxy alone on CPU 1. Rounds alternate direct and proxied runs; the proxy's CPU time is read
# from /proc before and after each proxied run.
#
# Environment:
#   GB_SECONDS=10   seconds per run (1..600)      GB_ROUNDS=3   rounds (direct + proxied each)
#   GB_CONC=16      concurrent calls              GB_PORT_BASE=18700 (ports BASE+1..BASE+4)
#   GB_SKIP_BUILD=1 use the release binaries already built
#
# Only 127.0.0.1 is used; every process started here is stopped on exit; every run is bounded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${GB_SECONDS:-10}"; ROUNDS="${GB_ROUNDS:-3}"; CONC="${GB_CONC:-16}"; BASE="${GB_PORT_BASE:-18700}"
case "$SECS$ROUNDS$CONC$BASE" in *[!0-9]*) echo "GB_* must be integers" >&2; exit 2 ;; esac
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -z "${GB_SKIP_BUILD:-}" ]; then
  cargo build --release -p switchyard -p grpc-echo >&2
fi
SY="$TARGET_DIR/release/switchyard"; ECHO="$TARGET_DIR/release/grpc-echo"
P_ORIGIN=$((BASE + 1)); P_PROXY=$((BASE + 2)); P_METRICS=$((BASE + 3)); P_NGINX=$((BASE + 4))
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cat > "$WORK/grpc.toml" <<EOF
[server]
instance_id = "bench-grpc"
threads = 1
grace_period_s = 1

[[listeners]]
name = "web"
protocol = "http"
listen = "127.0.0.1:$P_PROXY"

[[routes]]
name = "echo"
path_prefix = "/"
upstream = "echo"
timeout_ms = 10000

[[upstreams]]
name = "echo"
protocol = "http2"
  [[upstreams.groups]]
  name = "g"
    [[upstreams.groups.servers]]
    address = "127.0.0.1"
    port = $P_ORIGIN
EOF

taskset -c 0 "$ECHO" serve "127.0.0.1:$P_ORIGIN" origin 2>"$WORK/origin.log" &
PIDS+=($!)
RUST_LOG=warn taskset -c 1 "$SY" run -c "$WORK/grpc.toml" 2>"$WORK/proxy.log" &
SY_PID=$!
PIDS+=($SY_PID)
for _ in $(seq 1 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$P_PROXY") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$P_ORIGIN") 2>/dev/null; then break; fi
  sleep 0.2
done

# NGINX with grpc_pass, one worker pinned like the proxy (nginx's master does no request work).
NGX=""
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  NGX="$(command -v nginx || echo /usr/sbin/nginx)"
  mkdir -p "$WORK/nginx"
  cat > "$WORK/nginx.conf" <<NGINXCONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream echo { server 127.0.0.1:$P_ORIGIN; keepalive 64; }
  server {
    listen 127.0.0.1:$P_NGINX http2;
    http2_max_concurrent_streams 1024;
    location / { grpc_pass grpc://echo; grpc_read_timeout 10s; }
  }
}
NGINXCONF
  taskset -c 1 "$NGX" -p "$WORK/nginx/" -e "$WORK/nginx/stderr.log" -c "$WORK/nginx.conf" &
  PIDS+=($!)
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$P_NGINX") 2>/dev/null && break
    sleep 0.2
  done
  NGX_WORKER=$(pgrep -P "$(cat "$WORK/nginx/nginx.pid")" | head -1 || true)
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
load() { taskset -c 0 "$ECHO" load "127.0.0.1:$1" "$CONC" "$SECS"; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

echo "## gRPC unary calls (grpc-echo load, $CONC concurrent, ${SECS}s x $ROUNDS rounds)"
echo
echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); revision $(git rev-parse --short HEAD 2>/dev/null || echo unknown); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| round | direct calls/s | via Switchyard calls/s | ratio | proxy CPU-s | calls per proxy CPU-s | errors | via NGINX calls/s | NGINX CPU-s | calls per NGINX CPU-s | errors | Switchyard / NGINX per CPU-s |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
# One proxied run through `port`: calls/s, CPU seconds of `pid`, calls per CPU-second, errors.
run_via() {
  local port=$1 pid=$2 before after out calls cpu
  before=$(cpu_ticks "$pid")
  out=$(load "$port")
  after=$(cpu_ticks "$pid")
  calls=$(echo "$out" | field calls)
  cpu=$(awk -v a="$after" -v b="$before" -v hz="$HZ" 'BEGIN{printf "%.2f", (a-b)/hz}')
  echo "$(echo "$out" | field calls_per_s) $cpu $(awk -v c="$calls" -v s="$cpu" 'BEGIN{ if (s > 0) printf "%.0f", c/s; else print "n/a" }') $(echo "$out" | field errors)"
}
for r in $(seq 1 "$ROUNDS"); do
  direct=$(load "$P_ORIGIN")
  d=$(echo "$direct" | field calls_per_s)
  read -r p cpu per errs <<<"$(run_via "$P_PROXY" "$SY_PID")"
  ratio=$(awk -v p="$p" -v d="$d" 'BEGIN{ if (d > 0) printf "%.2f", p/d; else print "n/a" }')
  ngx="| n/a | n/a | n/a | n/a | n/a |"
  if [ -n "$NGX" ] && [ -n "${NGX_WORKER:-}" ]; then
    read -r np ncpu nper nerrs <<<"$(run_via "$P_NGINX" "$NGX_WORKER")"
    rel=$(awk -v a="$per" -v b="$nper" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "n/a" }')
    ngx="| $np | $ncpu | $nper | $nerrs | $rel |"
  fi
  echo "| $r | $d | $p | $ratio | $cpu | $per | $errs $ngx"
done
