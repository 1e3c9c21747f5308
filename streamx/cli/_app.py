"""The ``streamx`` command group, and the one place where failures become exit codes."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Any

import click

from .. import __version__
from ._common import Options, common_options
from ._exit import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Interrupted,
    StdoutClosed,
    classify,
)

EPILOG = """\b
Configuration: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_REGION, AWS_PROFILE (and ~/.aws/config); --endpoint-url, --region and
--profile override them.

\b
Exit codes: 0 ok, 1 other error, 2 usage, 3 not found, 4 access denied,
5 transfer failure, 130 interrupted (the upload was aborted), 141 stdout closed.
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, prog_name="streamx")
@common_options
def cli() -> None:
    """Stream bytes into and out of S3-compatible storage."""


def _register() -> None:
    from . import cp, ls, presign, rm, sweep, sync

    for command in (cp.cp, cp.cat, ls.ls, rm.rm, presign.presign, sweep.sweep, sync.sync_command):
        cli.add_command(command)


_register()


#: what click (8.2+) raises for a group called without a command
_NO_ARGS_IS_HELP: type[Exception] = getattr(click.exceptions, "NoArgsIsHelpError", click.UsageError)


def _say(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # pragma: no cover - stderr closed
        pass


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # pragma: no cover
        pass


def run(argv: list[str]) -> int:
    """Run the command line and return the exit code (never raises)."""
    opts = Options()
    try:
        result: Any = cli.main(args=argv, prog_name="streamx", standalone_mode=False, obj=opts)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        if isinstance(exc, _NO_ARGS_IS_HELP) or (not argv and exc.ctx is not None):
            # a bare ``streamx``: the usage, as click lays it out, not squashed into one line
            _say(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            return EXIT_USAGE
        where = exc.ctx.command_path if exc.ctx is not None else "streamx"
        message = " ".join(exc.format_message().split())
        _say(f"{where}: error: {message} (see '{where} --help')")
        return EXIT_USAGE
    except click.ClickException as exc:
        _say(f"streamx: error: {exc.format_message()}")
        return exc.exit_code if exc.exit_code else EXIT_ERROR
    except (click.Abort, KeyboardInterrupt):
        _say("streamx: interrupted")
        return EXIT_INTERRUPTED
    except Interrupted as exc:
        _say(f"streamx: interrupted; {opts.interrupt_note}")
        return EXIT_TERMINATED if exc.signum == signal.SIGTERM else EXIT_INTERRUPTED
    except StdoutClosed:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        failure = classify(exc)
        if opts.debug:
            traceback.print_exception(exc)
        if failure.message:
            _say(f"streamx: error: {failure.message}")
        return failure.code
    finally:
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            _silence_stdout()
    return int(result) if isinstance(result, int) else EXIT_OK
