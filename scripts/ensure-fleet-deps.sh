#!/usr/bin/env bash
# Installs what the fleet crate and its tests need on a fresh Debian machine: protoc (the
# etcd-client crate compiles etcd's .proto files at build time) and a real etcd with etcdctl
# (tests/fleet*.rs start their own). Does nothing when they are present.
set -euo pipefail
need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
# protoc alone lacks the well-known types etcd's protos import (google/protobuf/descriptor.proto):
# they come with libprotobuf-dev, which `--no-install-recommends` leaves out.
[ -f /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "installing fleet dependencies: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
