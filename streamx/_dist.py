"""The distribution's name on PyPI, which differs from the import name.

``pip install streamx`` installs an unrelated project, so streamx is published
as ``streamx-s3``; the package is still ``import streamx`` and the command
``streamx``. Every install hint is built here, so none names the wrong project.
"""

from __future__ import annotations

#: the name to ``pip install`` (the ``[project] name`` in pyproject.toml)
DISTRIBUTION = "streamx-s3"


def install_hint(extra: str) -> str:
    """``pip install 'streamx-s3[cli]'`` for ``extra="cli"``."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
