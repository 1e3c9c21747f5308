"""Fixtures of the browser tests: one headless Chromium and one server loop per session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .harness import LoopThread, build_uppy, start_chromium


@pytest.fixture(scope="session")
def chrome() -> Iterator[Any]:
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chrome: Any) -> Any:
    """The session's browser with no cookies and a blank page."""
    chrome.execute_cdp_cmd("Network.clearBrowserCookies", {})
    chrome.get("about:blank")
    return chrome


@pytest.fixture(scope="session")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="session")
def uppy_bundle() -> None:
    build_uppy()
