#!/usr/bin/env bash
# Runs every fuzz target (or those named in FUZZ_TARGETS) for FUZZ_SECONDS each (default 60),
# one after the other, on a stable toolchain. See fuzz/README.md.
#
#   FUZZ_SECONDS=600 FUZZ_TARGETS="config_parse proxy_protocol" fuzz/run.sh
#
# New inputs go to fuzz/target/work-corpus/<target> (not committed); the committed seeds in
# fuzz/corpus/<target> are only read. A crash stops the run with a non-zero exit and leaves the
# input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
ALL_TARGETS="config_parse proxy_protocol path_template cascade_header sticky_cookie head_scan path_normalize host_header"
FUZZ_TARGETS="${FUZZ_TARGETS:-$ALL_TARGETS}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (once)"
  cargo install cargo-fuzz --locked
fi

# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, -Cpasses=sancov-module).
# RUSTC_BOOTSTRAP=1 lets the pinned stable compiler accept them, so no nightly toolchain is
# needed. FUZZ_TOOLCHAIN=nightly uses an installed nightly instead.
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  FUZZ_CARGO=(cargo "+${FUZZ_TOOLCHAIN}")
else
  export RUSTC_BOOTSTRAP=1
  FUZZ_CARGO=(cargo)
fi

"${FUZZ_CARGO[@]}" fuzz build -O
for t in $FUZZ_TARGETS; do
  mkdir -p "target/work-corpus/$t" "corpus/$t"
  echo "=== fuzzing $t for ${FUZZ_SECONDS}s"
  "${FUZZ_CARGO[@]}" fuzz run -O "$t" "target/work-corpus/$t" "corpus/$t" -- \
    -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
done
echo "fuzzing done: no crash in ${FUZZ_TARGETS} (${FUZZ_SECONDS}s each)"
