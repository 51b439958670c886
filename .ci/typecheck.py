#!/usr/bin/env python3
"""Run mypy over models, adapters and worker (see [tool.mypy] in pyproject.toml) against a baseline.

The baseline (.ci/mypy-baseline.txt) lists the errors the code had when the gate was introduced,
one per line as `path: [code] message`, without line numbers so that editing a file does not
move its entries. The gate fails on any error that is not in the baseline, and on any baseline
entry that no longer occurs: fixing an error means deleting its line, so the list only shrinks.
`--update` rewrites the baseline from the current errors (for deleting fixed entries; adding new
ones defeats the gate and shows in review).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / ".ci" / "mypy-baseline.txt"
ERROR = re.compile(r"^(?P<path>[^:]+):\d+(?::\d+)?: error: (?P<message>.*?)\s+\[(?P<code>[a-z-]+)\]$")


def current() -> tuple[Counter[str], str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-error-summary",
            "--no-pretty",
            "--show-error-codes",
            "--hide-error-context",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    found: Counter[str] = Counter()
    for line in done.stdout.splitlines():
        match = ERROR.match(line)
        if match:
            found[f"{match['path']}: [{match['code']}] {match['message']}"] += 1
        elif ": error:" in line:
            found[line] += 1  # an error without a code: never in the baseline, always reported
    if done.returncode not in (0, 1):  # 2: mypy itself failed (bad config, crash)
        sys.exit(f"typecheck: mypy failed to run:\n{done.stdout}{done.stderr}")
    return found, done.stdout


def main() -> int:
    found, output = current()
    if "--update" in sys.argv[1:]:
        BASELINE.write_text("".join(f"{entry}\n" for entry in sorted(found.elements())))
        print(f"typecheck: baseline rewritten with {sum(found.values())} entries")
        return 0
    baseline = Counter(line for line in BASELINE.read_text().splitlines() if line.strip())
    new = found - baseline
    gone = baseline - found
    for entry in sorted(new.elements()):
        print(f"NEW   {entry}")
    for entry in sorted(gone.elements()):
        print(f"FIXED {entry}   (delete this line from .ci/mypy-baseline.txt)")
    if new:
        print("\nmypy's own output:\n" + output)
    print(
        f"typecheck: {sum(found.values())} errors, baseline {sum(baseline.values())}, "
        f"{sum(new.values())} new, {sum(gone.values())} fixed but still listed"
    )
    return 1 if new or gone else 0


if __name__ == "__main__":
    sys.exit(main())
