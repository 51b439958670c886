"""A webhook subscriber for the benchmarks, run as its own process: answers at once, records ids.

    python bench/sink.py --port PORT [--secret whsec_…] [--status 204] [--hang-seconds 0]

Stdlib `ThreadingHTTPServer`, HTTP/1.1 keep-alive, Nagle off (without `disable_nagle_algorithm`
the client's delayed ACK caps a connection near 25 requests/s). Every POST is answered with
`--status` as soon as its body is read and noted as (webhook-id, arrival time, the first linked
external id of the meeting when the body has one). With `--secret` the signature is verified with
the `standardwebhooks` library first and a bad one answers 400 (counted as rejected).

    GET /_stats   {"received": n, "distinct": n, "duplicates": n, "rejected": n}
    GET /_dump    {"items": [[webhook_id, unix_time, external_id], ...]}
    DELETE /_dump empties the record
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Record:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[str, float, str | None]] = []
        self.seen: set[str] = set()
        self.duplicates = 0
        self.rejected = 0

    def add(self, webhook_id: str, external_id: str | None) -> None:
        now = time.time()
        with self.lock:
            if webhook_id in self.seen:
                self.duplicates += 1
            self.seen.add(webhook_id)
            self.items.append((webhook_id, now, external_id))


def external_id_of(body: bytes) -> str | None:
    try:
        links = json.loads(body)["data"]["meeting"]["links"]
        return links[0]["external_id"] if links else None
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def make_handler(
    record: Record, status: int, secret: str | None, hang: float
) -> type[BaseHTTPRequestHandler]:
    verifier: Any = None
    if secret:
        from standardwebhooks.webhooks import Webhook

        verifier = Webhook(secret)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _reply(self, code: int, body: bytes = b"") -> None:
            self.send_response(code)
            self.send_header("content-length", str(len(body)))
            if body:
                self.send_header("content-type", "application/json")
            self.end_headers()
            if body:
                self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if hang:
                time.sleep(hang)
            if verifier is not None:
                try:
                    verifier.verify(body, {k.lower(): v for k, v in self.headers.items()})
                except Exception:  # noqa: BLE001 - any failure to verify is a rejection
                    with record.lock:
                        record.rejected += 1
                    self._reply(400)
                    return
            record.add(self.headers.get("webhook-id") or "", external_id_of(body) if secret else None)
            self._reply(status)

        def do_GET(self) -> None:
            with record.lock:
                if self.path.startswith("/_stats"):
                    out: dict[str, Any] = {
                        "received": len(record.items),
                        "distinct": len(record.seen),
                        "duplicates": record.duplicates,
                        "rejected": record.rejected,
                    }
                else:
                    out = {"items": list(record.items)}
            self._reply(200, json.dumps(out).encode())

        def do_DELETE(self) -> None:
            with record.lock:
                record.items.clear()
                record.seen.clear()
                record.duplicates = record.rejected = 0
            self._reply(204)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--status", type=int, default=204)
    parser.add_argument("--secret", default=None)
    parser.add_argument("--hang-seconds", type=float, default=0.0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port), make_handler(Record(), args.status, args.secret, args.hang_seconds)
    )
    server.daemon_threads = True
    server.request_queue_size = 256
    print(f"sink listening on {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
