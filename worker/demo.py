"""`bookingsync run` without a config (or `run --sandbox`): the sandbox providers, a demo driver
and a local subscriber.

Only the CLI imports this module (and so the sandbox); production code paths never do. The
Leezy webhook subscription is made through Leezy's documented subscribe endpoint, exactly as an
operator would against the real service, and its secret becomes the connection's. Events go to
a built-in subscriber (worker/demo_subscriber.py) that verifies each signed delivery and prints
it: what a consumer would receive. Everything is on loopback, so the demo config allows private
targets for itself.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import httpx
from rich.console import Console

from bookingsync.sandbox import rocketlead
from bookingsync.sandbox.demo import DEMO_PROSPECT_EMAILS, DemoDriver
from bookingsync.sandbox.server import RunningSandbox, start_sandbox
from bookingsync.worker.config import ApiKeyConfig, Config, ConnectionConfig, SubscriptionConfig
from bookingsync.worker.demo_subscriber import DemoSubscriber

SANDBOX_POLL_SECONDS = 5.0
DEMO_INTERVAL_SECONDS = 6.0


@dataclass
class Demo:
    sandbox: RunningSandbox
    driver: DemoDriver
    subscriber: DemoSubscriber

    def start(self) -> None:
        self.driver.start()

    def stop(self) -> None:
        self.driver.stop()
        self.sandbox.stop()
        self.subscriber.stop()


def _subscribe(sandbox: RunningSandbox, target_url: str) -> str:
    response = httpx.post(
        f"{sandbox.leezy_url}/api/v1/webhooks/subscribe",
        timeout=10.0,
        headers={"Authorization": f"Bearer {sandbox.leezy_token}"},
        json={
            "target_url": target_url,
            "event_types": ["meeting.scheduled", "meeting.cancelled", "meeting.completed"],
        },
    )
    response.raise_for_status()
    return response.json()["data"]["secret"]


def attach_sandbox(cfg: Config, console: Console, port: int) -> tuple[Config, Demo]:
    """`cfg` with the sandbox's connections and the demo subscriber; `port` is where we listen."""
    sandbox = start_sandbox(host="127.0.0.1")
    subscriber = DemoSubscriber(lambda text: console.print(text, soft_wrap=True)).start()
    public = (cfg.server.public_url or f"http://{cfg.server.host}:{port}").rstrip("/")
    leezy_secret = _subscribe(sandbox, f"{public}/webhooks/leezy-sandbox")
    meetergo_token = secrets.token_urlsafe(24)
    sandbox.meetergo.add_webhook(
        f"{public}/webhooks/meetergo-sandbox?token={meetergo_token}",
        ["booking_created", "booking_cancelled", "booking_rescheduled"],
    )
    sandbox.hubspot.webhook_target_url = f"{public}/webhooks/hubspot-sandbox"
    sandbox.hubspot.subscribe_meetings()
    poll = SANDBOX_POLL_SECONDS
    connections = (
        ConnectionConfig.model_validate(
            {
                "id": "leezy-sandbox",
                "provider": "leezy",
                "base_url": sandbox.leezy_url,
                "token": sandbox.leezy_token,
                "webhook_secret": leezy_secret,
                "poll_interval_seconds": poll,
            }
        ),
        ConnectionConfig.model_validate(
            {
                "id": "leandata-sandbox",
                "provider": "leandata",
                "base_url": sandbox.leandata_url,
                "api_key": sandbox.leandata_api_key,
                "watch_emails": DEMO_PROSPECT_EMAILS,
                "poll_interval_seconds": poll,
            }
        ),
        ConnectionConfig.model_validate(
            {
                "id": "meetergo-sandbox",
                "provider": "meetergo",
                "base_url": sandbox.meetergo_url,
                "token": sandbox.meetergo_token,
                "webhook_secret": meetergo_token,
                "poll_interval_seconds": poll * 4,
            }
        ),
        ConnectionConfig.model_validate(
            {
                "id": "hubspot-sandbox",
                "provider": "hubspot",
                "base_url": sandbox.hubspot_url,
                "token": sandbox.hubspot_token,
                "webhook_secret": sandbox.hubspot_client_secret,
                "poll_interval_seconds": poll * 4,
            }
        ),
        ConnectionConfig.model_validate(
            {
                "id": "rocketlead-sandbox",
                "provider": "rocketlead",
                "base_url": sandbox.rocketlead_url,
                "token": sandbox.rocketlead_token,
                "options": {
                    "calendar_id": rocketlead.DEFAULT_CALENDAR_ID,
                    "appointment_type_id": rocketlead.DEFAULT_APPOINTMENT_TYPE_ID,
                },
            }
        ),
    )
    demo_subscription = SubscriptionConfig(id="demo-subscriber", url=subscriber.url, secret=subscriber.secret)
    console.print(
        "[bold]Sandbox demo:[/bold] running against the built-in simulated providers "
        "(give a config with [[connections]] for real ones)."
    )
    for line in sandbox.describe():
        console.print(f"  {line}", markup=False)
    console.print(
        f"  webhooks arrive at {public}/webhooks/<connection>; LeanData watches "
        f"{', '.join(DEMO_PROSPECT_EMAILS)}",
        markup=False,
    )
    console.print(
        f"  A demo books, reschedules and cancels meetings every few seconds. Below, each event as a "
        f"subscriber at {subscriber.url} receives it, its Standard Webhooks signature verified:",
        markup=False,
    )
    # The subscriber prints what it receives; printing at publication too would say it twice.
    events = cfg.events.model_copy(update={"console": False})
    update: dict = {
        "connections": connections,
        "subscriptions": (demo_subscription,),
        "allow_private_targets": True,
        "events": events,
    }
    if not cfg.api_keys:  # a key for the status page and /v1, made for this run only
        demo_key = ApiKeyConfig(id="sandbox", key=secrets.token_hex(24), scopes=("write",))
        update["api_keys"] = (demo_key,)
        console.print(
            f"  Status page {public}/ and API {public}/docs; sign in with the key "
            f"{demo_key.key.get_secret_value()}",
            markup=False,
        )
    demo_cfg = cfg.model_copy(update=update)
    return demo_cfg, Demo(sandbox, DemoDriver(sandbox, interval_seconds=DEMO_INTERVAL_SECONDS), subscriber)
