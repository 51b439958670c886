"""The status page at `/`: server-rendered HTML, no build step, refreshing itself every few seconds.

It shows what an operator looks at first: each connection's last poll, lag and errors, the
timers that are due, the delivery backlog per subscription, dead letters and quarantined records,
with buttons to replay a dead letter or a quarantined record and to re-enable a subscription.

Signing in: a person types an API key into the form; the page keeps a session cookie (see
worker/api/auth.py). A `read` key sees the page; the buttons need `write`. Every button is a
plain form POST that answers 303 back to `/`, with the outcome shown once.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func
from sqlmodel import col, select

from bookingsync.models.errors import RequestRefused
from bookingsync.models.tables import DeliveryRow, EventRow, QuarantineRow
from bookingsync.worker import redelivery
from bookingsync.worker.api.answers import RowId
from bookingsync.worker.api.auth import READ, SESSION_COOKIE, WRITE, Keys, allows, page_key
from bookingsync.worker.api.quarantine import replay_item
from bookingsync.worker.api.subscriptions import subscriptions_out
from bookingsync.worker.config import ApiKeyConfig
from bookingsync.worker.connection_status import connection_states, polled_connections
from bookingsync.worker.db import transaction
from bookingsync.worker.lifecycle import TIMER_TYPES
from bookingsync.worker.payloads import iso
from bookingsync.worker.runtime import Runtime

REFRESH_SECONDS = 5
FLASH_COOKIE = "bookingsync_flash"
LISTED = 50  # dead letters and quarantined records shown

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d232a}
h1{font-size:1.3rem;margin:0 0 .2rem} h2{font-size:1.05rem;margin:1.6rem 0 .4rem}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #e3e6ea;
vertical-align:top} th{background:#f4f6f8;font-weight:600} .muted{color:#6b7480} .bad{color:#b42318;font-weight:600}
.ok{color:#067647} .flash{background:#eef4ff;border:1px solid #b2ccff;padding:.5rem .75rem;margin:.8rem 0}
form.inline{display:inline} button{cursor:pointer} code{font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return '<span class="muted">never</span>'
    seconds = (now - value).total_seconds()
    ago = _span(abs(seconds)) + (" ago" if seconds >= 0 else " from now")
    return f'<span title="{_e(iso(value))}">{_e(iso(value))}</span> <span class="muted">({ago})</span>'


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _table(headers: Iterable[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _button(action: str, label: str, token: str, testid: str) -> str:
    return (
        f'<form class="inline" method="post" action="{_e(action)}"><input type="hidden" name="token" '
        f'value="{_e(token)}"><button type="submit" data-testid="{_e(testid)}">{_e(label)}</button></form>'
    )


def _page(title: str, body: str, *, refresh: bool) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}<title>{_e(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def _sign_in(error: str | None = None) -> str:
    problem = f'<p class="bad">{_e(error)}</p>' if error else ""
    return _page(
        "bookingsync — sign in",
        f"""<h1>bookingsync</h1>{problem}
