"""The `bookingsync` command.

Exit status: 0 done; 1 the command failed (a database that is not there, an id that names
nothing, a port in use); 2 the configuration or the arguments are wrong. Errors are one line on
stderr, never a traceback. Commands that only read (`status`, `… list`) never create or migrate a
database, and say on stderr which one they read; their `--json` output goes to stdout alone.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from sqlalchemy.engine import make_url
from sqlmodel import select

from bookingsync.models.errors import ConfigError, RequestRefused
from bookingsync.models.tables import IntentRow
from bookingsync.worker import logs, probes
from bookingsync.worker.clock import SystemClock
from bookingsync.worker.config import Config, load_config, redact_url, validate_for
from bookingsync.worker.db import make_engine, schema_revisions, transaction, upgrade
from bookingsync.worker.runtime import Runtime, freeze_start_up, install


def _typer(help_text: str) -> typer.Typer:
    # rich_markup_mode=None: plain help, where a flag shows as a flag (`--dead`), not `--dead <bool>`.
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
    )


app = _typer(
    "Keeps meetings from several scheduling providers in one canonical model and emits their lifecycle "
    "events."
)
db_app = _typer("Database schema.")
meetings_app = _typer("Canonical meetings.")
events_app = _typer("The event outbox.")
deliveries_app = _typer("Deliveries to subscribers, dead letters, replay.")
quarantine_app = _typer("Provider records that could not be normalised.")
subscriptions_app = _typer("Subscriptions' state.")
config_app = _typer("Configuration.")
mirrors_app = _typer("Writes to route targets: every one accounted for.")
for sub, name in (
    (db_app, "db"),
    (meetings_app, "meetings"),
    (events_app, "events"),
    (deliveries_app, "deliveries"),
    (quarantine_app, "quarantine"),
    (subscriptions_app, "subscriptions"),
    (config_app, "config"),
    (mirrors_app, "mirrors"),
):
    app.add_typer(sub, name=name)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML file (default $BOOKINGSYNC_CONFIG, else embedded defaults)"),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="rows as JSON on stdout (full values, for scripts)")]
# Piped output (logs, CI, tests) is never wrapped or cut to a terminal's width.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 10_000)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 10_000)
RETRY_MAX_SECONDS = 15.0


class EventStatus(StrEnum):
    pending = "pending"
    leased = "leased"
    published = "published"
    cancelled = "cancelled"
    dropped = "dropped"


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(message, style="red", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        try:
            out.print(f"bookingsync {version('bookingsync')}")
        except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
            out.print("bookingsync (not installed)")
        raise typer.Exit(0)


@app.callback()
def _main(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Keeps meetings from several scheduling providers in one canonical model and emits their lifecycle events."""


def _load(path: Path | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        _fail(str(exc), 2)


def _check(cfg: Config, role: str, *, sandbox: bool = False) -> None:
    try:
        validate_for(cfg, role, sandbox=sandbox)
    except ConfigError as exc:
        _fail(str(exc), 2)


def _listen(host: str, port: int, what: str, key: str) -> Any:
    """Take the port now: a port in use is one line and exit 1, before anything has started."""
    try:
        return probes.bind(host, port)
    except probes.PortTaken as exc:
        _fail(f"cannot serve {what}: {exc}; stop what holds it or choose another port ({key})")


def wait_for_services(engine: Any, broker_url: str | None) -> None:
    """Return once the database (and the broker) answer; until then say so, and keep trying.

    Each check gives up within seconds (connect timeouts) and both run at once, so the first
    message comes within five seconds of start-up however the other side fails.
    """
    shown_db = engine.url.render_as_string(hide_password=True)
    delay, waited = 1.0, False
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="startup-check") as pool:
        while True:
            db = pool.submit(probes.database_problem, engine)
            broker = pool.submit(probes.broker_problem, broker_url) if broker_url else None
            problems = []
            if (why := db.result()) is not None:
                problems.append(f"the database at {shown_db} does not answer ({why})")
            if broker is not None and (why := broker.result()) is not None:
                problems.append(f"the broker at {redact_url(broker_url or '')} does not answer ({why})")
            if not problems:
                if waited:
                    err.print("the database and the broker answer now; starting", markup=False)
                return
            for problem in problems:
                err.print(f"{problem}; retrying in {delay:g}s (Ctrl-C to stop)", style="yellow", markup=False)
            waited = True
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)


