"""Run a bookingsync command under tracemalloc, dumping a snapshot every --every seconds.

    python bench/traced.py --out DIR [--every 60] [--frames 12] -- run --config bookingsync.toml
    python bench/traced.py --out DIR --types -- run --config bookingsync.toml

`--types` is the cheap variant for a loaded machine: no tracemalloc, only a count of the live
objects of each type (`gc.get_objects()`) per interval, written as JSON; `--compare` then prints
the types whose count grew most. A leak shows as a type that grows with the work done.

Used by `bench/soak.py --tracemalloc` to find what a long-running process keeps: the snapshots
(`DIR/0001.snap`, …) are compared with `python bench/traced.py --compare DIR` (the last one
against the first one taken after `--skip` snapshots of warm-up), which prints the allocation
sites that grew most. tracemalloc slows the process and adds its own memory: RSS and CPU figures
of a traced run are not comparable with an untraced one.
"""

from __future__ import annotations

import argparse
import sys
import threading
import tracemalloc
from pathlib import Path

# What the roles import lazily; loaded before tracing starts (see main).
PRELOAD = (
    "uvicorn",
    "fastapi",
    "dramatiq",
    "apscheduler.schedulers.background",
    "bookingsync.worker.web",
    "bookingsync.worker.actors",
    "bookingsync.worker.scheduler",
    "bookingsync.worker.api",
    "bookingsync.adapters.leezy",
    "bookingsync.worker.delivery",
    "bookingsync.worker.ingest",
)


def dump_every(out: Path, seconds: float, stop: threading.Event) -> None:
    n = 0
    while not stop.wait(seconds):
        n += 1
        # Filter out tracemalloc's own bookkeeping before writing, so the file stays small.
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
            ]
        )
        snapshot.dump(str(out / f"{n:04d}.snap"))


def count_types_every(out: Path, seconds: float, stop: threading.Event) -> None:
    import gc
    import json
    from collections import Counter

    n = 0
    while not stop.wait(seconds):
        n += 1
        gc.collect()
        counts = Counter(type(o).__module__ + "." + type(o).__qualname__ for o in gc.get_objects())
        (out / f"{n:04d}.types.json").write_text(json.dumps(counts))


def compare_types(snaps: list[Path], skip: int, top: int) -> None:
    import json

    first, last = json.loads(snaps[skip].read_text()), json.loads(snaps[-1].read_text())
    print(
        f"{snaps[skip].name} → {snaps[-1].name}: {sum(first.values())} → {sum(last.values())} objects tracked by gc"
    )
    grown = sorted(((last.get(k, 0) - first.get(k, 0), k) for k in last), reverse=True)[:top]
    for diff, name in grown:
        if diff > 0:
            print(f"  +{diff:8d}  {name} (now {last[name]})")


def compare(directory: Path, skip: int, top: int) -> None:
    types = sorted(directory.glob("*.types.json"))
    if len(types) >= skip + 2:
        compare_types(types, skip, top)
        return
    snaps = sorted(directory.glob("*.snap"))
    if len(snaps) < skip + 2:
        sys.exit(f"{directory}: {len(snaps)} snapshots, need at least {skip + 2} (--skip {skip})")
    first, last = tracemalloc.Snapshot.load(str(snaps[skip])), tracemalloc.Snapshot.load(str(snaps[-1]))
    print(
        f"{snaps[skip].name} → {snaps[-1].name}: traced {sum(s.size for s in first.statistics('filename')) / 1e6:.1f}"
        f" → {sum(s.size for s in last.statistics('filename')) / 1e6:.1f} MB"
    )
    for stat in last.compare_to(first, "traceback")[:top]:
        if stat.size_diff <= 0:
            break
        print(
            f"\n+{stat.size_diff / 1024:9.1f} KiB  +{stat.count_diff:7d} blocks  (now {stat.size / 1024:.1f} KiB)"
        )
        for line in stat.traceback.format(limit=8, most_recent_first=True):
            print("   " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--every", type=float, default=60.0)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--types", action="store_true", help="count live objects by type instead of tracing")
    parser.add_argument("--compare", type=Path, help="print the growth between snapshots in this directory")
    parser.add_argument("--skip", type=int, default=1, help="warm-up snapshots left out of --compare")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, args.skip, args.top)
        return
    if args.out is None or not args.command:
        parser.error("give --out DIR and a bookingsync command after --")
    args.out.mkdir(parents=True, exist_ok=True)
    # Imported before tracing starts: imports under tracemalloc take minutes, and what they
    # allocate is the start-up footprint, not the growth this looks for.
    import importlib

    from bookingsync.worker.cli import main as cli

    for module in PRELOAD:
        importlib.import_module(module)

    stop = threading.Event()
    if args.types:
        threading.Thread(
            target=count_types_every, args=(args.out, args.every, stop), daemon=True, name="gc-types"
        ).start()
    else:
        tracemalloc.start(args.frames)
        threading.Thread(
            target=dump_every, args=(args.out, args.every, stop), daemon=True, name="tracemalloc"
        ).start()

    command = args.command[1:] if args.command[0] == "--" else args.command
    sys.argv = ["bookingsync", *command]
    try:
        cli()
    finally:
        stop.set()


if __name__ == "__main__":
    main()
