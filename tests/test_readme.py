"""Every code block of README.md runs in the suite, so the README stays true.

Convention: each fenced block is preceded (on the line just before the opening
fence) by an HTML comment, invisible on GitHub, that tells this harness what to
do with it::

    <!-- readme-test: KIND; option: value; option: value
    REQUEST LINES (serve kinds only)
    -->

A block without such a comment, or with an unknown KIND, fails
:func:`test_every_block_is_classified` — add the comment with your block (so no
dead code gets in). Kinds:

``python``
    A complete program, run as ``python block.py`` in a fresh temporary directory
    with ``AWS_ENDPOINT_URL`` & co. pointing at a fresh real server (moto; ``server:
    rclone`` for rclone). It must exit 0 and print no traceback. Options:
    ``buckets: a b`` (created first), ``files: NAME=SIZE ...`` (random bytes in the
    directory; ``dir/name`` creates ``dir``), ``objects: bucket/key=SIZE ...``
    (uploaded first), ``expect: REGEX && REGEX ...`` (each searched in stdout +
    stderr, multiline).
``sh``
    Shell commands, run with ``bash -euo pipefail`` under the same fixtures, with
    ``streamx`` on ``PATH`` (this tree's CLI) and ``OLD_ENDPOINT_URL`` set to a
    second, moto server (which accepts any credentials; its ``old`` bucket exists).
``serve-asgi`` / ``serve-aiohttp``
    A web app module defining ``app``: served by uvicorn (``uvicorn module:app``)
    or aiohttp (``web.run_app(module.app)``) on a free loopback port, with the
    server's ``AWS_*`` variables. Each following line of the comment is a request
    made with httpx: ``METHOD PATH [cookie:NAME=VALUE] [header:NAME=VALUE]
    [body:TEXT] -> STATUS [json:FIELD=VALUE]``; after a 2xx ``PUT`` to
    ``/api/uploads/stream/KEY`` the object ``KEY`` must hold ``TEXT``.
``signatures``
    ``option: of: streamx.Engine``: a class stub whose method signatures (names,
    kinds, defaults) must equal the real ones.
``error-tree``
    The drawn exception tree: each name must be a class in ``streamx`` whose base
    is the name it hangs from (and the builtin in brackets).
``pip-install``
    ``pip install`` lines: each must name the distribution and extras of
    pyproject.toml.
``skip: REASON``
    Not run, for a stated reason (``make`` targets that run this very suite, a
    long-running server covered by its own tests, Docker).
"""

from __future__ import annotations

import builtins
import contextlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

import streamx
from streamx._limits import parse_size
from streamx.testing import MotoServer, RcloneServer, free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
KINDS = {"python", "sh", "serve-asgi", "serve-aiohttp", "signatures", "error-tree", "pip-install"}

_FENCE = re.compile(r"^```(\w*)\s*$")
_DIRECTIVE = re.compile(r"<!--\s*readme-test:(.*?)-->", re.S)


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    kind: str = ""
    options: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"README.md:{self.line}"


def parse_readme(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        block = Block(line=start + 1, lang=m.group(1), code="\n".join(lines[start + 1 : j]) + "\n")
        # the directive: an HTML comment ending on the line just before the fence
        before = "\n".join(lines[max(0, start - 30) : start])
        directive = list(_DIRECTIVE.finditer(before))
        if directive and before.rstrip().endswith("-->") and directive[-1].end() == len(before.rstrip()):
            head, *requests = directive[-1].group(1).strip().splitlines()
            kind, *opts = [part.strip() for part in head.split(";")]
            block.kind = kind
            for opt in opts:
                name, _, value = opt.partition(":")
                block.options[name.strip()] = value.strip()
            block.requests = [r.strip() for r in requests if r.strip()]
        blocks.append(block)
        i = j + 1
    return blocks


BLOCKS = parse_readme(README.read_text())


def blocks_of(kind: str) -> list[Any]:
    return [pytest.param(b, id=b.id) for b in BLOCKS if b.kind == kind]


def test_every_block_is_classified() -> None:
    unclassified = [
        f"{b.id} ```{b.lang} starting {b.code.splitlines()[0] if b.code.strip() else ''!r}"
        for b in BLOCKS
        if not (b.kind in KINDS or (b.kind.startswith("skip:") and b.kind[5:].strip()))
    ]
    assert not unclassified, (
        "README blocks without a '<!-- readme-test: KIND -->' line before them "
        "(see tests/test_readme.py for the kinds):\n" + "\n".join(unclassified)
    )
    assert len(BLOCKS) >= 10  # the parser found the README's blocks


def test_the_harness_fails_on_an_unclassified_block() -> None:
    sample = "text\n\n```python\nprint(1)\n```\n\n<!-- readme-test: python -->\n```python\nprint(2)\n```\n"
    first, second = parse_readme(sample)
    assert first.kind == "" and second.kind == "python"


# -- fixtures shared by python and sh blocks --------------------------------------------


@contextlib.contextmanager
def s3_server(name: str) -> Iterator[Any]:
    server: Any = RcloneServer() if name == "rclone" else MotoServer()
    with server:
        yield server


def boto(server: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )


def prepare(block: Block, server: Any, workdir: Path) -> None:
    s3 = boto(server)
    for bucket in block.options.get("buckets", "").split():
        s3.create_bucket(Bucket=bucket)
    for spec in block.options.get("files", "").split():
        name, _, size = spec.partition("=")
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(parse_size(size or "1KiB")))
    for spec in block.options.get("objects", "").split():
        where, _, size = spec.partition("=")
        bucket, _, key = where.partition("/")
        s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(parse_size(size or "1KiB")))


