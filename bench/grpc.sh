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
#   GB_CONC=16      concurrent calls              GB_PORT_BASE=18700 (ports BASE+1..BASE+5)
#   GB_SKIP_BUILD=1 use the release binaries already built
#   SWITCHYARD_BIN, GRPC_ECHO_BIN   the binaries (default: $CARGO_TARGET_DIR/release/…)
#   SWITCHYARD_BIN_B=…  a second Switchyard build (e.g. the profile-guided one) on its own port,
#                   measured in the same rounds right after the first, with its own columns and
#                   its calls per CPU-second divided by the first's
#   GB_CALLGRIND=1  instead of the rounds: user-space instructions per call of each Switchyard
#                   build under `valgrind --tool=callgrind` (GB_CG_WARMUP=2 s uninstrumented, then
#                   GB_SECONDS counted; the dumps are kept in GB_CG_OUT=target/bench)
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
SY="${SWITCHYARD_BIN:-$TARGET_DIR/release/switchyard}"; ECHO="${GRPC_ECHO_BIN:-$TARGET_DIR/release/grpc-echo}"
SY_B="${SWITCHYARD_BIN_B:-}"
P_ORIGIN=$((BASE + 1)); P_PROXY=$((BASE + 2)); P_METRICS=$((BASE + 3)); P_NGINX=$((BASE + 4))
P_PROXY_B=$((BASE + 5))
for b in "$SY" "$ECHO" ${SY_B:+"$SY_B"}; do
  [ -x "$b" ] || { echo "missing binary $b" >&2; exit 1; }
done
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

sed -e "s/127.0.0.1:$P_PROXY\"/127.0.0.1:$P_PROXY_B\"/" "$WORK/grpc.toml" >"$WORK/grpc-b.toml"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # PORT: up to 10 s (60 s under valgrind)
  local _
  for _ in $(seq 1 300); do port_open "$1" && return 0; sleep 0.2; done
  return 1
}
taskset -c 0 "$ECHO" serve "127.0.0.1:$P_ORIGIN" origin 2>"$WORK/origin.log" &
PIDS+=($!)
wait_port "$P_ORIGIN" || { echo "the gRPC origin did not start" >&2; exit 1; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
# load PORT [SECONDS]: grpc-echo load on CPU 0, bounded by SECONDS (default GB_SECONDS).
load() { taskset -c 0 "$ECHO" load "127.0.0.1:$1" "$CONC" "${2:-$SECS}"; }

if [ -n "${GB_CALLGRIND:-}" ]; then
  command -v valgrind >/dev/null 2>&1 || { echo "GB_CALLGRIND needs valgrind" >&2; exit 1; }
  CG_OUT="${GB_CG_OUT:-$TARGET_DIR/bench}"; WARM="${GB_CG_WARMUP:-2}"
  case "$WARM" in *[!0-9]*|"") echo "GB_CG_WARMUP must be an integer" >&2; exit 2 ;; esac
  mkdir -p "$CG_OUT"
  echo "## gRPC unary calls: instructions per call (callgrind; grpc-echo load, $CONC concurrent, ${WARM}s warm-up, ${SECS}s counted)"
  echo
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); revision $(git rev-parse --short HEAD 2>/dev/null || echo unknown); load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| build | calls counted | errors | instructions | per call |"
  echo "|---|---:|---:|---:|---:|"
  for which in a ${SY_B:+b}; do
    bin="$SY"; [ "$which" = b ] && bin="$SY_B"
    out="$WORK/cg-$which.out"
    RUST_LOG=warn timeout $((SECS + WARM + 180)) valgrind --tool=callgrind --trace-children=no --instr-atstart=no \
      --callgrind-out-file="$out" "$bin" run -c "$WORK/grpc.toml" >"$WORK/proxy-cg-$which.log" 2>&1 &
    cg=$!
    PIDS+=($cg)
    wait_port "$P_PROXY" || { tail -5 "$WORK/proxy-cg-$which.log" >&2; exit 1; }
    vg="$(pgrep -P "$cg" | head -1 || true)"; [ -n "$vg" ] || vg="$cg"
    load "$P_PROXY" "$WARM" >/dev/null
    callgrind_control -i on "$vg" >/dev/null 2>&1
    res="$(load "$P_PROXY" "$SECS")"
    callgrind_control -d "$vg" >/dev/null 2>&1
    kill -INT "$cg" 2>/dev/null || true
    wait "$cg" 2>/dev/null || true
    dump="$(ls "$out".*1 "$out".1 2>/dev/null | head -1 || true)"
    [ -n "$dump" ] || { echo "no callgrind dump for $bin" >&2; exit 1; }
    cp "$dump" "$CG_OUT/callgrind-grpc-$which.out"
    ir="$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")"
    calls="$(echo "$res" | field calls)"
    per="$(awk -v i="$ir" -v c="$calls" 'BEGIN { if (c > 0) printf "%.0f", i / c; else print "n/a" }')"
    echo "| \`$bin\` | $calls | $(echo "$res" | field errors) | $ir | $per |"
    # SO_REUSEPORT: the next proxy must not share the port with a stale one.
    for _ in $(seq 1 50); do port_open "$P_PROXY" || break; sleep 0.2; done
  done
  exit 0
