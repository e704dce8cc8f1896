"""``mirrord keygen PREFIX [--passphrase-file F]``: a cosign-format key pair for ``sign:``."""

from __future__ import annotations

import getpass
import sys

from mirrord.trust.errors import TrustError
from mirrord.trust.keys import read_passphrase, write_key_pair

EXIT_OK, EXIT_INVALID = 0, 2


def keygen(prefix: str, passphrase_file: str | None) -> int:
    """Write ``PREFIX.key`` (encrypted with the passphrase from ``passphrase_file``, else asked
    twice on the terminal) and ``PREFIX.pub``; print their paths. Exit status 0, or 2 when the
    passphrase cannot be had or a file exists (nothing is overwritten)."""
    try:
        passphrase = _passphrase(passphrase_file)
        key, pub = write_key_pair(prefix, passphrase)
    except (TrustError, FileExistsError) as exc:
        print(f"mirrord: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except OSError as exc:
        print(f"mirrord: {prefix}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"private key: {key}\npublic key: {pub}")
    return EXIT_OK


def _passphrase(passphrase_file: str | None) -> bytes:
    if passphrase_file is not None:
        return read_passphrase(file=passphrase_file)
    if not sys.stdin.isatty():
        raise TrustError("no terminal to ask for a passphrase on: give --passphrase-file")
    first = getpass.getpass("passphrase for the private key: ")
    if getpass.getpass("again: ") != first:
        raise TrustError("the passphrases differ")
    return first.encode()
