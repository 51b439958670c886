"""The folder `worker/` is bookingsync.worker: the service: config, database, broker, store, lifecycle, relay, actors, web, CLI.

Imports bookingsync.adapters and bookingsync.models; bookingsync.sandbox only in the CLI's demo
and sandbox commands.
"""

# Importing this folder as a top-level `worker` (the repository root on sys.path) would load every
# module a second time under another name: tables defined twice, two clocks, two registries.
if __name__ != "bookingsync.worker":
    raise ImportError(f"{__name__!r} is the folder worker/ of bookingsync: import it as bookingsync.worker")