def boot(cfg: Config, role: str, *, migrate: bool | None = None, engine: Any = None) -> Runtime:
    """Logging, the engine (waiting for the database and broker), migrations, the runtime."""
    logs.configure(cfg.logging.level, cfg.logging.format)
    engine = engine or make_engine(cfg.database.url)
    wait_for_services(engine, cfg.broker.url if role in ("run", "web", "worker", "scheduler") else None)
    if cfg.database.migrate_on_start if migrate is None else migrate:
        upgrade(engine)
    return install(Runtime(config=cfg, engine=engine, role=role))


def _with_actors(rt: Runtime) -> Any:
    from bookingsync.worker.actors import declare
    from bookingsync.worker.broker import make_broker, use_shared_pacing
    from bookingsync.worker.metrics import Messages

    broker = make_broker(rt.config.broker.url)
    use_shared_pacing(rt.config.broker.url)
    broker.add_middleware(logs.BindContext())
    broker.add_middleware(Messages())
    rt.actors = declare(broker)
    return rt.actors


def _wait_for_signal() -> None:
    freeze_start_up()  # everything is started: see runtime.freeze_start_up
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def _serve(rt: Runtime, sock: Any) -> None:
    """Serve HTTP on the bound socket until SIGINT/SIGTERM, then return so the caller shuts the rest down."""
    import uvicorn

    from bookingsync.worker.web import create_app

    class Server(uvicorn.Server):
        # uvicorn re-raises the signal after its own shutdown, which would kill the process before
        # the scheduler releases its lease and the worker finishes; we handle the signals instead.
        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

    # log_config=None: uvicorn's loggers go through ours (text or JSON), not a format of their own.
    server = Server(uvicorn.Config(create_app(rt), log_level="warning", access_log=False, log_config=None))

    def _stop(*_: Any) -> None:
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    freeze_start_up()  # the app is built and every other part started: see runtime.freeze_start_up
    server.run(sockets=[sock])


def _where(rt: Runtime) -> str:
    database, broker = probes.describe(rt.engine, rt.config.broker.url)
    return f"database {database}, broker {broker}"


@app.command()
def run(
    config: ConfigOption = None,
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox",
            help="run the built-in demo: simulated providers, a demo driver and a local subscriber",
        ),
    ] = False,
) -> None:
    """Everything in one process: scheduler, relay, worker threads and the HTTP server.

    Without any config (no --config, no $BOOKINGSYNC_CONFIG), or with --sandbox, it runs the
    built-in demo: simulated providers, a driver that books, moves and cancels meetings, and a
    local subscriber that verifies and prints every event it receives.
    """
    cfg = _load(config)
    demo_mode = sandbox or (cfg.source == "<defaults>" and not cfg.connections)
    _check(cfg, "run", sandbox=demo_mode)
    sock = _listen(cfg.server.host, cfg.server.port, "HTTP", "server.port")
    demo = None
    if demo_mode:
        from bookingsync.worker.demo import attach_sandbox  # the simulators load only for the demo

        cfg, demo = attach_sandbox(cfg, out, sock.getsockname()[1])
    rt = boot(cfg, "run")

    from bookingsync.worker.broker import start_workers
    from bookingsync.worker.scheduler import Scheduler

    actors = _with_actors(rt)
    worker = start_workers(actors.broker, cfg.worker.threads, cfg.worker.poll_threads)
    scheduler = Scheduler(rt)
    scheduler.start()
    host, port = sock.getsockname()[:2]
    out.print(f"bookingsync listening on http://{host}:{port} ({_where(rt)})", markup=False)
    if demo is not None:
        demo.start()
    try:
        _serve(rt, sock)
    finally:
        out.print("shutting down: scheduler, worker threads" + (", sandbox" if demo else ""))
        scheduler.stop()
        worker.stop()
        if demo is not None:
            demo.stop()
        rt.close()


