#!/usr/bin/env bash
# A profile-guided (PGO) release build of `switchyard`: an instrumented build serves a bounded
# training load on 127.0.0.1 (plain and TLS GETs, small POSTs, HTTP/2 with prior knowledge and
# over TLS, an access log, traces exported to a local OTLP sink, metrics scrapes, gRPC unary calls
# h2c in and out, GETs through a `tcp` listener, active HTTP, gRPC and TCP health checks),
# the profile is merged with the `llvm-profdata` of rustc's own LLVM version, and the release
# build is repeated with it. The result is `target/release/switchyard-pgo`; the plain release
# build (`target/release/switchyard`) is untouched. See docs/operations.md ("A profile-guided
# build") and docs/benchmarks.md for what it changes and what it costs.
#
#   scripts/pgo-build.sh                  # both builds and the training (~2 × a release build)
#
# Environment:
#   PGO_DIR=target/pgo        work directory (profiles, the two builds' target directories)
#   PGO_SECONDS=8             seconds of each training load (6 loads)
#   PGO_PORT_BASE=18960       first of the 8 loopback ports the training uses
#   PGO_OUT=target/release/switchyard-pgo
#   PGO_GEN_BIN=…             an instrumented binary already built (skips that build)
#   PGO_TRAIN_ONLY=1          stop once the profile is merged (no optimised build)
#   PGO_CARGO_FLAGS=…         more flags for every `cargo build` here (`make dist`: --locked)
#   LLVM_PROFDATA=…           the merge tool (default: llvm-profdata-<rustc's LLVM major>,
#                             installed from Debian's llvm-<major> when missing, as are
#                             wrk, curl, openssl and python3)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$PWD"
PGO_DIR="$(realpath -m "${PGO_DIR:-target/pgo}")"
SECONDS_EACH="${PGO_SECONDS:-8}"
BASE="${PGO_PORT_BASE:-18960}"
OUT="${PGO_OUT:-target/release/switchyard-pgo}"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
read -r -a CARGO_FLAGS <<<"${PGO_CARGO_FLAGS:-}"