def child_env(server: Any, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(server.env())
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def check_output(block: Block, done: subprocess.CompletedProcess[str]) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{block.id} exited {done.returncode}:\n{output[-4000:]}"
    assert "Traceback" not in output, f"{block.id}:\n{output[-4000:]}"
    for pattern in block.options.get("expect", "").split(" && "):
        if pattern:
            assert re.search(pattern, output, re.M), f"{block.id}: no {pattern!r} in:\n{output[-4000:]}"


@pytest.mark.parametrize("block", blocks_of("python"))
def test_python_block(block: Block, tmp_path: Path) -> None:
    with s3_server(block.options.get("server", "moto")) as server:
        prepare(block, server, tmp_path)
        script = tmp_path / "readme_block.py"
        script.write_text(block.code)
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=child_env(server),
            capture_output=True,
            text=True,
            timeout=120,
        )
    check_output(block, done)


@pytest.mark.parametrize("block", blocks_of("sh"))
def test_sh_block(block: Block, tmp_path: Path) -> None:
    bindir = tmp_path / ".bin"
    bindir.mkdir()
    shim = bindir / "streamx"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m streamx "$@"\n')
    shim.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    with (
        s3_server(block.options.get("server", "rclone")) as server,
        s3_server("moto") as old,
    ):
        prepare(block, server, work)
        boto(old).create_bucket(Bucket="old")
        boto(old).put_object(Bucket="old", Key="k", Body=b"from the old store")
        env = child_env(
            server,
            OLD_ENDPOINT_URL=old.endpoint_url,
            PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
        )
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.code],
            cwd=work,
            env=env,
            capture_output=True,
            encoding="utf-8",
            errors="replace",  # `streamx cat` prints the object's bytes
            timeout=300,
        )
    check_output(block, done)


# -- web apps ---------------------------------------------------------------------------

_REQUEST = re.compile(r"^(?P<method>[A-Z]+)\s+(?P<path>\S+)(?P<rest>.*?)\s*->\s*(?P<status>\d{3})(?P<after>.*)$")


@dataclass
class Request:
    method: str
    path: str
    status: int
    cookies: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    json: dict[str, str] = field(default_factory=dict)


def parse_request(line: str) -> Request:
    m = _REQUEST.match(line)
    assert m, f"cannot read the request line {line!r}"
    req = Request(m["method"], m["path"], int(m["status"]))
    for token in m["rest"].split():
        what, _, value = token.partition(":")
        name, _, val = value.partition("=")
        if what == "cookie":
            req.cookies[name] = val
        elif what == "header":
            req.headers[name] = val
        elif what == "body":
            req.body = value
        else:
            raise AssertionError(f"unknown part {token!r} in {line!r}")
    for token in m["after"].split():
        what, _, value = token.partition(":")
        assert what == "json", f"unknown check {token!r} in {line!r}"
        name, _, val = value.partition("=")
        req.json[name] = val
    return req


def wait_for_http(url: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the app exited {proc.returncode}:\n{out}\n{err}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"the app did not answer on {url} within {timeout} s")


