"""The tus concatenation extension (streamx/web/tus/_concat.py).

tus-js-client's ``parallelUploads`` (Node): the file is sent as partial uploads at once,
then one final upload names them. On moto (its store profile: UploadPartCopy works) a
partial of 5 MiB or more becomes a part inside the store; smaller partials are read back
and sent as 5 MiB parts. On rclone serve s3 (UploadPartCopy sends empty parts) every part
is read back. Each object is checked by SHA-256, and the bucket holds the objects and
nothing else. The part plan itself: unit tests.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tus_helpers import (
    MiB,
    TusServer,
    bucket_keys,
    multipart_uploads,
    new_bucket,
    random_file,
    run_js,
    running,
    sha256_file,
    sha256_object,
)

from streamx._limits import MAX_PART_SIZE, MIN_PART_SIZE
from streamx.web.tus._concat import parse_final, plan_parts
from streamx.web.tus._protocol import TusError


@pytest.mark.parametrize("name", ["moto", "rclone"])
def test_parallel_uploads_are_concatenated(
    name: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    server = request.getfixturevalue(f"{name}_server")
    bucket = new_bucket(server)
    path = random_file(str(tmp_path / "c.bin"), 13 * MiB + 7)
    tus = TusServer(server, bucket, "aiohttp", options={"part_size": 5 * MiB})
    tus.cfg["engine"]["store"] = server.store  # the profile says whether UploadPartCopy works
    keys = []
    with running(tus):
        # 2 partials of 6.5 MiB: copied on moto; 3 of 4.3 MiB: read back and sent
        for parallel in (2, 3):
            events = run_js(
                {
                    "endpoint": tus.url,
                    "path": path,
                    "headers": {"X-User": "cat"},
                    "parallelUploads": parallel,
                }
            )
            assert events[-1]["event"] == "success", events[-1]
            keys.append(f"users/cat/{events[-1]['url'].rstrip('/').rsplit('/', 1)[1]}")
        # refusals: a partial that is not complete, another user's, a length on a final
        h = {"Tus-Resumable": "1.0.0", "X-User": "cat"}
        r = httpx.post(tus.url, headers={**h, "Upload-Length": "10", "Upload-Concat": "partial"})
        assert r.status_code == 201, r.text
        partial = str(httpx.URL(tus.url).join(r.headers["location"]))
        assert httpx.head(partial, headers=h).headers["upload-concat"] == "partial"
        final = {**h, "Upload-Concat": f"final;{partial}"}
        assert httpx.post(tus.url, headers=final).status_code == 400  # not complete
        assert httpx.post(tus.url, headers={**final, "X-User": "mal"}).status_code == 400
        assert httpx.post(tus.url, headers={**final, "Upload-Length": "10"}).status_code == 400
        assert httpx.delete(partial, headers=h).status_code == 204
    assert bucket_keys(server, bucket) == sorted(keys)  # no partial, no helper object
    for key in keys:
        assert sha256_object(server, bucket, key) == sha256_file(path)
    assert multipart_uploads(server, bucket) == []


@pytest.mark.parametrize(
    "sizes",
    [
        [13 * MiB],
        [3 * MiB, 3 * MiB, 3 * MiB],
        [MiB, 9 * MiB, 2 * MiB, 6 * MiB],
        [6 * MiB, 1, 6 * MiB],
        [0, 5 * MiB, 0],
        [MAX_PART_SIZE * 2 + 3],
    ],
)
@pytest.mark.parametrize("copy", [True, False])
def test_part_plan(sizes: list[int], copy: bool) -> None:
    parts = plan_parts(sizes, copy=copy, part_size=8 * MiB)
    # every byte once, in order
    flat = [r for part in parts for r in part]
    pos = [0] * len(sizes)
    order = []
    for index, start, end in flat:
        assert start == pos[index]
        pos[index] = end
        order.append(index)
    assert pos == sizes and order == sorted(order)
    for part in parts[:-1]:  # every part but the last meets S3's minimum, none its maximum
        size = sum(end - start for _, start, end in part)
        assert MIN_PART_SIZE <= size <= MAX_PART_SIZE
        if not copy:
            assert size == 8 * MiB
        elif len(part) > 1:
            assert size == MIN_PART_SIZE  # bytes read back: one 5 MiB part at a time


def test_part_plan_copies_big_partials_and_parses_the_header() -> None:
    parts = plan_parts([6 * MiB, 1, 6 * MiB], copy=True, part_size=8 * MiB)
    assert parts[0] == [(0, 0, 6 * MiB)]  # a copy
    assert parts[1] == [(1, 0, 1), (2, 0, 5 * MiB - 1)]  # read back: 1 byte + the next partial
    assert parts[2] == [(2, 5 * MiB - 1, 6 * MiB)]  # the rest (the last part may be small)
    assert plan_parts([], copy=True, part_size=8 * MiB) == [[]]
    assert parse_final("final;/api/tus/" + "a" * 32 + " http://h/api/tus/" + "b" * 32) == [
        "a" * 32,
        "b" * 32,
    ]
    for bad in ("final;", "partial", "final;/api/tus/../x", "nope;/a"):
        with pytest.raises(TusError):
            parse_final(bad)
