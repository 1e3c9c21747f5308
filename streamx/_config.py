"""TransferConfig: how a transfer is cut into parts and how much memory it may hold."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ._errors import ConfigError
from ._limits import (
    MAX_MEMORY,
    MAX_PART_SIZE,
    MAX_PARTS,
    MAX_PUT_SIZE,
    MIN_PART_SIZE,
    MiB,
    format_size,
)
from ._validate import check_timeout

ChecksumAlgorithm = Literal["CRC32C", "CRC32", "CRC64NVME", "SHA256"]
ChecksumMode = Literal["when_supported", "when_required", "off"]
CHECKSUM_ALGORITHMS: tuple[str, ...] = ("CRC32C", "CRC32", "CRC64NVME", "SHA256")
CHECKSUM_MODES: tuple[str, ...] = ("when_supported", "when_required", "off")
# What a process running transfers holds beyond their data (see TransferConfig's docstring).
RUNTIME_OVERHEAD = 40 * MiB


@dataclass(frozen=True, kw_only=True)
class TransferConfig:
    """How one transfer is cut into parts, and the memory it may hold.

    **Memory bound.** An upload holds at most::

        high_water_mark + part_size × queue_size

    bytes of source data (plus the interpreter and the HTTP stack): a part's
    buffer counts from the moment the producer starts filling it until S3
    acknowledges it, parts queued and in flight never exceed
    ``part_size × queue_size`` bytes together, and the producer reads at most
    ``high_water_mark`` bytes (plus one source chunk) ahead of them. When a
    stream of unknown length grows its parts (see :class:`streamx.PartPlan`),
    fewer of them are in flight at once, so the bound holds; only a single part
    larger than ``part_size × queue_size`` (streams beyond
    ``memory_bound_stream_limit``) raises the bound to that part's size.
    A ``multipart_threshold`` above ``part_size × queue_size`` raises the
    in-flight window to the threshold (rounded up to whole parts).

    **What the process holds.** Once transfers run, the process itself grows
    by up to ``RUNTIME_OVERHEAD`` (40 MiB) beyond that: the HTTP stack's
    buffers, the worker threads that send parts (their stacks and malloc
    arenas) and freed part buffers the allocator has not yet returned
    (measured: 15–27 MiB for a 256 MiB to 1 GiB stream with the defaults on
    Linux/CPython). :attr:`process_memory_bound` states both together: with the
    defaults 65 MiB of data + 40 MiB = 105 MiB above the interpreter's
    baseline, which ``make demo`` prints and ``tests/upload/test_memory.py`` asserts.
    Transfers of one :class:`~streamx.Engine` also share its memory budget
    (by default ``min(128 MiB, RAM / 8)``, at least ``memory_bound``): many
    concurrent transfers together hold at most that, plus the one overhead.

    Attributes:
        part_size: bytes per part (S3: at least 5 MiB, at most 5 GiB). Default 8 MiB.
        queue_size: parts uploaded concurrently, and parts held in memory. Default 8 (over
            a 60 ms path 4 left the link idle between a part's last byte and its answer).
        high_water_mark: bytes the producer may read ahead of the parts in flight.
        multipart_threshold: a source smaller than this goes up in one PutObject.
        copy_threshold: a server-side copy of an object up to this size is one
            CopyObject (5 MiB to 5 GiB, S3's limit); above it, parallel UploadPartCopy.
        equal_parts: never grow parts (stores such as Cloudflare R2 require equal
            parts); a stream longer than ``part_size × 10,000`` then fails with
            :class:`streamx.PartLimitError` before part 10,001 is read.
        leave_parts_on_error: on failure keep the multipart upload (for a resume)
            instead of aborting it. Uploaded parts cost storage until aborted.
        checksum: ``"when_supported"`` computes a per-part checksum once, in the
            producer, sends it with every part and checks the full object;
            ``"when_required"`` sends checksums only where S3 requires them;
            ``"off"`` computes none. Some S3-compatible stores reject checksum
            headers: use ``"when_required"`` for them.
        checksum_algorithm: CRC32C (default), CRC32, CRC64NVME or SHA256.
        max_attempts: attempts per request (1 = no retry) on retryable failures; with the
            default 5, a request waits 3.75-7.5 s in all before it gives up (see
            ``streamx._retry``), so a few seconds of outage are ridden out.
        part_timeout: seconds one part request may take before it is retried
            (0: no limit). This and the other times must be finite numbers.
        stall_timeout: seconds a part request may go without moving a byte before
            it is cancelled and retried (``None``: no stall detector; then only
            ``part_timeout`` and the client's socket timeouts apply).
        abort_timeout: seconds the abort of a failed upload may take (it runs
            shielded from cancellation).
        progress_interval: minimum seconds between progress events.
    """

    part_size: int = 8 * MiB
    queue_size: int = 8
    high_water_mark: int = 1 * MiB
    multipart_threshold: int = 8 * MiB
    copy_threshold: int = MAX_PUT_SIZE
    equal_parts: bool = False
    leave_parts_on_error: bool = False
    checksum: ChecksumMode = "when_supported"
    checksum_algorithm: ChecksumAlgorithm = "CRC32C"
    max_attempts: int = 5
    part_timeout: float = 300.0
    stall_timeout: float | None = 60.0
    abort_timeout: float = 30.0
    progress_interval: float = field(default=0.1)

    def __post_init__(self) -> None:
        def need_int(name: str, value: object) -> int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an int, not {type(value).__name__}")
            return value

        part_size = need_int("part_size", self.part_size)
        if part_size < MIN_PART_SIZE:
            raise ConfigError(
                f"part_size {format_size(part_size)} is below S3's "
                f"{format_size(MIN_PART_SIZE)} minimum for all but the last part"
            )
        if part_size > MAX_PART_SIZE:
            raise ConfigError(
                f"part_size {format_size(part_size)} is above S3's {format_size(MAX_PART_SIZE)} maximum"
            )
        if need_int("queue_size", self.queue_size) < 1:
            raise ConfigError(f"queue_size must be at least 1, not {self.queue_size}")
        if self.queue_size > 1000:
            raise ConfigError(f"queue_size {self.queue_size} is absurd; use at most 1000")
        if need_int("high_water_mark", self.high_water_mark) < 0:
            raise ConfigError(f"high_water_mark must not be negative, not {self.high_water_mark}")
        if self.high_water_mark > MAX_MEMORY:
            raise ConfigError(
                f"high_water_mark {format_size(self.high_water_mark)} is absurd; "
                f"it is read-ahead memory (at most {format_size(MAX_MEMORY)})"
            )
        threshold = need_int("multipart_threshold", self.multipart_threshold)
        if threshold < 0:
            raise ConfigError(f"multipart_threshold must not be negative, not {threshold}")
        if threshold > MAX_PUT_SIZE:
            raise ConfigError(
                f"multipart_threshold {format_size(threshold)} is above S3's "
                f"{format_size(MAX_PUT_SIZE)} single-PUT limit"
            )
        copy_threshold = need_int("copy_threshold", self.copy_threshold)
        if not MIN_PART_SIZE <= copy_threshold <= MAX_PUT_SIZE:
            raise ConfigError(
                f"copy_threshold must be {format_size(MIN_PART_SIZE)} to "
                f"{format_size(MAX_PUT_SIZE)} (S3's CopyObject limit), not {copy_threshold}: "
                "below it every copy would be a multipart copy of tiny parts"
            )
        if self.checksum not in CHECKSUM_MODES:
            raise ConfigError(f"checksum must be one of {CHECKSUM_MODES}, not {self.checksum!r}")
        if self.checksum_algorithm not in CHECKSUM_ALGORITHMS:
            raise ConfigError(
                f"checksum_algorithm must be one of {CHECKSUM_ALGORITHMS}, "
                f"not {self.checksum_algorithm!r}"
            )
        if need_int("max_attempts", self.max_attempts) < 1:
            raise ConfigError(f"max_attempts must be at least 1, not {self.max_attempts}")
        for name in ("part_timeout", "abort_timeout", "progress_interval"):
            check_timeout(name, getattr(self, name))  # NaN and inf too: they compare false
        stall = self.stall_timeout
        if stall is not None and (
            isinstance(stall, bool)
            or not isinstance(stall, int | float)
            or not math.isfinite(stall)
            or not stall > 0
        ):
            raise ConfigError(
                f"stall_timeout must be a finite, positive number or None, not {stall!r}"
            )
        for name in ("equal_parts", "leave_parts_on_error"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False")

    @property
    def window(self) -> int:
        """Bytes of parts that may be queued or in flight at once."""
        threshold_parts = math.ceil(self.multipart_threshold / self.part_size) * self.part_size
        return max(self.part_size * self.queue_size, threshold_parts)

    @property
    def memory_bound(self) -> int:
        """The bound stated above, in bytes: ``high_water_mark + window``."""
        return self.high_water_mark + self.window

    @property
    def process_memory_bound(self) -> int:
        """``memory_bound`` plus ``RUNTIME_OVERHEAD``: what the process may grow by, in bytes."""
        return self.memory_bound + RUNTIME_OVERHEAD

    @property
    def memory_bound_stream_limit(self) -> int:
        """Longest stream of unknown length whose parts all fit inside ``window``."""
        from ._limits import PartPlan

        plan = PartPlan.for_stream(self.part_size, equal_parts=self.equal_parts)
        n = 1
        while n <= MAX_PARTS and plan.size_of(n) <= self.window:
            n += 1
        return plan.offset_of(n) if n <= MAX_PARTS else plan.capacity


def resolve_config(config: object, default: TransferConfig) -> TransferConfig:
    """A call's ``config=``: a :class:`TransferConfig`, or ``None`` for the engine's."""
    if config is None:
        return default
    if not isinstance(config, TransferConfig):
        raise ConfigError(f"config must be a TransferConfig, not {type(config).__name__}")
    return config
