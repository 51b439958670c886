"""The folder `models/` is bookingsync.models: the canonical meeting, its tables and their migrations.

Imports nothing else of bookingsync.
"""

# Importing this folder as a top-level `models` (the repository root on sys.path) would load every
# module a second time under another name: tables defined twice, two clocks, two registries.
if __name__ != "bookingsync.models":
    raise ImportError(f"{__name__!r} is the folder models/ of bookingsync: import it as bookingsync.models")