fi

RUST_LOG=warn taskset -c 1 "$SY" run -c "$WORK/grpc.toml" 2>"$WORK/proxy.log" &
SY_PID=$!
PIDS+=($SY_PID)
wait_port "$P_PROXY" || { echo "switchyard did not start" >&2; exit 1; }
if [ -n "$SY_B" ]; then
  RUST_LOG=warn taskset -c 1 "$SY_B" run -c "$WORK/grpc-b.toml" 2>"$WORK/proxy-b.log" &
  SY_B_PID=$!
  PIDS+=($SY_B_PID)
  wait_port "$P_PROXY_B" || { echo "SWITCHYARD_BIN_B did not start" >&2; exit 1; }
fi

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

echo "## gRPC unary calls (grpc-echo load, $CONC concurrent, ${SECS}s x $ROUNDS rounds)"
echo
echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); revision $(git rev-parse --short HEAD 2>/dev/null || echo unknown); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
[ -z "$SY_B" ] || echo "- Switchyard: \`$SY\`; B: \`$SY_B\` (run right after it in each round, same CPU)"
[ -z "$SY_B" ] || echo
B_HEAD=""; B_RULE=""
if [ -n "$SY_B" ]; then
  B_HEAD=" via B calls/s | B CPU-s | calls per B CPU-s | errors | B / Switchyard per CPU-s |"
  B_RULE="---:|---:|---:|---:|---:|"
fi
echo "| round | direct calls/s | via Switchyard calls/s | ratio | proxy CPU-s | calls per proxy CPU-s | errors |$B_HEAD via NGINX calls/s | NGINX CPU-s | calls per NGINX CPU-s | errors | Switchyard / NGINX per CPU-s |"
echo "|---:|---:|---:|---:|---:|---:|---:|$B_RULE---:|---:|---:|---:|---:|"
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
  bcols=""
  if [ -n "$SY_B" ]; then
    read -r bp bcpu bper berrs <<<"$(run_via "$P_PROXY_B" "$SY_B_PID")"
    brel=$(awk -v a="$bper" -v b="$per" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "n/a" }')
    bcols="| $bp | $bcpu | $bper | $berrs | $brel "
  fi
  ngx="| n/a | n/a | n/a | n/a | n/a |"
  if [ -n "$NGX" ] && [ -n "${NGX_WORKER:-}" ]; then
    read -r np ncpu nper nerrs <<<"$(run_via "$P_NGINX" "$NGX_WORKER")"
    rel=$(awk -v a="$per" -v b="$nper" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "n/a" }')
    ngx="| $np | $ncpu | $nper | $nerrs | $rel |"
  fi
  echo "| $r | $d | $p | $ratio | $cpu | $per | $errs $bcols$ngx"
done
