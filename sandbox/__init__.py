"""The folder `sandbox/` is bookingsync.sandbox: simulators of every provider's HTTP API, for local runs, demos and tests.

Written from the providers' documents alone: imports no bookingsync.adapters.
"""

# Importing this folder as a top-level `sandbox` (the repository root on sys.path) would load every
# module a second time under another name: tables defined twice, two clocks, two registries.
if __name__ != "bookingsync.sandbox":
    raise ImportError(f"{__name__!r} is the folder sandbox/ of bookingsync: import it as bookingsync.sandbox")
