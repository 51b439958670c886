"""`POST /crm/objects/2026-03/meetings/search`: filter groups, sorts and paging over the state."""

from __future__ import annotations

from typing import Any

from .errors import (
    _int_param,
    _validation,
)
from .records import DATE_PROPERTIES, DEFAULT_LIMIT, MAX_SEARCH_LIMIT, parse_time, to_millis
from .state import HubSpotState


def _comparable(name: str, value: str) -> Any:
    if name in DATE_PROPERTIES or name in ("createdate", "lastmodifieddate"):
        try:
            return to_millis(parse_time(value))
        except ValueError:
            return value
    if name == "hs_object_id" and value.isdigit():
        return int(value)
    return value


def _matches(props: dict[str, str], flt: dict[str, Any]) -> bool:
    name, op = flt["propertyName"], flt["operator"]
    have = props.get(name)
    if op == "HAS_PROPERTY":
        return have is not None
    if op == "NOT_HAS_PROPERTY":
        return have is None
    if op in ("IN", "NOT_IN"):
        wanted = {str(v).lower() for v in flt.get("values") or []}
        inside = have is not None and have.lower() in wanted
        return inside if op == "IN" else not inside
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        token = str(flt.get("value", "")).strip("*").lower()
        inside = have is not None and token in have.lower()
        return inside if op == "CONTAINS_TOKEN" else not inside
    if have is None:
        return op == "NEQ"
    left = _comparable(name, have)
    right = _comparable(name, str(flt.get("value", "")))
    try:
        if op == "EQ":
            return left == right if not isinstance(left, str) else left.lower() == str(right).lower()
        if op == "NEQ":
            return left != right
        if op == "GT":
            return left > right
        if op == "GTE":
            return left >= right
        if op == "LT":
            return left < right
        if op == "LTE":
            return left <= right
        if op == "BETWEEN":
            high = _comparable(name, str(flt.get("highValue", "")))
            return right <= left <= high
    except TypeError:
        return False
    return False


def _search_problems(state: HubSpotState, body: dict[str, Any]) -> list[dict[str, Any]]:
    problems = []
    if state.search_requires_all_fields:
        for key in ("after", "filterGroups", "limit", "properties", "sorts"):
            if key not in body:
                problems.append({"message": f"{key} is required.", "in": key, "code": "REQUIRED"})
    groups = body.get("filterGroups", [])
    if not isinstance(groups, list) or len(groups) > 6:
        problems.append({"message": "filterGroups must be a list of at most 6 groups.", "in": "filterGroups"})
        return problems
    for group in groups:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list):
            problems.append({"message": "Each filter group needs a filters list.", "in": "filterGroups"})
            continue
        for flt in filters:
            if (
                not isinstance(flt, dict)
                or not isinstance(flt.get("propertyName"), str)
                or flt.get("operator")
                not in (
                    "BETWEEN",
                    "CONTAINS_TOKEN",
                    "EQ",
                    "GT",
                    "GTE",
                    "HAS_PROPERTY",
                    "IN",
                    "LT",
                    "LTE",
                    "NEQ",
                    "NOT_CONTAINS_TOKEN",
                    "NOT_HAS_PROPERTY",
                    "NOT_IN",
                )
            ):
                problems.append({"message": f"Invalid filter {flt!r}.", "in": "filters"})
    if not isinstance(body.get("properties", []), list):
        problems.append({"message": "properties must be a list.", "in": "properties"})
    if not isinstance(body.get("sorts", []), list):
        problems.append({"message": "sorts must be a list.", "in": "sorts"})
    return problems


def _sort_keys(sorts: list[Any]) -> list[tuple[str, bool]]:
    keys = []
    for item in sorts:
        if isinstance(item, str) and item:
            keys.append((item.lstrip("-"), item.startswith("-")))
        elif isinstance(item, dict) and isinstance(item.get("propertyName"), str):
            keys.append(
                (item["propertyName"], str(item.get("direction", "ASCENDING")).upper() == "DESCENDING")
            )
        else:
            raise _validation(f"Invalid sort {item!r}.", [{"message": "Invalid sort.", "in": "sorts"}])
    return keys


def _search(state: HubSpotState, body: dict[str, Any]) -> dict[str, Any]:
    problems = _search_problems(state, body)
    if problems:
        raise _validation("Invalid search request: " + "; ".join(p["message"] for p in problems), problems)
    limit = _int_param(body.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_SEARCH_LIMIT)
    raw_after = body.get("after")
    offset = _int_param(raw_after if raw_after not in (None, "") else None, "after", 0, 0, 10_000)
    groups = body.get("filterGroups") or []
    found = [
        m
        for m in state.meetings(archived=False)
        if not groups or any(all(_matches(m.all_properties(), f) for f in g["filters"]) for g in groups)
    ]
    query = str(body.get("query") or "").lower()
    if query:
        found = [m for m in found if any(query in v.lower() for v in m.properties.values())]
    for name, descending in reversed(_sort_keys(body.get("sorts") or [])):
        present = [m for m in found if name in m.all_properties()]
        absent = [m for m in found if name not in m.all_properties()]
        present.sort(key=lambda m, n=name: _comparable(n, m.all_properties()[n]), reverse=descending)
        found = present + absent
    page = found[offset : offset + limit]
    wanted = [str(p) for p in body.get("properties") or []]
    data: dict[str, Any] = {
        "total": len(found),
        "results": [{k: v for k, v in m.resource(wanted).items() if k != "associations"} for m in page],
    }
    if offset + limit < len(found):
        data["paging"] = {"next": {"after": str(offset + limit)}}
    return data


# Scheduler ------------------------------------------------------------------------------------
