"""``streamx cp SRC DST`` and ``streamx cat s3://…``.

Each side is a local path, ``-`` (stdin/stdout) or ``s3://bucket/key``:
local → s3 uploads, s3 → local downloads, s3 → s3 copies server-side (or,
with ``--source-endpoint-url``, streams between two endpoints through this
process). Everything is checked before the first request.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import click

from .._config import TransferConfig
from .._engine import Engine
from .._errors import ConfigError
from .._limits import MiB
from ._common import (
    SIZE,
    Options,
    Output,
    common_options,
    human_size,
    make_engine,
    options,
    rate,
    run_async,
)
from ._exit import EXIT_OK, EXIT_TRANSFER, Failure, UsageError, cli_wording
from ._location import LocalLocation, Location, S3Location, StdioLocation, key_basename, parse
from ._progress import Display
from ._recursive import Job, check, plan, run_jobs
from ._transfer import TransferContext, supports, transfer

DEFAULT_MEMORY_LIMIT = 256 * MiB
CHECKSUMS = ["CRC32C", "CRC32", "CRC64NVME", "SHA256", "when_required", "off"]


def transfer_config(
    part_size: int | None, concurrency: int | None, checksum: str | None
) -> TransferConfig:
    args: dict[str, Any] = {}
    if part_size is not None:
        args["part_size"] = part_size
    if concurrency is not None:
        args["queue_size"] = concurrency
    if checksum is not None:
        lowered = checksum.lower()
        if lowered in ("off", "when_required"):
            args["checksum"] = lowered
        else:
            args["checksum_algorithm"] = checksum.upper()
    return TransferConfig(**args)


def parse_metadata(items: Sequence[str]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--metadata takes KEY=VALUE, not {item!r}")
        metadata[name] = value
    return metadata


def resolve_single(src: Location, dst: Location) -> tuple[Location, Location]:
    """Fill in the destination's name when it is a directory or a prefix (like ``cp``)."""
    if not isinstance(src, S3Location) and not isinstance(dst, S3Location):
        raise UsageError("one side of cp must be an s3:// URL")
    if isinstance(src, S3Location) and src.is_dir:
        raise UsageError(
            f"{src} is a prefix, not an object; add --recursive to copy what is under it"
        )
    if isinstance(src, LocalLocation):
        if os.path.isdir(src.path):
            raise UsageError(f"{src.path} is a directory; add --recursive")
        if not os.path.exists(src.path):
            raise FileNotFoundError(2, "No such file or directory", src.path)
    if isinstance(dst, S3Location) and dst.is_dir:
        if isinstance(src, StdioLocation):
            raise UsageError(f"give the object's key for stdin: s3://{dst.bucket}/{dst.key}NAME")
        name = (
            key_basename(src.key)
            if isinstance(src, S3Location)
            else os.path.basename(os.path.normpath(str(src)))
        )
        dst = dst.child(name)
    if isinstance(dst, LocalLocation) and isinstance(src, S3Location):
        if os.path.isdir(dst.path) or dst.path.endswith(os.sep):
            dst = LocalLocation(os.path.join(dst.path, key_basename(src.key)))
    return src, dst


