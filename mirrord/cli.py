"""Command line: ``mirrord sync | run | copy | check | keygen | version``.

Exit status: 0 success, 1 some image failed (the rest still ran), 2 invalid plan or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from mirrord import __version__
from mirrord.cliutil.failures import UsageError, report_internal_error, report_usage_error
from mirrord.cliutil.options import (
    CONFIG_HELP,
    DESTINATION_HELP,
    SOURCE_HELP,
    add_global_options,
    finish_parser,
    image_reference,
)
from mirrord.core.events import EventBus
from mirrord.core.files import write_file_atomic
from mirrord.observe.logs import LogFormat, default_format, event_logger, setup_logging

log = logging.getLogger("mirrord")

DEFAULT_PLAN = "/etc/mirrord/mirrord.yaml"
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _default_plan() -> str:
    return os.environ.get("MIRRORD_CONFIG") or DEFAULT_PLAN


STATE_HELP = "keep blob locations here across runs ($MIRRORD_STATE_DIR, systemd's $STATE_DIRECTORY)"


def _default_state_dir() -> str | None:
    return os.environ.get("MIRRORD_STATE_DIR") or os.environ.get("STATE_DIRECTORY") or None


SHARD_HELP = (
    "only the entries of shard K of N; auto/N takes K from the hostname's -ORDINAL suffix "
    "(a StatefulSet pod NAME-0 is shard 1); default: $MIRRORD_SHARD"
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="mirrord", description="Container registry mirroring daemon")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")

    sub.add_parser("version", help="print the version")

    check = sub.add_parser("check", help="validate the plan offline and print it resolved")
    check.add_argument("-c", "--config", default=None, help=CONFIG_HELP)

    sync = sub.add_parser("sync", help="one pass over every entry, then exit")
    sync.add_argument("-c", "--config", default=None, help=CONFIG_HELP)
    sync.add_argument("--dry-run", action="store_true", help="resolve and compare; write nothing")
    sync.add_argument("--entry", action="append", default=[], metavar="NAME", help="only this entry")
    sync.add_argument("--report", metavar="FILE", help="write a JSON report of every image")
    sync.add_argument("--shard", metavar="K/N", help=SHARD_HELP)
    sync.add_argument("--no-progress", action="store_true", help="no progress bars on a terminal")
    sync.add_argument("--state-dir", default=_default_state_dir(), help=STATE_HELP)

    run = sub.add_parser("run", help="the daemon: schedule entries, serve HTTP")
    run.add_argument("-c", "--config", default=None, help=CONFIG_HELP)
    run.add_argument("--shard", metavar="K/N", help=SHARD_HELP)
    run.add_argument("--grace", type=float, default=30.0, help="seconds copies may finish at shutdown")
    run.add_argument("--listen", metavar="HOST:PORT", help="override server.listen")
    run.add_argument("--state-dir", default=_default_state_dir(), help=STATE_HELP)

    copy = sub.add_parser("copy", help="copy one image or index with everything it references")
    copy.add_argument("source", metavar="SRC", help=SOURCE_HELP)
    copy.add_argument("destination", metavar="DST", help=DESTINATION_HELP)
    copy.add_argument(
        "--platform", action="append", default=[], metavar="OS/ARCH[/VARIANT]", help="only this platform"
    )
    copy.add_argument("-c", "--config", default=None, help="plan whose registries: settings to use")
    copy.add_argument("--no-progress", action="store_true", help="no progress bars on a terminal")
    copy.add_argument(
        "--format",
        choices=["keep", "oci", "docker"],
        help="convert manifests and lists (default: oci for an oci: destination, else keep)",
    )
    copy.add_argument(
        "--compression", choices=["keep", "zstd", "gzip"], default="keep", help="recompress layers"
    )

    keygen = sub.add_parser("keygen", help="write a cosign key pair PREFIX.key (encrypted) and PREFIX.pub")
    keygen.add_argument("prefix", metavar="PREFIX", help="writes PREFIX.key and PREFIX.pub")
    keygen.add_argument("--passphrase-file", metavar="F", help="default: ask on the terminal")
    finish_parser(parser, sub.choices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mirrord`` console script."""
    args = build_parser().parse_args(argv)
    fmt: LogFormat = args.log_format or ("json" if args.command == "run" else default_format())
    setup_logging(fmt, level=logging.DEBUG if args.verbose and args.command == "run" else logging.INFO)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except UsageError as exc:
        return report_usage_error(exc)
    except Exception as exc:
        return report_internal_error(exc)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "version":
        print(f"mirrord {__version__}")
        return EXIT_OK
    if args.command == "check":
        return _check(args.config or _default_plan())
    if args.command == "sync":
        return _run_async(_sync(args))
    if args.command == "copy":
        return _run_async(_copy(args))
    if args.command == "run":
        return _run_daemon(args)
    if args.command == "keygen":
        from mirrord.trust.cli import keygen

        return keygen(args.prefix, args.passphrase_file)
    raise AssertionError(args.command)


