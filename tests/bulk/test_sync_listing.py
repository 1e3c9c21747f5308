"""bulk/listing.py against moto: the destination listed in ranges cut at source keys pairs
exactly as one merge of both whole listings (a store listed directory by directory is
listed whole), and a failed range listing surfaces as itself."""

from __future__ import annotations

from pathlib import Path

import pytest

import streamx
from streamx.bulk.listing import listed_pairs
from streamx.bulk.sides import LocalSide, S3Side

pytestmark = [pytest.mark.anyio, pytest.mark.servers("moto")]

# keys on purpose around the cuts: "a-b" < "a.b" < "a/…" < "a0" in S3's order
SOURCE = ["a-b", "a.b", "a/1", "a/2", "a/3", "a0", "b", "c/x", "d"]
DEST = ["a!", "a.b", "a/2", "a/25", "a/3", "a0", "c/x", "c/y", "e", "f", "g"]


@pytest.mark.parametrize(
    ("span", "ahead", "tree"),
    [(1, 1, False), (2, 2, False), (3, 4, False), (1000, 4, False), (2, 2, True)],
)
@pytest.mark.parametrize(("after", "until"), [(None, None), ("a.b", "c/x")])
async def test_ranged_listing_pairs_as_one_merge(
    engine: streamx.Engine,
    bucket: str,
    tmp_path: Path,
    span: int,
    ahead: int,
    tree: bool,
    after: str | None,
    until: str | None,
) -> None:
    for key in SOURCE:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(key.encode())
    for key in DEST:
        await engine.client.put_object(Bucket=bucket, Key=f"p/{key}", Body=b"x")
    src, dst = LocalSide(str(tmp_path)), S3Side(engine, bucket, "p/", tree=tree)

    got = []
    async with listed_pairs(src, dst, after, until, span=span, ahead=ahead) as pairs:
        async for s, d in pairs:
            got.append((s.key if s else None, d.key if d else None))

    def inside(k: str) -> bool:
        return (after is None or k > after) and (until is None or k <= until)

    keys = sorted(k for k in set(SOURCE) | set(DEST) if inside(k))
    want = [(k if k in SOURCE else None, k if k in DEST else None) for k in keys]
    assert got == want


async def test_a_failed_range_listing_raises_itself(engine: streamx.Engine, tmp_path: Path) -> None:
    for key in ("a", "b", "c"):
        (tmp_path / key).write_bytes(b"x")
    dst = S3Side(engine, "no-such-bucket-streamx", "")
    with pytest.raises(streamx.NotFoundError):
        async with listed_pairs(LocalSide(str(tmp_path)), dst, None, None, span=1) as pairs:
            async for _ in pairs:
                pass
