"""examples/app.py's command line: sizes in the CLI's units, a --help that explains each option."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "app.py"


def run_app(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(APP), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )


def test_help_describes_every_option() -> None:
    done = run_app("--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for option, words in {
        "--host HOST": "address to serve the page on",
        "--port PORT": "port to serve the page on",
        "--bucket BUCKET": "bucket to upload into",
        "--max-size SIZE": "largest object a user may upload, e.g. 10MiB",
        "--allow-origin ORIGIN": "one more origin",
        "--log-level {debug,info,warning,error}": "what streamx's log shows",
        "--set-cors": "put the CORS rule the page needs on the bucket",
    }.items():
        assert f"{option} {words}" in text, option
    assert "prints its credentials" in text


def test_max_size_takes_units() -> None:
    sys.path.insert(0, str(APP.parent))
    try:
        import app  # examples/app.py
    finally:
        sys.path.remove(str(APP.parent))
    assert app.parse_args(["--max-size", "10MiB"]).max_size == 10 * 1024**2
    assert app.parse_args(["--max-size", "4096"]).max_size == 4096
    assert app.parse_args([]).max_size == 5 * 1024**3
    done = run_app("--max-size", "10 parsecs")
    assert done.returncode == 2
    assert "--max-size: cannot read '10 parsecs' as a size; write e.g. 8MiB" in done.stderr
