"""The ``streamx`` command line: ``cp``, ``cat``, ``ls``, ``rm``, ``presign``, ``sweep``.

An optional extra (``pip install 'streamx-s3[cli]'``: click and tqdm). Without it,
``streamx`` prints how to install it instead of a traceback. Exit codes are
listed in :mod:`streamx.cli._exit`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

EXIT_MISSING_EXTRA = 1


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``streamx`` and ``python -m streamx``; exits the process."""
    from .._dist import install_hint

    try:
        import click  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError as exc:
        missing = exc.name or "click/tqdm"
        sys.stderr.write(
            f"streamx: the command line needs the 'cli' extra ({missing} is not installed); "
            f"install it with: {install_hint('cli')}\n"
        )
        raise SystemExit(EXIT_MISSING_EXTRA) from None
    from ._app import run

    raise SystemExit(run(list(sys.argv[1:] if argv is None else argv)))
