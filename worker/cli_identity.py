"""`bookingsync meetings show | link | unlink` and `bookingsync routes sync` (issue 16).

Registered on the main command by `worker/cli.py` (`register`); the work is done in
`worker/links.py` and `worker/backfill.py`, one transaction per change.
"""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import typer

from bookingsync.models.errors import RequestRefused
from bookingsync.worker import cli
from bookingsync.worker.cli import ConfigOption, JsonFlag
from bookingsync.worker.db import transaction

MeetingArg = Annotated[str, typer.Argument(help="the meeting (its id, or a unique start of it)")]
LinkArg = Annotated[
    str, typer.Argument(help="the booking, as CONNECTION:EXTERNAL_ID (`meetings show` lists them)")
]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def register(meetings_app: typer.Typer, app: typer.Typer) -> None:
    """Add the commands; called at the end of worker/cli.py, once its options are defined."""
    routes_app = cli._typer("Routes: backfill the meetings a route's sources already have.")
    app.add_typer(routes_app, name="routes")

    def _meeting_id(session: Any, meeting: str) -> str:
        from bookingsync.worker import reports

        try:
            return reports.resolve_meeting(session, meeting)
        except reports.AmbiguousPrefix as exc:
            cli._fail(str(exc))

    @meetings_app.command("show")
    def meetings_show(meeting: MeetingArg, config: ConfigOption = None, as_json: JsonFlag = False) -> None:
        """One meeting: every link with how it was linked, and its audit trail (ambiguous matches, conflicts)."""
        from bookingsync.worker import links, reports

        rt = cli._open(config)
        try:
            with transaction(rt.engine) as session:
                shown = links.show(session, _meeting_id(session, meeting))
        except RequestRefused as exc:
            cli._fail(str(exc))
        finally:
            rt.close()
        if as_json:
            cli._json(shown)
            return
        m = shown["meeting"]
        cli.out.print(
            f"meeting {m['id']}: {m['status']} {m['start']} – {m['end']} {m['title'] or ''} "
            f"(attendee {m['attendee']['email'] or '-'})",
            markup=False,
        )
        cli.out.print(reports.table("links", shown["links"], links.LINK_COLUMNS))
        if shown["ambiguous"]:
            cli.out.print(
                f"{len(shown['ambiguous'])} ambiguous match(es): a record matched several meetings and was "
                "linked to none (see the audit trail; `bookingsync meetings link` joins by hand)",
                style="yellow",
                markup=False,
            )
        cli.out.print(reports.table("audit", shown["audit"], links.AUDIT_COLUMNS))

    @meetings_app.command("link")
    def meetings_link(meeting: MeetingArg, link: LinkArg, config: ConfigOption = None) -> None:
        """Join a booking (now a link of another meeting) to this meeting, by hand: an event and an audit entry."""
        from bookingsync.worker import links

        rt = cli._open(config)
        try:
            with transaction(rt.engine) as session:
                message = links.link(
                    session,
                    _meeting_id(session, meeting),
                    link,
                    rt.clock.now(),
                    actor=_actor(),
                    grace=rt.grace,
                )
        except RequestRefused as exc:
            cli._fail(str(exc))
        finally:
            rt.close()
        cli.out.print(message, markup=False)

    @meetings_app.command("unlink")
    def meetings_unlink(meeting: MeetingArg, link: LinkArg, config: ConfigOption = None) -> None:
        """Split a booking off this meeting into a meeting of its own: an event and an audit entry."""
        from bookingsync.worker import links

        rt = cli._open(config)
        try:
            with transaction(rt.engine) as session:
                message = links.unlink(
                    session,
                    _meeting_id(session, meeting),
                    link,
                    rt.clock.now(),
                    actor=_actor(),
                    grace=rt.grace,
                    backfill=rt.config.events.backfill,
                )
        except RequestRefused as exc:
            cli._fail(str(exc))
        finally:
            rt.close()
        cli.out.print(message, markup=False)

    @routes_app.command("sync")
    def routes_sync(
        config: ConfigOption = None,
        target: Annotated[str | None, typer.Option(help="only this route target")] = None,
        restart: Annotated[
            bool,
            typer.Option(
                "--restart", help="walk from the first meeting again (what is in step costs no provider call)"
            ),
        ] = False,
        limit: Annotated[
            int | None, typer.Option(help="stop after this many meetings per target (run again to resume)")
        ] = None,
    ) -> None:
        """Book the upcoming meetings a route's sources already have at its targets; resumable, exactly once."""
        from rich.progress import Progress as Bar

        from bookingsync.worker import backfill

        rt = cli._open(config)
        targets = backfill.routes_by_target(rt)
        if target is not None:
            if target not in targets:
                cli._fail(
                    f"{target!r} is not the target of any route; routes have {', '.join(targets) or 'none'}",
                    2,
                )
            targets = {target: targets[target]}
        try:
            for name, sources in targets.items():
                with Bar(console=cli.err, transient=False) as bar:
                    task = bar.add_task(f"{', '.join(sources)} → {name}", total=None)

                    def step(p: backfill.Progress, bar: Bar = bar, task: Any = task) -> None:
                        bar.update(task, completed=p.done, total=p.total)

                    done = backfill.sync_target(rt, name, sources, limit=limit, restart=restart, on_step=step)
                    bar.update(task, completed=done.done, total=max(done.total, done.done))
                state = "done" if done.finished else "stopped (run again to resume)"
                cli.out.print(
                    f"{name}: {done.done}/{done.total} meetings walked, {done.converged} in step, "
                    f"{done.failed} not (see `bookingsync mirrors list --unresolved`); {state}",
                    markup=False,
                )
        finally:
            rt.close()
