"""The package's shape stays as issue 13 left it: no module over 400 lines (layers and import
cycles are checked by import-linter in `make lint`)."""

from __future__ import annotations

from pathlib import Path

import pytest

import streamx

pytestmark = pytest.mark.unit  # pure logic: no server

MAX_LINES = 400


def test_no_module_over_400_lines() -> None:
    root = Path(streamx.__file__).parent
    long = {
        str(path.relative_to(root)): n
        for path in root.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (cut them by responsibility): {long}"