def _run_async(coro: Any) -> int:
    # The fallback runs outside the except block: an error in the command must not be chained to
    # (and reported as) the missing optional uvloop.
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        run: Any = asyncio.run
    else:
        run = uvloop.run
    result: int = run(coro)
    return result


def _load(path: str) -> Any:
    from mirrord.plan import PlanError, check_secrets, load_plan

    try:
        plan = load_plan(path)
        check_secrets(plan)
    except PlanError as exc:
        print(f"mirrord: {exc}", file=sys.stderr)
        return None
    except OSError as exc:
        print(f"mirrord: {path}: {exc.strerror or exc}", file=sys.stderr)
        return None
    return plan


def _trust(plan: Any) -> Any:
    """The plan's policy and signing keys (mirrord.sync.trust.Trust), or None after printing why not."""
    from mirrord.plan import PlanError
    from mirrord.sync.trust import open_trust

    try:
        return open_trust(plan)
    except PlanError as exc:
        print(f"mirrord: {exc}", file=sys.stderr)
        return None


def _check(path: str) -> int:
    from mirrord.plan import plan_to_dict

    plan = _load(path)
    trust = _trust(plan) if plan is not None else None
    if trust is None:
        return EXIT_INVALID
    from mirrord.plan import plan_warnings

    for warning in plan_warnings(plan):
        print(f"mirrord: warning: {warning}", file=sys.stderr)
    for note in trust.notes:
        print(f"mirrord: note: {plan.policy}: {note}", file=sys.stderr)
    import yaml

    print(yaml.safe_dump(plan_to_dict(plan), sort_keys=False), end="")
    return EXIT_OK


def _shard(text: str | None) -> tuple[int, int] | None:
    # The flag wins; otherwise $MIRRORD_SHARD, which a StatefulSet sets to auto/N for every pod.
    from mirrord.sync.shard import resolve_shard

    return resolve_shard(text or os.environ.get("MIRRORD_SHARD"))


def _bus(verbose: bool, stack: ExitStack, progress: bool) -> EventBus:
    bus = EventBus()
    if progress and sys.stderr.isatty():
        from mirrord.observe.progress import ProgressBars

        bars = stack.enter_context(ProgressBars())
        bus.subscribe(bars.on_event)
    else:
        # One line per image; per-blob and per-manifest lines (a thousand for a 60-image pass, ~10% of
        # a cold run's CPU) only with -v, as in the daemon.
        bus.subscribe(event_logger(verbose=verbose))
    return bus


