"""The `/v1` API over real HTTP, on SQLite and PostgreSQL: keys and scopes, meetings and their
filters, the event feed as a consumer uses it, deliveries and replay, subscriptions (re-enable
with what was missed, history on request), quarantine and connections."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlmodel import select

from bookingsync.models.tables import DeliveryRow, EventRow, LeaseRow, SubscriptionStateRow
from bookingsync.worker import store
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import transaction
from bookingsync.worker.runtime import Runtime
from bookingsync.worker.web import create_app
from bookingsync.sandbox.server import serve_app
from tests.api.conftest import READ_KEY, WRITE_KEY, Served, apply, config, publish_due, record


def test_no_key_is_401_a_wrong_key_is_401_and_a_read_key_cannot_act(served: Served) -> None:
    with served.client(key=None) as anonymous:
        answer = anonymous.get("/v1/meetings")
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in answer.json()["error"]
    with served.client(key="x" * 30) as stranger:
        assert stranger.get("/v1/events").status_code == 401
    with served.client(key=READ_KEY) as reader:
        assert reader.get("/v1/events").status_code == 200
        refused = reader.post("/v1/deliveries/1/replay")
        assert refused.status_code == 403 and "'write'" in refused.json()["error"]
        assert reader.post("/v1/subscriptions/crm/enable").status_code == 403
    with served.client(key=WRITE_KEY) as operator:  # write includes read
        assert operator.get("/v1/subscriptions").status_code == 200


def test_without_configured_keys_the_api_says_how_to_add_one(served: Served) -> None:
    rt = Runtime(config=parse_config({}, environ={}), engine=served.rt.engine, clock=served.clock)
    app = serve_app(create_app(rt))
    try:
        answer = httpx.get(f"{app.url}/v1/meetings", headers={"authorization": f"Bearer {WRITE_KEY}"})
        assert answer.status_code == 401 and "[[api_keys]]" in answer.json()["error"]
    finally:
        app.stop()


def test_meetings_filter_by_status_time_email_and_connection_and_page_by_cursor(served: Served) -> None:
    now = served.clock.now()
    apply(served.rt, record("m3", now + timedelta(days=3), status="cancelled"))
    apply(served.rt, record("h1", now + timedelta(days=4), email="Ana@Acme.com"), connection="hubspot-main")
    with served.client() as client:
        everything = client.get("/v1/meetings").json()
        assert len(everything["meetings"]) == 4 and everything["next_cursor"] is None
        starts = [m["start"] for m in everything["meetings"]]
        assert starts == sorted(starts)
        assert [
            m["status"] for m in client.get("/v1/meetings", params={"status": "cancelled"}).json()["meetings"]
        ] == ["cancelled"]
        window = {
            "start_from": (now + timedelta(days=1, hours=12)).isoformat(),
            "start_to": (now + timedelta(days=3, hours=12)).isoformat(),
        }
        assert len(client.get("/v1/meetings", params=window).json()["meetings"]) == 2
        by_email = client.get("/v1/meetings", params={"attendee_email": " ANA@acme.com "}).json()["meetings"]
        assert [m["links"][0]["connection"] for m in by_email] == ["hubspot-main"]
        assert len(client.get("/v1/meetings", params={"connection": "leezy-main"}).json()["meetings"]) == 3
        # Paging: two at a time, through all four, in the same order.
        seen, cursor = [], None
        while True:
            page = client.get(
                "/v1/meetings", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
            ).json()
            seen += [m["id"] for m in page["meetings"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [m["id"] for m in everything["meetings"]]
        assert (
            client.get("/v1/meetings", params={"start_from": "2026-01-01T00:00:00"}).status_code == 422
        )  # naive
        assert client.get("/v1/meetings", params={"status": "a", "limit": 1}).status_code == 422
        assert client.get("/v1/meetings?limit=1&limit=2").status_code == 422  # given twice


def test_one_meeting_has_its_links_events_and_deliveries(served: Served) -> None:
    with served.client() as client:
        [first] = [
            m for m in client.get("/v1/meetings").json()["meetings"] if m["links"][0]["external_id"] == "m1"
        ]
        detail = client.get(f"/v1/meetings/{first['id']}").json()
        assert detail["meeting"] == first and detail["booked"] is True and detail["version"] == 2
        assert [(link["connection"], link["external_id"], link["missing"]) for link in detail["links"]] == [
            ("leezy-main", "m1", False)
        ]
        types = [event["type"] for event in detail["events"]]
        assert types.count("meeting.booked") == 1 and "meeting.rescheduled" in types
        published = {e["event_id"] for e in detail["events"] if e["status"] == "published"}
        assert {d["event_id"] for d in detail["deliveries"]} == published
        missing = client.get("/v1/meetings/mtg_nope")
        assert missing.status_code == 404 and "mtg_nope" in missing.json()["error"]


def test_the_feed_lets_a_consumer_catch_up_and_keep_up_by_polling(served: Served) -> None:
    with served.client(key=READ_KEY) as client:
        caught_up, cursor = [], 0
        while True:
            page = client.get("/v1/events", params={"after": cursor, "limit": 2}).json()
            caught_up += page["events"]
            cursor = page["next_cursor"]
            if not page["has_more"]:
                break
        assert [e["position"] for e in caught_up] == list(range(1, len(caught_up) + 1))
        assert [e["type"] for e in caught_up] == ["meeting.booked", "meeting.booked", "meeting.rescheduled"]
        moved = caught_up[-1]["data"]
        assert moved["previous"]["start"] != moved["meeting"]["start"]
        assert (
            set(moved["changes"]) == {"start", "end"}
            and moved["changes"]["start"]["new"] == moved["meeting"]["start"]
        )
        # The feed item is the webhook body with its position.
        with transaction(served.rt.engine) as session:
            row = session.exec(select(EventRow).where(EventRow.event_id == moved["event_id"])).one()
        assert {k: v for k, v in caught_up[-1].items() if k != "position"} == row.payload

        idle = client.get("/v1/events", params={"after": cursor}).json()
        assert idle == {"events": [], "next_cursor": cursor, "has_more": False}
        apply(
            served.rt,
            record("m2", served.clock.now() + timedelta(days=2), title="Renamed", email="max@acme.com"),
        )
        publish_due(served.rt)
        [renamed] = client.get("/v1/events", params={"after": cursor}).json()["events"]
        assert renamed["type"] == "meeting.updated" and renamed["position"] == cursor + 1
        assert renamed["data"]["changes"] == {"title": {"old": "Demo", "new": "Renamed"}}
        one = client.get(f"/v1/events/{renamed['data']['event_id']}").json()
        assert (
            one["event"]["position"] == renamed["position"]
            and one["event"]["body"]["type"] == "meeting.updated"
        )
        assert client.get("/v1/events/evt_nope").status_code == 404


def test_deliveries_list_dead_letters_and_replay_one(served: Served) -> None:
    with served.client() as client:
        [dead] = client.get("/v1/deliveries", params={"status": "dead"}).json()["deliveries"]
        assert dead["last_status_code"] == 400
        replayed = client.post(f"/v1/deliveries/{dead['id']}/replay")
        assert replayed.status_code == 202
        assert (replayed.json()["status"], replayed.json()["attempts"]) == ("pending", 0)
        assert client.get(f"/v1/deliveries/{dead['id']}").json()["status"] == "pending"
        again = client.post(f"/v1/deliveries/{dead['id']}/replay")
        assert again.status_code == 409 and "already pending" in again.json()["error"]
        assert client.post("/v1/deliveries/999999/replay").status_code == 404
        page = client.get("/v1/deliveries", params={"limit": 1}).json()
        older = client.get("/v1/deliveries", params={"limit": 1, "before": page["next_before"]}).json()
        assert older["deliveries"][0]["id"] < page["deliveries"][0]["id"]


def test_reenabling_a_subscription_sends_what_was_published_while_it_was_disabled(served: Served) -> None:
    rt, now = served.rt, served.clock.now()
    with transaction(rt.engine) as session:
        session.add(SubscriptionStateRow(subscription_id="crm", disabled_at=now, disabled_reason="410 Gone"))
    served.clock.advance(10)
    apply(rt, record("m4", now + timedelta(days=5)))
    [missed_event] = publish_due(rt)
    with transaction(rt.engine) as session:
        assert session.exec(select(DeliveryRow).where(DeliveryRow.event_id == missed_event)).all() == []
    with served.client() as client:
        [crm] = client.get("/v1/subscriptions").json()
        assert crm["enabled"] is False and crm["disabled_reason"] == "410 Gone"
        refused = client.post("/v1/subscriptions/crm/replay", json={"since": now.isoformat()})
        assert refused.status_code == 409 and "enable it first" in refused.json()["error"]
        enabled = client.post("/v1/subscriptions/crm/enable").json()
        assert enabled == {"subscription_id": "crm", "was_disabled": True, "redelivered": 1}
        assert client.get("/v1/subscriptions/crm").json()["enabled"] is True
        [queued] = client.get("/v1/deliveries", params={"event_id": missed_event}).json()["deliveries"]
        assert (queued["subscription_id"], queued["status"]) == ("crm", "pending")
        assert client.post("/v1/subscriptions/crm/enable").json()["was_disabled"] is False
        assert client.post("/v1/subscriptions/nope/enable").status_code == 404


def test_a_new_subscription_gets_no_history_unless_it_asks_with_replay_from_a_time(served: Served) -> None:
    late = {
        "id": "late",
        "url": "http://127.0.0.1:9/late",
        "secret": "whsec_dGhlIG90aGVyIHN1YnNjcmlwdGlvbiBzZWNyZXQ=",
    }
    rt = Runtime(
        config=parse_config(config({"subscriptions": [config()["subscriptions"][0], late]}), environ={}),
        engine=served.rt.engine,
        clock=served.clock,
    )
    app = serve_app(create_app(rt))
    try:
        with httpx.Client(base_url=app.url, headers={"authorization": f"Bearer {WRITE_KEY}"}) as client:
            assert client.get("/v1/deliveries", params={"subscription": "late"}).json()["deliveries"] == []
            since = (served.clock.now() - timedelta(hours=1)).isoformat()
            answer = client.post("/v1/subscriptions/late/replay", json={"since": since})
            assert answer.status_code == 202 and answer.json() == {"subscription_id": "late", "queued": 3}
            rows = client.get("/v1/deliveries", params={"subscription": "late"}).json()["deliveries"]
            assert len(rows) == 3 and {r["status"] for r in rows} == {"pending"}
            # Asked again: the same three are queued again, no duplicates.
            assert client.post("/v1/subscriptions/late/replay", json={"since": since}).json()["queued"] == 0
            assert client.post("/v1/subscriptions/late/replay", json={"since": "soon"}).status_code == 422
    finally:
        app.stop()
        rt.close()


def test_quarantine_lists_and_replays_and_says_why_not(served: Served) -> None:
    with served.client() as client:
        [item] = client.get("/v1/quarantine").json()["items"]
        assert (item["connection"], item["reason"], item["status"]) == (
            "leezy-main",
            "start_time is missing",
            "open",
        )
        assert client.get(f"/v1/quarantine/{item['id']}").json()["raw"] == {"id": "bad"}
        still_bad = client.post(f"/v1/quarantine/{item['id']}/replay")
        assert still_bad.status_code == 409 and "still cannot be normalised" in still_bad.json()["error"]
        assert client.post("/v1/quarantine/424242/replay").status_code == 404
        assert client.get("/v1/quarantine", params={"status": "replayed"}).json()["items"] == []


def test_connections_show_last_poll_lag_and_who_polls(served: Served) -> None:
    rt, now = served.rt, served.clock.now()
    with transaction(rt.engine) as session:
        store.save_cursor(session, "leezy-main", {"since": "2026-03-01T00:00:00Z"}, now)
        session.add(
            LeaseRow(name="poll:leezy-main", holder="worker@host:1", until=now + timedelta(seconds=60))
        )
    served.clock.advance(42)
    with served.client(key=READ_KEY) as client:
        leezy, rocketlead = client.get("/v1/connections").json()
        assert leezy["id"] == "leezy-main" and leezy["provider"] == "leezy" and leezy["polled"] is True
        assert (rocketlead["polled"], rocketlead["lag_seconds"], rocketlead["last_poll_at"]) == (
            False,
            None,
            None,
        )
        assert leezy["cursor"] == {"since": "2026-03-01T00:00:00Z"} and leezy["lag_seconds"] == 42
        assert leezy["polling_now"] == "worker@host:1" and leezy["open_quarantine"] == 1
        assert client.get("/v1/connections/leezy-main").json() == leezy
        assert client.get("/v1/connections/nope").status_code == 404
