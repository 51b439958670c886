"""LeanData BookIt, the write half's pure pieces: booking settings, availability answers, slots,
form fields and request bodies. No HTTP here; `leandata.LeanDataAdapter` drives the calls.

Readings of LeanData's BookIt API OpenAPI file (https://bookit-api.leandata.com/) and its guides
on booking and managing a meeting and on problem types (https://docs.leandata.com) taken here:

* Availability answers come in two shapes. `fetch-availability` (linkId / token / meetingId)
  answers `{meeting, pageInfo, availability, userIdToInfoMap[, calendarEvent]}` at the top level;
  `route-and-fetch-availability` answers `{routing, scheduling}` and the OpenAPI nests `meeting`,
  `pageInfo` and `availability` under `scheduling` while the how-to names `pageInfo` beside it.
  Each is looked for in `scheduling` first, then at the top level.
* `routing.responseType` other than "calendar" ("redirect", "none") has nothing to book: a
  ProviderRejected naming it (the graph, not the request, decides that).
* `pageInfo.displayAllPoolAvailability`: `true` books with `POST /v1/round-robin-meeting`,
  `false`/`null`/absent key with `POST /v1/meeting`. Any other value, or no `pageInfo` object at
  all, is refused rather than guessed: LeanData says the flag cannot be assumed.
* `scheduledTime` is `{start_time, end_time, timezone}` in epoch ms on both create endpoints and on
  PATCH, as the request tables say; the `/v1/meeting` *example* spells `startTime`/`endTime` (a
  legacy `params` example) and is not followed. Round robin adds `scheduledTime.users`: the slot's
  user indices mapped through `availability.indexToUserIdMap`, in the slot's order (the order is
  the round-robin priority). A slot with no mappable users cannot be booked there and counts as
  not offered.
* `userFields` is `[{name, type, value}]`. The docs say both "send back values for all defined
  fields" and "one userField for each required, defined field"; every named form field is sent
  (the wider reading), an optional one with no value as "" (or [] for an array field such as
  "Additional Guest Emails"); fields with an empty name are left out. First Name, Last Name and
  Email are "required by default" and are always sent, even if `formFields` omits them.
  A value comes from the attendee for the fields it can fill (first/last/full name, email,
  phone, recognised by label), else from `pageInfo.prefillFields`, else from `form_defaults`.
  A required field still without a value is a ProviderRejected naming it, before any booking.
  The attendee's name splits at its last space into First and Last Name; a one-word name leaves
  Last Name to `form_defaults` (we do not invent a surname).
* `form_defaults` and `routing_inputs` string values may hold the placeholders {reference} (our
  meeting id: BookIt has no field of its own for it), {email}, {first_name}, {last_name}, {name},
  {phone}, {title} and, in routing inputs, {uid} (the BookIt log id of this submission). Other
  braces are left as they are.
* The race message "The selected time is no longer available." and the one-shot link message
  "This link only allows one booking..." are matched on their distinctive words, case-insensitively,
  on a 400: BookIt errors are prose with no code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bookingsync.adapters.fields import as_table
from bookingsync.adapters.settings import keyed
from bookingsync.adapters.time_formats import from_epoch_ms
from bookingsync.models.errors import ProviderRejected, ProviderUnavailable
from bookingsync.models.meeting import Meeting

PROVIDER = "leandata"
MEETING_PATH = "/v1/meeting"
ROUND_ROBIN_PATH = "/v1/round-robin-meeting"
FETCH_PATH = "/v1/scheduling/fetch-availability"
ROUTE_PATH = "/v1/scheduling/route-and-fetch-availability"
# How many times one booking is tried when BookIt answers that the slot was just taken and a fresh
# availability still lists it; then SlotUnavailable.
MAX_BOOKING_ATTEMPTS = 3
# The routing inputs of the documented example, used when trigger_node is set without
# routing_inputs; the names are per customer (retrieve-inputs), so set routing_inputs to match.
DEFAULT_ROUTING_INPUTS: Mapping[str, Any] = {
    "Email": "{email}",
    "FirstName": "{first_name}",
    "LastName": "{last_name}",
    "ld_bookit_log_id": "{uid}",
}
STANDARD_FIELDS = ("First Name", "Last Name", "Email")
_PLACEHOLDER = re.compile(r"\{(reference|email|first_name|last_name|name|phone|title|uid)\}")
# Form field labels (lower-case, letters and digits only) the attendee can fill, and from what.
_DERIVED = {
    "firstname": "first_name",
    "givenname": "first_name",
    "lastname": "last_name",
    "surname": "last_name",
    "familyname": "last_name",
    "email": "email",
    "emailaddress": "email",
    "workemail": "email",
    "businessemail": "email",
    "phone": "phone",
    "phonenumber": "phone",
    "mobile": "phone",
    "mobilephone": "phone",
    "mobilenumber": "phone",
    "telephone": "phone",
    "workphone": "phone",
    "name": "name",
    "fullname": "name",
    "yourname": "name",
}
_LIST_FIELDS = frozenset({"additionalguestemails", "guestemails"})


def _key(label: str) -> str:
    return re.sub(r"[^a-z0-9]", "", label.lower())


# -- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BookingSettings:
    link_id: str | None = None
    trigger_node: str | None = None
    routing_inputs: Mapping[str, Any] | None = None
    form_defaults: Mapping[str, Any] | None = None
    timezone: str = "UTC"

    @property
    def can_create(self) -> bool:
        return bool(self.link_id or self.trigger_node)


def booking_settings(
    *,
    link_id: str | None,
    trigger_node: str | None,
    routing_inputs: Mapping[str, Any] | None,
    form_defaults: Mapping[str, Any] | None,
    timezone: str,
) -> BookingSettings:
    """Checked booking settings; a ValueError naming the key (`keyed`) and the fix otherwise."""
    link = link_id.strip() if isinstance(link_id, str) else link_id
    if link is not None and (not isinstance(link, str) or not link):
        raise ValueError(
            keyed("link_id", 'link_id must be the id of a single-meeting-type BookIt link (e.g. "Lw5mjKK")')
        )
    if link and "/l/" in link:  # a whole BookIt link URL: the id is the segment after /l/
        link = link.split("/l/", 1)[1].split("/", 1)[0].split("?", 1)[0] or None
        if link is None:
            raise ValueError(keyed("link_id", f"link_id {link_id!r} has no id after /l/"))
    node = trigger_node.strip() if isinstance(trigger_node, str) else trigger_node
    if node is not None and (not isinstance(node, str) or not node):
        raise ValueError(
            keyed("trigger_node", "trigger_node must be the name of a BookIt prospect trigger node")
        )
    if link and node:
        raise ValueError(
            keyed(
                "trigger_node",
                "set either link_id or trigger_node, not both: they are two ways to find the meeting type",
            )
        )
    if routing_inputs is not None:
        if not node:
            raise ValueError(
                keyed(
                    "routing_inputs",
                    "routing_inputs only applies with trigger_node; set trigger_node or remove routing_inputs",
                )
            )
        if not isinstance(routing_inputs, Mapping) or not all(
            isinstance(k, str) and k for k in routing_inputs
        ):
            raise ValueError(
                keyed("routing_inputs", "routing_inputs must map trigger node input names to values")
            )
    if form_defaults is not None:
        if not isinstance(form_defaults, Mapping):
            raise ValueError(keyed("form_defaults", "form_defaults must map form field labels to values"))
        for name, value in form_defaults.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(keyed("form_defaults", "form_defaults has an empty field label"))
            if not isinstance(value, str) and not (
                isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
            ):
                raise ValueError(
                    keyed(
                        "form_defaults",
                        f"form_defaults[{name!r}] must be text (or a list of text for an array field)",
                    )
                )
    if not isinstance(timezone, str) or not timezone.strip():
        raise ValueError(keyed("timezone", 'timezone must be an IANA timezone such as "America/Los_Angeles"'))
    try:
        ZoneInfo(timezone.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            keyed("timezone", f'timezone {timezone!r} is not an IANA timezone (e.g. "America/Los_Angeles")')
        ) from None
    return BookingSettings(
        link_id=link or None,
        trigger_node=node or None,
        routing_inputs=dict(routing_inputs) if routing_inputs is not None else None,
        form_defaults=dict(form_defaults) if form_defaults is not None else None,
        timezone=timezone.strip(),
    )


# -- times --------------------------------------------------------------------------------------


def describe_slot(start_ms: int, end_ms: int) -> str:
    start, end = from_epoch_ms(start_ms), from_epoch_ms(end_ms)
    return f"{start.strftime('%Y-%m-%dT%H:%M:%SZ')}–{end.strftime('%H:%M:%SZ')}"


def ms_value(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


# -- the attendee's values and placeholders ------------------------------------------------------


def attendee_values(meeting: Meeting, reference: str) -> dict[str, str | None]:
    person = meeting.attendee
    first = last = None
    if person.name:
        parts = person.name.rsplit(None, 1)
        first = parts[0]
        last = parts[1] if len(parts) == 2 else None
    return {
        "reference": reference,
        "email": person.email,
        "first_name": first,
        "last_name": last,
        "name": person.name,
        "phone": person.phone,
        "title": meeting.title,
    }


class MissingValue(Exception):
    def __init__(self, placeholder: str) -> None:
        super().__init__(placeholder)
        self.placeholder = placeholder


def fill(value: Any, values: Mapping[str, str | None]) -> Any:
    """`value` with its placeholders replaced; MissingValue naming one that has no value."""
    if isinstance(value, (list, tuple)):
        return [fill(v, values) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        got = values.get(match.group(1))
        if got is None or not str(got).strip():
            raise MissingValue(match.group(1))
        return str(got)

    return _PLACEHOLDER.sub(replace, value)


def routing_body(settings: BookingSettings, values: Mapping[str, str | None], uid: str) -> dict[str, Any]:
    """`route-and-fetch-availability` body; ProviderRejected naming an input without a value."""
    inputs = settings.routing_inputs if settings.routing_inputs is not None else DEFAULT_ROUTING_INPUTS
    filled = {**values, "uid": uid}
    prospect = {}
    for name, template in inputs.items():
        try:
            prospect[name] = fill(template, filled)
        except MissingValue as missing:
            raise ProviderRejected(
                PROVIDER,
                f"the routing input {name!r} needs the attendee's {missing.placeholder.replace('_', ' ')}, "
                "and the meeting has none; give it a fixed value in options.routing_inputs",
            ) from None
    return {"triggerNode": settings.trigger_node, "uid": uid, "prospect": prospect}


# -- availability -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    start_ms: int
    end_ms: int
    users: tuple[str, ...]


@dataclass(frozen=True)
class Availability:
    round_robin: bool
    slots: tuple[Slot, ...]
    form_fields: tuple[Mapping[str, Any], ...]
    prefill: Mapping[str, Any]
    token: str | None = None
    # The meeting's current time, in the reschedule flow (`calendarEvent.scheduledTime`).
    current: tuple[int, int] | None = None

    def slot(self, start_ms: int, end_ms: int) -> Slot | None:
        """The offered slot with exactly this start and end (round robin: with someone to book)."""
        for slot in self.slots:
            if slot.start_ms == start_ms and slot.end_ms == end_ms and (slot.users or not self.round_robin):
                return slot
        return None


def parse_availability(body: Any, what: str) -> Availability:
    """An availability answer of either shape (see the module docstring)."""
    if not isinstance(body, dict):
        raise ProviderUnavailable(
            PROVIDER, f"{what} answered {type(body).__name__}, not an availability object"
        )
    routing = as_table(body.get("routing"))
    if "routing" in body:
        kind = routing.get("responseType")
        if kind != "calendar":
            raise ProviderRejected(
                PROVIDER,
                f"{what}: the BookIt graph routed this prospect to {kind!r}, not to a calendar, so there is "
                "no meeting type to book; check the graph's trigger node and routing",
            )
    scheduling = as_table(body.get("scheduling"))
    if "routing" in body and not scheduling:
        raise ProviderUnavailable(PROVIDER, f"{what} routed to a calendar but answered no scheduling object")

    def part(name: str) -> Any:
        return scheduling.get(name) if name in scheduling else body.get(name)

    page_info = part("pageInfo")
    if not isinstance(page_info, dict):
        raise ProviderUnavailable(
            PROVIDER,
            f"{what} answered no pageInfo, so pageInfo.displayAllPoolAvailability cannot tell which "
            "create endpoint to use; not guessing",
        )
    flag = page_info.get("displayAllPoolAvailability")
    if flag is not None and not isinstance(flag, bool):
        raise ProviderUnavailable(
            PROVIDER,
            f"{what} answered pageInfo.displayAllPoolAvailability {flag!r}, neither true, false nor null; "
            "not guessing the create endpoint",
        )
    meeting = as_table(part("meeting"))
    fields = meeting.get("formFields")
    form_fields = tuple(f for f in fields if isinstance(f, dict)) if isinstance(fields, list) else ()
    availability = as_table(part("availability"))
    index = {str(k): v for k, v in as_table(availability.get("indexToUserIdMap")).items()}
    slots = []
    raw_slots = availability.get("timeSlots")
    for raw in raw_slots if isinstance(raw_slots, list) else ():
        if not isinstance(raw, dict):
            continue
        start, end = ms_value(raw.get("start_time")), ms_value(raw.get("end_time"))
        if start is None or end is None:
            continue
        users = raw.get("users")
        ids = tuple(
            str(index[str(u)])
            for u in (users if isinstance(users, list) else ())
            if not isinstance(u, bool)
            and str(u) in index
            and isinstance(index[str(u)], str)
            and index[str(u)]
        )
        slots.append(Slot(start_ms=start, end_ms=end, users=ids))
    token = routing.get("token") if isinstance(routing.get("token"), str) else body.get("token")
    event = as_table(body.get("calendarEvent"))
    times = as_table(event.get("scheduledTime"))
    now_start, now_end = ms_value(times.get("start_time")), ms_value(times.get("end_time"))
    return Availability(
        round_robin=flag is True,
        slots=tuple(slots),
        form_fields=form_fields,
        prefill=as_table(page_info.get("prefillFields")),
        token=token if isinstance(token, str) and token else None,
        current=(now_start, now_end) if now_start is not None and now_end is not None else None,
    )


# -- form fields and bodies ---------------------------------------------------------------------


def _lookup(mapping: Mapping[str, Any] | None, label: str) -> Any:
    if not mapping:
        return None
    if label in mapping:
        return mapping[label]
    wanted = _key(label)
    return next((v for k, v in mapping.items() if isinstance(k, str) and _key(k) == wanted), None)


def _present(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list):
        return bool(value)
    return value is not None


def user_fields(
    availability: Availability, values: Mapping[str, str | None], form_defaults: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """`userFields` for the meeting type's form; ProviderRejected naming required fields left empty."""
    fields: list[Mapping[str, Any]] = [
        f for f in availability.form_fields if isinstance(f.get("name"), str) and f["name"].strip()
    ]
    labels = {_key(f["name"]) for f in fields}
    fields += [
        {"name": n, "type": "text", "required": True} for n in STANDARD_FIELDS if _key(n) not in labels
    ]
    answer, missing = [], []
    standard = {_key(n) for n in STANDARD_FIELDS}
    for field in fields:
        label = field["name"].strip()
        key = _key(label)
        is_list = key in _LIST_FIELDS
        required = field.get("required") is True or key in standard
        value: Any = values.get(_DERIVED[key]) if key in _DERIVED else None
        if not _present(value):
            value = _lookup(availability.prefill, label)
        if not _present(value):
            try:
                value = fill(_lookup(form_defaults, label), values)
            except MissingValue:
                value = None
        if is_list and isinstance(value, str):
            value = [v for v in re.split(r"[,\s;]+", value) if v]
        if not _present(value):
            if required:
                missing.append(label)
                continue
            value = [] if is_list else ""
        elif not is_list and not isinstance(value, str):
            value = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        kind = field.get("type") if isinstance(field.get("type"), str) and field.get("type") else "text"
        answer.append({"name": label, "type": kind, "value": value})
    if missing:
        names = ", ".join(repr(m) for m in missing)
        raise ProviderRejected(
            PROVIDER,
            f"the BookIt meeting type requires the form field{'s' if len(missing) > 1 else ''} {names}, and neither "
            "the attendee nor options.form_defaults gives a value; add it to the connection's form_defaults",
        )
    return answer


def scheduled_time(slot: Slot, timezone: str, *, round_robin: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"start_time": slot.start_ms, "end_time": slot.end_ms, "timezone": timezone}
    if round_robin:
        body["users"] = list(slot.users)
    return body


def booking_body(
    identity: Mapping[str, str],
    availability: Availability,
    slot: Slot,
    timezone: str,
    fields: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        **identity,
        "scheduledTime": scheduled_time(slot, timezone, round_robin=availability.round_robin),
        "userFields": fields,
    }


def is_slot_taken(exc: ProviderRejected) -> bool:
    return exc.status == 400 and "no longer available" in exc.message.lower()


def is_link_used(exc: ProviderRejected) -> bool:
    return exc.status == 400 and "only allows one booking" in exc.message.lower()
