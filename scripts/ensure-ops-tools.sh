#!/usr/bin/env bash
# Installs the tools the contrib/ checks use (tests/contrib_*.rs), on a fresh Debian machine:
#
# * `promtool` (validates contrib/prometheus/switchyard-rules.yml): taken out of Debian's
#   `prometheus` package with `apt-get download` + `dpkg-deb -x` rather than installed, because
#   installing the package pulls in a web UI's JavaScript libraries and sets up a Prometheus
#   server service; only the one static binary is needed (~19 MB download, a few seconds).
# * `systemd-analyze` (verifies contrib/systemd/switchyard.service): Debian's `systemd` package.
#
# Does nothing when both are present. The tests skip a check whose tool is missing (and say so),
# so a machine without network still runs the rest.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
updated=
apt_update() {
  if [ -z "$updated" ]; then
    $SUDO apt-get update -qq
    updated=1
  fi
}
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing promtool (from Debian's prometheus package)"
  apt_update
  tmp="$(mktemp -d)"
  chmod 0755 "$tmp"   # apt-get download drops privileges to _apt
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -qq prometheus)
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
  $SUDO install -m 0755 "$tmp/root/usr/bin/promtool" /usr/local/bin/promtool
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "installing systemd-analyze (Debian's systemd package)"
  apt_update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends systemd
fi
promtool --version 2>&1 | head -1
