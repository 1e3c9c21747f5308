"""What every command shares: options, the engine, the event loop and its signals, output.

Ctrl-C (and SIGTERM) cancel the command's task; streamx aborts the multipart
upload in progress (shielded, time-boxed), and the command exits 130 (143).
A second Ctrl-C exits at once, leaving any unfinished upload for
``streamx sweep``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeVar

import click
import structlog

from .._engine import Engine
from .._limits import format_size, parse_size
from .._log import LOGGER_NAME
from ._exit import EXIT_INTERRUPTED, Interrupted, StdoutClosed

T = TypeVar("T")


@dataclass
class Options:
    """Options given before or after the command name (``streamx --quiet ls`` = ``streamx ls --quiet``)."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    quiet: bool = False
    json: bool = False
    debug: bool = False
    #: what Ctrl-C leaves behind, said on exit (a checkpointed upload is kept for resume)
    interrupt_note: str = "any upload in progress was aborted"


def _store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is None or value is False:
        return
    assert param.name is not None
    setattr(ctx.ensure_object(Options), param.name, value)


def common_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Connection and output options, accepted by the group and by every command.

    Their values land in ``ctx.obj`` (:class:`Options`), not in the command's arguments.
    """
    hidden: dict[str, Any] = {"expose_value": False, "callback": _store}
    flag: dict[str, Any] = {"is_flag": True, "default": None, **hidden}
    options = [
        click.option(
            "--endpoint-url",
            metavar="URL",
            help="S3 endpoint (default: AWS_ENDPOINT_URL, else AWS).",
            **hidden,
        ),
        click.option(
            "--region", metavar="NAME", help="Region (default: AWS_REGION / profile).", **hidden
        ),
        click.option(
            "--profile", metavar="NAME", help="AWS profile (default: AWS_PROFILE).", **hidden
        ),
        click.option("-q", "--quiet", help="No progress bar or messages.", **flag),
        click.option("--json", help="Print results as JSON lines.", **flag),
        click.option("--debug", help="Show logs and tracebacks.", **flag),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def options() -> Options:
    return click.get_current_context().ensure_object(Options)


class SizeType(click.ParamType):  # type: ignore[type-arg]
    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            size = parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if size < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        return size


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"``, ``"1h30m"`` → seconds."""
    s = text.strip().lower().replace(" ", "")
    try:
        return float(s)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise ValueError(f"cannot read {text!r} as a duration; write e.g. 90s, 15m, 24h or 7d")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


class DurationType(click.ParamType):  # type: ignore[type-arg]
    name = "DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            try:
                seconds = parse_duration(str(value))
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        if seconds < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        return seconds


SIZE = SizeType()
DURATION = DurationType()


def configure_logging(debug: bool) -> None:
    """Show the library's events on stderr (stdout may carry data).

    With ``--debug``: every event, rendered by structlog's console renderer.
    Without: only errors the user must act on (an upload that could not be
    aborted), as one plain ``streamx: warning: ...`` line, never a log line.
    The library logs to the stdlib ``streamx`` logger; structlog's global
    configuration is left alone.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if getattr(h, "_streamx_cli", False)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler._streamx_cli = True  # type: ignore[attr-defined]
    if debug:
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    _drop_logger_name,
                    structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
                    structlog.dev.ConsoleRenderer(colors=_isatty(sys.stderr)),
                ],
            )
        )
    else:
        handler.setFormatter(_PlainWarnings())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.ERROR)
    logger.propagate = False


class _PlainWarnings(logging.Formatter):
    """A library error event as one line in the command line's words."""

    def format(self, record: logging.LogRecord) -> str:
        event = dict(record.msg) if isinstance(record.msg, dict) else {"event": record.getMessage()}
        name = str(event.pop("event", ""))
        bucket, key = event.get("bucket"), event.get("key")
        where = f"s3://{bucket}/{key}" if bucket and key else "the object"
        if name.endswith((".abort.failed", ".abort.timeout")):
            why = event.get("error") or f"no answer within {event.get('seconds')} s"
            tail = (
                f"'streamx sweep s3://{bucket}/' removes it"
                if bucket
                else "'streamx sweep' removes it"
            )
            return (
                f"streamx: warning: the unfinished multipart upload of {where} could not be "
                f"aborted ({why}); it is billed until removed: {tail}"
            )
        if name == "upload.corrupt_object.delete_failed":
            return (
                f"streamx: warning: {where} is corrupt and could not be deleted "
                f"({event.get('error')}); delete it with 'streamx rm {where}'"
            )
        context = ", ".join(
            f"{k}={v}" for k, v in event.items() if k not in ("level", "logger", "upload_id")
        )
        return f"streamx: warning: {name}" + (f" ({context})" if context else "")


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _drop_logger_name(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event.pop("logger", None)  # every line is streamx's
    return event


def make_engine(opts: Options, *, endpoint_url: str | None = None, **kwargs: Any) -> Engine:
    return Engine(
        endpoint_url=endpoint_url or opts.endpoint_url,
        region_name=opts.region,
        profile=opts.profile,
        **kwargs,
    )


async def _guarded(fn: Callable[[], Awaitable[T]]) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if received:
            sys.stderr.write(
                "streamx: interrupted again: exiting without cleanup; "
                "'streamx sweep' removes unfinished uploads\n"
            )
            os._exit(EXIT_INTERRUPTED)
        received.append(signum)
        task.cancel()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - not Unix
            pass
    try:
        result = await fn()
    except asyncio.CancelledError:
        if received:
            raise Interrupted(received[0]) from None
        raise
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    if received:
        raise Interrupted(received[0])
    return result


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a command's coroutine; SIGINT/SIGTERM become :class:`Interrupted` after cleanup."""
    configure_logging(options().debug)
    try:
        return asyncio.run(_guarded(fn))
    except BrokenPipeError as exc:
        raise StdoutClosed() from exc


class Output:
    """Results: human lines (stderr, or stdout for listings) or JSON lines (``--json``).

    JSON goes to stdout unless stdout carries the data being copied.
    """

    def __init__(self, opts: Options, *, data_on_stdout: bool = False, display: Any = None) -> None:
        self.opts = opts
        self.data_on_stdout = data_on_stdout
        self.display = display

    def record(self, record: dict[str, Any]) -> None:
        if self.opts.json:
            out = sys.stderr if self.data_on_stdout else sys.stdout
            out.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
            out.flush()

    def info(self, text: str) -> None:
        """A human line on stderr (not with --quiet or --json)."""
        if self.opts.quiet or self.opts.json:
            return
        if self.display is not None:
            self.display.message(text)
        else:
            sys.stderr.write(text + "\n")

    def line(self, text: str) -> None:
        """A human line on stdout: the product of ``ls``, ``presign``, ``sweep`` (not with --json)."""
        if not self.opts.json:
            sys.stdout.write(text + "\n")

    def result(self, human: str, record: dict[str, Any]) -> None:
        self.record(record)
        self.info(human)

    def error(self, text: str) -> None:
        """An error line on stderr, even with --quiet."""
        if self.display is not None:
            self.display.message(f"streamx: error: {text}")
        else:
            sys.stderr.write(f"streamx: error: {text}\n")


def human_size(n: int) -> str:
    return format_size(n)


def rate(nbytes: int, seconds: float) -> str:
    return f"{format_size(int(nbytes / seconds))}/s" if seconds > 0 else "-"