@app.command()
def web(config: ConfigOption = None) -> None:
    """The HTTP server alone: webhooks, /healthz, /readyz, /metrics."""
    cfg = _load(config)
    _check(cfg, "web")
    sock = _listen(cfg.server.host, cfg.server.port, "HTTP", "server.port")
    rt = boot(cfg, "web")
    _with_actors(rt)
    host, port = sock.getsockname()[:2]
    out.print(f"web listening on http://{host}:{port} ({_where(rt)})", markup=False)
    _serve(rt, sock)
    rt.close()


HealthPort = Annotated[
    int | None,
    typer.Option(
        "--health-port",
        help="port of /healthz, /readyz and /metrics (default from the config; 0: any free port)",
    ),
]


@app.command()
def worker(
    config: ConfigOption = None,
    threads: Annotated[int | None, typer.Option(help="worker threads (default worker.threads)")] = None,
    health_port: HealthPort = None,
) -> None:
    """A dramatiq worker: publishes events, sends deliveries, ingests webhooks, polls."""
    from bookingsync.worker.broker import start_workers

    cfg = _load(config)
    _check(cfg, "worker")
    port = cfg.worker.health_port if health_port is None else health_port
    sock = _listen(
        cfg.server.host, port, "the worker's health endpoint", "worker.health_port or --health-port"
    )
    # Served from the start: while the database or broker does not answer, /readyz says which.
    engine = make_engine(cfg.database.url)
    probe = probes.ProbeServer(sock, engine, cfg.broker.url, SystemClock()).start()
    rt = boot(cfg, "worker", engine=engine)
    actors = _with_actors(rt)
    running = start_workers(actors.broker, threads or cfg.worker.threads, cfg.worker.poll_threads)
    out.print(f"worker {rt.holder} consuming ({_where(rt)}); health and metrics on {probe.url}", markup=False)
    _wait_for_signal()
    running.stop()
    probe.stop()
    rt.close()


@app.command()
def scheduler(config: ConfigOption = None, health_port: HealthPort = None) -> None:
    """Poll ticks, the outbox relay and retention; run several, one leads at a time."""
    from bookingsync.worker.scheduler import Scheduler

    cfg = _load(config)
    _check(cfg, "scheduler")
    port = cfg.scheduler.health_port if health_port is None else health_port
    sock = _listen(
        cfg.server.host, port, "the scheduler's health endpoint", "scheduler.health_port or --health-port"
    )
    engine = make_engine(cfg.database.url)
    started: list[Scheduler] = []
    probe = probes.ProbeServer(
        sock,
        engine,
        cfg.broker.url,
        SystemClock(),
        extra=lambda: {"leading": bool(started) and started[0].leading.is_set()},
    ).start()
    rt = boot(cfg, "scheduler", engine=engine)
    _with_actors(rt)
    sched = Scheduler(rt)
    started.append(sched)
    sched.start()
    out.print(
        f"scheduler {rt.holder} started ({_where(rt)}); health and metrics on {probe.url}", markup=False
    )
    _wait_for_signal()
    sched.stop()
    probe.stop()
    rt.close()


