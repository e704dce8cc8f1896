"""The command line's conventions: global flags anywhere, help for every option, examples, prefixes."""

from __future__ import annotations

import argparse

import pytest

from mirrord.cli import build_parser
from mirrord.cliutil.failures import UsageError
from mirrord.cliutil.options import image_reference


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize(
    ("argv", "verbose", "log_format"),
    [
        (["sync"], False, None),
        (["-v", "sync"], True, None),
        (["sync", "-v"], True, None),
        (["sync", "--verbose", "--log-format", "text"], True, "text"),
        (["--log-format", "json", "sync"], False, "json"),
        (["--log-format", "json", "run", "--log-format", "text"], False, "text"),
        (["check", "-v"], True, None),
        (["copy", "a/b", "oci:x", "-v", "--log-format", "json"], True, "json"),
    ],
)
def test_global_flags_work_before_and_after_the_subcommand(
    argv: list[str], verbose: bool, log_format: str | None
) -> None:
    args = build_parser().parse_args(argv)
    assert args.verbose is verbose
    assert args.log_format == log_format


def test_every_option_of_every_command_has_a_help_line() -> None:
    parser = build_parser()
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, command in {"": parser, **_commands(parser)}.items()
        for action in command._actions
        if not action.help or action.help == argparse.SUPPRESS
    ]
    assert missing == []


def test_every_help_ends_with_examples_kept_as_written() -> None:
    parser = build_parser()
    assert "examples:\n  mirrord check" in parser.format_help()
    for name, command in _commands(parser).items():
        text = command.format_help()
        assert "example" in text.split("options:")[-1], name
        assert f"\n  mirrord {name}" in text, name


def test_the_c_option_says_what_it_is_and_its_default() -> None:
    for name in ("check", "sync", "run"):
        text = " ".join(_commands(build_parser())[name].format_help().split())
        assert "-c CONFIG, --config CONFIG the plan file (default: $MIRRORD_CONFIG" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("docker://quay.io/x/y:1", "quay.io/x/y:1"),
        ("docker://127.0.0.1:5000/a@sha256:" + "0" * 64, "127.0.0.1:5000/a@sha256:" + "0" * 64),
        ("quay.io/x/y:1", "quay.io/x/y:1"),
        ("oci:/srv/x:1", "oci:/srv/x:1"),
    ],
)
def test_docker_transport_prefix_is_dropped(text: str, expected: str) -> None:
    assert image_reference(text) == expected


@pytest.mark.parametrize("text", ["dir:/tmp/x", "docker-archive:/tmp/x.tar", "containers-storage:alpine"])
def test_other_skopeo_transports_are_explained(text: str) -> None:
    with pytest.raises(UsageError, match="skopeo transport mirrord does not read or write"):
        image_reference(text)
