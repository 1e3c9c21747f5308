"""The benchmark's own virtual environments, created on first use.

* ``.venv-peers``: the peers (aioboto3's aiobotocore pin must not clash with streamx's);
* ``.venv-serve``: streamx as deployed, its runtime extras and nothing else. A development
  venv also holds the test tools, and aiobotocore imports ``httpx`` whenever it is
  installed, which imports ``rich`` and ``click`` when *they* are (about 18 MiB of RSS and
  80 ms on this machine): a server measured there carries weight no deployment has.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_VENV = HERE / ".venv-peers"
PEER_PACKAGES = ["aioboto3", "boto3", "s3fs", "obstore"]
SERVE_VENV = HERE / ".venv-serve"
# streamx's web extras, and uvloop as `uvicorn[standard]` would install it (the dev venv's
# servers run on uvloop too, so the two measure the same event loop)
SERVE_PACKAGES = ["-e", f"{ROOT}[fastapi,aiohttp]", "uvloop"]


def ensure_venv(
    path: Path, packages: Sequence[str], probe: str, log: Callable[[str], None] = print
) -> str:
    """The python of the venv at ``path``; created, and ``packages`` installed unless the
    ``probe`` statement already runs there."""
    py = path / "bin" / "python"
    if not py.exists():
        log(f"creating {path} ({' '.join(packages)})")
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    if subprocess.run([str(py), "-c", probe], capture_output=True).returncode:
        subprocess.run([str(py), "-m", "pip", "install", "-q", *packages], check=True)
    return str(py)


def peers_python(log: Callable[[str], None] = print) -> str:
    return ensure_venv(PEERS_VENV, PEER_PACKAGES, "import aioboto3, boto3, s3fs, obstore", log)


def serve_python(log: Callable[[str], None] = print) -> str:
    probe = "import streamx.web.tus.fastapi, streamx.web.tus.aiohttp, uvicorn, uvloop"
    return ensure_venv(SERVE_VENV, SERVE_PACKAGES, probe, log)