@pytest.mark.parametrize("block", blocks_of("serve-asgi") + blocks_of("serve-aiohttp"))
def test_web_block(block: Block, tmp_path: Path) -> None:
    assert block.requests, f"{block.id}: a served block needs request lines to check"
    (tmp_path / "readme_app.py").write_text(block.code)
    port = free_port()
    if block.kind == "serve-asgi":
        command = [sys.executable, "-m", "uvicorn", "readme_app:app", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--log-level", "warning"]
    else:
        runner = (
            "import readme_app, aiohttp.web; "
            f"aiohttp.web.run_app(readme_app.app, host='127.0.0.1', port={port}, print=None)"
        )
        command = [sys.executable, "-c", runner]
    with s3_server(block.options.get("server", "moto")) as server:
        prepare(block, server, tmp_path)
        proc = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=child_env(server, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for_http(base + "/", proc)
            s3 = boto(server)
            for line in block.requests:
                req = parse_request(line)
                with httpx.Client(base_url=base, cookies=req.cookies, timeout=30) as client:
                    answer = client.request(
                        req.method, req.path, headers=req.headers, content=req.body
                    )
                assert answer.status_code == req.status, f"{line}: {answer.status_code} {answer.text}"
                if req.status >= 400:  # errors are JSON
                    assert answer.headers["content-type"].startswith("application/json"), line
                for name, value in req.json.items():
                    assert str(answer.json()[name]) == value, f"{line}: {answer.text}"
                prefix = "/api/uploads/stream/"
                if req.method == "PUT" and req.path.startswith(prefix) and answer.is_success:
                    key = req.path[len(prefix) :]
                    bucket = block.options.get("buckets", "").split()[0]
                    stored = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                    assert stored == (req.body or "").encode(), line
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=20)
    assert "Traceback" not in out + err, out + err


# -- blocks that describe the code ------------------------------------------------------


def _describe(sig: inspect.Signature) -> list[tuple[str, Any, Any]]:
    return [
        (p.name, p.kind, p.default if p.default is inspect.Parameter.empty else repr(p.default))
        for p in sig.parameters.values()
    ]


@pytest.mark.parametrize("block", blocks_of("signatures"))
def test_signatures_block(block: Block) -> None:
    target: Any = streamx
    for part in block.options["of"].split(".")[1:]:
        target = getattr(target, part)
    namespace: dict[str, Any] = {}
    exec(compile("from __future__ import annotations\n" + block.code, block.id, "exec"), namespace)
    stub = namespace[target.__name__]
    methods = [name for name, value in vars(stub).items() if inspect.isfunction(value)]
    assert methods, f"{block.id}: no method in the stub"
    for name in methods:
        shown = _describe(inspect.signature(getattr(stub, name)))
        real = _describe(inspect.signature(getattr(target, name)))
        assert shown == real, f"{block.id}: {target.__name__}.{name} is documented as {shown}, is {real}"


@pytest.mark.parametrize("block", blocks_of("error-tree"))
def test_error_tree_block(block: Block) -> None:
    parents: list[tuple[int, type]] = []
    seen = 0
    for line in block.code.splitlines():
        m = re.match(r"^([\s│├└─]*)(\w+)(?:\s+\((\w+)\))?", line)
        assert m, f"{block.id}: cannot read {line!r}"
        depth = len(m.group(1))
        cls = getattr(streamx, m.group(2))
        while parents and parents[-1][0] >= depth:
            parents.pop()
        if parents:
            assert cls.__bases__[0] is parents[-1][1] or parents[-1][1] in cls.__bases__, line
        else:
            assert cls is streamx.StreamxError
        if m.group(3):
            assert issubclass(cls, getattr(builtins, m.group(3))), line
        parents.append((depth, cls))
        seen += 1
    drawn = {p.__name__ for p in _all_errors(streamx.StreamxError)}
    assert seen == len(drawn), f"{block.id}: the tree draws {seen} classes, streamx has {sorted(drawn)}"


def _all_errors(root: type) -> set[type]:
    found = {root}
    for sub in root.__subclasses__():
        if sub.__module__.startswith("streamx") and sub.__name__ in streamx.__all__:
            found |= _all_errors(sub)
    return found


@pytest.mark.parametrize("block", blocks_of("pip-install"))
def test_pip_install_block(block: Block) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(project["optional-dependencies"])
    names = re.findall(r"pip install\s+'?([A-Za-z0-9_.-]+)(?:\[([\w,]+)\])?'?", block.code)
    assert names, block.id
    for name, wanted in names:
        assert name == project["name"], f"{block.id}: 'pip install {name}' is not this project"
        assert set(filter(None, wanted.split(","))) <= extras, f"{block.id}: unknown extra {wanted}"
    for other in re.findall(r"'(\S+?)\[(\w+)\]'", block.code):  # extras named in comments too
        assert other[0] == project["name"] and other[1] in extras, f"{block.id}: {other}"


def test_the_log_event_list_is_complete() -> None:
    """The README's "Logs" section names every event the package logs (grep of the source)."""
    source = "\n".join(p.read_text() for p in (ROOT / "streamx").rglob("*.py"))
    events = set(re.findall(r"log\.(?:debug|info|warning|error|critical)\(\s*f?\"([a-z_.{}]+)\"", source))
    # the aborts' event prefixes: abort_upload(what=...) and engine.multipart.discard(what=...)
    calls = r'(?:abort_upload|\.discard)\([^)]*?what="([\w.]+)"'
    whats = set(re.findall(calls, source, re.S)) | {"upload"}
    expanded = set()
    for event in events:
        if "{what}" in event:
            expanded |= {event.replace("{what}", w) for w in whats}
        else:
            expanded.add(event)
    section = README.read_text().split("## Logs and progress", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", section, re.M))
    assert len(expanded) > 20
    assert expanded <= documented, f"not in the README: {sorted(expanded - documented)}"
    assert documented <= expanded, f"no longer logged: {sorted(documented - expanded)}"


def test_shell_shim_finds_this_tree() -> None:
    assert shutil.which("bash"), "bash is needed for the README's shell blocks: apt-get install bash"


