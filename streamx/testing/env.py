"""An endpoint described by the standard AWS_* variables, and streamx's log capture."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from ._base import Server


class EnvServer(Server):
    """An endpoint described by the standard AWS_* variables (MinIO from compose.yaml, ...).

    Nothing is started; ``start``/``stop`` do nothing.
    """

    name = "env"

    def __init__(self) -> None:
        self.endpoint_url = os.environ["AWS_ENDPOINT_URL"]
        self.access_key = os.environ.get("AWS_ACCESS_KEY_ID", "")
        self.secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        self.region = os.environ.get("AWS_REGION", "us-east-1")

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None


@contextlib.contextmanager
def capture_logs(level: int = logging.DEBUG) -> Iterator[list[dict[str, Any]]]:
    """Collect streamx's log events (dicts with ``event``, ``log_level`` and their context).

    The stdlib counterpart of ``structlog.testing.capture_logs`` for streamx's
    ``streamx`` logger: lowers that logger to *level* for the block, restores it after::

        with capture_logs() as logs:
            await engine.upload(...)
        assert "upload.complete" in [e["event"] for e in logs]
    """
    from .._log import LOGGER_NAME

    captured: list[dict[str, Any]] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            event = (
                dict(record.msg) if isinstance(record.msg, dict) else {"event": record.getMessage()}
            )
            event.pop("level", None)
            event.pop("logger", None)
            event["log_level"] = record.levelname.lower()
            captured.append(event)

    logger = logging.getLogger(LOGGER_NAME)
    handler = _Collect(level)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield captured
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
