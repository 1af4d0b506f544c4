#!/usr/bin/env bash
# Starts two demo origins and the gateway on conf/demo.toml; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/debug
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
"$BIN/demo-origin" --listen 127.0.0.1:9001 --name a & pids+=($!)
"$BIN/demo-origin" --listen 127.0.0.1:9002 --name b & pids+=($!)
cat <<'TXT'

Switchyard demo on http://127.0.0.1:8080 (origins a on :9001, b on :9002). Try:

  curl -i http://127.0.0.1:8080/            # alternates: hello from a / hello from b
  for i in 1 2 3 4; do curl -s http://127.0.0.1:8080/; done
  curl -s http://127.0.0.1:9100/metrics | grep switchyard_
  ./target/debug/switchyard check -c conf/demo.toml

Ctrl-C stops the gateway and the origins.

TXT
RUST_LOG=${RUST_LOG:-info} "$BIN/switchyard" run -c conf/demo.toml & pids+=($!)
wait "${pids[-1]}"
