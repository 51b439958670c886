"""The soak's samples and figures: what bench/soak.py measures each minute, and how it sums it up.

`Sampler` reads each bookingsync process (RSS, CPU, descriptors, threads, with their children)
and the database (bytes on disk, rows, and on PostgreSQL per table its size, dead tuples and
autovacuum runs); `summarise` prints first / after warm-up / last, the spread, the least-squares
slope per hour and the 30-day projection of each series; `plot` draws them (matplotlib).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import psutil
from services import Proc
from sqlalchemy import Engine, text

TABLES = ("meetings", "events", "deliveries", "webhook_receipts", "links")
HOURS_IN_30_DAYS = 720


class Sampler:
    """One row per sample: per process RSS/CPU/fds/threads, the database's bytes and row counts."""

    def __init__(self, procs: list[Proc], engine: Engine, db_path: Path | None) -> None:
        self.procs = {p.name: psutil.Process(p.proc.pid) for p in procs}
        self.engine, self.db_path = engine, db_path
        self.cpu = {name: self._cpu(proc) for name, proc in self.procs.items()}
        self.began = self.last = time.monotonic()
        self.rows: list[dict[str, Any]] = []

    @staticmethod
    def _family(proc: psutil.Process) -> list[psutil.Process]:
        return [proc, *proc.children(recursive=True)]

    def _cpu(self, proc: psutil.Process) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self._family(proc))

    def db_bytes(self) -> int:
        if self.db_path is not None:
            return sum(p.stat().st_size for p in self.db_path.parent.glob(self.db_path.name + "*"))
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')"
                    )
                ).scalar()
            )

    def pg_tables(self) -> dict[str, float]:
        """PostgreSQL per table: MiB on disk (heap + indexes + TOAST), dead tuples, autovacuum runs.

        Dead tuples that stay low while the size levels off say autovacuum keeps up with the
        churn and retention's batched deletes (the freed space is reused, not appended to)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT relname, pg_total_relation_size(relid), n_dead_tup, autovacuum_count "
                    "FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = ANY(:tables)"
                ),
                {"tables": list(TABLES)},
            ).all()
        out: dict[str, float] = {}
        for name, size, dead, vacuums in rows:
            out |= {f"pg.{name}_mb": size / 2**20, f"pg.{name}_dead": dead, f"pg.{name}_autovacuums": vacuums}
        return out

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()) for t in TABLES}

    def sample(self, extra: dict[str, Any]) -> dict[str, Any]:
        """`extra["changes"]`, the driver's running count, gives CPU milliseconds per change."""
        now = time.monotonic()
        # The machine is shared: its load average sits beside every sample (CPU figures are noisy).
        row: dict[str, Any] = {"minutes": (now - self.began) / 60, "load1": os.getloadavg()[0], **extra}
        cpu_seconds = 0.0
        for name, proc in self.procs.items():
            family = self._family(proc)
            cpu = self._cpu(proc)
            row[f"{name}.rss_mb"] = sum(p.memory_info().rss for p in family) / 2**20
            row[f"{name}.cpu_pct"] = 100 * (cpu - self.cpu[name]) / max(now - self.last, 1e-9)
            row[f"{name}.fds"] = sum(p.num_fds() for p in family)
            row[f"{name}.threads"] = sum(p.num_threads() for p in family)
            cpu_seconds += cpu - self.cpu[name]
            self.cpu[name] = cpu
        self.last = now
        done = extra.get("changes", 0) - (self.rows[-1]["changes"] if self.rows else 0)
        row["cpu_ms_per_change"] = 1000 * cpu_seconds / done if done > 0 else float("nan")
        row["db_mb"] = self.db_bytes() / 2**20
        if self.db_path is None:
            row.update(self.pg_tables())
        row.update({f"rows.{t}": n for t, n in self.counts().items()})
        self.rows.append(row)
        return row


def slope_per_hour(rows: list[dict[str, Any]], key: str) -> float:
    if len(rows) < 2:
        return float("nan")
    slope, _ = statistics.linear_regression([r["minutes"] / 60 for r in rows], [float(r[key]) for r in rows])
    return slope


