"""The one setting that finds the providers' documents: skip on a laptop, fail under CI=true."""

from __future__ import annotations

import pytest

from tests import provider_docs


def test_a_missing_document_skips_with_the_setting_named(monkeypatch, tmp_path):
    monkeypatch.setenv(provider_docs.SETTING, str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="BOOKINGSYNC_PROVIDER_DOCS") as caught:
        provider_docs.provider_doc("hubspot", "crm.openapi.json")
    assert str(tmp_path / "hubspot" / "crm.openapi.json") in str(caught.value)


def test_a_missing_document_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv(provider_docs.SETTING, str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="under CI=true"):
        provider_docs.provider_docs("leandata", "*.yml")


def test_documents_are_found_through_the_setting(monkeypatch, tmp_path):
    (tmp_path / "hubspot").mkdir()
    (tmp_path / "hubspot" / "b.openapi.json").write_text("{}")
    (tmp_path / "hubspot" / "a.openapi.json").write_text("{}")
    monkeypatch.setenv(provider_docs.SETTING, str(tmp_path))
    assert [p.name for p in provider_docs.provider_docs("hubspot", "*.openapi.json")] == [
        "a.openapi.json",
        "b.openapi.json",
    ]
    monkeypatch.delenv(provider_docs.SETTING)
    assert provider_docs.docs_root() == provider_docs.REPO.parent / "shared" / "providers"