class CopyCommand:
    """One invocation of ``cp`` (or ``cat``), validated up front."""

    def __init__(self, opts: Options, src: str, dst: str, **kw: Any) -> None:
        self.opts = opts
        self.src = parse(src)
        self.dst = parse(dst)
        self.recursive: bool = kw.get("recursive", False)
        self.jobs: int = kw.get("jobs") or 4
        self.source_endpoint_url: str | None = kw.get("source_endpoint_url")
        self.source_profile: str | None = kw.get("source_profile")
        self.source_region: str | None = kw.get("source_region")
        try:
            self.config = transfer_config(
                kw.get("part_size"), kw.get("concurrency"), kw.get("checksum")
            )
        except ConfigError as exc:
            raise UsageError(cli_wording(str(exc))) from exc
        memory_limit = kw.get("memory_limit")
        if memory_limit is not None and memory_limit < self.config.part_size:
            raise UsageError(
                f"--memory-limit {human_size(memory_limit)} is smaller than one part "
                f"({human_size(self.config.part_size)})"
            )
        self.memory_limit = memory_limit or max(DEFAULT_MEMORY_LIMIT, self.config.memory_bound)
        self.put_args: dict[str, Any] = {}
        if kw.get("content_type"):
            self.put_args["ContentType"] = kw["content_type"]
        if kw.get("metadata"):
            self.put_args["Metadata"] = parse_metadata(kw["metadata"])
        self.checkpoint: str | None = kw.get("checkpoint")
        self.restart: bool = kw.get("restart", False)
        self.expected_size: int | None = kw.get("expected_size")
        self.byte_range: tuple[int, int | None] | None = kw.get("byte_range")
        self.range_text: str = kw.get("range_text", "")
        self.size: int | None = None
        self._check()

    def _check(self) -> None:
        cross = self.source_endpoint_url or self.source_profile or self.source_region
        if cross and not (isinstance(self.src, S3Location) and isinstance(self.dst, S3Location)):
            raise UsageError("--source-endpoint-url/--source-profile need s3:// on both sides")
        if self.recursive:
            if self.checkpoint:
                raise UsageError(
                    "--checkpoint resumes one upload; it cannot be used with --recursive"
                )
            if self.expected_size is not None:
                raise UsageError(
                    "--expected-size is for one stream; it cannot be used with --recursive"
                )
            check(self.src, self.dst)
            return
        self.src, self.dst = resolve_single(self.src, self.dst)
        if isinstance(self.src, LocalLocation):
            self.size = os.path.getsize(self.src.path)
        uploading = isinstance(self.dst, S3Location) and not isinstance(self.src, S3Location)
        if self.checkpoint is not None:
            if not uploading:
                raise UsageError("--checkpoint applies to uploads only")
            if not supports(Engine.upload, "checkpoint"):
                raise UsageError(
                    "--checkpoint needs upload resume, which this streamx build does not have yet"
                )
            self.opts.interrupt_note = (
                f"the upload was kept: run the same command again to resume ({self.checkpoint})"
            )
        elif self.restart:
            raise UsageError("--restart applies to --checkpoint")
        if self.expected_size is not None and not isinstance(self.src, StdioLocation):
            raise UsageError("--expected-size sizes the parts of a stdin stream ('cp - s3://…')")
        if self.put_args and not isinstance(self.dst, S3Location):
            raise UsageError("--content-type and --metadata apply to uploads and copies")

    async def _engines(self, stack: AsyncExitStack) -> tuple[Engine, Engine]:
        """The destination's engine, and the source's (the same one unless it differs)."""
        engine = await stack.enter_async_context(
            make_engine(self.opts, config=self.config, memory_budget=self.memory_limit)
        )
        if not (self.source_endpoint_url or self.source_profile or self.source_region):
            return engine, engine
        source = await stack.enter_async_context(
            Engine(
                endpoint_url=self.source_endpoint_url or self.opts.endpoint_url,
                region_name=self.source_region or self.opts.region,
                profile=self.source_profile or self.opts.profile,
                config=self.config,
                memory_budget=engine.memory_budget,
            )
        )
        return engine, source

    @property
    def data_on_stdout(self) -> bool:
        return isinstance(self.dst, StdioLocation)

    async def run(self) -> int:
        display = Display(enabled=not self.opts.quiet and sys.stderr.isatty(), multi=self.recursive)
        out = Output(self.opts, data_on_stdout=self.data_on_stdout, display=display)
        try:
            async with AsyncExitStack() as stack:
                engine, source = await self._engines(stack)
                tc = TransferContext(
                    engine=engine,
                    source_engine=source,
                    config=self.config,
                    put_args=self.put_args,
                    checkpoint=self.checkpoint,
                    restart=self.restart,
                    expected_size=self.expected_size,
                    byte_range=self.byte_range,
                    range_text=self.range_text,
                )
                if self.recursive:
                    return await self._run_recursive(tc, display, out)
                return await self._run_one(tc, display, out)
        finally:
            display.close()

    async def _run_one(self, tc: TransferContext, display: Display, out: Output) -> int:
        label = self.dst if isinstance(self.src, StdioLocation) else self.src
        bar = display.file(str(label), self.size or self.expected_size)
        try:
            record = await transfer(tc, self.src, self.dst, bar)
        finally:
            bar.close()
        out.result(_human(record), record)
        return EXIT_OK

    async def _run_recursive(self, tc: TransferContext, display: Display, out: Output) -> int:
        jobs, skipped = await plan(self.src, self.dst, tc.source_engine)
        for item in skipped:
            out.error(f"{item.src}: {item.reason}")
            out.record({"source": str(item.src), "error": item.reason, "exit_code": 5})
        display.start_total(len(jobs), sum(j.size or 0 for j in jobs))

        async def one(job: Job) -> dict[str, Any]:
            bar = display.file(str(job.src), job.size)
            try:
                return await transfer(tc, job.src, job.dst, bar)
            finally:
                bar.close()

        def done(job: Job, record: dict[str, Any]) -> None:
            out.result(_human(record), record)

        def failed(job: Job, exc: BaseException, failure: Failure) -> None:
            out.error(f"{job.src}: {failure.message}")
            record = {"source": str(job.src), "destination": str(job.dst)}
            out.record({**record, "error": failure.message, "exit_code": failure.code})

        outcome = await run_jobs(jobs, self.jobs, one, done, failed)
        failures = outcome.failures
        total = len(jobs) + len(skipped)
        if outcome.stopped_by is not None:
            stop = outcome.stopped_by
            out.error(f"{stop.message}; stopped after {outcome.done} of {total} files")
            out.record({"error": stop.message, "exit_code": stop.code, "copied": outcome.done})
            return stop.code
        if failures:
            also = f" ({len(skipped)} skipped)" if skipped else ""
            out.error(f"{len(failures)} of {total} files failed{also}")
            return failures[0].code
        if skipped:  # reported above, one line each; the copy is not complete
            out.error(f"copied {len(jobs)} of {total} files; {len(skipped)} skipped")
            return EXIT_TRANSFER
        out.info(f"copied {len(jobs)} files")
        return EXIT_OK


