"""Starting the Ray actors of a sync job, or finding those an earlier run of it kept.

A plain job's actors are named ``{job_name}-{i}`` and killed when it ends.
With ``keep`` (``sync_on_ray(keep_actors=SECONDS)``), they are detached actors
in namespace :data:`KEPT_NAMESPACE`, named after a digest of the job (its
sides, engine arguments, limits and actor count: the name reveals no
secret), so the next run of the same job finds them (``get_if_exists``)
instead of paying their start-up; each leaves by itself after ``keep``
seconds without a batch (:meth:`BatchWorker.linger`, then :func:`retire`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from .actor import BatchWorker, side_spec
from .sides import Side

#: The Ray namespace of actors kept for a later run.
KEPT_NAMESPACE = "streamx"


def start_actors(
    ray: Any,
    src: Side,
    dst: Side,
    *,
    actors: int | None,
    job_name: str | None,
    options: dict[str, Any],
    engine_args: Mapping[str, Any],
    source_engine_args: Mapping[str, Any] | None,
    memory_limit: int,
    rates: tuple[float | None, float | None],
    concurrency: int,
    conditional: bool,
    keep: float,
) -> list[Any]:
    """One actor per live node (or ``actors``), each told to get ready at once; with ``keep``,
    the kept actors of an earlier run of the same job if they are still there."""
    n = actors or max(1, len([x for x in ray.nodes() if x.get("Alive")]))
    share = tuple(None if r is None else r / n for r in rates)
    args = (
        side_spec(src),
        side_spec(dst),
        dict(engine_args),
        dict(source_engine_args) if source_engine_args is not None else None,
    )
    kwargs: dict[str, Any] = {
        "memory_limit": memory_limit,
        "rates": share,
        "concurrency": concurrency,
        "conditional": conditional,
    }
    if keep:
        # the name says which job the actors serve (a digest: engine_args may hold secrets)
        job = json.dumps([args, kwargs, n], sort_keys=True, default=repr).encode()
        name = f"{job_name or 'streamx-sync'}-{hashlib.sha256(job).hexdigest()[:16]}"
        options = {
            **options,
            "lifetime": "detached",
            "namespace": KEPT_NAMESPACE,
            "get_if_exists": True,
        }
        kwargs["retire"] = _retire
    else:
        name = job_name or f"streamx-sync-{uuid.uuid4().hex[:8]}"
    remote = ray.remote(BatchWorker)
    handles = [
        remote.options(name=f"{name}-{i}", **options).remote(*args, **kwargs) for i in range(n)
    ]
    for handle in handles:
        handle.warm.remote()  # its result is not needed: run() waits for the same readiness
    return handles


def _retire() -> None:
    """Called by a kept actor that has idled its time: leave for good (no restart)."""
    import ray

    ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
