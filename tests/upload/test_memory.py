"""Memory is the design's promise: measured as a child process's peak RSS.

The child is ``examples/demo.py --json`` (the same program as ``make demo``):
it streams a generated non-seekable source through the engine into a real
rclone server with the default parts (8 MiB, queue_size 8), reads it back and checks the
SHA-256. Its peak RSS above its own baseline (after imports and client
creation) must stay within the bound ``TransferConfig`` states for the
process, ``process_memory_bound`` (``high_water_mark + part_size ×
queue_size`` of data plus ``RUNTIME_OVERHEAD`` for the HTTP stack, sender
threads and malloc arenas: the same figure the demo prints), and must not
grow with the stream's length.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

MiB = 1024 * 1024
DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"


def stream_in_child(size: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(DEMO), "--size", size, "--json"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, f"demo.py --size {size} exited {out.returncode}:\n{out.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.slow
def test_streaming_memory_is_bounded_and_flat() -> None:
    small = stream_in_child("256MiB")
    large = stream_in_child("1GiB")
    for report in (small, large):
        assert report["verified"], "SHA-256 of the object read back differs"
        growth = report["peak_rss"] - report["baseline_rss"]
        assert report["process_memory_bound"] == report["memory_bound"] + 40 * MiB
        assert growth <= report["process_memory_bound"], (
            f"peak RSS grew {growth / MiB:.1f} MiB over the baseline; the stated bound is "
            f"{report['process_memory_bound'] / MiB:.0f} MiB "
            f"({report['memory_bound'] / MiB:.0f} MiB of data + 40 MiB runtime overhead)"
        )
    assert large["parts"] == 128
    # 4x the stream, same memory (within 16 MiB of noise)
    assert large["peak_rss"] - small["peak_rss"] <= 16 * MiB
