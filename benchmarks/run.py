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

Servers: ``sink`` (benchmarks/sink.py: reads and discards bodies, so the
client's own cost shows) and ``rclone`` (``rclone serve s3``, a real server
that checks signatures and writes to disk).

Peers run in their own venv (benchmarks/.venv-peers, created on first use) so
that aioboto3's aiobotocore pin cannot clash with streamx's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLIENTS = HERE / "clients"
RESULTS = HERE / "results"
DATA = HERE / ".data"
PEERS_VENV = HERE / ".venv-peers"
PEER_PACKAGES = ["aioboto3", "boto3", "s3fs", "obstore"]
MAIN_PY = sys.executable

MiB = 1024 * 1024
GiB = 1024 * MiB

# ---- settings (the issue's: same part size and concurrency for every client) ------------
PART_SIZE = 8 * MiB
CONCURRENCY = 8
SIZE = 1 * GiB
RUNS = 3
SMALL_COUNT, SMALL_SIZE, SMALL_CONCURRENCY = 200, 1 * MiB, 16
CONCURRENT_COUNT, CONCURRENT_SIZE = 64, 16 * MiB
BUDGET = 128 * MiB
MEMSCAN_SIZES = (1 * GiB, 4 * GiB)
RUN_TIMEOUT = 600

ACCESS, SECRET = "bench-access-key", "bench-secret-key-0123456789"

# client name -> (interpreter, script, extra args)
CLIENT_DEFS: dict[str, tuple[str, str, list[str]]] = {
    "streamx": ("main", "streamx_client.py", []),
    "aioboto3": ("peers", "aioboto3_client.py", []),
    "boto3": ("peers", "boto3_client.py", []),
    "s3fs": ("peers", "s3fs_client.py", []),
    "obstore": ("peers", "obstore_client.py", []),
    "obstore-unsigned": ("peers", "obstore_client.py", ["--unsigned"]),
    "naive": ("peers", "boto3_client.py", ["--naive"]),
}
PEERS = ["aioboto3", "boto3", "s3fs", "obstore"]

# (server, scenario) -> clients, in table order
MATRIX: dict[tuple[str, str], list[str]] = {
    ("sink", "upload_file"): ["streamx", *PEERS, "obstore-unsigned"],
    ("sink", "upload_stream"): ["streamx", *PEERS, "obstore-unsigned", "naive"],
    ("sink", "upload_writer"): ["streamx", "s3fs", "obstore"],
    ("sink", "many_small"): ["streamx", *PEERS],
    ("sink", "concurrent"): ["streamx", "aioboto3", "boto3", "obstore"],
    ("sink", "budget"): ["streamx"],
    ("sink", "memscan"): ["streamx", "obstore"],
    ("sink", "baseline"): ["streamx"],
    ("rclone", "upload_file"): ["streamx", *PEERS],
    ("rclone", "upload_stream"): ["streamx", *PEERS, "naive"],
    ("rclone", "download_file"): ["streamx", *PEERS],
    ("rclone", "download_stream"): ["streamx", *PEERS],
    ("rclone", "many_small"): ["streamx", *PEERS],
}
SCENARIO_TITLES = {
    "upload_file": "upload {size} from a file",
    "upload_stream": "upload {size} from a non-seekable generator of 1 MiB chunks",
    "upload_writer": "upload {size} through a push writer (open_writer / open('wb'))",
    "download_file": "download {size} to a file",
    "download_stream": "download {size} to a non-seekable sink",
    "many_small": "{count} objects of {obj}, concurrency {conc}",
    "concurrent": "{count} concurrent uploads of {obj} (generators)",
    "budget": "{count} concurrent uploads of {obj} under a {budget} MemoryBudget",
    "memscan": "memory scan: peak RSS of a stream upload by size",
    "baseline": "baseline: the interpreter + client after one tiny PutObject",
}


def fmt_size(n: int) -> str:
    for unit, div in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return f"{n} B"


def parse_size(text: str) -> int:
    t = text.strip().lower().replace(" ", "")
    for suffix, mult in (("gib", GiB), ("mib", MiB), ("kib", 1024), ("g", GiB), ("m", MiB)):
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * mult)
    return int(t)


