"""The ``issueflow`` console command (installed with the package).

``issueflow backfill --missing | --failed | --since DATE | --all [--rate N] [--dry-run]``
enriches issues that exist already; see ``pipelines.backfill``. It reads the same
environment as the API and the workers (``DATABASE_URL``, ``CELERY_BROKER_URL``, ...).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from app.config import get_settings
from app.db import make_engine
from pipelines.backfill import (
    BackfillError,
    Selection,
    backfill,
    default_checkpoint,
    parse_since,
)

EXIT_INTERRUPTED = 130  # as a shell reports a command stopped by Ctrl-C


def _positive_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (rate > 0 and rate != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text}")
    return rate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="issueflow", description="issueflow chores")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fill = commands.add_parser(
        "backfill",
        help="enrich existing issues",
        description=(
            "Start an enrichment run for existing issues, in id order, at a controlled rate. "
            "Issues whose run is still going are left alone. Ctrl-C stops after the batch in "
            "flight; the same command run again resumes where it stopped."
        ),
    )
    which = fill.add_mutually_exclusive_group()
    which.add_argument("--missing", action="store_true", help="issues never enriched")
    which.add_argument("--failed", action="store_true", help="issues whose last run failed")
    which.add_argument("--all", action="store_true", help="every issue")
    fill.add_argument(
        "--since",
        metavar="DATE",
        help="issues created at or after DATE (2026-11-01 or an ISO time, UTC if no zone); "
        "alone it selects all of them, with --missing/--failed it narrows those",
    )
    fill.add_argument(
        "--rate",
        type=_positive_rate,
        default=20.0,
        metavar="N",
        help="issues sent per second (default 20): each is 3 provider-bound stages",
    )
    fill.add_argument("--dry-run", action="store_true", help="count what would be sent; send none")
    fill.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE",
        help="where progress is saved for a resume (default .issueflow-backfill-<db>.json "
        "in the current directory)",
    )
    fill.add_argument(
        "--restart", action="store_true", help="ignore a saved checkpoint and start from the top"
    )
    fill.add_argument(
        "--no-progress", action="store_true", help="no progress bar (a summary still ends it)"
    )
    recover = commands.add_parser(
        "recover",
        help="resume the runs whose message the Redis broker lost",
        description=(
            "Find unfinished runs that made no progress for STALLED_RUN_AFTER seconds (or "
            "--stalled-after) and whose messages are in no queue and held by no worker (Redis "
            "broker only), and resume each from its first unfinished stage with the same task "
            "ids; a run resumed MAX_RESUMES times ends FAILURE instead. Safe to run from cron "
            "and while the API sweeps: each run is resumed once."
        ),
    )
    recover.add_argument(
        "--stalled-after",
        "--grace",
        dest="stalled_after",
        type=_positive_rate,
        default=None,
        metavar="SECONDS",
        help="how long a run must have made no progress (default: STALLED_RUN_AFTER)",
    )
    recover.add_argument("--dry-run", action="store_true", help="list them; send nothing")
    return parser


def recover_command(args: argparse.Namespace) -> int:
    import redis

    from pipelines.recovery import find_stalled_runs, resume, stalled_run_after

    settings = get_settings()
    if not settings.broker_is_redis:
        raise BackfillError("recover needs a Redis broker (RabbitMQ does not lose messages so)")
    stalled_after = args.stalled_after or stalled_run_after(settings)
    engine = make_engine(settings.database_url)
    client = redis.Redis.from_url(settings.celery_broker_url, socket_timeout=30)
    try:
        stalled = find_stalled_runs(engine, client, stalled_after=stalled_after)
        for run in stalled:
            print(
                f"stalled: run {run.run_id} of issue {run.issue_id} at {run.start.value} "
                f"(resumed {run.resumes} times before)"
            )
        resumed, failed = (
            (0, 0)
            if args.dry_run
            else resume(
                engine, stalled, stalled_after=stalled_after, max_resumes=settings.max_resumes
            )
        )
    finally:
        client.close()
        engine.dispose()
    if args.dry_run:
        print(f"recover: {len(stalled)} stalled runs; would resume them")
    else:
        print(f"recover: {len(stalled)} stalled runs; resumed {resumed}, failed {failed}")
    return 0


def _selection(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Selection:
    since = parse_since(args.since) if args.since else None
    kind = "missing" if args.missing else "failed" if args.failed else "all" if args.all else ""
    if not kind:
        if since is None:
            parser.error("backfill: say which issues: --missing, --failed, --since DATE or --all")
        kind = "all"
    return Selection(kind, since)


def backfill_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    selection = _selection(args, parser)
    settings = get_settings()
    engine = make_engine(settings.database_url)
    checkpoint = args.checkpoint or default_checkpoint(settings.database_url)
    bar: tqdm[None] | None = None

    def progress(total: int, done: int) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            bar = tqdm(total=total, unit="issue", desc="backfill", dynamic_ncols=True)
        bar.update(done)

    print(
        f"backfill: {selection.describe()}; {args.rate:g}/s"
        + (" (dry run: nothing is sent)" if args.dry_run else ""),
        file=sys.stderr,
    )
    try:
        summary = backfill(
            engine,
            selection,
            rate=args.rate,
            dry_run=args.dry_run,
            checkpoint=checkpoint,
            restart=args.restart,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
        engine.dispose()
    print(f"backfill: {summary.line()}")
    if args.dry_run and summary.sent:
        print(
            f"backfill: at {args.rate:g}/s sending them would take {summary.sent / args.rate:.0f}s"
        )
    if summary.error:
        return 1
    return EXIT_INTERRUPTED if summary.interrupted else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "backfill":
            return backfill_command(args, parser)
        if args.command == "recover":
            return recover_command(args)
    except BackfillError as exc:
        print(f"issueflow {args.command}: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command!r}")
    return 2  # not reached: parser.error exits


if __name__ == "__main__":
    sys.exit(main())
