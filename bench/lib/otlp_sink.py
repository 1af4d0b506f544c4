"""A local OTLP/HTTP sink for benchmarks and the PGO training: answers 200 to every POST on
127.0.0.1:PORT (the export's body is read and dropped). Used by bench/observability.sh and
scripts/pgo-build.sh; callers bound its life (`timeout`)."""
import http.server
import sys


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