# ---- processes -------------------------------------------------------------------------
def proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ensure_peers(log: Any) -> str:
    py = PEERS_VENV / "bin" / "python"
    if not py.exists():
        log(f"creating {PEERS_VENV} for the peers ({', '.join(PEER_PACKAGES)})")
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    missing = subprocess.run(
        [str(py), "-c", "import aioboto3, boto3, s3fs, obstore"], capture_output=True
    )
    if missing.returncode:
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return str(py)


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


class Sink:
    name = "sink"

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [MAIN_PY, str(HERE / "sink.py"), "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"the sink did not start: {line!r}")
        self.endpoint_url = f"http://127.0.0.1:{int(line.split()[1])}"

    def cpu_seconds(self) -> float:
        return proc_cpu(self.proc.pid)

    def make_bucket(self, name: str) -> None:
        pass

    def clear(self, bucket: str) -> None:
        pass

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Rclone:
    name = "rclone"

    def __init__(self) -> None:
        from streamx.testing import RcloneServer

        self.server = RcloneServer()
        self.server.access_key, self.server.secret_key = ACCESS, SECRET
        self.server.start()
        self.endpoint_url = self.server.endpoint_url
        self.data_dir = Path(self.server.data_dir)

    def cpu_seconds(self) -> float:
        return self.server.cpu_seconds()

    def make_bucket(self, name: str) -> None:
        self.server.make_bucket(name)

    def clear(self, bucket: str) -> None:
        """Delete what the last run uploaded (keeps the disk from filling up)."""
        path = self.data_dir / bucket
        for child in path.iterdir() if path.exists() else []:
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    def stop(self) -> None:
        self.server.stop()


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
    runs: list[dict[str, Any]] = field(default_factory=list)
    warmup: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.server}/{self.scenario}/{self.client}/{fmt_size(self.size)}"


def run_once(cell: Cell, server: Any, py: dict[str, str], bucket: str, key: str) -> dict[str, Any]:
    interp, script, extra = CLIENT_DEFS[cell.client]
    scenario = cell.scenario
    if scenario == "memscan":
        scenario = "upload_stream"
    if scenario == "baseline":
        scenario, size = "many_small", 1
    else:
        size = cell.size
    cmd = [
        py[interp],
        str(CLIENTS / script),
        *extra,
        "--scenario", scenario,
        "--endpoint", server.endpoint_url,
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
    out["cpu_s_per_gib"] = stats([r["cpu_seconds"] / g for r, g in zip(good, gib, strict=True)])
    if all("process_cpu_seconds" in r for r in good):
        out["process_cpu_s"] = stats([r["process_cpu_seconds"] for r in good])
        out["peak_rss_mib"] = stats([r["peak_rss_mib"] for r in good])
    out["server_cpu_s_per_gib"] = stats(
        [r["server_cpu_seconds"] / g for r, g in zip(good, gib, strict=True)]
    )
    return out


# ---- reporting -----------------------------------------------------------------------------
def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mem_gib": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GiB:.0f}",
    }


def mm(s: dict[str, float] | None, fmt: str = "{:.0f}") -> str:
    if not s:
        return "–"
    med = fmt.format(s["median"])
    if s["min"] == s["max"]:
        return med
    return f"{med} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"


def get(
    summary: list[dict[str, Any]], server: str, scenario: str, client: str, size: int | None = None
) -> dict[str, Any] | None:
    for s in summary:
        if (s["server"], s["scenario"], s["client"]) == (server, scenario, client) and (
            size is None or s["size"] == size
        ):
            return s if "mib_s" in s else None
    return None


