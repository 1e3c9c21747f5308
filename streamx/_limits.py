"""S3's numbers, and the pure part-size planner.

S3 multipart rules (identical on AWS, MinIO, R2, rclone and moto):

* every part but the last is at least 5 MiB; no part exceeds 5 GiB;
* part numbers run from 1 to 10,000;
* an object is at most 5 TiB (AWS since 2025: 48.8 TiB, 10,000 parts of 5 GiB; the
  store profiles in ``_stores.py`` say which); a single PutObject at most 5 GiB.

A :class:`PartPlan` answers "how large is part *n*?". For a source of known
length it is one size, grown if needed so the object fits in 10,000 parts.
For a stream of unknown length it starts at the configured size and doubles
every ``interval`` parts, where ``interval`` is the largest value that still
lets 10,000 parts hold 5 TiB, so a stream never meets the wall at part 10,001
and parts stay small for as long as possible. With ``equal_parts`` (stores
such as Cloudflare R2 that require equal parts) the size never changes and
the stream's capacity is ``part_size × 10,000``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ._errors import ConfigError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

#: More memory than any machine streamx runs on: a larger number is a unit mistake.
MAX_MEMORY = 1 * TiB

MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * TiB
MAX_PUT_SIZE = 5 * GiB
MAX_KEY_BYTES = 1024


def format_size(n: int) -> str:
    """``8388608`` → ``"8 MiB"``; exact where possible, one decimal otherwise."""
    for unit, scale in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if n % scale == 0 else f"{value:.1f} {unit}"
    return f"{n} B"


def parse_size(text: str) -> int:
    """``"1GiB"``, ``"512 MiB"``, ``"10MB"``, ``"4096"`` → bytes."""
    units = {
        "": 1,
        "B": 1,
        "K": KiB,
        "KB": 1000,
        "KIB": KiB,
        "M": MiB,
        "MB": 1000**2,
        "MIB": MiB,
        "G": GiB,
        "GB": 1000**3,
        "GIB": GiB,
        "T": TiB,
        "TB": 1000**4,
        "TIB": TiB,
    }
    s = text.strip().upper().replace(" ", "")
    i = len(s)
    while i > 0 and not (s[i - 1].isdigit() or s[i - 1] == "."):
        i -= 1
    number, unit = s[:i], s[i:]
    if not number or unit not in units:
        raise ConfigError(f"cannot read {text!r} as a size; write e.g. 8MiB, 1GiB or 4096")
    return int(float(number) * units[unit])


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class PartPlan:
    """The size of every part of one upload; a pure function of its inputs.

    ``base`` is the size of part 1; sizes double every ``interval`` parts and
    are capped at 5 GiB. ``interval=None`` means every part has ``base`` bytes.
    """

    base: int
    interval: int | None = None

    def size_of(self, part_number: int) -> int:
        if not 1 <= part_number <= MAX_PARTS:
            raise ConfigError(f"part number {part_number} is outside S3's 1..{MAX_PARTS}")
        if self.interval is None:
            return self.base
        doublings = min((part_number - 1) // self.interval, 40)
        return min(self.base << doublings, MAX_PART_SIZE)

    def _bytes_before(self, part_number: int) -> int:
        """Sum of the sizes of parts 1 .. part_number - 1."""
        n = part_number - 1
        if self.interval is None:
            return n * self.base
        runs, rest = divmod(n, self.interval)
        total = sum(self.interval * min(self.base << j, MAX_PART_SIZE) for j in range(runs))
        return total + rest * min(self.base << runs, MAX_PART_SIZE)

    @cached_property
    def capacity(self) -> int:
        """Total bytes that 10,000 parts of this plan can hold."""
        return self._bytes_before(MAX_PARTS + 1)

    @property
    def largest_part(self) -> int:
        return self.size_of(MAX_PARTS)

    def offset_of(self, part_number: int) -> int:
        """Byte offset where part ``part_number`` starts (used by resume)."""
        self.size_of(part_number)  # validates the number
        return self._bytes_before(part_number)

    @classmethod
    def for_known_size(
        cls, size: int, part_size: int, *, max_object_size: int = MAX_OBJECT_SIZE
    ) -> PartPlan:
        """Equal parts of at least ``part_size`` so that ``size`` fits in 10,000 parts.

        ``max_object_size``: the store's limit (AWS: 48.8 TiB, 10,000 parts of 5 GiB;
        most others 5 TiB; see ``streamx/_stores.py``).
        """
        limit = min(max_object_size, MAX_PARTS * MAX_PART_SIZE)
        if size > limit:
            raise ConfigError(f"{format_size(size)} is over the {format_size(limit)} object limit")
        needed = _ceil_div(size, MAX_PARTS)
        base = max(part_size, needed)
        if needed > part_size:
            # round up to a whole MiB: friendlier numbers, same part count or fewer
            base = min(_ceil_div(base, MiB) * MiB, MAX_PART_SIZE)
        return cls(base=base, interval=None)

    @classmethod
    def for_stream(cls, part_size: int, *, equal_parts: bool = False) -> PartPlan:
        """Parts for a stream of unknown length (see the module docstring)."""
        if equal_parts:
            return cls(base=part_size, interval=None)
        # capacity falls as interval grows: find the largest interval that holds 5 TiB
        lo, hi = 1, MAX_PARTS
        if cls(part_size, MAX_PARTS).capacity >= MAX_OBJECT_SIZE:
            return cls(base=part_size, interval=None)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if cls(part_size, mid).capacity >= MAX_OBJECT_SIZE:
                lo = mid
            else:
                hi = mid - 1
        return cls(base=part_size, interval=lo)
