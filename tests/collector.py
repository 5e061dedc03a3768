"""A real HTTP JSON collector on 127.0.0.1 for the sensor's forwarding tests (unit and integration)."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Collector:
    """http.server on 127.0.0.1: records every POST; `statuses` are answered first (then 200)."""

    def __init__(self, statuses=(), delay=0.0):
        self.batches, self.headers, self.statuses, self.delay = [], [], list(statuses), delay
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(owner.delay)
                status = owner.statuses.pop(0) if owner.statuses else 200
                if status == 200:
                    owner.batches.append(json.loads(body))
                    owner.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def auth(self):
        """The Authorization header of every accepted batch."""
        return [h.get("Authorization") for h in list(self.headers)]

    def records(self):
        return [r for batch in list(self.batches) for r in batch]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
