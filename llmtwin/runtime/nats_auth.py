"""NATS users for the twin: nkey identities, seed files, and the nats-server configuration.

Each service connects as its own user, authenticated with an nkey (Ed25519): the server knows
only the public key (``U...``); the service proves it holds the seed (``SU...``) by signing the
server's nonce. The permissions of each user come from :mod:`proto.permissions`.

The configuration is written from Python values by :func:`conf_text` (so no key can be
repeated, the pitfall of hand-written files), in nats-server's own format, where an unquoted
``$NAME`` (:class:`Var`) is taken from the server's environment: compose passes the public keys
that way. Seeds are written to files only the owner can read (:func:`write_private`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nkeys

from llmtwin.errors import ConfigurationError
from proto.permissions import Permissions, for_role
from services.credentials import public_key


class Var(str):
    """A variable of the server's environment (written unquoted: ``$NAME``)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Identity:
    """One NATS user: a service name, its role and its nkey seed."""

    name: str
    role: str
    seed: str = field(repr=False)
    """``SU...``: the secret; never logged, never on a command line."""

    @property
    def public_key(self) -> str:
        return public_key(self.seed)

    def permissions(self) -> Permissions:
        return for_role(self.role, self.name)


def new_seed() -> str:
    """A fresh user seed (``SU...``) from the operating system's random source."""
    return str(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode())


def new_identities(roles: Mapping[str, str]) -> list[Identity]:
    """A fresh identity per ``{service name: role}``."""
    return [Identity(name, role, new_seed()) for name, role in roles.items()]


def seed_files(identities: Iterable[Identity], directory: Path) -> dict[str, Path]:
    """Each identity's seed in ``directory/<name>.nk``, readable by the owner only (the
    directory too); name -> file."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    return {i.name: write_private(directory / f"{i.name}.nk", i.seed + "\n") for i in identities}


def users_config(identities: Iterable[Identity], tls: ServerTls | None = None) -> str:
    """The server configuration admitting exactly ``identities``, each with its role's permissions."""
    return server_config([(i.public_key, i.permissions()) for i in identities], tls=tls)


@dataclass(frozen=True, slots=True)
class ServerTls:
    """TLS of the server: its certificate and key; with ``ca_file``, client certificates signed
    by that CA are required (``verify``)."""

    cert_file: str
    key_file: str
    ca_file: str = ""


def user_entry(nkey: str, perms: Permissions) -> dict[str, object]:
    """One ``users`` entry: the public key (or a :class:`Var`) and the permissions."""
    block: dict[str, object] = {
        "publish": {"allow": list(perms.publish)},
        "subscribe": {"allow": list(perms.subscribe)},
    }
    if perms.allow_responses:
        block["allow_responses"] = True
    return {"nkey": nkey, "permissions": block}


def authorization(users: Iterable[tuple[str, Permissions]]) -> dict[str, object]:
    """The ``authorization`` block for ``(public key or Var, permissions)`` pairs; keys must be unique."""
    entries = list(users)
    keys = [k for k, _ in entries]
    if len(set(keys)) != len(keys):
        raise ConfigurationError("two NATS users share one public key")
    return {"users": [user_entry(k, p) for k, p in entries]}


def server_config(
    users: Iterable[tuple[str, Permissions]],
    *,
    tls: ServerTls | None = None,
    extra: Mapping[str, object] | None = None,
) -> str:
    """A nats-server configuration: the users with their permissions, TLS if given, ``extra``
    top-level settings (e.g. ``{"http": "127.0.0.1:8222"}``). Listen address and ports are
    command-line flags of whoever starts the server."""
    doc: dict[str, object] = {"authorization": authorization(users)}
    if tls is not None:
        block: dict[str, object] = {"cert_file": tls.cert_file, "key_file": tls.key_file, "timeout": 5}
        if tls.ca_file:
            block |= {"ca_file": tls.ca_file, "verify": True}
        doc["tls"] = block
    doc |= dict(extra or {})
    return conf_text(doc) + "\n"


def conf_text(value: object, indent: int = -1) -> str:
    """``value`` in nats-server's configuration format (maps, lists, strings, numbers, booleans,
    :class:`Var`); strings are JSON-quoted, so no subject can break out of its place. ``indent``
    -1 is the top level (a mapping without braces)."""
    pad = "  " * indent
    if isinstance(value, Var):
        return f"${value}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, Mapping):
        if indent < 0:  # the top level: no braces
            return "\n".join(f"{k}: {conf_text(v, 0)}" for k, v in value.items())
        body = "".join(f"{pad}  {k}: {conf_text(v, indent + 1)}\n" for k, v in value.items())
        return "{\n" + body + pad + "}"
    if isinstance(value, Sequence):
        items = "".join(f"{pad}  {conf_text(v, indent + 1)}\n" for v in value)
        return "[\n" + items + pad + "]"
    raise TypeError(f"cannot write {type(value).__name__} in a nats-server configuration")


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path``, readable and writable by the owner only (0600), whatever the umask."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return path
