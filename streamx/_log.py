"""streamx's log: structured events on the stdlib ``streamx`` logger, silent unless asked.

A library is silent unless the application asks. Every module logs through
:data:`log`, a structlog bound logger wrapped around ``logging.getLogger("streamx")``,
which carries a :class:`logging.NullHandler` (as httpx, urllib3, botocore and
aiohttp do). Nothing here reads or changes structlog's global configuration, so
an unconfigured structlog (which prints every level to stdout) never reaches a
user's script, and ``logging`` configuration alone governs what is shown::

    logging.basicConfig(level=logging.INFO)             # events as "upload.start bucket='b' ..."
    logging.getLogger("streamx").setLevel(logging.DEBUG)  # one line per part too

Events stay structured: a record's ``msg`` is the event dict (``event`` plus
key/value context, ``level`` and ``logger``), whose ``str()`` is the one-line
form above, and the record carries ``_logger``/``_name`` as
:meth:`structlog.stdlib.ProcessorFormatter.wrap_for_formatter` sets them, so a
handler with a :class:`structlog.stdlib.ProcessorFormatter` renders streamx's
events with the application's own structlog processors (JSON, console).

Below the logger's effective level an event costs one ``isEnabledFor`` call, and
structlog itself is imported only when the first event gets through: importing it
costs ~2 MiB of RSS, and ~14 MiB and ~0.1 s when ``rich`` is installed (structlog's
console renderer imports rich and pygments), which a server that logs nothing of
streamx's (the tus benchmark's) would otherwise hold for nothing.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

__all__ = ["LOGGER_NAME", "Event", "log"]

LOGGER_NAME = "streamx"

_stdlib_logger = logging.getLogger(LOGGER_NAME)
_stdlib_logger.addHandler(logging.NullHandler())

#: keys a formatter shows by itself (level, logger name): not repeated in ``str(event)``
_SHOWN_BY_FORMATTER = frozenset({"event", "level", "logger"})


class Event(dict[str, Any]):
    """An event dict whose ``str()`` is ``"name key=value ..."`` for plain ``logging`` formatters.

    ``record.getMessage()`` is this string; ``record.msg`` stays the dict for
    structured handlers (``ProcessorFormatter`` copies it to a plain dict).
    """

    def __str__(self) -> str:
        context = " ".join(f"{k}={v!r}" for k, v in self.items() if k not in _SHOWN_BY_FORMATTER)
        name = str(self.get("event", ""))
        return f"{name} {context}" if context else name


def _to_stdlib(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[Event], dict[str, Any]]:
    """The last processor: what ``ProcessorFormatter.wrap_for_formatter`` passes, as an :class:`Event`."""
    return (Event(event_dict),), {"extra": {"_logger": logger, "_name": method_name}}


def _processors() -> list[Any]:
    import structlog

    return [
        structlog.stdlib.filter_by_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        _to_stdlib,
    ]


class StreamxLogger:
    """A structlog ``BoundLogger`` over the ``streamx`` logger, built on the first event
    the logger lets through (see the module docstring); ``bind`` adds context."""

    __slots__ = ("_bound", "_context")

    def __init__(self, context: dict[str, Any]) -> None:
        self._context = context
        self._bound: Any = None

    def bind(self, **context: Any) -> StreamxLogger:
        return StreamxLogger({**self._context, **context})

    def _emit(self, method: str, level: int, event: str, kw: dict[str, Any]) -> None:
        if not _stdlib_logger.isEnabledFor(level):
            return
        bound = self._bound
        if bound is None:
            import structlog

            bound = self._bound = structlog.stdlib.BoundLogger(
                _stdlib_logger, _processors(), self._context
            )
        getattr(bound, method)(event, **kw)

    def debug(self, event: str, **kw: Any) -> None:
        self._emit("debug", logging.DEBUG, event, kw)

    def info(self, event: str, **kw: Any) -> None:
        self._emit("info", logging.INFO, event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._emit("warning", logging.WARNING, event, kw)

    def error(self, event: str, **kw: Any) -> None:
        self._emit("error", logging.ERROR, event, kw)

    def exception(self, event: str, **kw: Any) -> None:
        self._emit("exception", logging.ERROR, event, kw)


#: the package's logger: ``log.info("upload.start", bucket=..., key=...)``, ``log.bind(...)``
log = StreamxLogger({})
