# Sourced by bench/callgrind.sh, bench/allocations.sh and bench/syscalls.sh: the measured set-up
# they share — the tools they install, a scratch directory whose processes are all stopped on exit,
# two demo origins on 127.0.0.1 and a one-worker Switchyard config balancing over both (round
# robin, keep-alive upstreams). Expects DEMO_ORIGIN_BIN, P_O1, P_O2, P_PROXY, log() and die() from
# the caller.

# install_missing PACKAGE...: installs the Debian packages named (none: nothing to do).
install_missing() {
  [ $# -gt 0 ] || return 0
  local sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  log "installing: $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# peer_tools_missing: adds to the caller's `need` array the packages of the peers in PEERS
# (NGINX, HAProxy) that are not installed.
peer_tools_missing() {
  case " $PEERS " in *" nginx "*) command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx) ;; esac
  case " $PEERS " in *" haproxy "*) command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy) ;; esac
  return 0
}

# build_release WITH_UNPATCHED(0|1): the release binaries the benches measure; with 1 also bare
# Pingora against the unpatched 0.9.1 (bench/bare-pingora-unpatched, its own workspace).
build_release() {
  ./scripts/ensure-build-deps.sh
  log "building release binaries"
  cargo build --release -p switchyard -p bare-pingora -p demo-origin >&2
  if [ "$1" = 1 ]; then
    CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release \
      --manifest-path bench/bare-pingora-unpatched/Cargo.toml >&2
  fi
}

# scratch_dir NAME: sets TMP to a new directory and PIDS to an empty array; on exit every PID in
# PIDS is stopped (SIGTERM, then SIGKILL) and TMP removed.
scratch_dir() {
  TMP="$(mktemp -d "/tmp/switchyard-$1.XXXXXX")"
  PIDS=()
  trap stop_all_and_clean EXIT
}
stop_all_and_clean() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # PORT SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do port_open "$1" && return 0; sleep 0.1; done
  return 1
}

# Starts the two origins (logs in $TMP) and waits for them; dies if they do not listen.
start_two_origins() {
  "$DEMO_ORIGIN_BIN" --listen "127.0.0.1:$P_O1" --name o1 >"$TMP/o1.log" 2>&1 &
  PIDS+=($!)
  "$DEMO_ORIGIN_BIN" --listen "127.0.0.1:$P_O2" --name o2 >"$TMP/o2.log" 2>&1 &
  PIDS+=($!)
  wait_port "$P_O1" 10 && wait_port "$P_O2" 10 || die "origins did not start"
}

# Writes the measured Switchyard config to $TMP/switchyard.toml; $1 is its instance_id.
write_two_origin_config() {
  cat >"$TMP/switchyard.toml" <<EOF
[server]
instance_id = "$1"
threads = 1
grace_period_s = 1

[[listeners]]
name = "web"
listen = "127.0.0.1:$P_PROXY"

[[routes]]
name = "all"
path_prefix = "/"
upstream = "origins"

[[upstreams]]
name = "origins"
algorithm = "wrr"

  [[upstreams.groups]]
  name = "local"

    [[upstreams.groups.servers]]
    address = "127.0.0.1"
    port = $P_O1

    [[upstreams.groups.servers]]
    address = "127.0.0.1"
    port = $P_O2
EOF
}
