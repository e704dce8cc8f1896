"""Conventions of the command line: shared flags, help texts, examples and reference prefixes.

The global flags (``--log-format``, ``-v``) are accepted before and after the subcommand
(``mirrord -v sync`` and ``mirrord sync -v``); every option has a help line, and every subcommand's
``--help`` ends with examples.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from mirrord.cliutil.failures import UsageError

CONFIG_HELP = "the plan file (default: $MIRRORD_CONFIG, else /etc/mirrord/mirrord.yaml)"
LOG_FORMAT_HELP = "log lines as text or one JSON object per line (default: text on a terminal, else json)"
SOURCE_HELP = "HOST/REPO[:TAG|@DIGEST] (skopeo's docker:// prefix is accepted) or oci:DIR[:TAG]"
DESTINATION_HELP = "HOST/REPO[:TAG] or oci:DIR[:TAG] (default tag: the source's)"
VERBOSE_HELP = "log every blob and manifest, not only one line per image"

#: skopeo's transport for registries; mirrord's references are registry references already.
DOCKER_TRANSPORT = "docker://"
#: skopeo transports mirrord has no counterpart for, with what to use instead.
_FOREIGN_TRANSPORTS = {
    "dir:": "a directory of loose files",
    "docker-archive:": "a docker save tarball",
    "oci-archive:": "a tarball of an OCI layout",
    "docker-daemon:": "the local Docker daemon",
    "containers-storage:": "podman's local storage",
}

EXAMPLES: Mapping[str, str] = {
    "": """examples:
  mirrord check -c mirrord.yaml            validate a plan and print it resolved
  mirrord sync -c mirrord.yaml --dry-run   what one pass would copy
  mirrord run -c mirrord.yaml              the daemon
  mirrord copy docker.io/library/alpine:3.20 registry.example.com/mirror/alpine:3.20
  mirrord COMMAND --help                   the options of one command""",
    "check": """examples:
  mirrord check -c /etc/mirrord/mirrord.yaml
  MIRRORD_CONFIG=plan.yaml mirrord check""",
    "sync": """examples:
  mirrord sync -c mirrord.yaml
  mirrord sync -c mirrord.yaml --dry-run --entry nginx
  mirrord sync -c mirrord.yaml --report /var/log/mirrord/report.json --no-progress -v""",
    "run": """examples:
  mirrord run -c /etc/mirrord/mirrord.yaml
  mirrord run -c mirrord.yaml --listen 127.0.0.1:9402 --state-dir /var/lib/mirrord
  curl -X POST http://127.0.0.1:9402/sync?entry=nginx   (a pass now, from the same host)""",
    "copy": """examples:
  mirrord copy docker.io/library/alpine:3.20 registry.example.com/mirror/alpine:3.20
  mirrord copy docker://quay.io/prometheus/node-exporter:v1.8.2 oci:/srv/airgap/node-exporter:v1.8.2
  mirrord copy nginx:1.27 127.0.0.1:5000/nginx:1.27 --platform linux/amd64 -c mirrord.yaml""",
    "version": """example:
  mirrord version""",
    "keygen": """examples:
  mirrord keygen /etc/mirrord/cosign --passphrase-file /run/secrets/cosign-passphrase
  mirrord keygen ./mirror              (asks for the passphrase twice on the terminal)""",
}


def add_global_options(parser: argparse.ArgumentParser, *, after_command: bool = False) -> None:
    """Add ``--log-format`` and ``-v`` to ``parser``.

    On a subcommand (``after_command``) they default to SUPPRESS, so a flag given before the
    subcommand is not reset by the subcommand's parser, and one given after it wins.
    """
    default: object = argparse.SUPPRESS if after_command else None
    parser.add_argument("--log-format", choices=["text", "json"], default=default, help=LOG_FORMAT_HELP)
    verbose_default: object = argparse.SUPPRESS if after_command else False
    parser.add_argument("-v", "--verbose", action="store_true", default=verbose_default, help=VERBOSE_HELP)


def finish_parser(parser: argparse.ArgumentParser, commands: Mapping[str, argparse.ArgumentParser]) -> None:
    """Give every subcommand the global flags and each parser its examples (kept as written)."""
    parser.epilog = EXAMPLES[""]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for name, command in commands.items():
        add_global_options(command, after_command=True)
        command.epilog = EXAMPLES.get(name)
        command.formatter_class = argparse.RawDescriptionHelpFormatter


def image_reference(text: str) -> str:
    """``text`` as mirrord reads it: skopeo's ``docker://`` prefix dropped; UsageError for a skopeo
    transport mirrord cannot read or write (``dir:``, ``docker-archive:``, ...)."""
    if text.startswith(DOCKER_TRANSPORT):
        return text[len(DOCKER_TRANSPORT) :]
    for prefix, what in _FOREIGN_TRANSPORTS.items():
        if text.startswith(prefix):
            raise UsageError(
                f"{text!r}: {prefix} ({what}) is a skopeo transport mirrord does not read or write; "
                "give a registry reference (HOST/REPO:TAG, docker:// optional) or oci:PATH[:TAG]"
            )
    return text
