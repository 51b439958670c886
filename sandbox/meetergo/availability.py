"""Meetergo availability: busy blocks, the rules that make a time bookable for a meeting type,
slot scans and host choice (round robin). Built on `store`, whose fields and meeting types it reads."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from bookingsync.sandbox.clock import aware

from .records import SLOT_TAKEN, BusyBlock, MeetergoMeetingType, MeetergoRefusal, Slot, validation_failed
from .store import Store


class Availability(Store):
    def block(self, host_id: str, start: datetime, end: datetime) -> BusyBlock:
        """A busy event in the host's external calendar (subject to ``calendar_sync_lag``)."""
        with self._lock:
            busy = BusyBlock(host_id, aware(start), aware(end), self.now())
            self._busy.append(busy)
            return busy

    def host_busy(
        self,
        host_id: str,
        start: datetime,
        end: datetime,
        *,
        ignore_appointment: str | None = None,
        lagging: bool = False,
    ) -> bool:
        return (
            self.busy_reason(host_id, start, end, ignore_appointment=ignore_appointment, lagging=lagging)
            is not None
        )

    def busy_reason(
        self,
        host_id: str,
        start: datetime,
        end: datetime,
        *,
        ignore_appointment: str | None = None,
        lagging: bool = False,
    ) -> str | None:
        """Why `host_id` is taken in [start, end), or None: an appointment, a pending provisional
        booking or an external busy block (`lagging` hides blocks younger than the sync lag)."""
        with self._lock:
            now = self.now()
            for appt in self._appointments.values():
                if (
                    appt.id != ignore_appointment
                    and not appt.is_cancelled
                    and host_id in appt.host_ids
                    and appt.start < end
                    and start < appt.end
                ):
                    return "Existing appointment"
            for prov in self._provisional.values():
                if (
                    prov.status_at(now) == "pending"
                    and host_id in prov.host_ids
                    and prov.start < end
                    and start < prov.end
                ):
                    return "Pending provisional booking"
            lag = timedelta(seconds=self.calendar_sync_lag_seconds)
            if any(
                b.host_id == host_id
                and b.start < end
                and start < b.end
                and not (lagging and now - b.added_at < lag)
                for b in self._busy
            ):
                return "Calendar event"
            return None

    def is_bookable_time(self, mt: MeetergoMeetingType, start: datetime, duration: int) -> bool:
        """On the slot grid: a weekday, inside the working hours, after the minimum notice."""
        local = start.astimezone(ZoneInfo(mt.timezone))
        if local.weekday() >= 5 or local.second or local.microsecond:
            return False
        day_start = local.replace(hour=mt.day_start_hour, minute=0)
        day_end = local.replace(hour=mt.day_end_hour, minute=0)
        offset = (local - day_start).total_seconds() / 60
        return (
            local >= day_start
            and local + timedelta(minutes=duration) <= day_end
            and offset % mt.duration == 0
            and start >= self.now() + timedelta(minutes=mt.min_notice_minutes)
        )

    def available_slots(
        self,
        meeting_type_id: str,
        first_day: date,
        last_day: date,
        *,
        duration: int | None = None,
        ignore_appointment: str | None = None,
    ) -> list[Slot]:
        return self.scan_slots(
            meeting_type_id, first_day, last_day, duration=duration, ignore_appointment=ignore_appointment
        )[0]

    def scan_slots(
        self,
        meeting_type_id: str,
        first_day: date,
        last_day: date,
        *,
        duration: int | None = None,
        ignore_appointment: str | None = None,
    ) -> tuple[list[Slot], list[tuple[datetime, datetime, str, str]]]:
        """Free slots (a host or more is free) and, per host, the grid slots it is busy in with
        the reason, over the days `first_day`..`last_day` in the meeting type's zone."""
        with self._lock:
            mt = self._require_meeting_type(meeting_type_id)
            length = duration or mt.duration
            zone = ZoneInfo(mt.timezone)
            slots: list[Slot] = []
            blocked: list[tuple[datetime, datetime, str, str]] = []
            day = first_day
            while day <= last_day:
                local = datetime(day.year, day.month, day.day, mt.day_start_hour, tzinfo=zone)
                closing = datetime(day.year, day.month, day.day, mt.day_end_hour, tzinfo=zone)
                while local + timedelta(minutes=length) <= closing:
                    start = local.astimezone(UTC)
                    end = start + timedelta(minutes=length)
                    local += timedelta(minutes=mt.duration)
                    if not self.is_bookable_time(mt, start, length):
                        continue
                    free = []
                    for host in mt.host_ids:
                        reason = self.busy_reason(
                            host, start, end, lagging=True, ignore_appointment=ignore_appointment
                        )
                        if reason is None:
                            free.append(host)
                        else:
                            blocked.append((start, end, host, reason))
                    if free:
                        slots.append(Slot(start, end, tuple(free)))
                day += timedelta(days=1)
            return slots, blocked

    def _choose_hosts(
        self, mt: MeetergoMeetingType, host_ids: tuple[str, ...], queue_id: str | None
    ) -> tuple[str, ...]:
        if mt.queue_id is not None:
            if queue_id is None:
                raise validation_failed("queueId", "queueId is required for this meeting type")
            if queue_id != mt.queue_id:
                raise validation_failed("queueId", "queueId does not belong to this meeting type")
        elif queue_id is not None:
            raise validation_failed("queueId", "queueId must be undefined for this meeting type")
        elif not host_ids:
            raise validation_failed("hostIds", "hostIds is required for this meeting type")
        strangers = [h for h in host_ids if h not in mt.host_ids]
        if strangers:
            raise validation_failed(
                "hostIds", f"Host(s) {', '.join(strangers)} are not assigned to this meeting type"
            )
        return host_ids or mt.host_ids

    def _free_hosts(
        self,
        mt: MeetergoMeetingType,
        hosts: tuple[str, ...],
        start: datetime,
        length: int,
        queue: bool,
        ignore: str | None,
    ) -> tuple[str, ...]:
        end = start + timedelta(minutes=length)
        if not self.is_bookable_time(mt, start, length):
            raise MeetergoRefusal(400, SLOT_TAKEN)
        free = [h for h in hosts if not self.host_busy(h, start, end, ignore_appointment=ignore)]
        if not queue:
            if len(free) != len(hosts):
                raise MeetergoRefusal(400, SLOT_TAKEN)
            return hosts
        if not free:
            raise MeetergoRefusal(400, SLOT_TAKEN)
        # Round robin: the free host with the fewest bookings so far, then queue order.
        chosen = min(free, key=lambda h: (self._round_robin_counts.get(h, 0), free.index(h)))
        self._round_robin_counts[chosen] = self._round_robin_counts.get(chosen, 0) + 1
        return (chosen,)
