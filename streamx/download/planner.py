"""The planner: which byte ranges to ask for. Pure functions, no I/O.

Ranges are half-open ``(start, end)`` pairs, read like Python slices:
``(0, 100)`` is the first 100 bytes, ``(-100, None)`` the last 100 (a suffix
range), ``(100, None)`` everything from byte 100, ``(10, -10)`` all but the
first and last 10. Unlike slices, a range that reaches past the object or
runs backwards is an error, not an empty result: a caller asking for bytes
that do not exist has a bug worth hearing about.

:func:`coalesce` merges requested ranges that lie close together into fewer
requests (object_store does the same with a 1 MiB gap: one more round trip
costs more than a few hundred KiB of unwanted bytes) and splits long ones
into part-sized requests so they are fetched in parallel.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from .._errors import ConfigError, ConfigTypeError, InvalidRangeError
from .._limits import MiB

#: Requested ranges closer than this are fetched by one request.
DEFAULT_COALESCE_GAP = 1 * MiB

RangeSpec = tuple[int, int | None]


@dataclass(frozen=True, slots=True, order=True)
class ByteRange:
    """Bytes ``start`` up to (not including) ``end`` of an object."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start

    def header(self) -> str:
        """The HTTP ``Range`` header (inclusive end); only for non-empty ranges."""
        return f"bytes={self.start}-{self.end - 1}"

    def __str__(self) -> str:
        return f"[{self.start}, {self.end})"


def _need_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigTypeError(f"range {name} must be an int, not {type(value).__name__}")
    return value


def check_spec(spec: object) -> RangeSpec:
    """Validate the shape of one range before any request; returns ``(start, end)``.

    Raises :class:`ConfigTypeError` (a ``TypeError``) for a non-pair or non-int
    bounds and :class:`ConfigError` (a ``ValueError``) for a range that is inverted whatever the object's size.
    """
    if isinstance(spec, ByteRange):
        return spec.start, spec.end
    if not isinstance(spec, tuple | list) or len(spec) != 2:
        raise ConfigTypeError(f"a range is a (start, end) pair like a slice, not {spec!r}")
    start = _need_int("start", spec[0])
    end = None if spec[1] is None else _need_int("end", spec[1])
    if end is not None and (start >= 0) == (end >= 0) and start > end:
        raise ConfigError(f"range ({start}, {end}) is inverted: start must not exceed end")
    if start < 0 and end is not None and end >= 0:
        # (-10, 5): meaningful only for objects of a particular size; refuse it
        raise ConfigError(
            f"range ({start}, {end}) mixes a suffix start with an absolute end; "
            "use (start, end) or (-n, None)"
        )
    return start, end


def resolve(spec: RangeSpec, size: int) -> ByteRange:
    """The absolute range ``spec`` denotes in an object of ``size`` bytes.

    Raises :class:`InvalidRangeError` (a ``ValueError``) if it reaches outside the object or runs backwards.
    """
    start, end = spec
    abs_start = size + start if start < 0 else start
    abs_end = size if end is None else (size + end if end < 0 else end)
    if abs_start < 0 or abs_start > size or abs_end > size or abs_end < 0:
        raise InvalidRangeError(f"range {spec} is outside the object's {size} bytes")
    if abs_start > abs_end:
        raise InvalidRangeError(f"range {spec} is inverted in an object of {size} bytes")
    return ByteRange(abs_start, abs_end)


def header_for(spec: RangeSpec) -> str | None:
    """A ``Range`` header for ``spec`` that needs no knowledge of the size, if one exists."""
    start, end = spec
    if end is None:
        return f"bytes={start}-" if start >= 0 else f"bytes={start}"
    if start >= 0 and end >= 0:
        return f"bytes={start}-{end - 1}" if end > start else None
    return None


def split(whole: ByteRange, part_size: int) -> Iterator[ByteRange]:
    """``whole`` cut into consecutive ranges of ``part_size`` bytes (the last may be shorter)."""
    if part_size < 1:
        raise ConfigError("part_size must be positive")
    pos = whole.start
    while pos < whole.end:
        nxt = min(pos + part_size, whole.end)
        yield ByteRange(pos, nxt)
        pos = nxt


def coalesce(
    ranges: Iterable[ByteRange], *, gap: int = DEFAULT_COALESCE_GAP, max_size: int
) -> list[ByteRange]:
    """Sorted, non-overlapping requests that cover every non-empty range in ``ranges``.

    Ranges that overlap, touch, or lie within ``gap`` bytes of each other are
    merged; then each merged request longer than ``max_size`` is split into
    ``max_size`` pieces so long reads still run in parallel.
    """
    merged: list[ByteRange] = []
    for r in sorted(r for r in ranges if r.size > 0):
        if merged and r.start <= merged[-1].end + gap:
            last = merged[-1]
            merged[-1] = ByteRange(last.start, max(last.end, r.end))
        else:
            merged.append(r)
    out: list[ByteRange] = []
    for m in merged:
        out.extend(split(m, max_size))
    return out


def slice_from(
    wanted: ByteRange, fetched: Sequence[ByteRange], data: Sequence[bytes | bytearray]
) -> bytes:
    """The bytes of ``wanted``, cut from the sorted, non-overlapping ``fetched`` requests."""
    if wanted.size == 0:
        return b""
    starts = [f.start for f in fetched]
    i = bisect.bisect_right(starts, wanted.start) - 1
    pieces: list[bytes | memoryview] = []
    pos = wanted.start
    while pos < wanted.end:
        f = fetched[i]
        if not f.start <= pos < f.end:  # pragma: no cover - a planner bug
            raise AssertionError(f"byte {pos} is not covered by the planned requests")
        stop = min(f.end, wanted.end)
        pieces.append(memoryview(data[i])[pos - f.start : stop - f.start])
        pos = stop
        i += 1
    if len(pieces) == 1:
        return bytes(pieces[0])
    return b"".join(pieces)
