"""The private, authenticated NATS bus of one ``llmtwin up``: users, keys, server, connections.

Every service process gets its own user (an nkey generated for this ``up`` only, with its
role's permissions from :mod:`proto.permissions`), and ``up`` itself a controller user. Seeds
and the server configuration are written to a private temporary directory (0700, files 0600)
that ``up`` removes at the end; each child learns the file of its own seed from
``TWIN_NKEY_SEED_FILE``, never from its command line. The server listens on loopback only,
without its monitoring port; with a certificate it speaks TLS (``--tls-cert/--tls-key``, the
clients verifying it with ``--tls-ca``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llmtwin.runtime.embedded_nats import EmbeddedNats
from llmtwin.runtime.nats_auth import Identity, ServerTls, new_identities, seed_files, users_config
from proto.subjects import inbox_prefix
from services.nats_bus import NatsOptions

CONTROLLER = "up"
"""``llmtwin up``'s own user (role controller)."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """``--tls-ca/--tls-cert/--tls-key``: the server's certificate and key, and the CA clients
    verify it with."""

    ca: str
    cert: str
    key: str


class PrivateBus:
    """Users, seed files and the embedded server of one ``up``; :meth:`child_env` and
    :meth:`options` say how each process connects."""

    def __init__(
        self,
        directory: Path,
        roles: Mapping[str, str],
        *,
        tls: TlsFiles | None = None,
        cpus: frozenset[int] | None = None,
    ) -> None:
        self.identities: dict[str, Identity] = {
            i.name: i for i in new_identities({**roles, CONTROLLER: "controller"})
        }
        self.seeds = seed_files(self.identities.values(), directory / "keys")
        self.tls = tls
        server_tls = ServerTls(tls.cert, tls.key) if tls is not None else None
        self.server = EmbeddedNats(
            directory / "nats", cpus=cpus, config=users_config(self.identities.values(), server_tls)
        )

    def start(self) -> str:
        return self.server.start()

    def child_env(self, name: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of service process ``name``: its seed file and TLS files."""
        env = {k: v for k, v in (os.environ if base is None else base).items() if k != "TWIN_NKEY_SEED"}
        env["TWIN_NKEY_SEED_FILE"] = str(self.seeds[name])
        if self.tls is not None:
            env["TWIN_TLS_CA"] = self.tls.ca
        return env

    def options(self, **fields: object) -> NatsOptions:
        """How ``up`` itself connects (as the controller)."""
        return NatsOptions(
            self.server.url,
            CONTROLLER,
            inbox_prefix=inbox_prefix(CONTROLLER),
            nkey_seed=self.identities[CONTROLLER].seed,
            tls_ca=self.tls.ca if self.tls is not None else "",
            **fields,  # type: ignore[arg-type]
        )
