"""Opens N keep-alive client connections to a proxy, sends one request on each, reads the
response, then keeps every connection open and idle until told to close.

    idle_conns.py --port P --conns N [--tls] [--path /] [--hold-max S] [--ready-file F] [--release-file F]

Protocol with bench/scenarios/run.sh: once every connection has had its response, prints
`READY ok=<2xx> bad=<other> failed=<connect/read errors> open=<sockets open>` on stdout and
writes the same line to --ready-file; then waits until --release-file exists (or --hold-max
seconds pass), checks how many connections the proxy closed meanwhile, prints
`CLOSED_BY_PEER <n>` and exits (closing everything).

Only 127.0.0.0/8: source addresses rotate over 127.0.0.1 .. 127.0.0.8 (with
IP_BIND_ADDRESS_NO_PORT) so that one destination never runs out of ephemeral ports.
Connections are opened in batches (default 256) so the listen backlog never overflows.

--tls: every connection first completes a TLS handshake (ALPN http/1.1, no certificate check —
the proxies use a self-signed test certificate —, no session resumption: each connection holds
its own full TLS state at the proxy).
"""

import argparse
import os
import resource
import select
import socket
import ssl
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, required=True)
    ap.add_argument("--path", default="/")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--hold-max", type=float, default=60.0)
    ap.add_argument("--ready-file")
    ap.add_argument("--release-file")
    ap.add_argument("--timeout", type=float, default=120.0, help="bound on opening everything")
    ap.add_argument("--tls", action="store_true", help="TLS to the proxy (no certificate check)")
    a = ap.parse_args()

    tls = None
    if a.tls:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        tls.set_alpn_protocols(["http/1.1"])
        tls.options |= ssl.OP_NO_TICKET

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.conns + 64
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(hard, need)))
        except (ValueError, OSError) as e:
            print(f"ERROR cannot raise RLIMIT_NOFILE to {need} (soft {soft}, hard {hard}): {e}",
                  file=sys.stderr)
            sys.exit(3)

    req = (f"GET {a.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: idle-conns\r\n\r\n").encode()
    socks = []
    ok = bad = failed = 0
    deadline = time.monotonic() + a.timeout
    sources = [f"127.0.0.{i}" for i in range(1, 9)]
    i = 0
    while i < a.conns:
        if time.monotonic() > deadline:
            print("ERROR timed out opening connections", file=sys.stderr)
            break
        batch = []
        for _ in range(min(a.batch, a.conns - i)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((sources[i % len(sources)], 0))
                s.settimeout(5)
                s.connect(("127.0.0.1", a.port))
                if tls is not None:
                    s = tls.wrap_socket(s, server_hostname="localhost")
                s.sendall(req)
                batch.append(s)
            except OSError:
                failed += 1
                s.close()
            i += 1
        # Read each response head (and a small body, by Content-Length) without closing.
        for s in batch:
            try:
                buf = b""
                while b"\r\n\r\n" not in buf:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise OSError("closed")
                    buf += chunk
                head, _, body = buf.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                status = int(lines[0].split()[1])
                clen = 0
                for ln in lines[1:]:
                    k, _, v = ln.partition(b":")
                    if k.strip().lower() == b"content-length":
                        clen = int(v.strip())
                while len(body) < clen:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise OSError("closed")
                    body += chunk
                if 200 <= status <= 299:
                    ok += 1
                else:
                    bad += 1
                socks.append(s)
            except (OSError, ValueError, IndexError):
                failed += 1
                s.close()

    line = f"READY ok={ok} bad={bad} failed={failed} open={len(socks)}"
    print(line, flush=True)
    if a.ready_file:
        with open(a.ready_file + ".tmp", "w") as f:
            f.write(line + "\n")
        os.rename(a.ready_file + ".tmp", a.ready_file)

    end = time.monotonic() + a.hold_max
    while time.monotonic() < end:
        if a.release_file and os.path.exists(a.release_file):
            break
        time.sleep(0.1)

    # Which connections did the proxy close while they were idle? (readable = EOF here)
    closed = 0
    poller = select.poll()
    by_fd = {}
    for s in socks:
        s.setblocking(False)
        poller.register(s, select.POLLIN)
        by_fd[s.fileno()] = s
    for fd, ev in poller.poll(0):
        try:
            if not by_fd[fd].recv(1):
                closed += 1
        except (ssl.SSLWantReadError, BlockingIOError):
            pass  # TLS: a record without application data (e.g. a session ticket), not a close
        except OSError:
            closed += 1
    print(f"CLOSED_BY_PEER {closed}", flush=True)
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