def targets(summary: list[dict[str, Any]], size: int) -> list[tuple[str, str]]:
    """Each target of issue 5, with the figures that decide it (None when not measured)."""
    rows: list[tuple[str, str]] = []

    def tp(server: str, scen: str, client: str) -> float | None:
        s = get(summary, server, scen, client, size if scen not in ("many_small",) else None)
        return s["mib_s"]["median"] if s else None

    def cpu(server: str, scen: str, client: str) -> float | None:
        s = get(summary, server, scen, client, size if scen not in ("many_small",) else None)
        return s["cpu_s_per_gib"]["median"] if s else None

    def verdict(ok: bool | None) -> str:
        return "–" if ok is None else ("met" if ok else "NOT met")

    for scen in ("upload_file", "upload_stream"):
        sx, ab, ob, c = (
            tp("sink", scen, "streamx"),
            tp("sink", scen, "aioboto3"),
            tp("sink", scen, "obstore"),
            cpu("sink", scen, "streamx"),
        )
        if sx and ab and ob and c is not None:
            ok = sx >= 3 * ab and sx >= ob and c <= 1.0
            rows.append(
                (
                    f"sink {scen}: ≥3× aioboto3, ≥ obstore, ≤1.0 CPU-s/GiB",
                    f"{verdict(ok)}: streamx {sx:.0f} MiB/s at {c:.2f} CPU-s/GiB; aioboto3 {ab:.0f} (×{sx / ab:.1f}); obstore {ob:.0f}",
                )
            )
        if sx:
            rows.append(
                (f"sink {scen}: stretch 1.5 GiB/s", f"{verdict(sx >= 1536)}: {sx:.0f} MiB/s")
            )
        sx, ab, ob = (
            tp("rclone", scen, "streamx"),
            tp("rclone", scen, "aioboto3"),
            tp("rclone", scen, "obstore"),
        )
        if sx and ab and ob:
            rows.append(
                (
                    f"rclone {scen}: ≥1.2× aioboto3, ≥ obstore",
                    f"{verdict(sx >= 1.2 * ab and sx >= ob)}: streamx {sx:.0f}; aioboto3 {ab:.0f} (×{sx / ab:.2f}); obstore {ob:.0f}",
                )
            )
    sx, b3 = tp("rclone", "download_file", "streamx"), tp("rclone", "download_file", "boto3")
    c, oc = cpu("rclone", "download_file", "streamx"), cpu("rclone", "download_stream", "obstore")
    if sx and b3 and c is not None and oc is not None:
        rows.append(
            (
                "rclone download_file: ≥ boto3, CPU/GiB ≤ obstore's streamed GET",
                f"{verdict(sx >= b3 and c <= oc)}: streamx {sx:.0f} MiB/s at {c:.2f} CPU-s/GiB; boto3 {b3:.0f}; obstore GET {oc:.2f} CPU-s/GiB",
            )
        )
    else:
        rows.append(
            (
                "rclone download_file: ≥ boto3, CPU/GiB ≤ obstore's streamed GET",
                "not measured (streamx download not available)" if not sx else "–",
            )
        )
    sx, ab = tp("sink", "many_small", "streamx"), tp("sink", "many_small", "aioboto3")
    if sx and ab:
        rows.append(
            (
                "sink 200 × 1 MiB: ≥1.5× aioboto3",
                f"{verdict(sx >= 1.5 * ab)}: streamx {sx:.0f}; aioboto3 {ab:.0f} (×{sx / ab:.2f})",
            )
        )
    base = get(summary, "sink", "baseline", "streamx")
    scans = sorted(
        (
            s
            for s in summary
            if s["scenario"] == "memscan" and s["client"] == "streamx" and "peak_rss_mib" in s
        ),
        key=lambda s: s["size"],
    )
    if base and scans and "peak_rss_mib" in base:
        bound = (1 * MiB + PART_SIZE * CONCURRENCY) / MiB + base["peak_rss_mib"]["max"] + 48
        peaks = [s["peak_rss_mib"]["max"] for s in scans]
        flat = max(peaks) - min(peaks) <= 16
        rows.append(
            (
                "peak RSS ≤ hwm + part_size × queue_size + baseline + 48 MiB, flat",
                f"{verdict(max(peaks) <= bound and flat)}: bound {bound:.0f} MiB (baseline {base['peak_rss_mib']['max']:.0f}); "
                + ", ".join(
                    f"{fmt_size(s['size'])}: {p:.0f} MiB" for s, p in zip(scans, peaks, strict=True)
                ),
            )
        )
    return rows


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# streamx benchmarks",
        "",
        f"Date: {report['date']}. Machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem_gib']} GiB RAM, "
        f"Python {m['python']}, {m['platform']}.",
        f"Command: `{report['command']}`. Part size {fmt_size(PART_SIZE)}, concurrency {CONCURRENCY} "
        f"for every client; {report['runs']} measured runs per cell, each its own process"
        f"{', after a warm-up run' if report['warmup'] else ''}; medians with (min–max).",
        "",
        "Versions: "
        + ", ".join(
            f"{k} {v}"
            for k, v in {**report["versions"]["main"], **report["versions"]["peers"]}.items()
        ),
        "",
        "Columns: *MiB/s* of the transfer (timed in the client process, start-up excluded); "
        "*CPU-s/GiB*: the client process's CPU during the transfer, all threads; "
        "*proc CPU-s*: the whole client process including interpreter start-up and imports; "
        "*peak RSS*: the client process's `ru_maxrss`; *server CPU-s/GiB*: the sink's or rclone's CPU over the run.",
        "",
        "## Targets (issue 5)",
        "",
        "| target | result |",
        "|---|---|",
    ]
    lines += [f"| {t} | {r} |" for t, r in report["targets"]]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in report["summary"]:
        groups.setdefault((s["server"], s["scenario"]), []).append(s)
    for (server, scen), cells in groups.items():
        first = cells[0]
        title = SCENARIO_TITLES[scen].format(
            size=fmt_size(first["size"]),
            count=first["count"],
            obj=fmt_size(first["size"]),
            conc=first["concurrency"],
            budget=fmt_size(first["budget"] or BUDGET),
        )
        lines += ["", f"## {server}: {title}", ""]
        lines += [
            "| client | size | MiB/s | CPU-s/GiB | proc CPU-s | peak RSS MiB | server CPU-s/GiB | status |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in cells:
            size = (
                fmt_size(s["size"]) if s["count"] == 1 else f"{s['count']} × {fmt_size(s['size'])}"
            )
            status = s.get("status", "")
            notes = "; ".join(s.get("notes", []))
            if notes:
                status = f"{status}; {notes}"
            status = " ".join(status.replace("|", "/").split())[:300]
            if s["scenario"] == "baseline":  # only its memory means anything
                s = {
                    k: v
                    for k, v in s.items()
                    if k not in ("mib_s", "cpu_s_per_gib", "server_cpu_s_per_gib")
                }
            lines.append(
                f"| {s['client']} | {size} | {mm(s.get('mib_s'))} | {mm(s.get('cpu_s_per_gib'), '{:.2f}')} | "
                f"{mm(s.get('process_cpu_s'), '{:.1f}')} | {mm(s.get('peak_rss_mib'))} | "
                f"{mm(s.get('server_cpu_s_per_gib'), '{:.2f}')} | {status} |"
            )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [s for s in report["summary"] if "mib_s" in s and s["scenario"] not in ("baseline",)]
    if not cells:
        return
    groups = sorted(
        {(s["server"], s["scenario"], s["size"]) for s in cells}, key=lambda g: (g[0], g[1], g[2])
    )
    clients = list(dict.fromkeys(s["client"] for s in cells))
    fig, axes = plt.subplots(2, 1, figsize=(max(10, 1.1 * len(groups)), 9))
    width = 0.8 / len(clients)
    for ax, metric, ylabel in (
        (axes[0], "mib_s", "throughput MiB/s (median, min–max)"),
        (axes[1], "peak_rss_mib", "peak RSS MiB (median, min–max)"),
    ):
        for i, client in enumerate(clients):
            xs, ys, lo, hi = [], [], [], []
            for gi, (server, scen, size) in enumerate(groups):
                s = next(
                    (
                        c
                        for c in cells
                        if (c["server"], c["scenario"], c["size"], c["client"])
                        == (server, scen, size, client)
                    ),
                    None,
                )
                if s is None or metric not in s:
                    continue
                v = s[metric]
                xs.append(gi + i * width - 0.4 + width / 2)
                ys.append(v["median"])
                lo.append(v["median"] - v["min"])
                hi.append(v["max"] - v["median"])
            if xs:
                ax.bar(xs, ys, width, yerr=[lo, hi], label=client, capsize=2)
        ax.set_ylabel(ylabel)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{sv}\n{sc}\n{fmt_size(sz)}" for sv, sc, sz in groups], fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(ncol=min(len(clients), 7), fontsize=8)
    m = report["machine"]
    fig.suptitle(
        f"streamx vs peers — {report['date']} — {m['nproc']} × {m['cpu']}, Python {m['python']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
            elif scen in ("concurrent", "budget"):
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
            elif scen == "memscan":
                cells += [Cell(server, scen, client, size) for size in args.memscan_sizes]
            elif scen == "baseline":
                cells.append(Cell(server, scen, client, 1))
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
    p = argparse.ArgumentParser(description="streamx vs its peers (issue 5)")
    p.add_argument("--quick", action="store_true", help="64 MiB, 1 run, no warm-up")
    p.add_argument("--size", type=parse_size, default=None, help="bytes per large transfer (1GiB)")
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--servers", nargs="+", default=["sink", "rclone"], choices=["sink", "rclone"])
    p.add_argument(
        "--scenarios", nargs="+", default=list(SCENARIO_TITLES), choices=list(SCENARIO_TITLES)
    )
    p.add_argument("--clients", nargs="+", default=list(CLIENT_DEFS), choices=list(CLIENT_DEFS))
    p.add_argument("--memscan-sizes", nargs="+", type=parse_size, default=None)
    p.add_argument("--small-count", type=int, default=None)
    p.add_argument("--concurrent-count", type=int, default=None)
    p.add_argument(
        "--output", default=str(RESULTS / "latest"), help="path prefix of .json/.md/.png"
    )
    p.add_argument("--render", metavar="JSON", help="only re-render .md/.png from a results JSON")
    args = p.parse_args()
    if args.render:
        report = json.loads(Path(args.render).read_text())
        report["targets"] = targets(report["summary"], report["settings"]["size"])
        out = Path(args.render).with_suffix("")
        out.with_suffix(".md").write_text(markdown(report))
        plot(report, out.with_suffix(".png"))
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

    def log(msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    py = {"main": MAIN_PY}
    if any(CLIENT_DEFS[c][0] == "peers" for c in args.clients):
        py["peers"] = ensure_peers(log)
    cells = build_cells(args)
    for size in {
        c.size for c in cells if c.scenario in ("upload_file", "download_file", "download_stream")
    }:
        prepare_file(size, log)
    servers: dict[str, Any] = {}
    try:
        if "sink" in args.servers:
            servers["sink"] = Sink()
        if "rclone" in args.servers:
            servers["rclone"] = Rclone()
        for server in servers.values():
            server.make_bucket("bench")
        if "rclone" in servers:
            rc = servers["rclone"]
            rc.make_bucket("bench-dl")
            for size in {c.size for c in cells if c.scenario.startswith("download")}:
                target = rc.data_dir / "bench-dl" / f"obj-{size}"
                if not target.exists():
                    shutil.copyfile(DATA / f"file-{size}.bin", target)
        log(
            f"{len(cells)} cells × ({args.runs} runs{' + warm-up' if warmup else ''}); "
            + ", ".join(f"{k} at {v.endpoint_url}" for k, v in servers.items())
        )
        for n, cell in enumerate(cells, 1):
            server = servers[cell.server]
            bucket = "bench-dl" if cell.scenario.startswith("download") else "bench"
            key = f"obj-{cell.size}" if bucket == "bench-dl" else f"{cell.scenario}-{cell.client}"
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
        for server in servers.values():
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
        },
        "runs": args.runs,
        "warmup": warmup,
        "summary": summary,
    }
    report["targets"] = targets(summary, args.size)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown(report))
    try:
        plot(report, out.with_suffix(".png"))
    except ImportError:
        log("matplotlib is not installed: no plot (pip install -e '.[bench]')")
    log(f"wrote {out.with_suffix('.json')}, .md, .png")
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