log() { printf '[pgo] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=../bench/lib/two-origins.sh
. "$ROOT/bench/lib/two-origins.sh"

# The merge tool must read the profile format of rustc's LLVM: same major version.
llvm_major="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
[ -n "$llvm_major" ] || die "cannot read rustc's LLVM version (rustc -vV)"
PROFDATA="${LLVM_PROFDATA:-llvm-profdata-$llvm_major}"
need=()
command -v "$PROFDATA" >/dev/null 2>&1 || need+=("llvm-$llvm_major")
for tool in wrk curl openssl python3; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
install_missing "${need[@]}"
command -v "$PROFDATA" >/dev/null 2>&1 || die "$PROFDATA not found (set LLVM_PROFDATA)"

./scripts/ensure-build-deps.sh
GEN_BIN="${PGO_GEN_BIN:-$PGO_DIR/gen/$TRIPLE/release/switchyard}"
if [ -z "${PGO_GEN_BIN:-}" ]; then
  # `--target` keeps RUSTFLAGS off build scripts and proc macros: only the binary is instrumented.
  log "instrumented build"
  RUSTFLAGS="-Cprofile-generate=$PGO_DIR/raw" cargo build --release "${CARGO_FLAGS[@]}" -p switchyard \
    --target "$TRIPLE" --target-dir "$PGO_DIR/gen" >&2
fi
cargo build --release "${CARGO_FLAGS[@]}" -p demo-origin -p grpc-echo >&2
rm -rf "$PGO_DIR/raw"   # nothing but the training's own profile

scratch_dir pgo
DEMO_ORIGIN_BIN="$ROOT/target/release/demo-origin"
GRPC_ECHO_BIN="$ROOT/target/release/grpc-echo"
P_O1=$BASE P_O2=$((BASE + 1)) P_PROXY=$((BASE + 2)) P_HTTPS=$((BASE + 3)) P_METRICS=$((BASE + 4))
P_SINK=$((BASE + 5)) P_TCP=$((BASE + 6)) P_GRPC=$((BASE + 7))
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1 || die "openssl failed"
# The measured set-up of `make bench-instructions` (one thread, round robin over two origins),
# plus a TLS listener and the sections whose code the training should reach.
write_two_origin_config pgo
cat >>"$TMP/switchyard.toml" <<EOF

[[listeners]]
name = "tls"
protocol = "https"
listen = "127.0.0.1:$P_HTTPS"
tls = { cert = "$TMP/cert.pem", key = "$TMP/key.pem" }

[metrics]
listen = "127.0.0.1:$P_METRICS"

[access_log]
path = "$TMP/access.log"

[tracing]
otlp_endpoint = "http://127.0.0.1:$P_SINK/v1/traces"
sample_ratio = 1.0

# The paths the GET training does not reach (docs/benchmarks.md, "Session 14"): gRPC through an
# HTTP/2 upstream, a layer-4 listener, and active checks of each kind every 100 ms.
[[listeners]]
name = "tcp"
protocol = "tcp"
listen = "127.0.0.1:$P_TCP"
upstream = "tcp-origins"

[[routes]]
name = "grpc"
path_prefix = "/switchyard.test.Echo/"
upstream = "grpc"

[[upstreams]]
name = "grpc"
protocol = "http2"
  [[upstreams.groups]]
  name = "g"
    [[upstreams.groups.servers]]
    address = "127.0.0.1"
    port = $P_GRPC
  [upstreams.health.active]
  protocol = "grpc"
  interval_ms = 100

[[upstreams]]
name = "tcp-origins"
  [[upstreams.groups]]
  name = "t"
    [[upstreams.groups.servers]]
    address = "127.0.0.1"
    port = $P_O1
    [[upstreams.groups.servers]]
    address = "127.0.0.1"
    port = $P_O2
  [upstreams.health.active]
  protocol = "tcp"
  interval_ms = 100

[[upstreams]]
name = "http-checked"
  [[upstreams.groups]]
  name = "h"
    [[upstreams.groups.servers]]
    address = "127.0.0.1"
    port = $P_O1
    [[upstreams.groups.servers]]
    address = "127.0.0.1"
    port = $P_O2
  [upstreams.health.active]
  protocol = "http"
  path = "/health"
  interval_ms = 100
EOF
start_two_origins
"$GRPC_ECHO_BIN" serve "127.0.0.1:$P_GRPC" grpc-origin >"$TMP/grpc.log" 2>&1 &
PIDS+=($!)
wait_port "$P_GRPC" 10 || die "the gRPC origin did not start"
# The OTLP/HTTP sink: answers 200 to every export (bounded: it exits after an hour at most).
timeout 3600 python3 "$ROOT/bench/lib/otlp_sink.py" "$P_SINK" >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$P_SINK" 10 || die "the OTLP sink did not start"

log "training: ${SECONDS_EACH}s each of plain GET, POST, TLS GET, GET with metrics scrapes, gRPC, GET via tcp; HTTP/2; health checks throughout"
LLVM_PROFILE_FILE="$PGO_DIR/raw/switchyard-%p-%m.profraw" \
  "$GEN_BIN" run -c "$TMP/switchyard.toml" >"$TMP/sy.log" 2>&1 &
SY=$!
PIDS+=($SY)
wait_port "$P_PROXY" 20 && wait_port "$P_HTTPS" 20 && wait_port "$P_TCP" 20 || { cat "$TMP/sy.log" >&2; die "switchyard did not start"; }
d="${SECONDS_EACH}s"
wrk -t1 -c16 -d"$d" "http://127.0.0.1:$P_PROXY/" >&2
wrk -t1 -c16 -d"$d" -s "$ROOT/bench/scenarios/post1.lua" "http://127.0.0.1:$P_PROXY/" >&2
wrk -t1 -c16 -d"$d" "https://127.0.0.1:$P_HTTPS/" >&2
( for _ in $(seq 1 "$SECONDS_EACH"); do
    curl -s -o /dev/null "http://127.0.0.1:$P_METRICS/metrics" || true
    sleep 1
  done ) &
SCRAPES=$!
wrk -t1 -c16 -d"$d" "http://127.0.0.1:$P_PROXY/" >&2
wait "$SCRAPES"
# HTTP/2: 300 connections each, h2c with prior knowledge and h2 over TLS (ALPN). One request per
# curl: Debian's curl 7.88 fails the second request it sends on a reused prior-knowledge
# connection ("Error in the HTTP2 framing layer", against NGINX as well).
for i in $(seq 1 300); do
  curl -s -o /dev/null --http2-prior-knowledge "http://127.0.0.1:$P_PROXY/h2c/$i" || die "h2c training failed"
  curl -s -o /dev/null -k --http2 "https://127.0.0.1:$P_HTTPS/h2/$i" || die "h2 training failed"
done
# gRPC unary calls, h2c in and h2c out, 16 connections (grpc-echo load stops after the seconds
# given, at most 600; `timeout` bounds it anyway).
grpc_out="$(timeout $((SECONDS_EACH + 30)) "$GRPC_ECHO_BIN" load "127.0.0.1:$P_PROXY" 16 "$SECONDS_EACH")" ||
  die "gRPC training failed"
log "gRPC: $grpc_out"
case "$grpc_out" in *" errors=0 "*) ;; *) die "gRPC training had errors: $grpc_out" ;; esac
# The layer-4 proxy: the same GETs relayed byte for byte through the tcp listener.
wrk -t1 -c16 -d"$d" "http://127.0.0.1:$P_TCP/" >&2
# A graceful stop: the profile is written when the process exits normally.
kill -TERM "$SY"
for _ in $(seq 1 100); do kill -0 "$SY" 2>/dev/null || break; sleep 0.1; done
kill -0 "$SY" 2>/dev/null && die "switchyard did not stop on SIGTERM"
compgen -G "$PGO_DIR/raw/*.profraw" >/dev/null || die "no profile written"

"$PROFDATA" merge -o "$PGO_DIR/switchyard.profdata" "$PGO_DIR"/raw/*.profraw
log "profile: $(du -h "$PGO_DIR/switchyard.profdata" | cut -f1)"
if [ -n "${PGO_TRAIN_ONLY:-}" ]; then
  log "PGO_TRAIN_ONLY: stopping before the optimised build"
  exit 0
fi

log "optimised build"
RUSTFLAGS="-Cprofile-use=$PGO_DIR/switchyard.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
  cargo build --release "${CARGO_FLAGS[@]}" -p switchyard --target "$TRIPLE" --target-dir "$PGO_DIR/use" >&2
mkdir -p "$(dirname "$OUT")"
cp "$PGO_DIR/use/$TRIPLE/release/switchyard" "$OUT"
log "done: $OUT"
