#!/usr/bin/env bash
# The cost of observability (issue 18): requests per proxy CPU-second of Switchyard with the JSON
# access log on (to a file), and with `[tracing]` at sample_ratio 1.0 (to a local OTLP/HTTP sink),
# beside the same binary with neither. Runs `bench/run.sh`'s `levers` scenario with two wrapper
# "builds" (SWITCHYARD_BIN_B / _C) that add the section to the config they are given; the report's
# levers table shows each as a ratio of default Switchyard (targets: log ≥ 0.95, tracing ≥ 0.90).
#
#   ./bench/observability.sh                  # after `cargo build --release -p switchyard`
#   BENCH_SECONDS=5 BENCH_ROUNDS=1 ./bench/observability.sh
#
# The OTLP sink is a small Python HTTP server on 127.0.0.1 answering 200 to every POST, pinned
# to CPU 0 with the origins and wrk; the proxy (and its exporter thread) stay on CPU 1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
REAL_BIN="${SWITCHYARD_BIN:-$TARGET_DIR/release/switchyard}"
[ -x "$REAL_BIN" ] || { echo "build first: cargo build --release -p switchyard" >&2; exit 1; }
WORK="$(mktemp -d)"
SINK_PORT="${OTLP_SINK_PORT:-18190}"
SINK_PID=""
cleanup() { [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# A wrapper that appends SECTION to the `-c` config (once) and runs the real binary.
wrapper() { # NAME SECTION
  local file="$WORK/$1"
  cat >"$file" <<WRAP
#!/usr/bin/env bash
cfg=""; prev=""
for a in "\$@"; do [ "\$prev" = "-c" ] && cfg="\$a"; prev="\$a"; done
if [ -n "\$cfg" ] && ! grep -q '^\[$1\]' "\$cfg"; then printf '\n[$1]\n%b\n' '$2' >>"\$cfg"; fi
exec "$REAL_BIN" "\$@"
WRAP
  chmod +x "$file"
  echo "$file"
}

taskset -c 0 timeout 3600 python3 "$ROOT/bench/lib/otlp_sink.py" "$SINK_PORT" &
SINK_PID=$!

LOG_BIN="$(wrapper access_log "path = \"$WORK/access.log\"\\nformat = \"json\"")"
TRACE_BIN="$(wrapper tracing "otlp_endpoint = \"http://127.0.0.1:$SINK_PORT/v1/traces\"\\nsample_ratio = 1.0")"

BENCH_SCENARIOS=levers BENCH_LEVERS="" \
  SWITCHYARD_BIN="$REAL_BIN" \
  SWITCHYARD_BIN_B="$LOG_BIN" BENCH_B_LABEL="JSON access log to a file" \
  SWITCHYARD_BIN_C="$TRACE_BIN" BENCH_C_LABEL="[tracing] sample_ratio 1.0" \
  BENCH_LABEL="${BENCH_LABEL:-observability}" \
  "$ROOT/bench/run.sh"
echo "access log lines written: $(wc -l <"$WORK/access.log" 2>/dev/null || echo 0)" >&2
