"""TLS between the services and nats-server (multi-host deployments; ``--tls-ca/--tls-cert/--tls-key``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from service_builders import TEST_ROLES, TOY_SPLIT, start_services
from tls_files import make_tls_files
from toy_components import run_local

from llmtwin.errors import BusError
from llmtwin.runtime.embedded_nats import EmbeddedNats
from llmtwin.runtime.nats_auth import ServerTls, new_identities, users_config
from proto.control import RunSpec
from proto.subjects import inbox_prefix
from services.bus import Bus
from services.nats_bus import NatsOptions, connect

pytestmark = [pytest.mark.nats, pytest.mark.timeout(60)]


async def test_services_over_tls_give_the_same_results_and_plaintext_is_refused(tmp_path: Path) -> None:
    """A server that requires TLS: services that verify it with the CA run a toy run to
    LocalRunner's results; a client without the CA fails verification (no silent plaintext)."""
    tls = make_tls_files(tmp_path / "tls")
    ids = {i.name: i for i in new_identities(TEST_ROLES)}
    config = users_config(ids.values(), ServerTls(str(tls.cert), str(tls.key)))
    with EmbeddedNats(tmp_path / "nats", config=config) as server:

        async def secure(name: str) -> Bus:
            opts = NatsOptions(
                server.url,
                name,
                inbox_prefix=inbox_prefix(name),
                nkey_seed=ids[name].seed,
                tls_ca=str(tls.ca),
            )
            return await connect(opts)

        svc = await start_services(secure, TOY_SPLIT)
        try:
            spec = RunSpec("toy", "fan", ("jobs=20",))
            out = await asyncio.wait_for(svc.run(spec), 30)
        finally:
            await svc.stop()
        assert {k: bytes(v) for k, v in out.parts.items()} == run_local(spec).parts
        url = server.url.replace("nats://", "tls://")
        with pytest.raises(BusError, match="certificate verify failed"):
            await connect(NatsOptions(url, "h1", nkey_seed=ids["h1"].seed, connect_timeout_s=1.0))
