"""Progress bars on stderr (tqdm): one line per file in flight, and a total line.

The bars are only a listener of streamx's :class:`~streamx.ProgressEvent`:
bytes acknowledged, rate, ETA when the size is known, and parts in flight.
They are drawn only when stderr is a terminal and ``--quiet`` is not given;
otherwise every call here is a no-op, and messages go straight to stderr.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

from .._events import ProgressEvent
from .._limits import format_size

_LABEL_WIDTH = 32
_KNOWN = "{desc}: {percentage:3.0f}%|{bar}| {sizes} [{elapsed}<{remaining}, {speed}{postfix}]"
_UNKNOWN = "{desc}: {sizes} [{elapsed}, {speed}{postfix}]"


class ByteBar(tqdm):  # type: ignore[misc]
    """A tqdm bar of bytes in binary units with their "i" (``20 MiB/20 MiB``, ``MiB/s``).

    tqdm's own ``unit_scale`` prints ``MB/s`` and divides the rate by 1000, where
    streamx's summaries say MiB/s: one set of units everywhere. Drawn only on a
    terminal (``disable=None``): into a pipe or a file it writes nothing at all.
    """

    def __init__(self, *, total: int | None, **kwargs: Any) -> None:
        kwargs.setdefault("file", sys.stderr)
        kwargs.setdefault("disable", None)  # None: only when the file is a terminal
        super().__init__(
            total=total,
            unit="B",
            bar_format=_KNOWN if total is not None else _UNKNOWN,
            **kwargs,
        )

    @property
    def format_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = super().format_dict
        n, total, elapsed = int(d["n"]), d["total"], d["elapsed"]
        rate = d["rate"] or (n / elapsed if elapsed else 0)
        d["sizes"] = f"{format_size(n)}/{format_size(int(total))}" if total else format_size(n)
        d["speed"] = f"{format_size(int(rate))}/s" if rate else "- MiB/s"
        return d


def _label(text: str) -> str:
    return text if len(text) <= _LABEL_WIDTH else "…" + text[-(_LABEL_WIDTH - 1) :]


class FileBar:
    """The bar of one transfer; ``update`` is the transfer's ``on_progress`` callback."""

    def __init__(self, display: Display, label: str, total: int | None) -> None:
        self._display = display
        self._done = 0
        self._bar: Any = None
        if display.enabled:
            self._bar = ByteBar(
                total=total,
                desc=_label(label),
                dynamic_ncols=True,
                leave=not display.multi,
                position=None,
                mininterval=0.1,
            )

    def update(self, event: ProgressEvent) -> None:
        self.advance(event.bytes_done - self._done, total=event.total)
        if self._bar is not None:
            self._bar.set_postfix_str(f"{event.parts_in_flight} in flight", refresh=False)

    def advance(self, nbytes: int, *, total: int | None = None) -> None:
        self._done += nbytes
        self._display.advance_total(nbytes)
        if self._bar is None:
            return
        if total is not None and self._bar.total != total:
            self._bar.total = total
        self._bar.update(nbytes)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Display:
    """All bars of one command, and the lines printed around them."""

    def __init__(self, *, enabled: bool, multi: bool = False) -> None:
        self.enabled = enabled
        self.multi = multi
        self._total: Any = None

    def start_total(self, files: int, total_bytes: int) -> None:
        """A total line for a recursive copy of ``files`` files."""
        if self.enabled:
            self._total = ByteBar(
                total=total_bytes,
                desc=f"total ({files} files)",
                dynamic_ncols=True,
                position=0,
                mininterval=0.1,
            )

    def advance_total(self, nbytes: int) -> None:
        if self._total is not None:
            self._total.update(nbytes)

    def file(self, label: str, total: int | None) -> FileBar:
        return FileBar(self, label, total)

    def message(self, text: str) -> None:
        """A line on stderr that does not tear the bars apart."""
        if self.enabled:
            tqdm.write(text, file=sys.stderr)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self._total is not None:
            self._total.close()
            self._total = None