<p>Sign in with an API key from the config's <code>[[api_keys]]</code>.</p>
<form method="post" action="/login"><input type="password" name="key" autocomplete="current-password"
 size="50" aria-label="API key" data-testid="key"> <button type="submit" data-testid="sign-in">Sign in</button></form>""",
        refresh=False,
    )


def _dashboard(rt: Runtime, keys: Keys, key: ApiKeyConfig, flash: str | None) -> str:
    now = rt.clock.now()
    can_act = allows(key, WRITE)
    token = keys.form_token(key)
    with transaction(rt.engine) as session:
        connections = connection_states(session, rt.config, now, polled=polled_connections(rt))
        subscriptions = subscriptions_out(session, rt.config)
        timer_types = [t.value for t in TIMER_TYPES]
        timers, next_timer = session.exec(
            select(func.count(), func.min(EventRow.due_at)).where(
                EventRow.status == "pending", col(EventRow.type).in_(timer_types)
            )
        ).one()
        overdue = session.exec(
            select(func.count()).where(EventRow.status == "pending", col(EventRow.due_at) <= now)
        ).one()
        dead = list(
            session.exec(
                select(DeliveryRow)
                .where(DeliveryRow.status == "dead")
                .order_by(col(DeliveryRow.id).desc())
                .limit(LISTED)
            )
        )
        quarantined = list(
            session.exec(
                select(QuarantineRow)
                .where(QuarantineRow.status == "open")
                .order_by(col(QuarantineRow.id).desc())
                .limit(LISTED)
            )
        )

    conn_rows = []
    for c in connections:
        receipts = ", ".join(f"{k}={v}" for k, v in sorted(c.receipts.items())) or "—"
        state = '<span class="ok">enabled</span>' if c.enabled else '<span class="muted">disabled</span>'
        conn_rows.append(
            [
                f'<span data-testid="connection-{_e(c.id)}">{_e(c.id)}</span>',
                _e(c.provider),
                state,
                _when(c.last_poll_at, now) if c.polled else '<span class="muted">not polled</span>',
                _e(f"{c.lag_seconds:.0f}s") if c.lag_seconds is not None else "—",
                _when(c.next_poll_due_at, now) if c.next_poll_due_at else "—",
                _e(c.polling_now) if c.polling_now else "—",
                _when(c.last_webhook_at, now),
                _e(receipts),
                _e(c.open_quarantine),
                f'<span class="bad">{_e(c.last_error)}</span>' if c.last_error else "—",
            ]
        )
    sub_rows = []
    for s in subscriptions:
        if s["enabled"]:
            state = '<span class="ok">enabled</span>'
        else:
            state = f'<span class="bad">disabled</span> <span class="muted">{_e(s["disabled_reason"])}</span>'
            if can_act:
                state += " " + _button(
                    f"/ui/subscriptions/{s['id']}/enable", "Re-enable", token, f"enable-{s['id']}"
                )
        backlog = ", ".join(f"{k}={v}" for k, v in sorted(s["backlog"].items())) or "—"
        sub_rows.append(
            [
                _e(s["id"]),
                _e(s["url"]),
                state,
                _e(backlog),
                _when(s["oldest_pending_due_at"], now) if s["oldest_pending_due_at"] else "—",
            ]
        )
    dead_rows = [
        [
            _e(d.id),
            f"<code>{_e(d.event_id)}</code>",
            _e(d.subscription_id),
            _e(d.attempts),
            _e(d.last_status_code or ""),
            _e((d.last_error or "")[:200]),
            _when(d.finished_at, now),
            _button(f"/ui/deliveries/{d.id}/replay", "Replay", token, f"replay-delivery-{d.id}")
            if can_act
            else "",
        ]
        for d in dead
    ]
    q_rows = [
        [
            _e(q.id),
            _e(q.connection),
            _e(q.source),
            _e(q.external_id or ""),
            _e(q.reason[:300]),
            _e(q.seen_count),
            _when(q.last_seen_at, now),
            _button(f"/ui/quarantine/{q.id}/replay", "Replay", token, f"replay-quarantine-{q.id}")
            if can_act
            else "",
        ]
        for q in quarantined
    ]

    message = f'<div class="flash" data-testid="flash">{_e(flash)}</div>' if flash else ""
    scope = "read and write" if can_act else "read only"
    body = f"""<h1>bookingsync status</h1>
<p class="muted">{_e(iso(now))} · refreshes every {REFRESH_SECONDS}s · signed in with key <b>{_e(key.id)}</b>
({
        scope
    }) <form class="inline" method="post" action="/logout"><button type="submit">Sign out</button></form></p>
{message}
<h2>Connections</h2>
{
        _table(
            [
                "id",
                "provider",
                "state",
                "last poll",
                "lag",
                "next poll due",
                "polling now",
                "last webhook",
                "webhook receipts (done: last hour)",
                "quarantined",
                "last error",
            ],
            conn_rows,
            "No connections are configured.",
        )
    }
