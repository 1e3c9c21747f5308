"""``make bench``: streamx against its peers, each measured run its own process.

Settings are at the top; everything can be narrowed from the command line::

    python benchmarks/run.py                      # the full matrix, 1 GiB, 3 runs + warm-up
    python benchmarks/run.py --quick              # 64 MiB, 1 run, no warm-up: a smoke test
    python benchmarks/run.py --servers sink --scenarios upload_file upload_stream \
        --clients streamx obstore --size 1GiB --runs 5

Per run the harness records wall time and throughput of the transfer (timed in
the child, excluding interpreter start-up and imports), the child's CPU seconds
during the transfer (its own ``getrusage`` delta: every thread, Rust and C
ones included) and for the whole process (``wait4``), its peak RSS
(``ru_maxrss``), and the server's CPU over the run (``/proc/PID/stat``).
Reported: medians with min–max over the measured runs.

Servers (benchmarks/servers.py): ``sink`` (benchmarks/sink.py: reads and
discards bodies, so the client's own cost shows), ``source``
(benchmarks/source.py: serves synthetic objects with sendfile, the same for
downloads), ``rclone`` (``rclone serve s3``, a real server that checks
signatures and writes to disk), ``wan20``/``wan60`` (a sink and a source
behind benchmarks/wanproxy.py: 1 Gbps at 20 / 60 ms RTT).

The cells of issue 14 (``tiny``, ``concurrent_default``, ``slow``, the
``sweep_*`` and ``wan_*`` cells) run every library with its own defaults, as
a new user would; the rest use the same part size and concurrency for every
client. ``sweep_*_first`` times the first transfer of a fresh process from
before the client is created; ``sweep_*_steady`` times transfers 3.. of one
long-lived client.

Peers run in their own venv (benchmarks/.venv-peers, created on first use) so
that aioboto3's aiobotocore pin cannot clash with streamx's; streamx runs from
benchmarks/.venv-serve, its runtime dependencies only, as the peers do (the
development venv's httpx, which aiobotocore imports when installed, would add
its import time and RSS to streamx's cells alone). See benchmarks/venvs.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import servers
from report import (
    GiB,
    MiB,
    fmt_size,
    machine,
    markdown,
    mm,
    parse_size,
    plot,
    plot_sweep,
    targets,
)
from venvs import peers_python, serve_python

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLIENTS = HERE / "clients"
RESULTS = HERE / "results"
DATA = HERE / ".data"
MAIN_PY = sys.executable

# ---- settings (the issue's: same part size and concurrency for every client) ------------
PART_SIZE = 8 * MiB
CONCURRENCY = 8
SIZE = 1 * GiB
RUNS = 3
SMALL_COUNT, SMALL_SIZE, SMALL_CONCURRENCY = 200, 1 * MiB, 16
CONCURRENT_COUNT, CONCURRENT_SIZE = 64, 16 * MiB
BUDGET = 128 * MiB
MEMSCAN_SIZES = (1 * GiB, 4 * GiB)
# issue 14: every cell below runs each library with its OWN defaults (Engine(), S3Store(), ...)
ASYNC_CHUNK = 256 * 1024  # concurrent_default: async generators of request-body-sized chunks
SLOW_COUNT, SLOW_SIZE, SLOW_CHUNK, SLOW_DELAY = 1000, 1 * MiB, 64 * 1024, 0.02
TINY_COUNT, TINY_SIZE, TINY_CONCURRENCY = 10_000, 4 * 1024, 64
SWEEP_SIZES = (1 * MiB, 16 * MiB, 64 * MiB, 256 * MiB, 1 * GiB)
SWEEP_STEADY_BYTES = 1 * GiB  # steady state: about this many bytes timed (2..50 transfers)
WAN_SIZES = (16 * MiB, 64 * MiB, 256 * MiB)
RUN_TIMEOUT = 900

ACCESS, SECRET = "bench-access-key", "bench-secret-key-0123456789"

# client name -> (interpreter, script, extra args)
CLIENT_DEFS: dict[str, tuple[str, str, list[str]]] = {
    "streamx": ("serve", "streamx_client.py", []),  # as deployed: benchmarks/venvs.py
    "aioboto3": ("peers", "aioboto3_client.py", []),
    "boto3": ("peers", "boto3_client.py", []),
    "s3fs": ("peers", "s3fs_client.py", []),
    "obstore": ("peers", "obstore_client.py", []),
    "obstore-unsigned": ("peers", "obstore_client.py", ["--unsigned"]),
    "naive": ("peers", "boto3_client.py", ["--naive"]),
}
PEERS = ["aioboto3", "boto3", "s3fs", "obstore"]
SWEEP_PEERS = ["obstore", "boto3", "aioboto3"]
SERVERS = ["sink", "source", "rclone", "wan20", "wan60"]

# (server, scenario) -> clients, in table order
MATRIX: dict[tuple[str, str], list[str]] = {
    ("sink", "upload_file"): ["streamx", *PEERS, "obstore-unsigned"],
    ("sink", "upload_stream"): ["streamx", *PEERS, "obstore-unsigned", "naive"],
    ("sink", "upload_aiter"): ["streamx", "obstore"],
    ("sink", "upload_writer"): ["streamx", "s3fs", "obstore"],
    ("sink", "many_small"): ["streamx", *PEERS],
    ("sink", "tiny"): ["streamx", "obstore", "aioboto3", "boto3"],
    ("sink", "concurrent"): ["streamx", "aioboto3", "boto3", "obstore"],
    ("sink", "concurrent_default"): ["streamx", "obstore"],
    ("sink", "slow"): ["streamx", "obstore"],
    ("sink", "slow_fresh"): ["streamx", "obstore"],
    ("sink", "budget"): ["streamx"],
    ("sink", "memscan"): ["streamx", "obstore"],
    ("sink", "baseline"): ["streamx"],
    ("sink", "sweep_up_first"): ["streamx", *SWEEP_PEERS],
    ("sink", "sweep_up_steady"): ["streamx", *SWEEP_PEERS],
    ("source", "download_iter"): ["streamx", *PEERS],
    ("source", "download_stream"): ["streamx", *PEERS],
    ("source", "download_file"): ["streamx", *PEERS],
    ("source", "download_concurrent"): ["streamx", "obstore", "aioboto3", "boto3"],
    ("source", "sweep_down_first"): ["streamx", *SWEEP_PEERS],
    ("source", "sweep_down_steady"): ["streamx", *SWEEP_PEERS],
    ("rclone", "upload_file"): ["streamx", *PEERS],
    ("rclone", "upload_stream"): ["streamx", *PEERS, "naive"],
    ("rclone", "download_file"): ["streamx", *PEERS],
    ("rclone", "download_stream"): ["streamx", *PEERS],
    ("rclone", "many_small"): ["streamx", *PEERS],
    **{(w, s): ["streamx", "obstore"] for w in ("wan20", "wan60") for s in ("wan_up", "wan_down")},
}
SCENARIO_TITLES = {
    "upload_file": "upload {size} from a file",
    "upload_stream": "upload {size} from a non-seekable generator of 1 MiB chunks",
    "upload_aiter": "upload {size} from an async generator of 1 MiB chunks",
    "upload_writer": "upload {size} through a push writer (open_writer / open('wb'))",
    "download_file": "download {size} to a file",
    "download_stream": "download {size} to a non-seekable sink (streamx: download_to)",
    "download_iter": "download {size} as one streamed GET iterated by the caller (streamx: download())",
    "download_concurrent": "{count} concurrent streamed downloads of {obj}",
    "many_small": "{count} objects of {obj}, concurrency {conc}",
    "tiny": "{count} objects of {obj}, concurrency {conc}, library defaults",
    "concurrent": "{count} concurrent uploads of {obj} (generators)",
    "concurrent_default": "{count} concurrent uploads of {obj} from async generators of 256 KiB "
    "chunks, library defaults (Engine())",
    "slow": "{count} concurrent uploads of {obj} from slow producers (64 KiB every 20 ms), "
    "library defaults",
    "slow_fresh": "{count} concurrent uploads of {obj} from slow producers (64 KiB every 20 ms), "
    "each chunk a new bytes object as a request body's reads are, library defaults",
    "budget": "{count} concurrent uploads of {obj} under a {budget} MemoryBudget",
    "memscan": "memory scan: peak RSS of a stream upload by size",
    "baseline": "baseline: the interpreter + client after one tiny PutObject",
    "sweep_up_first": "size sweep: upload from a file, first transfer of a fresh process "
    "(client creation timed), library defaults",
    "sweep_up_steady": "size sweep: upload from a file, steady state of a long-lived client "
    "(after 2 warm-ups), library defaults",
    "sweep_down_first": "size sweep: download to a discard sink, first transfer of a fresh "
    "process, library defaults",
    "sweep_down_steady": "size sweep: download to a discard sink, steady state, library defaults",
    "wan_up": "over a WAN (1 Gbps, {rtt} ms RTT): upload from a file, fresh process, defaults",
    "wan_down": "over a WAN (1 Gbps, {rtt} ms RTT): download to a discard sink, fresh process, "
    "defaults",
}
# scenario -> (what the client script runs, --mode, library defaults?)
CLIENT_SCENARIO: dict[str, tuple[str, str, bool]] = {
    "upload_aiter": ("concurrent_async", "once", False),
    "tiny": ("many_small", "once", True),
    "concurrent_default": ("concurrent_async", "once", True),
    "slow": ("slow", "once", True),
    "slow_fresh": ("slow", "once", True),
    "memscan": ("upload_stream", "once", False),
    "baseline": ("many_small", "once", False),
    "sweep_up_first": ("upload_file", "first", True),
    "sweep_up_steady": ("upload_file", "steady", True),
    "sweep_down_first": ("download_stream", "first", True),
    "sweep_down_steady": ("download_stream", "steady", True),
    "wan_up": ("upload_file", "first", True),
    "wan_down": ("download_stream", "first", True),
}
DOWNLOADS = {"download_file", "download_stream", "download_iter", "download_concurrent"}


def is_download(scenario: str) -> bool:
    return CLIENT_SCENARIO.get(scenario, (scenario, "", False))[0] in DOWNLOADS


# ---- processes -------------------------------------------------------------------------
def peer_versions(py: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({p: m.version(p) for p in "
        "['aioboto3','aiobotocore','boto3','botocore','s3transfer','s3fs','obstore','aiohttp']}))"
    )
    out = subprocess.run([py, "-c", code], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def main_versions() -> dict[str, str]:
    import importlib.metadata as m

    names = ["streamx", "aiobotocore", "botocore", "aiohttp", "awscrt", "anyio", "uvloop"]
    out = {}
    for name in names:
        try:
            out[name] = m.version(name)
        except m.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ---- one cell: a scenario × a client on a server ------------------------------------------
@dataclass
class Cell:
    server: str
    scenario: str
    client: str
    size: int
    count: int = 1
    concurrency: int = CONCURRENCY
    budget: int = 0
    repeat: int = 1  # steady-state transfers timed in one process
    runs: list[dict[str, Any]] = field(default_factory=list)
    warmup: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.server}/{self.scenario}/{self.client}/{fmt_size(self.size)}"


def run_once(cell: Cell, server: Any, py: dict[str, str], bucket: str, key: str) -> dict[str, Any]:
    interp, script, extra = CLIENT_DEFS[cell.client]
    scenario, mode, defaults = CLIENT_SCENARIO.get(cell.scenario, (cell.scenario, "once", False))
    size = 1 if cell.scenario == "baseline" else cell.size
    extra = [*extra, "--mode", mode, "--repeat", str(cell.repeat)]
    if defaults:
        extra.append("--defaults")
    if cell.scenario == "concurrent_default":
        extra += ["--chunk", str(ASYNC_CHUNK)]
    if cell.scenario in ("slow", "slow_fresh"):
        extra += ["--chunk", str(SLOW_CHUNK), "--delay", str(SLOW_DELAY)]
    if cell.scenario == "slow_fresh":
        extra.append("--fresh-chunks")
    cmd = [
        py[interp],
        str(CLIENTS / script),
        *extra,
        "--scenario", scenario,
        "--endpoint", server.endpoint("down" if is_download(cell.scenario) else "up"),
        "--access-key", ACCESS,
        "--secret-key", SECRET,
        "--bucket", bucket,
        "--key", key,
        "--size", str(size),
        "--count", str(cell.count),
        "--part-size", str(PART_SIZE),
        "--concurrency", str(cell.concurrency),
        "--file", str(DATA / f"file-{cell.size}.bin"),
        "--out", str(DATA / "download.out"),
        "--budget", str(cell.budget),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("AWS_PROFILE", None)
    server_cpu0 = server.cpu_seconds()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    # the child was reaped with wait4 (see _try_wait below): its own rusage is on proc
    wall = time.perf_counter() - t0
    usage = getattr(proc, "rusage", None)
    record: dict[str, Any] = {
        "exit": proc.returncode,
        "process_wall_seconds": wall,
        "server_cpu_seconds": server.cpu_seconds() - server_cpu0,
    }
    if usage is not None:
        record["process_cpu_seconds"] = usage.ru_utime + usage.ru_stime
        record["peak_rss_mib"] = usage.ru_maxrss / 1024
    if proc.returncode and proc.returncode < 0:
        record["signal"] = signal.Signals(-proc.returncode).name
    result = None
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
    if result is None:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        record.update(ok=False, error=" | ".join(tail) or f"exit {proc.returncode}, no result")
    else:
        record.update(result)
    return record


# subprocess.Popen does not expose the child's rusage; wait4 does. Patch Popen's
# reaping so that every child's own rusage is kept on the Popen object.
_orig_try_wait = subprocess.Popen._try_wait  # type: ignore[attr-defined]


def _try_wait(self: subprocess.Popen[Any], wait_flags: int) -> tuple[int, int]:
    try:
        pid, status, usage = os.wait4(self.pid, wait_flags)
    except ChildProcessError:
        return self.pid, 0
    if pid == self.pid:
        self.rusage = usage  # type: ignore[attr-defined]
    return pid, status


subprocess.Popen._try_wait = _try_wait  # type: ignore[attr-defined]


def summarize(cell: Cell) -> dict[str, Any]:
    runs = cell.runs
    good = [r for r in runs if r.get("ok")]
    out: dict[str, Any] = {
        "server": cell.server,
        "scenario": cell.scenario,
        "client": cell.client,
        "size": cell.size,
        "count": cell.count,
        "concurrency": cell.concurrency,
        "budget": cell.budget,
        "repeat": cell.repeat,
        "runs": runs,
        "warmup": cell.warmup,
        "measured": len(good),
    }
    unsupported = [r["unsupported"] for r in runs if "unsupported" in r]
    if unsupported:
        out["status"] = f"not available: {unsupported[0]}"
        return out
    failed = [r for r in runs if not r.get("ok")]
    signals = sorted({r["signal"] for r in good if r.get("signal")})
    notes = sorted({r.get("note", "") for r in good if r.get("note")})
    status = "ok"
    if signals:
        status += f" (process died with {', '.join(signals)} after finishing the transfer)"
    if failed:
        status = (
            status if good else "failed"
        ) + f"; {len(failed)} failed: {failed[0].get('error', '')}"
    out["status"] = status
    out["notes"] = notes
    if not good:
        return out

    def stats(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    total_bytes = [r["bytes"] for r in good]
    gib = [b / GiB for b in total_bytes]
    out["bytes"] = total_bytes[0]
    out["mib_s"] = stats([r["bytes"] / MiB / r["seconds"] for r in good])
    out["seconds"] = stats([r["seconds"] for r in good])
    objects = cell.count * cell.repeat
    out["objects_s"] = stats([objects / r["seconds"] for r in good])
    out["cpu_s_per_gib"] = stats([r["cpu_seconds"] / g for r, g in zip(good, gib, strict=True)])
    if all("process_cpu_seconds" in r for r in good):
        out["process_cpu_s"] = stats([r["process_cpu_seconds"] for r in good])
        out["peak_rss_mib"] = stats([r["peak_rss_mib"] for r in good])
    out["server_cpu_s_per_gib"] = stats(
        [r["server_cpu_seconds"] / g for r, g in zip(good, gib, strict=True)]
    )
    return out


# ---- main ------------------------------------------------------------------------------------
def build_cells(args: argparse.Namespace) -> list[Cell]:
    cells = []
    for (server, scen), clients in MATRIX.items():
        if server not in args.servers or scen not in args.scenarios:
            continue
        for client in clients:
            if client not in args.clients:
                continue
            if scen == "many_small":
                cells.append(
                    Cell(server, scen, client, args.small_size, args.small_count, SMALL_CONCURRENCY)
                )
            elif scen == "tiny":
                cells.append(
                    Cell(server, scen, client, TINY_SIZE, args.tiny_count, TINY_CONCURRENCY)
                )
            elif scen in ("concurrent", "budget", "concurrent_default", "download_concurrent"):
                budget = BUDGET if scen == "budget" else 0
                cells.append(
                    Cell(
                        server,
                        scen,
                        client,
                        CONCURRENT_SIZE,
                        args.concurrent_count,
                        CONCURRENCY,
                        budget,
                    )
                )
            elif scen in ("slow", "slow_fresh"):
                cells.append(Cell(server, scen, client, SLOW_SIZE, args.slow_count))
            elif scen == "memscan":
                cells += [Cell(server, scen, client, size) for size in args.memscan_sizes]
            elif scen == "baseline":
                cells.append(Cell(server, scen, client, 1))
            elif scen.startswith("sweep_"):
                for size in args.sweep_sizes:
                    steady = scen.endswith("_steady")
                    repeat = min(50, max(2, args.steady_bytes // size)) if steady else 1
                    cells.append(Cell(server, scen, client, size, repeat=repeat))
            elif scen.startswith("wan_"):
                cells += [Cell(server, scen, client, size) for size in args.wan_sizes]
            else:
                cells.append(Cell(server, scen, client, args.size))
    return cells


def prepare_file(size: int, log: Any) -> Path:
    DATA.mkdir(exist_ok=True)
    path = DATA / f"file-{size}.bin"
    if not path.exists() or path.stat().st_size != size:
        log(f"writing {path} ({fmt_size(size)})")
        block = os.urandom(MiB)
        with open(path, "wb") as f:
            for _ in range(size // MiB):
                f.write(block)
            f.write(block[: size % MiB])
    with open(path, "rb") as f:  # into the page cache
        while f.read(16 * MiB):
            pass
    return path


def main() -> int:
    p = argparse.ArgumentParser(description="streamx vs its peers (issues 5 and 14)")
    p.add_argument("--quick", action="store_true", help="small sizes and counts, 1 run, no warm-up")
    p.add_argument("--size", type=parse_size, default=None, help="bytes per large transfer (1GiB)")
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--servers", nargs="+", default=None, choices=SERVERS)
    p.add_argument(
        "--scenarios", nargs="+", default=list(SCENARIO_TITLES), choices=list(SCENARIO_TITLES)
    )
    p.add_argument("--clients", nargs="+", default=list(CLIENT_DEFS), choices=list(CLIENT_DEFS))
    p.add_argument("--memscan-sizes", nargs="+", type=parse_size, default=None)
    p.add_argument("--small-count", type=int, default=None)
    p.add_argument("--concurrent-count", type=int, default=None)
    p.add_argument("--tiny-count", type=int, default=None)
    p.add_argument("--slow-count", type=int, default=None)
    p.add_argument("--sweep-sizes", nargs="+", type=parse_size, default=None)
    p.add_argument("--wan-sizes", nargs="+", type=parse_size, default=None)
    p.add_argument(
        "--output", default=str(RESULTS / "latest"), help="path prefix of .json/.md/.png"
    )
    p.add_argument("--render", metavar="JSON", help="only re-render .md/.png from a results JSON")
    args = p.parse_args()
    if args.render:
        report = json.loads(Path(args.render).read_text())
        report.setdefault("titles", SCENARIO_TITLES)
        report["targets"] = targets(report["summary"], report["settings"])
        out = Path(args.render).with_suffix("")
        out.with_suffix(".md").write_text(markdown(report))
        plot(report, out.with_suffix(".png"))
        plot_sweep(report, out.with_name(out.name + "-sweep.png"))
        print(out.with_suffix(".md").read_text())
        return 0
    quick = args.quick
    args.size = args.size or (64 * MiB if quick else SIZE)
    args.runs = args.runs or (1 if quick else RUNS)
    warmup = not (args.no_warmup or quick)
    args.memscan_sizes = args.memscan_sizes or (
        [64 * MiB, 256 * MiB] if quick else list(MEMSCAN_SIZES)
    )
    args.small_count = args.small_count or (40 if quick else SMALL_COUNT)
    args.small_size = SMALL_SIZE
    args.concurrent_count = args.concurrent_count or (16 if quick else CONCURRENT_COUNT)
    args.tiny_count = args.tiny_count or (500 if quick else TINY_COUNT)
    args.slow_count = args.slow_count or (100 if quick else SLOW_COUNT)
    args.sweep_sizes = args.sweep_sizes or ([1 * MiB, 16 * MiB] if quick else list(SWEEP_SIZES))
    args.steady_bytes = 64 * MiB if quick else SWEEP_STEADY_BYTES
    args.wan_sizes = args.wan_sizes or ([16 * MiB] if quick else list(WAN_SIZES))
    args.servers = args.servers or (["sink", "source", "rclone", "wan20"] if quick else SERVERS)

    def log(msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    DATA.mkdir(exist_ok=True)
    py = {"main": MAIN_PY}
    if any(CLIENT_DEFS[c][0] == "serve" for c in args.clients):
        py["serve"] = serve_python(log)
    if any(CLIENT_DEFS[c][0] == "peers" for c in args.clients):
        py["peers"] = peers_python(log)
    cells = build_cells(args)
    file_sizes = {
        c.size for c in cells if CLIENT_SCENARIO.get(c.scenario, (c.scenario,))[0] == "upload_file"
    }
    file_sizes |= {c.size for c in cells if c.server == "rclone" and is_download(c.scenario)}
    for size in file_sizes:
        prepare_file(size, log)
    running: dict[str, Any] = {}
    try:
        for name in dict.fromkeys(c.server for c in cells):
            running[name] = servers.start(name, MAIN_PY, ACCESS, SECRET)
            running[name].make_bucket("bench")
        if "rclone" in running:
            rc = running["rclone"]
            rc.make_bucket("bench-dl")
            for size in {c.size for c in cells if c.server == "rclone" and is_download(c.scenario)}:
                target = rc.data_dir / "bench-dl" / f"obj-{size}"
                if not target.exists():
                    shutil.copyfile(DATA / f"file-{size}.bin", target)
        log(
            f"{len(cells)} cells × ({args.runs} runs{' + warm-up' if warmup else ''}); "
            + ", ".join(f"{k} at {v.endpoint('up')}" for k, v in running.items())
        )
        for n, cell in enumerate(cells, 1):
            server = running[cell.server]
            bucket, key = "bench", f"{cell.scenario}-{cell.client}"
            if is_download(cell.scenario):
                # rclone: a file put in place; source (and the WAN's): the size is in the key
                bucket, key = (
                    ("bench-dl", f"obj-{cell.size}")
                    if cell.server == "rclone"
                    else ("bench", f"obj/size-{cell.size}")
                )
            if warmup:
                cell.warmup = run_once(cell, server, py, bucket, key)
                server.clear("bench")
                if "unsupported" in cell.warmup:
                    cell.runs = [cell.warmup]
                    log(
                        f"[{n}/{len(cells)}] {cell.label}: not available: {cell.warmup['unsupported']}"
                    )
                    continue
            for _ in range(args.runs):
                record = run_once(cell, server, py, bucket, key)
                server.clear("bench")
                (DATA / "download.out").unlink(missing_ok=True)
                cell.runs.append(record)
                if "unsupported" in record:
                    break
            s = summarize(cell)
            log(
                f"[{n}/{len(cells)}] {cell.label}: {mm(s.get('mib_s'))} MiB/s, "
                f"{mm(s.get('cpu_s_per_gib'), '{:.2f}')} CPU-s/GiB, RSS {mm(s.get('peak_rss_mib'))} MiB, "
                f"server {mm(s.get('server_cpu_s_per_gib'), '{:.2f}')} CPU-s/GiB — {s['status']}"
            )
    finally:
        for server in running.values():
            server.stop()
    summary = [summarize(c) for c in cells]
    report = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": "python benchmarks/run.py " + " ".join(sys.argv[1:])
        if sys.argv[1:]
        else "make bench",
        "machine": machine(),
        "versions": {
            "main": main_versions(),
            "peers": peer_versions(py["peers"]) if "peers" in py else {},
        },
        "settings": {
            "part_size": PART_SIZE,
            "concurrency": CONCURRENCY,
            "size": args.size,
            "budget": BUDGET,
            "wan_mbps": servers.WAN_MBPS,
        },
        "titles": SCENARIO_TITLES,
        "runs": args.runs,
        "warmup": warmup,
        "summary": summary,
    }
    report["targets"] = targets(summary, report["settings"])
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown(report))
    try:
        plot(report, out.with_suffix(".png"))
        plot_sweep(report, out.with_name(out.name + "-sweep.png"))
    except ImportError:
        log("matplotlib is not installed: no plot (pip install -e '.[bench]')")
    log(f"wrote {out.with_suffix('.json')}, .md, .png, -sweep.png")
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
