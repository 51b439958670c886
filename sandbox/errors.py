"""Errors the sandbox's Python API raises.

    SandboxError
     ├── UnknownMeetingError   a state operation named a meeting the sandbox does not hold
     └── InvalidFaultError     a fault description cannot be acted on

The HTTP surfaces never leak these: each provider app turns them into that provider's own error
envelope, and the control API (`/_sandbox/...`) into `{"error": <sentence>}` with 404 or 400.
"""

from __future__ import annotations


class SandboxError(Exception):
    """Base of every error the sandbox raises on purpose."""


class UnknownMeetingError(SandboxError, KeyError):
    def __init__(self, meeting_id: str) -> None:
        super().__init__(meeting_id)
        self.meeting_id = meeting_id

    def __str__(self) -> str:
        return f"The sandbox holds no meeting with id {self.meeting_id!r}; book one first."


class InvalidFaultError(SandboxError, ValueError):
    pass