@app.command()
def sandbox(
    leezy_port: int = 8101,
    leandata_port: int = 8102,
    rocketlead_port: int = 8103,
    meetergo_port: int = 8104,
    hubspot_port: int = 8105,
    host: str = "127.0.0.1",
    demo: Annotated[
        bool, typer.Option("--demo", help="book, reschedule and cancel meetings over time")
    ] = False,
) -> None:
    """Run the five provider simulators in the foreground and print their URLs and credentials."""
    from bookingsync.sandbox.run import serve_forever

    ports = {
        "leezy": leezy_port,
        "leandata": leandata_port,
        "rocketlead": rocketlead_port,
        "meetergo": meetergo_port,
        "hubspot": hubspot_port,
    }
    for name, port in ports.items():
        if port:  # 0 is any free port: nothing to check
            _listen(host, port, f"the {name} simulator", f"--{name}-port").close()
    try:
        serve_forever(
            host=host,
            leezy_port=leezy_port,
            leandata_port=leandata_port,
            rocketlead_port=rocketlead_port,
            meetergo_port=meetergo_port,
            hubspot_port=hubspot_port,
            demo=demo,
        )
    except OSError as exc:  # a port taken between the check and the start
        _fail(f"cannot start the sandbox: {exc.strerror or exc}")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply the migrations up to the newest (creates the database file for SQLite)."""
    rt = boot(_load(config), "cli", migrate=True)
    out.print(
        f"database {rt.engine.url.render_as_string(hide_password=True)} is at the newest schema", markup=False
    )


@db_app.command("check")
def db_check(
    config: ConfigOption = None,
    wait: Annotated[float, typer.Option(help="keep checking this many seconds before failing")] = 0.0,
) -> None:
    """Exit 0 when the database answers and is at the newest schema, else 1 (changes nothing).

    With --wait, keeps checking until then: an init container can wait for the migration job.
    """
    cfg = _load(config)
    engine = make_engine(cfg.database.url)
    shown = engine.url.render_as_string(hide_password=True)
    deadline = time.monotonic() + wait
    while True:
        problem = _schema_problem(cfg, engine)
        if problem is None:
            out.print(f"database {shown} is at the newest schema", markup=False)
            return
        if time.monotonic() >= deadline:
            _fail(problem)
        err.print(f"{problem}; checking again in 2s", markup=False)
        time.sleep(2)


def _schema_problem(cfg: Config, engine: Any) -> str | None:
    """Why the configured database cannot be read as is (missing, silent, unmigrated), or None."""
    shown = engine.url.render_as_string(hide_password=True)
    url = make_url(cfg.database.url)
    if url.drivername.startswith("sqlite") and not Path(url.database or "").exists():
        return (
            f"no database at {Path(url.database or '').resolve()} (database.url of {cfg.source}): nothing has "
            "run with this configuration yet; start `bookingsync run` or `bookingsync db upgrade` first, or pass "
            "the --config the service uses"
        )
    problem = probes.database_problem(engine)
    if problem is not None:
        return f"the database at {shown} does not answer ({problem})"
    current, head = schema_revisions(engine)
    if current is None:
        return f"the database at {shown} has no bookingsync schema yet; run `bookingsync db upgrade` first"
    if current != head:
        return (
            f"the database at {shown} is at schema revision {current}; this bookingsync needs {head}: run "
            "`bookingsync db upgrade` (with the newer bookingsync if the database is ahead)"
        )
    return None


def _open(config: Path | None) -> Runtime:
    """A runtime on the existing, migrated database: never creates or migrates one."""
    cfg = _load(config)
    logs.configure(cfg.logging.level, cfg.logging.format)
    engine = make_engine(cfg.database.url)
    problem = _schema_problem(cfg, engine)
    if problem is not None:
        engine.dispose()
        _fail(problem)
    err.print(f"database {engine.url.render_as_string(hide_password=True)}", style="dim", markup=False)
    return Runtime(config=cfg, engine=engine, role="cli")


def _json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str, ensure_ascii=False) + "\n")


@config_app.command("check")
def config_check(
    config: ConfigOption = None,
    role: Annotated[
        str | None,
        typer.Option(
            help="check for one role: run, web, worker or scheduler (default: every role the broker allows)"
        ),
    ] = None,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="check as `run --sandbox`")] = False,
) -> None:
    """Validate the configuration as the processes do for each role, then print a summary.

    The summary: the roles it is good for, the database and broker URLs (passwords hidden), each
    connection and subscription, and retention. An error names the file and key; exit 2.
    """
    cfg = _load(config)
    if role is not None and role not in ("run", "web", "worker", "scheduler"):
        _fail(f"--role {role!r} is not a role; use run, web, worker or scheduler", 2)
    roles = (
        [role]
        if role
        else (["run"] if cfg.broker.url == "memory://" else ["run", "web", "worker", "scheduler"])
    )
    demo = sandbox or (cfg.source == "<defaults>" and not cfg.connections)
    for each in roles:
        _check(cfg, each, sandbox=demo and each == "run")
    out.print(
        f"{cfg.source}: ok for {', '.join(roles)} — {len(cfg.connections)} connection(s), "
        f"{len(cfg.subscriptions)} subscription(s)" + (" (the sandbox demo)" if demo else ""),
        markup=False,
    )
    out.print(f"  database {make_url(cfg.database.url).render_as_string(hide_password=True)}", markup=False)
    out.print(f"  broker   {redact_url(cfg.broker.url)}", markup=False)
    for conn in cfg.connections:
        out.print(
            f"  connection {conn.id}: {conn.provider} at {conn.base_url}"
            + ("" if conn.enabled else " (disabled)"),
            markup=False,
        )
    for sub in cfg.subscriptions:
        out.print(
            f"  subscription {sub.id}: {sub.url} ({', '.join(e.value for e in sub.events)})", markup=False
        )
    r = cfg.retention
    out.print(
        f"  retention {'on' if r.enabled else 'OFF'}: receipt bodies {r.receipt_bodies_days:g}d, receipts "
        f"{r.receipts_days:g}d, events {r.events_days:g}d, cancelled timers {r.cancelled_days:g}d, "
        f"ended meetings {r.meetings_days:g}d, quarantine "
        f"{r.quarantine_days:g}d",
        markup=False,
    )


@app.command()
def prune(
    config: ConfigOption = None,
    vacuum: Annotated[
        bool,
        typer.Option(
            "--vacuum",
            help="SQLite made before auto_vacuum: rewrite the file once so freed space goes back to the disk",
        ),
    ] = False,
) -> None:
    """Remove what retention allows now (the scheduler also does it every retention.interval_seconds)."""
    from bookingsync.worker import retention

    rt = _open(config)
    if not rt.config.retention.enabled:
        err.print(
            "retention.enabled = false turns the scheduled job off; pruning now because you asked",
            markup=False,
        )
    result = retention.prune(rt.engine, rt.config, rt.clock.now())
    for policy in retention.POLICIES:
        days = getattr(rt.config.retention, policy.window)
        out.print(
            f"{policy.name:<15} {result.removed[policy.name]:>8}  {policy.removes}, older than {days:g} days",
            markup=False,
        )
    if rt.engine.dialect.name == "sqlite":
        if vacuum:
            _, note = retention.sqlite_vacuum(rt.engine, convert=True)
            result.vacuum_note = note
        out.print(f"sqlite: {result.freed_pages} free pages given back to the file system", markup=False)
        if result.vacuum_note:
            out.print(result.vacuum_note, markup=False)
    rt.close()


@app.command()
def status(config: ConfigOption = None, as_json: JsonFlag = False) -> None:
    """Meetings, the outbox, deliveries, connections (provider, cursor), leases at a glance."""
    from bookingsync.worker import reports

    rt = _open(config)
    with transaction(rt.engine) as session:
        report = reports.status(session, rt.config, rt.clock.now())
    if as_json:
        _json(report)
        return
    for table in reports.report_tables(report):
        out.print(table)


Limit = Annotated[int, typer.Option(help="at most this many rows, newest first")]


@meetings_app.command("list")
def meetings_list(config: ConfigOption = None, limit: Limit = 50, as_json: JsonFlag = False) -> None:
    """The newest canonical meetings with their provider links."""
    from bookingsync.worker import reports

    rt = _open(config)
    with transaction(rt.engine) as session:
        rows = reports.meetings(session, limit)
    _show("meetings", rows, reports.MEETING_COLUMNS, as_json)


def _show(title: str, rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    from bookingsync.worker import reports

    if as_json:
        _json(rows)
    else:
        out.print(reports.table(title, rows, columns))


@events_app.command("list")
def events_list(
    config: ConfigOption = None,
    limit: Limit = 50,
    meeting: Annotated[
        str | None, typer.Option(help="only this meeting (its id, or a unique start of it)")
    ] = None,
    status_filter: Annotated[EventStatus | None, typer.Option("--status", help="only this status")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Events, newest first: pending timers, published, cancelled and dropped ones."""
    from bookingsync.worker import reports

    rt = _open(config)
    with transaction(rt.engine) as session:
        try:
            meeting_id = reports.resolve_meeting(session, meeting) if meeting else None
        except reports.AmbiguousPrefix as exc:
            _fail(str(exc))
        rows = reports.events(session, limit, meeting_id, status_filter.value if status_filter else None)
    _show("events", rows, reports.EVENT_COLUMNS, as_json)


