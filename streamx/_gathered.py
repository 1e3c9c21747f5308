"""A part's bytes as the chunks a stream delivered them in, not copied into one buffer.

Why: a stream's chunks (a generator's, a push writer's, a request body's) are
immutable ``bytes`` once taken (``upload/chunks.py``), so a part can be the list
of them. Copying them into a part buffer cost the event loop about a fifth of a
CPU-second per GiB (profiled: a push writer of 1 MiB chunks, 0.19 of 0.5 CPU-s
per GiB on the loop), under the GIL, on the one thread every transfer shares.
The thread sender sends the pieces one after the other; checksums are computed
piece by piece; only aiobotocore's request path (a fallback) joins them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

Piece = bytes | bytearray | memoryview


class Gathered:
    """The bytes of ``pieces`` (each bytes-like), in order."""

    __slots__ = ("_size", "pieces")

    def __init__(self, pieces: list[Piece]) -> None:
        self.pieces = pieces
        self._size = sum(len(p) for p in pieces)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Piece]:
        return iter(self.pieces)

    def __bytes__(self) -> bytes:
        return b"".join(self.pieces)

    def __repr__(self) -> str:
        return f"Gathered({len(self.pieces)} pieces, {self._size} bytes)"


def pieces(data: Piece | Gathered) -> Sequence[Piece]:
    """``data``'s pieces: a gathered part's chunks, or the one buffer it is."""
    return data.pieces if isinstance(data, Gathered) else (data,)


def hashed(algorithm: str, data: Piece | Gathered) -> Any:
    """``hashlib``'s ``algorithm`` (``"md5"``, ``"sha256"``) fed ``data`` piece by piece (an
    MD5 here is an S3 ETag, not a security use)."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    for piece in pieces(data):
        digest.update(piece)
    return digest


def hexdigest(algorithm: str, data: Piece | Gathered) -> str:
    return str(hashed(algorithm, data).hexdigest())


__all__ = ["Gathered", "Piece", "hashed", "hexdigest", "pieces"]
