"""The demo's subscriber: a local webhook endpoint that verifies each signed delivery and prints it.

What a consumer of bookingsync sees is the product's main output, so the demo shows exactly
that: the events arrive over HTTP as Standard Webhooks, are verified with the `standardwebhooks`
library (independently of how worker/delivery.py signs them) and printed one line each. A
delivery that fails verification is printed as refused and answered 400.

Only the CLI's demo (worker/demo.py) uses it.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rich.text import Text
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY_BYTES = 1024 * 1024


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def line(body: dict[str, Any], webhook_id: str) -> Text:
    """One received event as the demo prints it: full ids, never cut."""
    data = body.get("data", {})
    meeting = data.get("meeting", {})
    links = ", ".join(f"{link['connection']}:{link['external_id']}" for link in meeting.get("links", []))
    text = Text()
    text.append("✓ ", style="green")
    text.append(f"{body.get('type', '?'):<20}", style="bold")
    text.append(
        f" #{data.get('sequence', '?'):<3} {meeting.get('id', '?')} {meeting.get('status', '?'):<10} "
        f"{meeting.get('start', '?')} {meeting.get('title') or ''} "
    )
    text.append(links, style="dim")
    text.append(f"  webhook-id {webhook_id}", style="dim")
    return text


class DemoSubscriber:
    """A ThreadingHTTPServer on loopback; `echo` receives one rich Text per delivery."""

    def __init__(self, echo: Callable[[Text], None], secret: str | None = None) -> None:
        self.secret = secret or new_secret()
        self.received = 0
        self.refused = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(min(size, MAX_BODY_BYTES))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(outer.secret).verify(raw, headers)
                    body = json.loads(raw)
                except (WebhookVerificationError, ValueError) as exc:
                    with outer._lock:
                        outer.refused += 1
                    echo(Text(f"✗ refused a delivery whose signature did not verify: {exc}", style="red"))
                    self.send_response(400)
                    self.end_headers()
                    return
                with outer._lock:
                    outer.received += 1
                echo(line(body, headers.get("webhook-id", "?")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="demo-subscriber", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def start(self) -> DemoSubscriber:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
