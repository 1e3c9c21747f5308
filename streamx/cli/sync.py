"""``streamx sync SRC DST``: make DST hold what SRC holds (see :mod:`streamx.bulk`).

Each side is a local directory or ``s3://bucket/prefix``. Output: a line
per copy, update, delete or failure (``--json``: one JSON object each, then a
summary object as the last line of stdout), one progress bar for objects and
bytes on a terminal. Exit codes as for ``cp``: 0 when every object is in
sync, 5 when some failed (the others were still synced), 2/3/4 when the job
could not start (nothing moved).
"""

from __future__ import annotations

import gc
import sys
from contextlib import AsyncExitStack
from typing import Any

import click
from tqdm import tqdm

from .._engine import Engine
from .._errors import ConfigError
from .._limits import parse_size
from ..bulk import SyncEvent, SyncProgress, sync
from ..bulk.plan import COMPARE_MODES
from ._common import SIZE, Options, Output, common_options, human_size, make_engine, run_async
from ._exit import EXIT_OK, EXIT_TRANSFER, UsageError
from ._location import LocalLocation, S3Location, StdioLocation, parse
from .cp import DEFAULT_MEMORY_LIMIT, transfer_config


class _SyncCommand(click.Command):
    """Keeps the order of ``--exclude``/``--include`` across both options (the last match wins)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _, _, order = self.make_parser(ctx).parse_args(args=list(args))
        ctx.meta["filter_order"] = [p.name for p in order if p.name in ("exclude", "include")]
        return super().parse_args(ctx, args)


def filter_rules(
    order: list[str], exclude: tuple[str, ...], include: tuple[str, ...]
) -> list[tuple[str, str]]:
    values = {"exclude": list(exclude), "include": list(include)}
    return [(name, values[name].pop(0)) for name in order if values[name]]


class Bar:
    """One bar: bytes (with rate and ETA once the source is counted) and objects as a postfix."""

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        self._bytes = 0
        if enabled:
            self._bar = tqdm(
                total=None,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.2,
                desc="sync",
            )

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def update(self, p: SyncProgress) -> None:
        if self._bar is None:
            return
        if p.bytes_total is not None and self._bar.total != p.bytes_total:
            self._bar.total = p.bytes_total
        self._bar.update(p.bytes_done - self._bytes)
        self._bytes = p.bytes_done
        total = "?" if p.objects_total is None else str(p.objects_total)
        self._bar.set_postfix_str(f"{p.objects_done}/{total} objects", refresh=False)

    def message(self, text: str) -> None:
        if self._bar is not None:
            tqdm.write(text, file=sys.stderr)
        else:
            sys.stderr.write(text + "\n")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class SyncCommand:
    def __init__(
        self, opts: Options, src: str, dst: str, rules: list[tuple[str, str]], **kw: Any
    ) -> None:
        self.opts = opts
        self.src, self.dst = parse(src), parse(dst)
        if isinstance(self.src, StdioLocation) or isinstance(self.dst, StdioLocation):
            raise UsageError("sync copies directories and prefixes, not stdin/stdout")
        if not isinstance(self.src, S3Location) and not isinstance(self.dst, S3Location):
            raise UsageError("one side of sync must be an s3:// URL")
        self.src_text, self.dst_text = src, dst
        self.rules = rules
        self.kw = kw
        cross = kw.get("source_endpoint_url") or kw.get("source_profile") or kw.get("source_region")
        if cross and not (isinstance(self.src, S3Location) and isinstance(self.dst, S3Location)):
            raise UsageError("--source-endpoint-url/--source-profile need s3:// on both sides")
        self.cross = bool(cross)
        try:
            self.config = transfer_config(kw.get("part_size"), None, kw.get("checksum"))
        except ConfigError as exc:
            raise UsageError(str(exc)) from exc
        self.memory_limit = kw.get("memory_limit") or max(
            DEFAULT_MEMORY_LIMIT, self.config.memory_bound
        )
        if kw.get("checkpoint"):
            opts.interrupt_note = (
                f"finished work is recorded in {kw['checkpoint']}: run the same command to resume"
            )
        if kw.get("executor") == "ray" and kw.get("dry_run"):
            raise UsageError("--dry-run runs locally; drop --executor ray")
        if kw.get("ray_keep_actors") and kw.get("executor") != "ray":
            raise UsageError("--ray-keep-actors needs --executor ray")
        if kw.get("ray_actors_per_node") and kw.get("executor") != "ray":
            raise UsageError("--ray-actors-per-node needs --executor ray")
        self.split_threshold = self._split_threshold(kw.get("ray_split_threshold"))

    def _split_threshold(self, text: str | None) -> int | None:
        """``--ray-split-threshold``: a size (checked here, before Ray or any request) or off."""
        from ..bulk.split import SPLIT_THRESHOLD, check_split_threshold

        if text is None:
            return SPLIT_THRESHOLD
        if self.kw.get("executor") != "ray":
            raise UsageError("--ray-split-threshold needs --executor ray")
        try:
            return check_split_threshold(None if text.lower() == "off" else parse_size(text))
        except ConfigError as exc:
            raise UsageError(
                f"--ray-split-threshold takes a size of at least 5MiB (S3's smallest part) "
                f"or 'off', not {text!r}"
            ) from exc

    def _rate_limit(self) -> Any:
        if not (self.kw.get("bwlimit") or self.kw.get("tpslimit")):
            return None
        from .._ratelimit import RateLimit

        return RateLimit(
            bytes_per_second=self.kw.get("bwlimit"), requests_per_second=self.kw.get("tpslimit")
        )

    async def _engines(self, stack: AsyncExitStack, limit: Any) -> tuple[Engine, Engine]:
        extra: dict[str, Any] = {} if limit is None else {"rate_limit": limit}
        engine = await stack.enter_async_context(
            make_engine(self.opts, config=self.config, memory_budget=self.memory_limit, **extra)
        )
        if not self.cross:
            return engine, engine
        source = await stack.enter_async_context(
            Engine(
                endpoint_url=self.kw.get("source_endpoint_url") or self.opts.endpoint_url,
                region_name=self.kw.get("source_region") or self.opts.region,
                profile=self.kw.get("source_profile") or self.opts.profile,
                config=self.config,
                memory_budget=engine.memory_budget,
                **extra,
            )
        )
        return engine, source

    async def run(self) -> int:
        out = Output(self.opts)
        bar = Bar(not self.opts.quiet and not self.opts.json and sys.stderr.isatty())

        def on_event(event: SyncEvent) -> None:
            out.record(event.to_dict())
            if event.kind == "fail":
                bar.message(f"streamx: error: {event.key}: {event.error}")
            elif not (self.opts.quiet or self.opts.json):
                would = "(dry run) " if event.dry_run else ""
                size = f" ({human_size(event.size)})" if event.kind != "delete" else ""
                bar.message(f"{would}{event.kind}: {event.key}{size}")

        kw = self.kw
        common: dict[str, Any] = {
            "delete": kw.get("delete", False),
            "compare": kw.get("compare") or "checksum",
            "filters": self.rules,
            "concurrency": kw.get("concurrency") or 16,
            "checkpoint": kw.get("checkpoint"),
            "on_event": on_event,
        }
        try:
            if kw.get("executor") == "ray":
                result = await self._run_ray(common)
            else:
                async with AsyncExitStack() as stack:
                    engine, source = await self._engines(stack, self._rate_limit())
                    # This process is an application: what is loaded by now (modules,
                    # botocore's service model) lives to the end, so the collector's full
                    # passes need not rescan it (measured: 0.7 of 3.1 CPU-s of a re-run of
                    # 10,000 objects went to them; 0.06 after).
                    gc.freeze()
                    result = await sync(
                        self._side(self.src),
                        self._side(self.dst),
                        engine=engine,
                        source_engine=source,
                        dry_run=kw.get("dry_run", False),
                        on_progress=bar.update if bar.enabled else None,
                        count_total=True,
                        **common,
                    )
        finally:
            bar.close()
        out.record(result.summary())
        what = "would copy" if result.dry_run else "copied"
        out.info(
            f"{what} {result.copied} ({human_size(result.bytes)}), skipped {result.skipped}, "
            f"deleted {result.deleted}, failed {result.failed}"
        )
        return EXIT_OK if result.ok else EXIT_TRANSFER

    def _side(self, location: Any) -> str:
        if isinstance(location, LocalLocation):
            return location.path
        return str(location)

    def _engine_args(self, source: bool) -> dict[str, Any]:
        opts = self.opts
        args = {
            "endpoint_url": opts.endpoint_url,
            "region_name": opts.region,
            "profile": opts.profile,
        }
        if source and self.cross:
            args = {
                "endpoint_url": self.kw.get("source_endpoint_url") or opts.endpoint_url,
                "region_name": self.kw.get("source_region") or opts.region,
                "profile": self.kw.get("source_profile") or opts.profile,
            }
        # --part-size and --checksum reach every actor's engine (and a split object's parts)
        return {"config": self.config} | {k: v for k, v in args.items() if v is not None}

    async def _run_ray(self, common: dict[str, Any]) -> Any:
        from ..bulk.ray import sync_on_ray

        return await sync_on_ray(
            self._side(self.src),
            self._side(self.dst),
            engine_args=self._engine_args(False),
            source_engine_args=self._engine_args(True) if self.cross else None,
            ray_address=self.kw.get("ray_address"),
            keep_actors=self.kw.get("ray_keep_actors") or 0.0,
            actors_per_node=self.kw.get("ray_actors_per_node"),
            split_threshold=self.split_threshold,
            memory_limit=self.memory_limit,
            bytes_per_second=self.kw.get("bwlimit"),
            requests_per_second=self.kw.get("tpslimit"),
            **common,
        )


@click.command(cls=_SyncCommand, context_settings={"help_option_names": ["--help"]})
@click.argument("src")
@click.argument("dst")
@click.option("--delete", is_flag=True, help="Delete destination keys the source lacks.")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option(
    "--exclude", metavar="GLOB", multiple=True, help="Skip keys matching GLOB (repeatable)."
)
@click.option(
    "--include", metavar="GLOB", multiple=True, help="Take back keys an --exclude skipped."
)
@click.option(
    "--compare",
    type=click.Choice(COMPARE_MODES),
    default="checksum",
    show_default=True,
    help="checksum: size, then ETag/MD5 or stored checksum; size-mtime; size.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=16,
    show_default=True,
    help="Objects in flight.",
)
@click.option("--part-size", type=SIZE, help="Bytes per part of large objects (default 8MiB).")
@click.option("--memory-limit", type=SIZE, help="Bytes all transfers may hold (default 256MiB).")
@click.option(
    "--checksum",
    type=click.Choice(["CRC32C", "CRC32", "CRC64NVME", "SHA256", "off"], case_sensitive=False),
    help="Checksum sent with uploads (default CRC32C).",
)
@click.option(
    "--checkpoint",
    metavar="PATH",
    type=click.Path(dir_okay=False),
    help="Record finished work in PATH; a re-run resumes from it.",
)
@click.option("--bwlimit", type=SIZE, help="Bytes per second, all requests together (e.g. 50MiB).")
@click.option(
    "--tpslimit",
    type=click.FloatRange(min=0, min_open=True),
    help="Requests per second, all together.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Run here, or on a Ray cluster (the 'ray' extra).",
)
@click.option(
    "--ray-address", metavar="ADDR", help="Ray cluster to join (default: RAY_ADDRESS or local)."
)
@click.option(
    "--ray-keep-actors",
    metavar="SECONDS",
    type=click.FloatRange(min=0, max=7 * 24 * 3600),
    help="Keep the Ray actors for a re-run of the same sync; they leave after SECONDS idle.",
)
@click.option(
    "--ray-actors-per-node",
    metavar="N",
    type=click.IntRange(min=1, max=256),
    help="Actors per Ray node (default: one per CPU, at most two); they share the node's "
    "--concurrency and --memory-limit.",
)
@click.option(
    "--ray-split-threshold",
    metavar="SIZE",
    help="Objects of SIZE or more go as parts over all the Ray actors (default 256MiB, at "
    "least 5MiB; 'off': never split).",
)
@click.option("--source-endpoint-url", metavar="URL", help="Endpoint of SRC, when it differs.")
@click.option("--source-profile", metavar="NAME", help="AWS profile for SRC, when it differs.")
@click.option("--source-region", metavar="NAME", help="Region of SRC, when it differs.")
@common_options
def sync_command(
    src: str, dst: str, exclude: tuple[str, ...], include: tuple[str, ...], **kw: Any
) -> int:
    """Make DST hold what SRC holds: a local directory or s3://bucket/prefix each.

    \b
      streamx sync ./site s3://bucket/www --delete
      streamx sync s3://bucket/data ./data --exclude '*.tmp'
      streamx sync s3://a/x s3://b/x --source-endpoint-url https://other.example
      streamx sync ./big s3://bucket/big --checkpoint job.json --bwlimit 100MiB
    """
    from ._common import options

    order = click.get_current_context().meta.get("filter_order", [])
    command = SyncCommand(options(), src, dst, filter_rules(order, exclude, include), **kw)
    return run_async(command.run)


sync_command.name = "sync"
