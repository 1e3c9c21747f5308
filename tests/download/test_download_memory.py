"""Peak RSS of a child process that downloads a large object with download_file.

The child generates and uploads the object itself (streamed: it never holds
it), then resets the kernel's peak-RSS counter (``/proc/self/clear_refs``),
takes its resident size as the baseline, downloads with ``download_file`` and
reports its peak. The peak may exceed the baseline by the download's stated
bound (``part_size * queue_size`` of ranges in flight) plus a 48 MiB margin
for the HTTP stack, the thread pool and the allocator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from streamx.testing import RcloneServer

MiB = 1024 * 1024
SIZE = 256 * MiB
PART = 8 * MiB
QUEUE = 4
MARGIN = 48 * MiB

CHILD = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import anyio
    import streamx

    SIZE, PART, QUEUE, TARGET = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    async def main():
        block = os.urandom(1024 * 1024)
        digest = hashlib.sha256()

        def chunks():
            for i in range(SIZE // len(block)):
                chunk = i.to_bytes(8, "big") + block[8:]
                digest.update(chunk)
                yield chunk

        async with streamx.Engine() as engine:
            await engine.client.create_bucket(Bucket="memory")
            await engine.upload("memory", "big", chunks(), size=SIZE)
            await engine.get_range("memory", "big", 0, 1)  # warm up the client's code paths
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak-RSS counter (VmHWM)
            baseline = status("VmRSS")
            config = streamx.TransferConfig(part_size=PART, queue_size=QUEUE)
            result = await engine.download_file("memory", "big", TARGET, config=config)
            peak = status("VmHWM")
        got = hashlib.sha256()
        with open(TARGET, "rb") as f:
            while chunk := f.read(1024 * 1024):
                got.update(chunk)
        print(json.dumps({
            "baseline": baseline, "peak": peak, "size": result.size,
            "ok": got.hexdigest() == digest.hexdigest(),
        }))

    anyio.run(main)
    """
)


@pytest.mark.slow
def test_download_file_peak_rss(rclone_server: RcloneServer, tmp_path: object) -> None:
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak RSS")
    target = os.path.join(str(tmp_path), "big.bin")
    env = {**os.environ, **rclone_server.env()}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(SIZE), str(PART), str(QUEUE), target],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["size"] == SIZE
    grew = report["peak"] - report["baseline"]
    bound = PART * QUEUE
    print(
        f"baseline {report['baseline'] / MiB:.0f} MiB, peak {report['peak'] / MiB:.0f} MiB, "
        f"grew {grew / MiB:.1f} MiB (bound {bound / MiB:.0f} + margin {MARGIN / MiB:.0f} MiB)"
    )
    assert grew <= bound + MARGIN
