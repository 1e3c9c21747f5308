"""Reporting for ``make bench``: the markdown table, the goal verdicts and the plots.

Everything here works on the results JSON alone (``run.py --render JSON``
re-renders a run), so the table and the plots always come from one run.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
GiB = 1024 * MiB
LINK_MIB_S = 1000e6 / 8 / MiB  # the WAN cells' link: 1 Gbps


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


def targets(summary: list[dict[str, Any]], settings: dict[str, Any]) -> list[tuple[str, str]]:
    """Each target of issues 5 and 14, with the figures that decide it."""
    return targets5(summary, settings) + goals14(summary)


def targets5(summary: list[dict[str, Any]], settings: dict[str, Any]) -> list[tuple[str, str]]:
    """Each target of issue 5, with the figures that decide it (None when not measured)."""
    size = settings["size"]
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
        bound = (
            (1 * MiB + settings["part_size"] * settings["concurrency"]) / MiB
            + base["peak_rss_mib"]["max"]
            + 48
        )
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
        f"Command: `{report['command']}`. Part size {fmt_size(report['settings']['part_size'])}, "
        f"concurrency {report['settings']['concurrency']} for every client in the cells that do not say "
        f"'library defaults'; {report['runs']} measured runs per cell, each its own process"
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
        "*peak RSS*: the client process's `ru_maxrss`; *server CPU-s/GiB*: the sink's, source's or rclone's "
        "CPU over the run; *obj/s*: objects (transfers) per second. Steady-state cells time several "
        "transfers in one process (count in the size column).",
        "",
        "## Targets (issues 5 and 14)",
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
        title = report["titles"][scen].format(
            size=fmt_size(first["size"]),
            count=first["count"],
            obj=fmt_size(first["size"]),
            conc=first["concurrency"],
            budget=fmt_size(first["budget"] or report["settings"]["budget"]),
            rtt=server[3:],
        )
        lines += ["", f"## {server}: {title}", ""]
        lines += [
            "| client | size | MiB/s | obj/s | CPU-s/GiB | proc CPU-s | peak RSS MiB | server CPU-s/GiB | status |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for s in cells:
            n = s["count"] * s.get("repeat", 1)
            size = fmt_size(s["size"]) if n == 1 else f"{n} × {fmt_size(s['size'])}"
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
                f"| {s['client']} | {size} | {mm(s.get('mib_s'))} | {mm(s.get('objects_s'), '{:.1f}')} | "
                f"{mm(s.get('cpu_s_per_gib'), '{:.2f}')} | "
                f"{mm(s.get('process_cpu_s'), '{:.1f}')} | {mm(s.get('peak_rss_mib'))} | "
                f"{mm(s.get('server_cpu_s_per_gib'), '{:.2f}')} | {status} |"
            )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [
        s
        for s in report["summary"]
        if "mib_s" in s
        and s["scenario"] != "baseline"
        and not s["scenario"].startswith(("sweep_", "wan_"))
    ]
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


def plot_sweep(report: dict[str, Any], path: Path) -> None:
    """MiB/s against object size, one line per client, for the sweep and WAN cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [
        s
        for s in report["summary"]
        if "mib_s" in s and s["scenario"].startswith(("sweep_", "wan_"))
    ]
    panels = list(dict.fromkeys((s["server"], s["scenario"]) for s in cells))
    if not panels:
        return
    cols = 2
    rows = (len(panels) + 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.6 * rows), squeeze=False)
    for ax, (server, scen) in zip(axes.flat, panels, strict=False):
        mine = [s for s in cells if (s["server"], s["scenario"]) == (server, scen)]
        for client in dict.fromkeys(s["client"] for s in mine):
            pts = sorted((s["size"], s["mib_s"]) for s in mine if s["client"] == client)
            xs = [p[0] / MiB for p in pts]
            ax.errorbar(
                xs,
                [p[1]["median"] for p in pts],
                yerr=[
                    [p[1]["median"] - p[1]["min"] for p in pts],
                    [p[1]["max"] - p[1]["median"] for p in pts],
                ],
                marker="o",
                capsize=2,
                label=client,
                linewidth=2.5 if client == "streamx" else 1.2,
            )
        if scen.startswith("wan_"):
            ax.axhline(LINK_MIB_S, color="grey", linestyle=":", label="link (1 Gbps)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("object size, MiB")
        ax.set_ylabel("MiB/s (median, min–max)")
        ax.set_title(f"{server}: {scen.replace('_', ' ')}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    m = report["machine"]
    fig.suptitle(f"MiB/s by size — {report['date']} — {m['nproc']} × {m['cpu']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def goals14(summary: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Issue 14's goals, each with the figures that decide it ("–" when not measured)."""
    rows: list[tuple[str, str]] = []

    def cell(server: str, scen: str, client: str, size: int | None = None) -> dict[str, Any] | None:
        return get(summary, server, scen, client, size)

    def med(s: dict[str, Any] | None, metric: str = "mib_s") -> float | None:
        return s[metric]["median"] if s and metric in s else None

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    def ratio(
        server: str,
        scen: str,
        peer: str,
        want: float,
        size: int | None = None,
        metric: str = "mib_s",
    ) -> None:
        sx, pe = (
            med(cell(server, scen, "streamx", size), metric),
            med(cell(server, scen, peer, size), metric),
        )
        label = (
            f"{server} {scen}{' ' + fmt_size(size) if size else ''}: ≥{want:g}× {peer} ({metric})"
        )
        if sx is None or pe is None:
            rows.append((label, "–"))
            return
        rows.append(
            (
                label,
                f"{verdict(sx >= want * pe)}: streamx {sx:.1f}, {peer} {pe:.1f} (×{sx / pe:.2f})",
            )
        )

    # goal 1: defaults that fit a server
    c = cell("sink", "concurrent_default", "streamx")
    ratio("sink", "concurrent_default", "obstore", 1.2)
    rss = med(c, "peak_rss_mib")
    rows.append(
        (
            "sink concurrent_default: streamx peak RSS ≤ 256 MiB",
            "–" if rss is None else f"{verdict(rss <= 256)}: {rss:.0f} MiB",
        )
    )
    ratio("sink", "slow", "obstore", 1.0)
    ratio("sink", "slow_fresh", "obstore", 1.0)
    # goal 2: downloads by the client's own cost
    for scen in ("download_iter", "download_stream"):
        ratio("source", scen, "obstore", 1.5)
        cpu = med(cell("source", scen, "streamx"), "cpu_s_per_gib")
        rows.append(
            (
                f"source {scen}: streamx ≤ 0.6 CPU-s/GiB",
                "–" if cpu is None else f"{verdict(cpu <= 0.6)}: {cpu:.2f}",
            )
        )
    ratio("source", "download_file", "boto3", 1.0)
    cpu = med(cell("source", "download_file", "streamx"), "cpu_s_per_gib")
    rows.append(
        (
            "source download_file: streamx ≤ 1.5 CPU-s/GiB",
            "–" if cpu is None else f"{verdict(cpu <= 1.5)}: {cpu:.2f}",
        )
    )
    ratio("source", "download_concurrent", "obstore", 1.0)
    # goal 4: small objects
    ratio("sink", "tiny", "obstore", 1.5, metric="objects_s")
    ratio("sink", "tiny", "aioboto3", 3.0, metric="objects_s")
    # goal 5: every source
    for scen in ("upload_stream", "upload_aiter", "upload_writer"):
        ratio("sink", scen, "obstore", 1.2)
    # goal 6: every size
    for scen in ("sweep_up_first", "sweep_up_steady", "sweep_down_first", "sweep_down_steady"):
        server = "source" if "down" in scen else "sink"
        for size in sorted({s["size"] for s in summary if s["scenario"] == scen}):
            ratio(server, scen, "obstore", 1.2, size)
    # goal 7: over a real network
    for server in ("wan20", "wan60"):
        for scen in ("wan_up", "wan_down"):
            for size in sorted(
                {s["size"] for s in summary if (s["server"], s["scenario"]) == (server, scen)}
            ):
                ratio(server, scen, "obstore", 1.0, size)
                sx = med(cell(server, scen, "streamx", size))
                if sx is not None and size >= 64 * MiB:
                    rows.append(
                        (
                            f"{server} {scen} {fmt_size(size)}: ≥ 95% of the link",
                            f"{verdict(sx >= 0.95 * LINK_MIB_S)}: {sx:.1f} of {LINK_MIB_S:.1f} MiB/s",
                        )
                    )
    return rows
