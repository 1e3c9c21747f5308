"""tus servers side by side: streamx.web.tus against ``@tus/server`` + ``@tus/s3-store``.

``python benchmarks/tus_bench.py [--size 1GiB] [--runs 1]``: one file through tus-js-client
(Node) into ``rclone serve s3``, with 8 MiB chunks and in one PATCH, then 32 uploads of 32 MiB
at once from one Node process (8 MiB chunks), per server: streamx on
aiohttp, streamx on FastAPI/uvicorn, and the Node reference. Each cell starts a fresh server
process (streamx's from benchmarks/.venv-serve, its runtime extras only, and told its
store is rclone); reported: MiB/s (client wall time), the tus server's CPU seconds per GiB and peak RSS
(``/proc``), and rclone's CPU per GiB. Writes benchmarks/results/tus.{json,md}.

Needs Node and npm (``apt-get install nodejs npm``); the peers install from
benchmarks/tus_node/package.json on first use. rclone and the servers share this machine's
cores with the client, so the numbers are for comparison, not absolutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3

from streamx.testing import RcloneServer, free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from venvs import serve_python

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "tus_node"
MiB = 1024 * 1024
PART = 8 * MiB
CHUNKS: list[int | None] = [8 * MiB, None]  # None: the whole file in one PATCH
SERVERS = ["streamx-aiohttp", "streamx-fastapi", "node"]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the tus server did not start") from None
            time.sleep(0.05)


def node_ready() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        sys.exit("the tus benchmark needs Node.js and npm: apt-get install nodejs npm")
    if not (NODE_DIR / "node_modules" / "@tus" / "server").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)
    return node


def start_server(
    kind: str, rclone: RcloneServer, bucket: str, port: int
) -> subprocess.Popen[bytes]:
    args = rclone.engine_args()
    if kind == "node":
        cfg = {
            "port": port,
            "bucket": bucket,
            "endpoint": args["endpoint_url"],
            "accessKey": args["aws_access_key_id"],
            "secretKey": args["aws_secret_access_key"],
            "region": args["region_name"],
            "partSize": PART,
        }
        cmd = [node_ready(), str(NODE_DIR / "server.mjs"), json.dumps(cfg)]
    else:
        cfg = {
            "framework": kind.split("-", 1)[1],
            "port": port,
            "bucket": bucket,
            # the store's profile, as a deployment names it: rclone ignores If-None-Match,
            # so no lock object is written (streamx/web/tus/_state.py)
            "engine": {**args, "store": "rclone"},
            "open": True,  # no users, no authorization: the Node server has none either
            "overwrite": True,  # rclone ignores If-None-Match (@tus/server does not check)
            "options": {
                "part_size": PART,
                **json.loads(os.environ.get("TUS_BENCH_STREAMX", "{}")),  # TusOptions to try
            },
        }
        # the tus app of the tests (tests/tus_app.py), in its open mode
        # (run by streamx as deployed: benchmarks/venvs.py)
        cmd = [serve_python(), str(HERE.parent / "tests" / "tus_app.py"), json.dumps(cfg)]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc


def one_run(
    kind: str,
    chunk: int | None,
    rclone: RcloneServer,
    bucket: str,
    path: str,
    size: int,
    count: int = 1,
) -> dict[str, Any]:
    port = free_port()
    server = start_server(kind, rclone, bucket, port)
    try:
        cpu0, rclone0 = cpu_seconds(server.pid), rclone.cpu_seconds()
        opts = {
            "endpoint": f"http://127.0.0.1:{port}/api/tus/",
            "path": path,
            "chunkSize": chunk,
            "count": count,
        }
        script = "client.mjs" if count == 1 else "client_many.mjs"
        done = subprocess.run(
            [node_ready(), str(NODE_DIR / script), json.dumps(opts)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        out = json.loads(done.stdout.strip().splitlines()[-1])
        if "error" in out:
            raise RuntimeError(f"{kind}: {out['error']}")
        time.sleep(0.5)  # let the server finish its bookkeeping after answering
        gib = count * size / 1024**3
        chunks = "one PATCH" if chunk is None else f"{chunk // MiB} MiB"
        row = {
            "server": kind,
            "chunk": chunks if count == 1 else f"{count} x {size // MiB} MiB, {chunks}",
            "mib_s": count * size / MiB / out["seconds"],
            "server_cpu_s_per_gib": (cpu_seconds(server.pid) - cpu0) / gib,
            "server_peak_rss_mib": peak_rss_mib(server.pid),
            "rclone_cpu_s_per_gib": (rclone.cpu_seconds() - rclone0) / gib,
        }
    finally:
        server.terminate()
        server.wait(30)
    s3 = boto3.client("s3", **rclone.engine_args())
    objects = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    row["object_ok"] = sum(o["Size"] == size for o in objects) == count
    row["objects_left"] = len(objects)
    for o in objects:
        s3.delete_object(Bucket=bucket, Key=o["Key"])
    return row


def parse_size(text: str) -> int:
    unit = {"MiB": MiB, "GiB": 1024 * MiB}[text[-3:]]
    return int(float(text[:-3]) * unit)


def random_file(size: int) -> str:
    path = f"/tmp/streamx-tus-bench-{size}.bin"
    if not os.path.exists(path) or os.path.getsize(path) != size:
        with open(path, "wb") as f:
            for _ in range(size // (8 * MiB)):
                f.write(os.urandom(8 * MiB))
            f.write(os.urandom(size % (8 * MiB)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GiB", help="e.g. 256MiB, 1GiB")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--servers", nargs="+", default=SERVERS, choices=SERVERS)
    parser.add_argument(
        "--concurrent", default="32x32MiB", help="COUNTxSIZE uploads at once ('' to skip)"
    )
    ns = parser.parse_args()
    size = parse_size(ns.size)
    path = random_file(size)
    cells: list[tuple[str, int | None, str, int, int]] = [
        (kind, chunk, path, size, 1) for chunk in CHUNKS for kind in ns.servers
    ]
    if ns.concurrent:
        count, each = ns.concurrent.split("x")
        each_size = parse_size(each)
        small = random_file(each_size)
        cells += [(kind, 8 * MiB, small, each_size, int(count)) for kind in ns.servers]
    runs: dict[tuple[str, int | None, int], list[dict[str, Any]]] = {}
    with RcloneServer() as rclone:
        rclone.make_bucket("tus-bench")
        # runs interleaved (every cell once, then again): on a shared machine a load
        # change then hits every server alike, not all runs of one
        for _ in range(ns.runs):
            for kind, chunk, file, file_size, count in cells:
                row = one_run(kind, chunk, rclone, "tus-bench", file, file_size, count)
                runs.setdefault((kind, chunk, count), []).append(row)
                print(json.dumps(row), flush=True)
    rows: list[dict[str, Any]] = []
    for cell in runs.values():
        row = {k: cell[0][k] for k in ("server", "chunk")}
        for k in cell[0]:
            if k not in row and isinstance(cell[0][k], float):
                row[k] = statistics.median(r[k] for r in cell)
        row["object_ok"] = all(r["object_ok"] for r in cell)
        row["objects_left"] = max(r["objects_left"] for r in cell)
        row["runs"] = [round(r["mib_s"], 1) for r in cell]
        rows.append(row)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"tus, {ns.size} through tus-js-client into rclone serve s3, {PART // MiB} MiB parts, "
        f"{ns.runs} run(s) interleaved (median; MiB/s of each run in the last column), "
        f"{stamp}, load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        "",
        "| server | chunks | MiB/s (all uploads) | server CPU-s/GiB | server peak RSS MiB | rclone CPU-s/GiB |"
        " objects left | MiB/s per run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['server']} | {r['chunk']} | {r['mib_s']:.0f} | {r['server_cpu_s_per_gib']:.2f} "
            f"| {r['server_peak_rss_mib']:.0f} | {r['rclone_cpu_s_per_gib']:.2f} "
            f"| {r['objects_left']} | {', '.join(f'{v:.0f}' for v in r['runs'])} |"
        )
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "tus.json").write_text(json.dumps({"when": stamp, "size": size, "rows": rows}, indent=1))
    (out / "tus.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
