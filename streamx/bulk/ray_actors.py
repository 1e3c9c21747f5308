"""Starting the Ray actors of a sync job, or finding those an earlier run of it kept.

Each live node gets ``actors_per_node`` actors (default: one per CPU the node
offers, at most :data:`MAX_PER_NODE`: one Python process keeps about one core
busy, and small objects cost CPU per request), placed by soft node affinity (a
restarted actor may land elsewhere). A node's ``concurrency`` and memory budget
are split among its actors, so the node as a whole moves ``concurrency`` objects
at once within ``memory_limit``, as one actor would.

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
#: The default number of actors on one node (fewer when the node has fewer CPUs).
MAX_PER_NODE = 2


def placement(ray: Any, actors: int | None, per_node: int | None) -> list[tuple[str | None, int]]:
    """``(node id, actors on that node)`` of each actor to start: ``actors`` in all, dealt
    round-robin over the live nodes, or ``per_node`` (default: the node's CPUs, at most
    :data:`MAX_PER_NODE`) on each live node."""
    nodes = [x for x in ray.nodes() if x.get("Alive")]
    if not nodes:
        return [(None, 1)] * (actors or 1)
    if actors is not None:
        counts = [actors // len(nodes) + (i < actors % len(nodes)) for i in range(len(nodes))]
    else:
        counts = [
            per_node or max(1, min(MAX_PER_NODE, int(n.get("Resources", {}).get("CPU", 1))))
            for n in nodes
        ]
    return [(n["NodeID"], k) for n, k in zip(nodes, counts, strict=True) for _ in range(k)]


def start_actors(
    ray: Any,
    src: Side,
    dst: Side,
    *,
    actors: int | None,
    per_node: int | None,
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
    """The actors of :func:`placement`, each told to get ready at once; with ``keep``, the kept
    actors of an earlier run of the same job if they are still there."""
    places = placement(ray, actors, per_node)
    n = len(places)
    share = tuple(None if r is None else r / n for r in rates)
    args = (
        side_spec(src),
        side_spec(dst),
        dict(engine_args),
        dict(source_engine_args) if source_engine_args is not None else None,
    )
    kwargs: dict[str, Any] = {"rates": share, "conditional": conditional}
    if keep:
        # the name says which job the actors serve (a digest: engine_args may hold secrets)
        job = json.dumps(
            [args, kwargs, concurrency, memory_limit, places], sort_keys=True, default=repr
        ).encode()
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
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(BatchWorker)
    handles = []
    for i, (node, k) in enumerate(places):
        placed = dict(options)
        if node is not None and "scheduling_strategy" not in options:
            placed["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
        handles.append(
            remote.options(name=f"{name}-{i}", **placed).remote(
                *args,
                **kwargs,
                concurrency=-(-concurrency // k),  # the node's share, rounded up
                memory_limit=max(memory_limit // k, 1),
            )
        )
    for handle in handles:
        handle.warm.remote()  # its result is not needed: run() waits for the same readiness
    return handles


def _retire() -> None:
    """Called by a kept actor that has idled its time: leave for good (no restart)."""
    import ray

    ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