<h2>Timers and outbox</h2>
<p data-testid="timers">{_e(timers)} pending timer(s); next due {
        _when(next_timer, now) if next_timer else "—"
    };
<span class="{"bad" if overdue else "ok"}">{_e(overdue)} event(s) due and not yet published</span></p>
<h2>Subscriptions</h2>
{
        _table(
            ["id", "url", "state", "backlog", "oldest pending due"],
            sub_rows,
            "No subscriptions are configured.",
        )
    }
<h2>Dead letters</h2>
{
        _table(
            ["id", "event", "subscription", "attempts", "last status", "last error", "died", ""],
            dead_rows,
            "No dead letters.",
        )
    }
<h2>Quarantine</h2>
{
        _table(
            ["id", "connection", "source", "external id", "reason", "seen", "last seen", ""],
            q_rows,
            "Nothing is quarantined.",
        )
    }"""
    return _page("bookingsync status", body, refresh=True)


def _back(message: str) -> RedirectResponse:
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(FLASH_COOKIE, quote(message), max_age=60, httponly=True, samesite="strict")
    return response


def routes(rt: Runtime, keys: Keys) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    public = rt.config.server.public_url or ""  # behind a TLS proxy the request itself is plain http

    def act(request: Request, token: str, work: Callable[[], str]) -> Response:
        """Do a button's work for a signed-in write key and a form this page made; back to `/` with the outcome."""
        key = page_key(keys, request)
        if key is None:
            return HTMLResponse(_sign_in("Sign in first."), status_code=401)
        if not allows(key, WRITE):
            return HTMLResponse(
                _page("forbidden", f"<p>API key {_e(key.id)} has no write scope.</p>", refresh=False),
                status_code=403,
            )
        if not keys.check_form_token(key, token):
            return HTMLResponse(
                _page("forbidden", "<p>That form did not come from this page.</p>", refresh=False),
                status_code=403,
            )
        try:
            return _back(work())
        except RequestRefused as exc:
            return _back(str(exc))

    @router.get("/", response_class=HTMLResponse)
    def status_page(request: Request) -> Response:
        key = page_key(keys, request)
        if key is None or not allows(key, READ):
            error = None if keys.configured else "No API keys are configured: add [[api_keys]] to the config."
            return HTMLResponse(_sign_in(error))
        flash = request.cookies.get(FLASH_COOKIE)
        response = HTMLResponse(_dashboard(rt, keys, key, unquote(flash) if flash else None))
        if flash:
            response.delete_cookie(FLASH_COOKIE)
        return response

    @router.post("/login")
    def login(request: Request, key: str = Form("")) -> Response:
        found = keys.by_secret(key.strip()) if key.strip() else None
        if found is None:
            return HTMLResponse(_sign_in("That key is not configured."), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            keys.session_value(found),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https" or public.startswith("https://"),
        )
        return response

    @router.post("/logout")
    def logout() -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @router.post("/ui/deliveries/{delivery_id}/replay")
    def replay_delivery(request: Request, delivery_id: RowId, token: str = Form("")) -> Response:
        def work() -> str:
            with transaction(rt.engine) as session:
                redelivery.replay_one(session, rt.config, delivery_id, rt.clock.now())
            return f"Delivery {delivery_id} is queued again."

        return act(request, token, work)

    @router.post("/ui/quarantine/{item_id}/replay")
    def replay_quarantine(request: Request, item_id: RowId, token: str = Form("")) -> Response:
        return act(request, token, lambda: replay_item(rt, item_id)["outcome"])

    @router.post("/ui/subscriptions/{subscription_id}/enable")
    def enable(request: Request, subscription_id: str, token: str = Form("")) -> Response:
        def work() -> str:
            with transaction(rt.engine) as session:
                done = redelivery.enable(session, rt.config, subscription_id, rt.clock.now())
            if not done.was_disabled:
                return f"Subscription {subscription_id} was not disabled."
            return f"Subscription {subscription_id} is enabled; {done.requeued + done.created} missed deliveries are queued."

        return act(request, token, work)

    return router
