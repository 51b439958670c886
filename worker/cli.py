"""The `bookingsync` command."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from sqlmodel import select

from bookingsync.models.errors import ConfigError
from bookingsync.models.tables import IntentRow
from bookingsync.worker import reports
from bookingsync.worker.config import Config, load_config
from bookingsync.worker.db import make_engine, ping, transaction, upgrade
from bookingsync.worker.runtime import Runtime, install

app = typer.Typer(help="Keeps meetings from several scheduling providers in one canonical model and emits "
                       "their lifecycle events.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
meetings_app = typer.Typer(help="Canonical meetings.", no_args_is_help=True)
events_app = typer.Typer(help="The event outbox.", no_args_is_help=True)
deliveries_app = typer.Typer(help="Deliveries to subscribers, dead letters, replay.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Provider records that could not be normalised.", no_args_is_help=True)
subscriptions_app = typer.Typer(help="Subscriptions' state.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
mirrors_app = typer.Typer(help="Writes to route targets: every one accounted for.", no_args_is_help=True)
for sub, name in ((db_app, "db"), (meetings_app, "meetings"), (events_app, "events"), (deliveries_app, "deliveries"),
                  (quarantine_app, "quarantine"), (subscriptions_app, "subscriptions"), (config_app, "config"),
                  (mirrors_app, "mirrors")):
    app.add_typer(sub, name=name)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="TOML file (default $BOOKINGSYNC_CONFIG, "
                                                                            "else embedded defaults)")]
# Piped output (logs, CI, tests) gets wide tables instead of 80 truncated columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)
DB_WAIT_SECONDS = 60


def _load(path: Path | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        err.print(str(exc), style="red", markup=False)
        raise typer.Exit(2) from None


def _logging(cfg: Config) -> None:
    logging.basicConfig(level=cfg.logging.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apscheduler", "httpx", "httpcore", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def boot(cfg: Config, role: str, *, migrate: bool | None = None) -> Runtime:
    """Engine, migrations and the process runtime; waits for a database that is still starting."""
    _logging(cfg)
    engine = make_engine(cfg.database.url)
    deadline = time.monotonic() + DB_WAIT_SECONDS
    while not ping(engine):
        if time.monotonic() > deadline:
            err.print(f"[red]the database at {engine.url.render_as_string(hide_password=True)} did not answer "
                      f"within {DB_WAIT_SECONDS}s[/red]")
            raise typer.Exit(1)
        time.sleep(1)
    if cfg.database.migrate_on_start if migrate is None else migrate:
        upgrade(engine)
    return install(Runtime(config=cfg, engine=engine, role=role))


def _with_actors(rt: Runtime) -> Any:
    from bookingsync.worker.actors import declare
    from bookingsync.worker.broker import make_broker

    rt.actors = declare(make_broker(rt.config.broker.url))
    return rt.actors


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def _serve(rt: Runtime) -> None:
    """Serve HTTP until SIGINT/SIGTERM, then return so the caller can shut the rest down in order."""
    import contextlib

    import uvicorn

    from bookingsync.worker.web import create_app

    class Server(uvicorn.Server):
        # uvicorn re-raises the signal after its own shutdown, which would kill the process before
        # the scheduler releases its lease and the worker finishes; we handle the signals instead.
        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

    server = Server(uvicorn.Config(create_app(rt), host=rt.config.server.host, port=rt.config.server.port,
                                   log_level="warning", access_log=False))

    def _stop(*_: Any) -> None:
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    server.run()


@app.command()
def run(config: ConfigOption = None) -> None:
    """Everything in one process: scheduler, relay, worker threads and the HTTP server.

    With no connections configured it starts the built-in sandbox providers and a demo that
    books, reschedules and cancels meetings, so you can watch events fire.
    """
    from bookingsync.worker.broker import start_worker
    from bookingsync.worker.demo import attach_sandbox
    from bookingsync.worker.scheduler import Scheduler

    cfg = _load(config)
    demo = None
    if not cfg.connections:
        cfg, demo = attach_sandbox(cfg, out)
    rt = boot(cfg, "run")
    actors = _with_actors(rt)
    worker = start_worker(actors.broker, cfg.worker.threads)
    scheduler = Scheduler(rt)
    scheduler.start()
    out.print(f"bookingsync listening on http://{cfg.server.host}:{cfg.server.port} "
              f"(database {rt.engine.url.render_as_string(hide_password=True)}, broker {cfg.broker.url})")
    if demo is not None:
        demo.start()
    try:
        _serve(rt)
    finally:
        out.print("shutting down: scheduler, worker threads, sandbox")
        scheduler.stop()
        worker.stop()
        if demo is not None:
            demo.stop()
        rt.close()


@app.command()
def web(config: ConfigOption = None) -> None:
    """The HTTP server alone (webhooks, health, metrics)."""
    rt = boot(_load(config), "web")
    _with_actors(rt)
    _serve(rt)


@app.command()
def worker(config: ConfigOption = None,
           threads: Annotated[int | None, typer.Option(help="worker threads (default worker.threads)")] = None) -> None:
    """A dramatiq worker: publishes events, sends deliveries, ingests webhooks, polls."""
    from bookingsync.worker.broker import start_worker

    rt = boot(_load(config), "worker")
    actors = _with_actors(rt)
    running = start_worker(actors.broker, threads or rt.config.worker.threads)
    out.print(f"worker {rt.holder} consuming {rt.config.broker.url}")
    _wait_for_signal()
    running.stop()
    rt.close()


@app.command()
def scheduler(config: ConfigOption = None) -> None:
    """Poll ticks and the outbox relay; run several, one leads at a time."""
    from bookingsync.worker.scheduler import Scheduler

    rt = boot(_load(config), "scheduler")
    _with_actors(rt)
    sched = Scheduler(rt)
    sched.start()
    out.print(f"scheduler {rt.holder} started")
    _wait_for_signal()
    sched.stop()
    rt.close()


@app.command()
def sandbox(leezy_port: int = 8101, leandata_port: int = 8102, rocketlead_port: int = 8103,
            meetergo_port: int = 8104, hubspot_port: int = 8105, host: str = "127.0.0.1",
            demo: Annotated[bool, typer.Option(help="book, reschedule and cancel meetings over time")] = False) -> None:
    """Run the five provider simulators in the foreground and print their URLs and credentials."""
    from bookingsync.sandbox.server import serve_forever

    serve_forever(host=host, leezy_port=leezy_port, leandata_port=leandata_port, rocketlead_port=rocketlead_port,
                  meetergo_port=meetergo_port, hubspot_port=hubspot_port, demo=demo)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply the migrations up to the newest."""
    rt = boot(_load(config), "cli", migrate=True)
    out.print(f"database {rt.engine.url.render_as_string(hide_password=True)} is at the newest schema")


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate the configuration and print what it resolves to (secrets hidden)."""
    cfg = _load(config)
    out.print(f"{cfg.source}: ok — {len(cfg.connections)} connection(s), {len(cfg.subscriptions)} subscription(s)")


def _reporting(config: Path | None) -> Runtime:
    return boot(_load(config), "cli")


@app.command()
def status(config: ConfigOption = None) -> None:
    """Meetings, the outbox, deliveries, cursors and leases at a glance."""
    rt = _reporting(config)
    with transaction(rt.engine) as session:
        for table in reports.status_tables(session, rt.config, rt.clock.now()):
            out.print(table)


@meetings_app.command("list")
def meetings_list(config: ConfigOption = None, limit: int = 50) -> None:
    """The newest canonical meetings with their provider links."""
    rt = _reporting(config)
    with transaction(rt.engine) as session:
        out.print(reports.meetings_table(session, limit))


@events_app.command("list")
def events_list(config: ConfigOption = None, limit: int = 50,
                meeting: Annotated[str | None, typer.Option(help="only this meeting id")] = None,
                status_filter: Annotated[str | None, typer.Option("--status", help="pending, published, …")] = None
                ) -> None:
    """Events, newest first: pending timers, published, cancelled and dropped ones."""
    rt = _reporting(config)
    with transaction(rt.engine) as session:
        out.print(reports.events_table(session, limit, meeting, status_filter))


@deliveries_app.command("list")
def deliveries_list(config: ConfigOption = None, limit: int = 50,
                    dead: Annotated[bool, typer.Option("--dead", help="only dead letters")] = False) -> None:
    """Deliveries to subscribers; --dead for the dead letters."""
    rt = _reporting(config)
    with transaction(rt.engine) as session:
        out.print(reports.deliveries_table(session, limit, dead))


@deliveries_app.command("replay")
def deliveries_replay(config: ConfigOption = None,
                      delivery_id: Annotated[int | None, typer.Argument(help="one delivery")] = None,
                      all_dead: Annotated[bool, typer.Option("--all-dead", help="every dead letter")] = False) -> None:
    """Queue dead deliveries again (same webhook-id, so consumers can dedupe)."""
    from bookingsync.worker.delivery import replay

    if delivery_id is None and not all_dead:
        err.print("name a delivery id or pass --all-dead")
        raise typer.Exit(2)
    rt = _reporting(config)
    with transaction(rt.engine) as session:
        count = replay(session, rt.clock.now(), delivery_id=delivery_id, all_dead=all_dead)
    out.print(f"{count} deliver{'y' if count == 1 else 'ies'} queued again; a running scheduler sends them")


@subscriptions_app.command("enable")
def subscriptions_enable(subscription_id: str, config: ConfigOption = None) -> None:
    """Re-enable a subscription that its endpoint disabled with 410 Gone."""
    from bookingsync.worker.delivery import enable

    rt = _reporting(config)
    with transaction(rt.engine) as session:
        changed = enable(session, subscription_id)
    out.print(f"subscription {subscription_id} " + ("enabled" if changed else "was not disabled"))


@quarantine_app.command("list")
def quarantine_list(config: ConfigOption = None, limit: int = 50,
                    connection: Annotated[str | None, typer.Option(help="only this connection")] = None) -> None:
    """Records kept aside with the reason they could not be normalised."""
    rt = _reporting(config)
    with transaction(rt.engine) as session:
        out.print(reports.quarantine_table(session, limit, connection))


@quarantine_app.command("replay")
def quarantine_replay(item_id: int, config: ConfigOption = None) -> None:
    """Normalise a quarantined record again and apply it if it passes now."""
    from bookingsync.worker.ingest import replay_quarantined

    rt = _reporting(config)
    out.print(replay_quarantined(rt, item_id))


@mirrors_app.command("show")
def mirrors_show(meeting_id: str, config: ConfigOption = None) -> None:
    """Every write made for one meeting: target, action, state, provider id, attempts, times."""
    from bookingsync.worker import mirrors

    rt = _reporting(config)
    with transaction(rt.engine) as session:
        out.print(mirrors.show(session, meeting_id))


@mirrors_app.command("list")
def mirrors_list(config: ConfigOption = None, limit: int = 50,
                 unresolved: Annotated[bool, typer.Option("--unresolved", help="only writes a person must look at: "
                                                          "unknown outcomes, halts, lost answers")] = False) -> None:
    """The newest writes to route targets; --unresolved for the ones held or halted."""
    from bookingsync.worker import mirrors

    rt = _reporting(config)
    with transaction(rt.engine) as session:
        out.print(mirrors.listing(session, limit, unresolved))


@mirrors_app.command("resume")
def mirrors_resume(meeting_id: str, target: str, config: ConfigOption = None) -> None:
    """Lift the breaker's halt of one mirror and queue its dead route deliveries again."""
    from bookingsync.worker import mirrors

    rt = _reporting(config)
    with transaction(rt.engine) as session:
        out.print(mirrors.resume(session, meeting_id, target, rt.clock.now()), markup=False)


@mirrors_app.command("resolve")
def mirrors_resolve(reference: str, config: ConfigOption = None,
                    booking_id: Annotated[str | None, typer.Option(help="the booking it made, as found at the "
                                                                   "provider")] = None,
                    none: Annotated[bool, typer.Option("--none", help="it made no booking")] = False) -> None:
    """Say what became of a write whose outcome is unknown (after checking the provider by hand)."""
    from bookingsync.worker import mirrors

    if (booking_id is None) == (not none):
        err.print("give --booking-id ID (it made that booking) or --none (it made none)")
        raise typer.Exit(2)
    rt = _reporting(config)
    with transaction(rt.engine) as session:
        row = session.exec(select(IntentRow).where(IntentRow.reference == reference)).first()
        conn = rt.config.connection(row.connection) if row is not None else None
        out.print(mirrors.resolve(session, reference, rt.clock.now(), booking_id=booking_id,
                                  provider=conn.provider if conn else ""), markup=False)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        err.print(str(exc), style="red", markup=False)
        sys.exit(2)