@deliveries_app.command("list")
def deliveries_list(
    config: ConfigOption = None,
    limit: Limit = 50,
    dead: Annotated[bool, typer.Option("--dead", help="only dead letters")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Deliveries to subscribers; --dead for the dead letters."""
    from bookingsync.worker import reports

    rt = _open(config)
    with transaction(rt.engine) as session:
        rows = reports.deliveries(session, limit, dead)
    _show("dead deliveries" if dead else "deliveries", rows, reports.DELIVERY_COLUMNS, as_json)


@deliveries_app.command("replay")
def deliveries_replay(
    config: ConfigOption = None,
    delivery_id: Annotated[int | None, typer.Argument(help="one delivery")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="every dead letter")] = False,
) -> None:
    """Queue dead deliveries again (same webhook-id, so consumers can dedupe)."""
    from bookingsync.models.tables import DeliveryRow
    from bookingsync.worker.delivery import replay

    if delivery_id is None and not all_dead:
        _fail("name a delivery id or pass --all-dead", 2)
    rt = _open(config)
    with transaction(rt.engine) as session:
        count = replay(session, rt.clock.now(), delivery_id=delivery_id, all_dead=all_dead)
        row = session.get(DeliveryRow, delivery_id) if delivery_id is not None and not count else None
    if delivery_id is not None and not count:
        if row is None:
            _fail(
                f"delivery {delivery_id} does not exist (`bookingsync deliveries list --dead` shows dead letters)"
            )
        _fail(f"delivery {delivery_id} is {row.status}, not dead or skipped: nothing to replay")
    out.print(f"{count} deliver{'y' if count == 1 else 'ies'} queued again; a running scheduler sends them")


@subscriptions_app.command("enable")
def subscriptions_enable(subscription_id: str, config: ConfigOption = None) -> None:
    """Re-enable a subscription that its endpoint disabled with 410 Gone; what it missed is sent."""
    from bookingsync.models.errors import RequestRefused
    from bookingsync.worker.redelivery import enable

    rt = _open(config)
    try:
        with transaction(rt.engine) as session:
            done = enable(session, rt.config, subscription_id, rt.clock.now())
    except RequestRefused as exc:
        _fail(str(exc))
    if not done.was_disabled:
        out.print(f"subscription {subscription_id} was not disabled")
    else:
        out.print(
            f"subscription {subscription_id} enabled; {done.requeued + done.created} missed "
            "deliveries queued again; a running scheduler sends them"
        )


@quarantine_app.command("list")
def quarantine_list(
    config: ConfigOption = None,
    limit: Limit = 50,
    connection: Annotated[str | None, typer.Option(help="only this connection")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Records kept aside with the reason they could not be normalised."""
    from bookingsync.worker import reports

    rt = _open(config)
    with transaction(rt.engine) as session:
        rows = reports.quarantine(session, limit, connection)
    _show("quarantine", rows, reports.QUARANTINE_COLUMNS, as_json)


@quarantine_app.command("replay")
def quarantine_replay(item_id: int, config: ConfigOption = None) -> None:
    """Normalise a quarantined record again and apply it if it passes now."""
    from bookingsync.models.tables import QuarantineRow
    from bookingsync.worker.ingest import replay_quarantined

    rt = _open(config)
    message = replay_quarantined(rt, item_id)
    # The row says whether it worked; the message says how.
    with transaction(rt.engine) as session:
        row = session.get(QuarantineRow, item_id)
        replayed = row is not None and row.status == "replayed" and row.resolved_at is not None
    rt.close()
    if not replayed or "applied" not in message:
        _fail(message)
    out.print(message, markup=False)


@mirrors_app.command("show")
def mirrors_show(
    meeting: Annotated[str, typer.Argument(help="the meeting (its id, or a unique start of it)")],
    config: ConfigOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Every write made for one meeting: target, action, state, provider id, attempts, times, reason."""
    from bookingsync.worker import mirrors, reports

    rt = _open(config)
    with transaction(rt.engine) as session:
        try:
            meeting_id = reports.resolve_meeting(session, meeting)
        except reports.AmbiguousPrefix as exc:
            _fail(str(exc))
        rows = mirrors.for_meeting(session, meeting_id)
    _show(f"writes for meeting {meeting_id}", rows, mirrors.COLUMNS, as_json)


@mirrors_app.command("list")
def mirrors_list(
    config: ConfigOption = None,
    limit: Limit = 50,
    as_json: JsonFlag = False,
    unresolved: Annotated[
        bool,
        typer.Option(
            "--unresolved", help="only writes a person must look at: unknown outcomes, halts, lost answers"
        ),
    ] = False,
) -> None:
    """The newest writes to route targets; --unresolved for the ones held or halted."""
    from bookingsync.worker import mirrors

    rt = _open(config)
    with transaction(rt.engine) as session:
        rows = mirrors.listing(session, limit, unresolved)
    _show("unresolved writes" if unresolved else "writes", rows, mirrors.COLUMNS, as_json)


@mirrors_app.command("resume")
def mirrors_resume(meeting_id: str, target: str, config: ConfigOption = None) -> None:
    """Lift the breaker's halt of one mirror and queue its dead route deliveries again."""
    from bookingsync.worker import mirrors

    rt = _open(config)
    try:
        with transaction(rt.engine) as session:
            message = mirrors.resume(session, meeting_id, target, rt.clock.now())
    except RequestRefused as exc:
        _fail(str(exc))
    finally:
        rt.close()
    out.print(message, markup=False)


@mirrors_app.command("resolve")
def mirrors_resolve(
    reference: str,
    config: ConfigOption = None,
    booking_id: Annotated[
        str | None, typer.Option(help="the booking it made, as found at the provider")
    ] = None,
    none: Annotated[bool, typer.Option("--none", help="it made no booking")] = False,
) -> None:
    """Say what became of a write whose outcome is unknown (after checking the provider by hand)."""
    from bookingsync.worker import mirrors

    if (booking_id is None) == (not none):
        _fail("give --booking-id ID (it made that booking) or --none (it made none)", code=2)
    rt = _open(config)
    try:
        with transaction(rt.engine) as session:
            row = session.exec(select(IntentRow).where(IntentRow.reference == reference)).first()
            conn = rt.config.connection(row.connection) if row is not None else None
            message = mirrors.resolve(
                session,
                reference,
                rt.clock.now(),
                booking_id=booking_id,
                provider=conn.provider if conn else "",
            )
    except RequestRefused as exc:
        _fail(str(exc))
    finally:
        rt.close()
    out.print(message, markup=False)


# Issue 16: `meetings show | link | unlink`, `routes sync` (worker/cli_identity.py).
from bookingsync.worker.cli_identity import register as _register_identity  # noqa: E402

_register_identity(meetings_app, app)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        err.print(str(exc), style="red", markup=False)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
