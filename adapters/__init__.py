"""The folder `adapters/` is bookingsync.adapters: one module per provider, the shared HTTP policy, the adapter protocol.

Wire schemas, normalising, HTTP calls and webhook verification. Imports bookingsync.models only.
"""

# Importing this folder as a top-level `adapters` (the repository root on sys.path) would load every
# module a second time under another name: tables defined twice, two clocks, two registries.
if __name__ != "bookingsync.adapters":
    raise ImportError(
        f"{__name__!r} is the folder adapters/ of bookingsync: import it as bookingsync.adapters"
    )
