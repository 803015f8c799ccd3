#!/usr/bin/env python3
"""Alertmanager webhook receiver for the end-to-end test.

Listens on 127.0.0.1:PORT and appends one JSON line per POST to OUT_FILE:
{"path": "/coolmesh/pager", "received": <unix time>, "body": <the webhook payload>}.
Any path is accepted, so the receivers of alertmanager.example.yml
(/coolmesh/pager, /coolmesh/chat) can both point here and stay distinguishable.

Usage: webhook.py PORT OUT_FILE
"""
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    out_file = None

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = {"unparsed": raw.decode("utf-8", "replace")}
        line = json.dumps({"path": self.path, "received": time.time(), "body": body})
        with LOCK, open(self.out_file, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        # Readiness probe for the test.
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, fmt, *args):
        sys.stderr.write("webhook: " + (fmt % args) + "\n")


def main():
    # SIGTERM is the normal way the test stops this: exit 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    port, out_file = int(sys.argv[1]), sys.argv[2]
    Handler.out_file = out_file
    open(out_file, "a").close()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
