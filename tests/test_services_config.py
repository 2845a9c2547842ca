"""Service configuration: flags over TWIN_* environment over defaults, validated; component selection."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from llmtwin.cli.main import main
from llmtwin.errors import ConfigurationError
from llmtwin.runtime.nats_auth import new_seed
from services import config
from services.main import add_service_args
from services.selection import for_role, parse_ranges, parse_shard


def parse(argv: list[str], env: dict[str, str]) -> config.ServiceConfig:
    p = argparse.ArgumentParser()
    add_service_args(p)
    args = p.parse_args(argv)
    cfg: config.ServiceConfig = config.from_args(args.role, args, env)
    return cfg


def test_flags_override_environment_which_overrides_defaults() -> None:
    """--http-port beats TWIN_HTTP_PORT; TWIN_SHARD fills what no flag gives; the rest are defaults."""
    cfg = parse(["device", "--http-port", "9001"], {"TWIN_HTTP_PORT": "9100", "TWIN_SHARD": "2/3"})
    assert isinstance(cfg, config.HostConfig)
    assert (cfg.http_port, cfg.shard, cfg.heartbeat_s, cfg.service_name) == (9001, "2/3", 1.0, "device")
    cond = parse(["conductor", "--nats", "nats://10.0.0.1:4222"], {"TWIN_DEAD_AFTER_S": "3.5"})
    assert isinstance(cond, config.ConductorConfig)
    assert (cond.nats_url, cond.dead_after_s) == ("nats://10.0.0.1:4222", 3.5)


@pytest.mark.parametrize(
    ("argv", "env", "field"),
    [
        (["device", "--http-port", "70000"], {}, "http_port"),
        (["device"], {"TWIN_HTTP_PORT": "eighty"}, "http_port"),
        (["device", "--shard", "3/2"], {}, "--shard"),
        (["conductor", "--dead-after-s", "0"], {}, "dead_after_s"),
        (["host"], {}, "--components"),
        (["planner", "--name", "bad.name"], {}, "name"),
        (["balancer", "--nats", "localhost:4222"], {}, "nats_url"),
    ],
)
def test_bad_values_raise_a_configuration_error_naming_the_field(
    argv: list[str], env: dict[str, str], field: str
) -> None:
    """Each invalid setting is refused with a message that names it."""
    with pytest.raises(ConfigurationError, match=field):
        parse(argv, env)


def test_selectors_pick_components_by_role_shard_and_list() -> None:
    """Shard k/n takes instance i with i % n == k-1; --instances takes a list; roles take their
    component; --follow takes instance numbers or component-id patterns."""
    shard = for_role("device", shard="2/3")
    assert [i for i in range(7) if shard.role(f"instance-{i}") == "leader"] == [1, 4]
    assert shard.role("balancer") is None
    listed = for_role("device", instances="0-2,5", follow="7")
    assert [i for i in range(8) if listed.role(f"instance-{i}")] == [0, 1, 2, 5, 7]
    assert listed.role("instance-7") == "follower"
    assert for_role("generator").role("generator") == "leader"
    patterns = for_role("host", components="ping", follow="worker-[12]")
    assert [patterns.role(c) for c in ("ping", "worker-1", "worker-3")] == ["leader", "follower", None]
    assert parse_ranges("3, 1-2") == {1, 2, 3}
    assert parse_shard("1/1") == (1, 1)
    with pytest.raises(ConfigurationError):
        parse_ranges("4-2")


def test_llmtwin_service_takes_the_same_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """`llmtwin service --help` lists the roles and the TWIN_* variable of every flag."""
    with pytest.raises(SystemExit) as exit_info:
        main(["service", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("conductor", "device", "planner", "TWIN_NATS_URL", "TWIN_SHARD", "TWIN_DEAD_AFTER_S"):
        assert needle in text


def test_the_nkey_seed_comes_from_a_file_or_the_environment_and_is_never_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--nkey-seed-file (TWIN_NKEY_SEED_FILE) or TWIN_NKEY_SEED; not both; a bad seed is named
    without printing it; the seed is in neither the config's repr nor any flag; each service
    asks for replies on its own inbox prefix."""
    seed = new_seed()
    path = tmp_path / "device-1.nk"
    path.write_text(seed + "\n")
    from_file = parse(["device", "--name", "device-1", "--nkey-seed-file", str(path)], {})
    from_env = parse(["device", "--name", "device-1"], {"TWIN_NKEY_SEED": seed})
    assert from_file.nats_options().nkey_seed == from_env.nats_options().nkey_seed == seed
    assert seed not in repr(from_env)
    assert from_env.nats_options().inbox_prefix == "_INBOX.device-1"
    both = parse(["device", "--nkey-seed-file", str(path)], {"TWIN_NKEY_SEED": seed})
    with pytest.raises(ConfigurationError, match="not both"):
        both.nats_options()
    with pytest.raises(ConfigurationError, match=r"TWIN_NKEY_SEED: not an nkey user seed") as bad:
        parse(["device"], {"TWIN_NKEY_SEED": "SUnotaseed"}).nats_options()
    assert "SUnotaseed" not in str(bad.value)
    with pytest.raises(ConfigurationError, match="cannot read"):
        parse(["device", "--nkey-seed-file", str(path) + ".missing"], {}).nats_options()
    with pytest.raises(SystemExit):
        main(["service", "--help"])
    assert "--nkey-seed " not in capsys.readouterr().out


def test_a_controller_config_for_llmtwin_run() -> None:
    """What `llmtwin run --nats URL` connects with: a controller name, its seed, TLS."""
    seed = new_seed()
    cfg = config.from_sources(
        config.ControllerConfig, "", {"nats_url": "tls://h:4222"}, {"TWIN_NKEY_SEED": seed}
    )
    opts = cfg.nats_options()
    assert (opts.name, opts.inbox_prefix, opts.nkey_seed, opts.url) == (
        "controller",
        "_INBOX.controller",
        seed,
        "tls://h:4222",
    )
