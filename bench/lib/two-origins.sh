# Sourced by bench/callgrind.sh and bench/allocations.sh: the measured set-up they share — two
# demo origins on 127.0.0.1 and a one-worker Switchyard config balancing over both (round robin,
# keep-alive upstreams). Expects DEMO_ORIGIN_BIN, P_O1, P_O2, P_PROXY, TMP, the PIDS array and
# die() from the caller.

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
