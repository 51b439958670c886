"""The folder `sandbox/` is bookingsync.sandbox: simulators of every provider's HTTP API, for local runs, demos and tests.

Written from the providers' documents alone: imports no bookingsync.adapters.

One package per provider (`leezy`, `leandata`, `rocketlead`, `meetergo`, `hubspot`), each split by
concern: `state` (what the provider holds, in memory), `api` (its HTTP surface, `create_app`),
`control` (the sandbox's own `/_sandbox` routes), `webhooks` where it sends them, and `errors`
(its error envelope and authorization) where the routes share them. What every simulator shares
lives beside them: `clock` (now, naive and ISO 8601 times), `refusal` (answering early in the
provider's envelope: `Refused`, bearer tokens, before-answer faults, JSON bodies), `faults` and
`answer_faults` (fault injection), `background` (webhook posting and delivery attempts),
`control` (the fault and request-log routes), `request_log`, `ring` and `errors`. `server` runs
them over HTTP, `demo` drives them, `run` keeps them in the foreground for the CLI.
"""

# Importing this folder as a top-level `sandbox` (the repository root on sys.path) would load every
# module a second time under another name: tables defined twice, two clocks, two registries.
if __name__ != "bookingsync.sandbox":
    raise ImportError(f"{__name__!r} is the folder sandbox/ of bookingsync: import it as bookingsync.sandbox")
