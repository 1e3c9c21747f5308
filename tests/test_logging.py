"""streamx is silent unless the application asks; asked, its events are structured.

Each script runs in a child process (a fresh interpreter: no pytest capture, no
configuration left by other tests) against a real server, and uploads (single
PUT and multipart) and downloads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

# streamx's own logic, not the store's: two of the three servers suffice (tests/conftest.py)
pytestmark = pytest.mark.servers("moto", "rclone")

ROOT = Path(__file__).resolve().parents[1]

TRANSFERS = """
import asyncio, os, uuid
import streamx

async def transfers():
    async with streamx.Engine() as engine:
        bucket = "log-" + uuid.uuid4().hex[:10]
        await engine.client.create_bucket(Bucket=bucket)
        cfg = streamx.TransferConfig(part_size=5 * 2**20, multipart_threshold=5 * 2**20)
        await engine.upload(bucket, "small", b"hello")
        await engine.upload(bucket, "big", os.urandom(11 * 2**20), config=cfg)
        async for _ in engine.download(bucket, "big"):
            pass
        await engine.download_file(bucket, "small", os.path.join(os.environ["OUT_DIR"], "small"))
"""


def run_script(server: Any, tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(TRANSFERS + textwrap.dedent(body))
    env = {
        **os.environ,
        **server.env(),
        "OUT_DIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )


def test_a_plain_script_prints_nothing(server: Any, tmp_path: Path) -> None:
    done = run_script(server, tmp_path, "asyncio.run(transfers())\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""


def test_warning_level_basicconfig_shows_no_routine_event(server: Any, tmp_path: Path) -> None:
    body = """
    import logging
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(transfers())
    """
    done = run_script(server, tmp_path, body)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


def test_basicconfig_debug_shows_structured_events(server: Any, tmp_path: Path) -> None:
    body = """
    import json, logging, sys

    class Keep(logging.Handler):
        def emit(self, record):
            if record.name == "streamx":
                sys.stdout.write(json.dumps(dict(record.msg), default=str) + "\\n")

    logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger().addHandler(Keep())
    asyncio.run(transfers())
    """
    done = run_script(server, tmp_path, body)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    names = [e["event"] for e in events]
    assert {"upload.start", "upload.complete", "download.start", "download.complete"} <= set(names)
    part = next(e for e in events if e["event"] == "upload.part")  # debug: one per part
    assert part["level"] == "debug" and part["logger"] == "streamx"
    assert part["key"] == "big" and part["upload_id"] and part["part_number"] >= 1
    # the stdlib formatter's line: level and logger from the record, context as key=value
    lines = done.stderr.splitlines()
    assert any(ln.startswith("INFO streamx upload.start ") and "key='small'" in ln for ln in lines)
    assert any(ln.startswith("DEBUG streamx upload.part ") for ln in lines)
    assert server.secret_key not in done.stdout + done.stderr


def test_structlog_processor_formatter_renders_the_events(server: Any, tmp_path: Path) -> None:
    """The structlog route: a ProcessorFormatter on the application's handler renders JSON."""
    body = """
    import logging, structlog
    handler = logging.StreamHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(),
        ],
    ))
    logging.getLogger("streamx").addHandler(handler)
    logging.getLogger("streamx").setLevel(logging.INFO)
    asyncio.run(transfers())
    """
    done = run_script(server, tmp_path, body)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    events = [json.loads(line) for line in done.stderr.splitlines()]
    start = next(e for e in events if e["event"] == "upload.start" and e["key"] == "small")
    assert start["level"] == "info" and start["logger"] == "streamx" and start["size"] == 5
    assert "upload.part" not in {e["event"] for e in events}  # debug stays below INFO


def test_unconfigured_structlog_is_not_touched() -> None:
    """Importing streamx leaves structlog's global configuration as it was."""
    code = """
import structlog
before = structlog.get_config()
import streamx, streamx.web, streamx.cli
from streamx._log import log
log.info("ignored")
assert structlog.get_config() == before
assert not structlog.is_configured()
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_capture_logs_helper_collects_events(level: str) -> None:
    import logging

    from streamx._log import log
    from streamx.testing import capture_logs

    with capture_logs(getattr(logging, level)) as logs:
        log.bind(bucket="b").debug("x.debug", n=1)
        log.info("x.info")
    names = [e["event"] for e in logs]
    assert names == (["x.debug", "x.info"] if level == "DEBUG" else ["x.info"])
    assert logs[-1]["log_level"] == "info"
    assert logging.getLogger("streamx").level == logging.NOTSET


def test_botocore_debug_leaks_signatures_and_the_readme_advice_stops_it(
    rclone_server: Any, tmp_path: Path
) -> None:
    """The README's warning is true: botocore's DEBUG prints signatures; silencing it works."""
    leaky = run_script(
        rclone_server,
        tmp_path,
        """
        import logging
        logging.basicConfig(level=logging.DEBUG, format="%(name)s %(message)s")
        asyncio.run(transfers())
        """,
    )
    assert leaky.returncode == 0, leaky.stderr[-2000:]
    lines = leaky.stderr.splitlines()
    assert any("Signature=" in ln for ln in lines if ln.startswith("botocore"))
    assert not any("Signature=" in ln or "Credential=" in ln for ln in lines if ln.startswith("streamx "))
    quiet = run_script(
        rclone_server,
        tmp_path,
        """
        import logging
        logging.basicConfig(level=logging.DEBUG, format="%(name)s %(message)s")
        for name in ("botocore", "aiobotocore"):  # what the README says
            logging.getLogger(name).setLevel(logging.WARNING)
        asyncio.run(transfers())
        """,
    )
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "streamx upload.start" in quiet.stderr
    assert "Signature=" not in quiet.stderr and "Credential=" not in quiet.stderr
