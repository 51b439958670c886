"""Where the providers' published documents are, for the tests that validate against them.

The documents (OpenAPI files, API pages) belong to their publishers and are kept out of this
repository. One setting finds them: the environment variable ``BOOKINGSYNC_PROVIDER_DOCS``, by
default ``../shared/providers`` beside the repository (one folder per provider: ``hubspot/``,
``leandata/`` …). A test that needs a document it cannot find skips and says which file and which
setting; under ``CI=true`` it fails instead, so a CI run never passes without having checked.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SETTING = "BOOKINGSYNC_PROVIDER_DOCS"
REPO = Path(__file__).resolve().parent.parent
DEFAULT = REPO.parent / "shared" / "providers"


def docs_root() -> Path:
    configured = os.environ.get(SETTING, "").strip()
    return Path(configured).expanduser() if configured else DEFAULT


def provider_doc(provider: str, name: str) -> Path:
    """The path of one published document; skips the test (fails it under CI=true) when missing."""
    path = docs_root() / provider / name
    if not path.is_file():
        message = (
            f"the provider document {provider}/{name} is not at {path}; set {SETTING} to the "
            f"folder that holds the providers' documents (default: {DEFAULT})"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; under CI=true the documents must be there", pytrace=False)
        pytest.skip(message)
    return path


def provider_docs(provider: str, pattern: str) -> tuple[Path, ...]:
    """Every published document of `provider` matching `pattern`; at least one, or skip/fail."""
    found = tuple(sorted((docs_root() / provider).glob(pattern)))
    if not found:
        provider_doc(provider, pattern)  # skips or fails with the reason
    return found
