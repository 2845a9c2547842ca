"""A process's NATS credentials on the client side: its nkey seed, from a file or the environment.

Seeds never travel on a command line (other users can read ``ps``): a service takes
``--nkey-seed-file PATH`` (``TWIN_NKEY_SEED_FILE``) or the seed itself in ``TWIN_NKEY_SEED``.
The server side (generating users and the server's configuration) is
:mod:`llmtwin.runtime.nats_auth`.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import nkeys

from llmtwin.errors import ConfigurationError

log = logging.getLogger(__name__)


def public_key(seed: str) -> str:
    """The public key (``U...``) of a user seed (``SU...``); ConfigurationError if it is not one
    (the message never contains the seed)."""
    try:
        key = nkeys.from_seed(seed.strip().encode()).public_key
    except (nkeys.NkeysError, ValueError, TypeError) as exc:  # binascii errors are ValueErrors
        raise ConfigurationError(f"not an nkey user seed ({type(exc).__name__})") from None
    if not key.startswith(b"U"):
        raise ConfigurationError("not an nkey user seed (its public key does not start with U)")
    return str(key.decode())


def read_seed(seed: str = "", seed_file: str = "") -> str:
    """The seed given directly (``TWIN_NKEY_SEED``) or in ``seed_file``; empty when neither is
    set (connect without credentials). ConfigurationError for both, an unreadable file or a
    value that is not a user seed."""
    if seed and seed_file:
        raise ConfigurationError("give the nkey seed in a file or in TWIN_NKEY_SEED, not both")
    if seed_file:
        path = Path(seed_file)
        try:
            seed = path.read_text(encoding="ascii")
            mode = path.stat().st_mode
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"nkey_seed_file: cannot read {seed_file}: {exc}") from None
        if mode & (stat.S_IRGRP | stat.S_IROTH) and os.name == "posix":
            log.warning("nkey seed file %s is readable by other users (chmod 600 it)", seed_file)
    seed = seed.strip()
    if seed:
        try:
            public_key(seed)
        except ConfigurationError as exc:
            where = f"nkey_seed_file {seed_file}" if seed_file else "TWIN_NKEY_SEED"
            raise ConfigurationError(f"{where}: {exc.args[0]}") from None
    return seed