def summarise(mode: str, rows: list[dict[str, Any]], warmup: float) -> list[str]:
    steady = [r for r in rows if r["minutes"] >= warmup] or rows[-2:]
    keys = [
        k
        for k in rows[0]
        if k.endswith(("rss_mb", "cpu_pct", "fds", "threads", "_per_change"))
        or k in ("db_mb", "load1")
        or k.startswith(("rows.", "pg."))
    ]
    lines = [
        f"{mode}: {rows[-1]['minutes']:.1f} min, {len(steady)} samples after {warmup:g} min of warm-up",
        f"  {'series':30s}{'first':>9s}{'warm':>9s}{'last':>9s}{'min..max %':>12s}{'slope/h':>10s}"
        f"{'30 days':>11s}",
    ]
    for key in keys:
        values = [float(r[key]) for r in steady if r[key] == r[key]]  # NaN: no change in that minute
        if not values:
            continue
        slope = slope_per_hour([r for r in steady if r[key] == r[key]], key)
        spread = 100 * (max(values) - min(values)) / max(statistics.fmean(values), 1e-9)
        # A level's projection is last + slope × 720 h; for a rate (CPU) or a running count it
        # says where the trend would go, not a quantity that accumulates.
        lines.append(
            f"  {key:30s}{float(rows[0][key]):9.1f}{values[0]:9.1f}{values[-1]:9.1f}{spread:11.1f}%"
            f"{slope:10.2f}{values[-1] + slope * HOURS_IN_30_DAYS:11.1f}"
        )
    return lines


def plot(mode: str, rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["minutes"] for r in rows]
    panels = [("RSS MiB", "rss_mb"), ("CPU % of a core", "cpu_pct"), ("open fds", "fds")]
    fig, axes = plt.subplots(3, 2, figsize=(12, 11), sharex=True)
    for ax, (title, suffix) in zip(axes.flat, panels, strict=False):
        for key in [k for k in rows[0] if k.endswith("." + suffix)]:
            ax.plot(minutes, [r[key] for r in rows], marker=".", label=key.split(".")[0])
        ax.set_title(title)
        ax.legend(fontsize="small")
    ax = axes.flat[3]
    ax.plot(minutes, [r["cpu_ms_per_change"] for r in rows], marker=".", label="CPU ms per change")
    ax.set_title("CPU ms per change (all processes), machine load (right)")
    twin = ax.twinx()
    twin.plot(minutes, [r["load1"] for r in rows], linestyle=":", color="grey", label="load 1 min")
    twin.legend(fontsize="small", loc="upper right")
    ax = axes.flat[5]
    pg = [k for k in rows[0] if k.startswith("pg.") and k.endswith("_mb")]
    for key in pg:
        ax.plot(minutes, [r[key] for r in rows], marker=".", label=key[3:-3])
    if pg:
        ax.set_title("PostgreSQL MiB per table (heap + indexes + TOAST)")
        ax.legend(fontsize="small")
    else:
        ax.set_visible(False)
    ax = axes.flat[4]
    ax.plot(minutes, [r["db_mb"] for r in rows], marker=".", color="black", label="database MiB")
    ax.set_title("database size MiB (and rows, right axis)")
    twin = ax.twinx()
    for table in TABLES:
        twin.plot(minutes, [r[f"rows.{table}"] for r in rows], linestyle="--", label=table)
    twin.legend(fontsize="small", loc="upper left")
    for ax in axes[2]:
        ax.set_xlabel("minutes")
    fig.suptitle(f"bookingsync soak, {mode}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    """Sum up a soak's JSON again, with another warm-up (and redraw its plot)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("json", type=Path, help="soak-<mode>.json written by bench/soak.py")
    parser.add_argument("--warmup-minutes", type=float, required=True)
    parser.add_argument("--png", type=Path, default=None, help="redraw the plot here")
    args = parser.parse_args()
    rows = json.loads(args.json.read_text())["rows"]
    mode = args.json.stem.removeprefix("soak-")
    print("\n".join(summarise(mode, rows, args.warmup_minutes)))
    if args.png:
        plot(mode, rows, args.png)


if __name__ == "__main__":
    main()