async def _sync(args: argparse.Namespace) -> int:
    from mirrord.cliutil.checks import check_plan_layouts, check_report_path, check_state_dir, select_entries
    from mirrord.registry.hub import Registries
    from mirrord.sync import SyncRunner, open_location_cache, shard_entries
    from mirrord.sync.interrupt import EXIT_INTERRUPTED, StopOnSignal, interrupted_line

    check_report_path(args.report)
    check_state_dir(args.state_dir)
    plan = _load(args.config or _default_plan())
    trust = _trust(plan) if plan is not None else None
    if trust is None:
        return EXIT_INVALID
    try:
        shard = _shard(args.shard)
        entries = shard_entries(select_entries(plan, args.entry), shard)
    except ValueError as exc:
        print(f"mirrord: {exc}", file=sys.stderr)
        return EXIT_INVALID
    check_plan_layouts(entries)
    with ExitStack() as stack:
        bus = _bus(args.verbose, stack, not args.no_progress and not args.dry_run)
        async with Registries(plan.registries, events=bus) as registries:
            locations = open_location_cache(args.state_dir)
            runner = SyncRunner(plan, registries, events=bus, locations=locations, trust=trust, shard=shard)
            with StopOnSignal(runner) as stop:
                reports = await runner.run_pass(entries, dry_run=args.dry_run)
    if args.report:
        _write_report(args.report, reports, interrupted=stop.signal is not None)
    _print_summary(reports, dry_run=args.dry_run)
    if stop.signal is not None:
        print(f"mirrord: {interrupted_line(stop.signal, reports, args.report)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    failed = any(not r.ok for r in reports)
    return EXIT_FAILED if failed else EXIT_OK


def _write_report(path: str, reports: Sequence[Any], *, interrupted: bool = False) -> None:
    body = {
        "version": __version__,
        "interrupted": interrupted,
        "entries": [
            {"entry": r.entry, "ok": r.ok, "error": r.error, "started": r.started, "finished": r.finished}
            | ({} if r.repositories is None else {"repositories": r.repositories})
            for r in reports
        ],
    }
    # One image per line: json's indent= runs its pure-Python encoder, which cost more CPU than the
    # HEADs of a nothing-changed pass at 2,000 tags; per-image dumps without it use the C encoder.
    images = ",\n    ".join(json.dumps(i.to_json()) for r in reports for i in r.images)
    text = json.dumps(body, indent=2).removesuffix("\n}")
    text += ',\n  "images": [' + (f"\n    {images}\n  ]" if images else "]") + "\n}\n"
    write_file_atomic(Path(path), text.encode())


def _print_summary(reports: Sequence[Any], *, dry_run: bool) -> None:
    # Lines collected and printed at once: a print per image was most of this at 2,000 tags.
    lines = []
    for r in reports:
        if r.error:
            lines.append(f"{r.entry}: FAILED: {r.error}")
        if r.repositories is not None:
            lines.append(f"{r.entry}: {len(r.repositories)} repositories: {' '.join(r.repositories)}")
        for i in r.images:
            line = f"{r.entry}: {i.result:<10} {i.source}"
            if i.target:
                line += f" -> {i.target}" + (f" ({i.bytes} bytes)" if i.result == "would-copy" else "")
            if i.source_digest:
                line += f" {i.source_digest}"
            if i.error:
                line += f" error: {i.error}"
            lines.append(line)
    counts: dict[str, int] = {}
    for r in reports:
        for i in r.images:
            counts[i.result] = counts.get(i.result, 0) + 1
    entries_failed = sum(1 for r in reports if r.error)
    if entries_failed:  # an entry that failed before its images is not "nothing to do"
        counts[f"entr{'ies' if entries_failed > 1 else 'y'} failed"] = entries_failed
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing to do"
    lines.append(("dry run: " if dry_run else "") + summary)
    print("\n".join(lines))


async def _copy(args: argparse.Namespace) -> int:
    from mirrord.cliutil.checks import check_layout_source, check_layout_target
    from mirrord.cliutil.diagnose import explain_copy_failure
    from mirrord.copy.engine import CopyEngine, CopyRequest, Target
    from mirrord.oci import OCIError, Platform, is_digest
    from mirrord.oci.convert import Format
    from mirrord.plan.entries import default_target_format
    from mirrord.registry.hub import Registries

    args.source, args.destination = image_reference(args.source), image_reference(args.destination)
    check_layout_source(args.source)
    check_layout_target(args.destination)
    settings: Any = {}
    if args.config:
        plan = _load(args.config)
        if plan is None:
            return EXIT_INVALID
        settings = plan.registries
    with ExitStack() as stack:
        bus = _bus(args.verbose, stack, not args.no_progress)
        async with Registries(settings, events=bus) as registries:
            try:
                platforms = tuple(Platform.parse(p) for p in args.platform) or None
                source, version = registries.open(args.source)
                target, target_version = registries.open(args.destination)
            except OCIError as exc:
                print(f"mirrord: {exc}", file=sys.stderr)
                return EXIT_INVALID
            version = version or "latest"
            tag = target_version or (None if is_digest(version) else version)
            fmt: Format = args.format or default_target_format(args.destination)
            request = CopyRequest(
                source=source,
                reference=version,
                targets=(Target(repository=target, tag=tag, format=fmt, compression=args.compression),),
                platforms=platforms,
                force=True,
            )
            result = await CopyEngine(events=bus).copy(request)
            if result.outcome == "failed":
                print(f"mirrord: copy failed: {await explain_copy_failure(result, source)}", file=sys.stderr)
                return EXIT_FAILED
    for old, new in result.digest_map.items():
        print(f"rewritten {old} -> {new}")
    for name, digest in result.target_digests.items():
        print(f"{name} {digest} (format {fmt}, compression {args.compression})")
    return EXIT_OK


def _run_daemon(args: argparse.Namespace) -> int:
    from mirrord.cliutil.checks import check_state_dir, parse_listen
    from mirrord.daemon.service import Service
    from mirrord.daemon.web import ListenError

    check_state_dir(args.state_dir)
    listen = parse_listen(args.listen) if args.listen else None
    try:
        shard = _shard(args.shard)
    except ValueError as exc:
        print(f"mirrord: {exc}", file=sys.stderr)
        return EXIT_INVALID
    service = Service(
        args.config or _default_plan(),
        shard=shard,
        grace=args.grace,
        listen=listen,
        state_dir=args.state_dir,
        verbose=args.verbose,
    )
    try:
        return _run_async(service.run())
    except ListenError as exc:
        raise UsageError(str(exc)) from None