def _human(record: dict[str, Any]) -> str:
    size = record.get("size")
    detail = ""
    if isinstance(size, int):
        speed = f", {rate(size, record.get('seconds') or 0)}" if size >= 1024 * 1024 else ""
        detail = f" ({human_size(size)}{speed})"
    return f"{record['action']}: {record['source']} -> {record['destination']}{detail}"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("src")
@click.argument("dst")
@click.option("-r", "--recursive", is_flag=True, help="Copy a directory or a prefix.")
@click.option("--part-size", type=SIZE, help="Bytes per part, e.g. 16MiB (default 8MiB).")
@click.option(
    "--concurrency", type=click.IntRange(1, 1000), help="Parts in flight per file (default 4)."
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="Files at once with --recursive.",
)
@click.option(
    "--memory-limit",
    type=SIZE,
    help="Bytes all transfers may hold together (default 256MiB or one file's bound).",
)
@click.option(
    "--checksum",
    type=click.Choice(CHECKSUMS, case_sensitive=False),
    help="Checksum algorithm sent with each part (default CRC32C), or off / when_required.",
)
@click.option("--content-type", metavar="TYPE", help="Content-Type of the object(s).")
@click.option("--metadata", metavar="KEY=VALUE", multiple=True, help="User metadata (repeatable).")
@click.option(
    "--checkpoint",
    metavar="PATH",
    type=click.Path(dir_okay=False),
    help="Record progress in PATH and resume from it after a crash.",
)
@click.option(
    "--restart", is_flag=True, help="With --checkpoint: abort the recorded upload, start over."
)
@click.option(
    "--expected-size", type=SIZE, help="Expected length of a stdin stream (sizes its parts)."
)
@click.option("--source-endpoint-url", metavar="URL", help="Endpoint of SRC, when it differs.")
@click.option("--source-profile", metavar="NAME", help="AWS profile for SRC, when it differs.")
@click.option("--source-region", metavar="NAME", help="Region of SRC, when it differs.")
@common_options
def cp(src: str, dst: str, **kw: Any) -> int:
    """Copy SRC to DST: local path, '-' (stdin/stdout) or s3://bucket/key.

    \b
      streamx cp big.iso s3://bucket/isos/
      pg_dump db | streamx cp - s3://bucket/db.sql --expected-size 20GiB
      streamx cp s3://bucket/db.sql - | psql db
      streamx cp -r ./photos s3://bucket/photos
      streamx cp s3://a/k s3://b/k --source-endpoint-url https://other.example
    """
    command = CopyCommand(options(), src, dst, **kw)
    return run_async(command.run)


def parse_range(text: str) -> tuple[int, int | None]:
    """``0-99`` (inclusive, like HTTP and curl), ``100-`` (from byte 100), ``-500`` (the last 500)."""
    start_text, sep, end_text = text.strip().partition("-")
    try:
        if not sep:
            raise ValueError
        if not start_text:
            n = int(end_text)
            if n <= 0:
                raise ValueError
            return -n, None
        start = int(start_text)
        if not end_text:
            return start, None
        end = int(end_text)
    except ValueError:
        raise UsageError(
            f"--range {text!r}: write START-END (inclusive), START- or -LAST_N, e.g. 0-1023"
        ) from None
    if start < 0 or end < start:
        raise UsageError(f"--range {text!r} is inverted; START must not exceed END")
    return start, end + 1


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("url")
@click.option(
    "--range",
    "byte_range",
    metavar="START-END",
    help="Bytes START..END (inclusive); START- or -N (the last N). Clamped to the object, "
    "as HTTP ranges and tail -c are.",
)
@common_options
def cat(url: str, byte_range: str | None) -> int:
    """Write an object to stdout (like 'cp s3://… -'), optionally a byte range."""
    location = parse(url)
    if not isinstance(location, S3Location):
        raise UsageError(f"cat reads s3://BUCKET/KEY, not {url!r}")
    spec = parse_range(byte_range) if byte_range is not None else None
    command = CopyCommand(options(), url, "-", byte_range=spec, range_text=byte_range or "")
    return run_async(command.run)
