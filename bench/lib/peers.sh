# Sourced by bench/callgrind.sh, bench/allocations.sh and bench/syscalls.sh: the peers they measure on the set-up of
# bench/lib/two-origins.sh — Switchyard (plain and "full"), bare Pingora (patched and unpatched),
# NGINX and HAProxy, each a one-worker round-robin proxy on 127.0.0.1:$P_PROXY over the two
# origins with keep-alive upstreams. Expects TMP, P_O1, P_O2, P_PROXY, P_METRICS, SWITCHYARD_BIN,
# BARE_PINGORA_BIN, BARE_UNPATCHED_BIN, EXTRA (the caller's "label=BIN[@FILE] ..." list) and
# $TMP/switchyard.toml (write_two_origin_config).

# Writes the other peers' configs into $TMP.
write_peer_configs() {
  # The framework-overhead variant: ewma, active HTTP checks every second, metrics on.
  sed -e 's/algorithm = "wrr"/algorithm = "ewma"/' "$TMP/switchyard.toml" >"$TMP/switchyard-full.toml"
  cat >>"$TMP/switchyard-full.toml" <<EOF

  [upstreams.health.active]
  protocol = "http"
  path = "/health"
  interval_ms = 1000

[metrics]
listen = "127.0.0.1:$P_METRICS"
EOF
  mkdir -p "$TMP/nginx"
  cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  upstream origins { server 127.0.0.1:$P_O1; server 127.0.0.1:$P_O2; keepalive 64; }
  server {
    listen 127.0.0.1:$P_PROXY;
    location / { proxy_pass http://origins; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
cat >"$TMP/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 1024
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 1s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:$P_PROXY
  default_backend origins
backend origins
  balance roundrobin
  server o1 127.0.0.1:$P_O1
  server o2 127.0.0.1:$P_O2
EOF
}

# command_of PEER: the proxy's command line.
command_of() {
  local extra label path
  case "$1" in
    switchyard) echo "$SWITCHYARD_BIN run -c $TMP/switchyard.toml" ;;
    switchyard-full) echo "$SWITCHYARD_BIN run -c $TMP/switchyard-full.toml" ;;
    bare0) echo "$BARE_UNPATCHED_BIN --listen 127.0.0.1:$P_PROXY --upstream 127.0.0.1:$P_O1 --upstream 127.0.0.1:$P_O2" ;;
    bare) echo "$BARE_PINGORA_BIN --listen 127.0.0.1:$P_PROXY --upstream 127.0.0.1:$P_O1 --upstream 127.0.0.1:$P_O2" ;;
    nginx) echo "nginx -p $TMP/nginx/ -c $TMP/nginx.conf" ;;
    haproxy) echo "haproxy -db -f $TMP/haproxy.cfg" ;;
    *)
      for extra in ${EXTRA:-}; do
        label="${extra%%=*}"; path="${extra#*=}"
        [ "$label" = "$1" ] || continue
        # `label=BIN@FILE`: BIN with FILE's TOML appended to the config (e.g. an [access_log]).
        if [ "${path#*@}" != "$path" ]; then
          cat "$TMP/switchyard.toml" "${path#*@}" >"$TMP/switchyard-$label.toml"
          echo "${path%%@*} run -c $TMP/switchyard-$label.toml"
        else
          echo "$path run -c $TMP/switchyard.toml"
        fi
        return 0
      done
      return 1
      ;;
  esac
}
