"""streamx.__all__ is exactly the public API (as httpx tests its exported members)."""

from __future__ import annotations

import pytest

import streamx

pytestmark = pytest.mark.unit  # pure logic: no server


def test_all_matches_public_names() -> None:
    public = {name for name in dir(streamx) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(streamx, name)).__name__ == "module"}
    assert set(streamx.__all__) - {"__version__"} == public - modules


def test_error_tree_has_one_root() -> None:
    for name in streamx.__all__:
        obj = getattr(streamx, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, streamx.StreamxError), name
    assert issubclass(streamx.NotFoundError, FileNotFoundError)
    assert issubclass(streamx.ConfigError, ValueError)
    assert issubclass(streamx.SourceTypeError, TypeError)
