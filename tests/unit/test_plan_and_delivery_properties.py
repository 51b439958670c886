"""Properties of two pure decision tables: the mirroring planner (`intents.plan`) and what one
delivery attempt means (`delivery.decide`, `delivery.retry_after_seconds`).

Planner: one planned step, carried out on a model of the target, leaves nothing more to do (or the
planner said UNSUPPORTED); it never asks a target for a write its capabilities lack; more
capabilities never turn a doable step into UNSUPPORTED; a meeting that is over is never booked.

Delivery: only 2xx succeeds, 410 disables, other 4xx are dead at once; timeouts, 429 and 5xx are
retried after a backoff that is positive, capped, non-decreasing in the attempt number and never
shorter than a Retry-After within the cap, until exactly `max_attempts` attempts have been made.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from bookingsync.adapters.base import Capability
from bookingsync.worker.config import DeliveryConfig
from bookingsync.worker.delivery import Attempt, decide, retry_after_seconds
from bookingsync.worker.intents import Action, Mirror, plan

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EXAMPLES = int(os.environ.get("BOOKINGSYNC_PROPERTY_EXAMPLES", "300"))
WRITES = (Capability.CREATE, Capability.RESCHEDULE, Capability.CANCEL)
NEEDS = {
    Action.CREATE: {Capability.CREATE},
    Action.RESCHEDULE: {Capability.RESCHEDULE},
    Action.RECREATE: {Capability.CREATE, Capability.CANCEL},
    Action.CANCEL: {Capability.CANCEL},
    Action.NOTHING: set(),
    Action.UNSUPPORTED: set(),
}

minutes = st.sampled_from([-120, -30, -1, 0, 1, 30, 90])
capabilities = st.frozensets(st.sampled_from(WRITES))
times = st.tuples(minutes, st.sampled_from([0, 15, 30])).map(
    lambda t: (NOW + timedelta(minutes=t[0]), NOW + timedelta(minutes=t[0] + t[1]))
)
mirrors = st.one_of(
    st.none(), st.builds(lambda at, missing: Mirror("ext-1", at[0], at[1], missing), times, st.booleans())
)


def carry_out(action: Action, mirror: Mirror | None, start: datetime, end: datetime) -> Mirror | None:
    """A target that does what it is asked."""
    if action in (Action.CREATE, Action.RECREATE):
        return Mirror("ext-2", start, end, False)
    if action is Action.RESCHEDULE:
        assert mirror is not None
        return Mirror(mirror.external_id, start, end, False)
    if action is Action.CANCEL:
        return None
    return mirror


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.booleans(), times, mirrors, capabilities)
def test_one_planned_step_brings_the_target_in_line(live, at, mirror, caps):
    start, end = at
    action = plan(live=live, start=start, end=end, now=NOW, mirror=mirror, capabilities=caps)
    assert NEEDS[action] <= caps, f"{action} asked of a target with only {set(caps)}"
    if live and end <= NOW:
        assert action in (Action.NOTHING,), "a meeting that is over is not booked or moved"
    if action is Action.UNSUPPORTED:
        assert not caps >= set(WRITES), "a target that can do everything is never UNSUPPORTED"
        return
    after = carry_out(action, mirror, start, end)
    again = plan(live=live, start=start, end=end, now=NOW, mirror=after, capabilities=caps)
    assert again is Action.NOTHING, (action, again)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.booleans(), times, mirrors, capabilities, capabilities)
def test_more_capabilities_never_make_a_step_unsupported(live, at, mirror, caps, more):
    start, end = at
    fewer = plan(live=live, start=start, end=end, now=NOW, mirror=mirror, capabilities=caps)
    wider = plan(live=live, start=start, end=end, now=NOW, mirror=mirror, capabilities=caps | more)
    if fewer is not Action.UNSUPPORTED:
        assert wider is not Action.UNSUPPORTED
    assert (fewer is Action.NOTHING) == (wider is Action.NOTHING), (
        "what is needed does not depend on what is possible"
    )


configs = st.builds(
    lambda attempts, low, factor: DeliveryConfig(
        max_attempts=attempts, min_backoff_seconds=low, max_backoff_seconds=low * factor
    ),
    st.integers(1, 12),
    st.sampled_from([0.5, 2.0, 30.0]),
    st.sampled_from([1, 4, 1000]),
)
statuses = st.one_of(st.none(), st.integers(100, 599))
retry_afters = st.one_of(st.none(), st.floats(0, 10_000, allow_nan=False))


def retryable(code: int | None) -> bool:
    return code is None or code == 429 or code >= 500


@settings(max_examples=EXAMPLES, deadline=None)
@given(statuses, retry_afters, st.integers(1, 15), configs)
def test_the_delivery_decision_table(code, retry_after, attempts, cfg):
    decision = decide(Attempt(code, retry_after=retry_after), attempts, cfg, NOW)
    if code is not None and 200 <= code < 300:
        assert decision.status == "succeeded"
    elif code == 410:
        assert decision.status == "disabled"
    elif not retryable(code) or attempts >= cfg.max_attempts:
        assert decision.status == "dead" and decision.due_at is None
    else:
        assert decision.status == "pending" and decision.due_at is not None
        wait = (decision.due_at - NOW).total_seconds()
        assert 0 < wait <= cfg.max_backoff_seconds
        assert wait >= min(cfg.min_backoff_seconds, cfg.max_backoff_seconds)
        if retry_after is not None:
            assert wait >= min(retry_after, cfg.max_backoff_seconds), "Retry-After within the cap is honoured"


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.one_of(st.none(), st.sampled_from([429, 500, 503])), retry_afters, configs)
def test_a_failing_endpoint_is_tried_max_attempts_times_with_growing_waits(code, retry_after, cfg):
    waits, attempts = [], 0
    while True:
        attempts += 1
        decision = decide(Attempt(code, retry_after=retry_after), attempts, cfg, NOW)
        if decision.status != "pending":
            break
        assert decision.due_at is not None
        waits.append((decision.due_at - NOW).total_seconds())
    assert decision.status == "dead" and attempts == cfg.max_attempts
    assert waits == sorted(waits), "the backoff never shrinks"
    assert sum(waits) <= cfg.max_backoff_seconds * cfg.max_attempts


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.one_of(
        st.integers(0, 100_000).map(str),
        st.integers(-100, -1).map(str),
        st.integers(-86_400, 86_400).map(lambda s: format_datetime(NOW + timedelta(seconds=s), usegmt=True)),
        st.text(max_size=20),
    )
)
def test_retry_after_is_never_negative_and_never_a_crash(value):
    seconds = retry_after_seconds(value, NOW)
    assert seconds is None or seconds >= 0
    if value.isdigit():
        assert seconds == float(value)
    if value.endswith("GMT"):
        at = datetime.strptime(value, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
        assert seconds == max(0.0, (at - NOW).total_seconds())
