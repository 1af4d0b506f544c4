#!/usr/bin/env bash
# Replays Switchyard's Pingora patch series (vendor/patches/*.patch, in order) onto another
# release of the vendored crates, and says which patches apply and which no longer do.
#
#   vendor/reapply.sh 0.9.2            # dry run: report only
#   vendor/reapply.sh 0.9.2 --write    # also replace vendor/pingora-* with the patched release
#   vendor/reapply.sh 0.9.1 --verify   # check vendor/ is exactly the release plus the series
#
# The release's sources come from cargo's registry cache (a throw-away crate depending on the
# exact versions is fetched, so cargo downloads them if they are not cached yet). Nothing is
# written under vendor/ without --write, and not even then if a patch fails to apply.
set -euo pipefail
cd "$(dirname "$0")"
version=${1:?usage: vendor/reapply.sh VERSION [--write]}
write=${2:-}
crates=(pingora-core pingora-proxy pingora-http pingora-timeout pingora-pool)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Fetch the exact release of every vendored crate.
mkdir -p "$work/fetch/src"
{
  echo '[package]'
  echo 'name = "fetch-pingora"'
  echo 'version = "0.0.0"'
  echo 'edition = "2021"'
  echo '[dependencies]'
  for c in "${crates[@]}"; do echo "$c = \"=$version\""; done
} > "$work/fetch/Cargo.toml"
touch "$work/fetch/src/lib.rs"
(cd "$work/fetch" && cargo fetch -q)

registry=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -1)
mkdir -p "$work/tree"
for c in "${crates[@]}"; do
  src="$registry/$c-$version"
  [ -d "$src" ] || { echo "not in the registry cache: $src" >&2; exit 1; }
  cp -a "$src" "$work/tree/$c"
  rm -f "$work/tree/$c/Cargo.lock" "$work/tree/$c/.cargo-ok"
done

# Apply the series in order; a failed patch is reported and skipped, the rest still tried.
(cd "$work/tree" && git init -q && git add -A && git -c user.name=reapply -c user.email=r@l commit -qm base)
failed=0
for p in patches/*.patch; do
  if (cd "$work/tree" && git apply --check "$OLDPWD/$p" 2>/dev/null); then
    (cd "$work/tree" && git apply "$OLDPWD/$p")
    echo "applies:        $(basename "$p")"
  elif (cd "$work/tree" && git apply --check -3 "$OLDPWD/$p" 2>/dev/null); then
    (cd "$work/tree" && git apply -3 "$OLDPWD/$p")
    echo "applies (3-way): $(basename "$p")"
  else
    echo "DOES NOT APPLY: $(basename "$p")"
    failed=$((failed + 1))
  fi
done

if [ "$failed" -gt 0 ]; then
  echo "$failed patch(es) need rebasing onto $version; vendor/ left unchanged"
  exit 1
fi
if [ "$write" = "--verify" ]; then
  for c in "${crates[@]}"; do
    diff -r -x Cargo.lock -x .cargo-ok "$work/tree/$c" "$c" || { echo "vendor/$c differs from $version + patches"; exit 1; }
  done
  echo "vendor/ is exactly $version plus the patch series"
elif [ "$write" = "--write" ]; then
  for c in "${crates[@]}"; do
    rm -rf "$c"
    cp -a "$work/tree/$c" "$c"
  done
  echo "vendor/ now holds $version with the whole series; update vendor/PATCHES.md and Cargo.lock"
else
  echo "every patch applies onto $version (dry run; --write to replace vendor/)"
fi
