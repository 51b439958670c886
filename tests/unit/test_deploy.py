"""`deploy/` matches the code: every example config passes `config check` (the processes' own
validation), the Kubernetes configmap is the example file, grace periods outlast the actors' time
limit, every role is probed on the port it serves, nothing starts before the migration."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bookingsync.worker.actors import ACTOR_OPTIONS
from tests.unit.test_cli_ops import cli

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
EXAMPLE = DEPLOY / "bookingsync.example.toml"
# What the example files expect from the environment (deploy/env.example lists the same names).
SECRETS = {
    "LEEZY_TOKEN": "lz_live_1a2b3c4d",
    "LEEZY_WEBHOOK_SECRET": "lz_whk_9f8e7d",
    "LEANDATA_API_KEY": "ld_5d6c7b8a",
    "CRM_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "ROCKETLEAD_TOKEN": "rocketlead_live_5e6f",
}
ACTOR_TIME_LIMIT_SECONDS = ACTOR_OPTIONS["time_limit"] / 1000


def example_configs() -> list[Path]:
    found = [
        p
        for p in ROOT.rglob("*.toml")
        if ".venv" not in p.parts and p.name != "pyproject.toml" and ".git" not in p.parts
    ]
    assert EXAMPLE in found
    return sorted(found)


def configmap_toml() -> str:
    document = yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text())
    return document["data"]["bookingsync.toml"]


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("path", example_configs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_config_passes_config_check_for_every_role(
    path: Path, secrets: None, tmp_path: Path
) -> None:
    result = cli(tmp_path, "config", "check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "ok for run, web, worker, scheduler" in result.stdout


def test_the_configmap_is_the_example_file_and_passes_too(secrets: None, tmp_path: Path) -> None:
    text = configmap_toml()
    assert text.strip() == EXAMPLE.read_text().strip(), (
        "regenerate deploy/kubernetes/configmap.yaml from the example"
    )
    copy = tmp_path / "configmap.toml"
    copy.write_text(text)
    assert cli(tmp_path, "config", "check", "--config", str(copy)).returncode == 0


def test_the_commented_route_example_is_valid_when_uncommented(secrets: None, tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    block = text[text.index('# [[connections]]\n# id = "rocketlead-main"') :]
    uncommented = re.sub(r"^# ?", "", block, flags=re.MULTILINE)
    path = tmp_path / "with-routes.toml"
    path.write_text(text + "\n" + uncommented)
    result = cli(tmp_path, "config", "check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "3 connection(s)" in result.stdout


def test_nothing_built_is_called_not_built() -> None:
    for path in [*DEPLOY.rglob("*"), ROOT / "README.md"]:
        if path.is_file():
            assert "not built yet" not in path.read_text(errors="replace").lower(), path


def manifests() -> dict[str, dict[str, Any]]:
    out = {}
    for path in (DEPLOY / "kubernetes").glob("*-deployment.yaml"):
        document = yaml.safe_load(path.read_text())
        out[document["metadata"]["labels"]["app.kubernetes.io/component"]] = document
    return out


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


@pytest.mark.parametrize(
    ("role", "port_variable"),
    [
        ("web", "BOOKINGSYNC_SERVER__PORT"),
        ("worker", "BOOKINGSYNC_WORKER__HEALTH_PORT"),
        ("scheduler", "BOOKINGSYNC_SCHEDULER__HEALTH_PORT"),
    ],
)
def test_every_deployment_is_probed_on_the_port_it_serves_after_the_migration(
    role: str, port_variable: str
) -> None:
    spec = manifests()[role]["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["args"] == [role]
    env = _env(container)
    port = int(env[port_variable])
    assert env.get("BOOKINGSYNC_SERVER__HOST") == "0.0.0.0"
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        target = container[probe]["httpGet"]
        assert named[target["port"]] == port, (role, probe)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    [init] = spec["initContainers"]
    assert init["args"][:3] == ["db", "check", "--wait"]
    annotations = manifests()[role]["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == port


def test_the_worker_grace_period_outlasts_the_actors_time_limit() -> None:
    worker = manifests()["worker"]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > ACTOR_TIME_LIMIT_SECONDS
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    grace = compose["services"]["worker"]["stop_grace_period"]
    assert int(grace.removesuffix("s")) > ACTOR_TIME_LIMIT_SECONDS
    unit = (DEPLOY / "systemd" / "bookingsync-worker@.service").read_text()
    timeout = re.search(r"^TimeoutStopSec=(\d+)s$", unit, re.MULTILINE)
    assert timeout is not None and int(timeout.group(1)) > ACTOR_TIME_LIMIT_SECONDS


def test_compose_health_checks_each_role_on_its_own_port_after_the_migration() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for role, variable in (
        ("worker", "BOOKINGSYNC_WORKER__HEALTH_PORT"),
        ("scheduler", "BOOKINGSYNC_SCHEDULER__HEALTH_PORT"),
        ("web", "BOOKINGSYNC_SERVER__PORT"),
    ):
        service = services[role]
        port = service["environment"][variable]
        assert f"127.0.0.1:{port}/" in " ".join(service["healthcheck"]["test"]), role
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["healthcheck"] == {"disable": True}
