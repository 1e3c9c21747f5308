"""Bulk transfers: ``sync`` makes a destination (local directory or S3 prefix) hold what a source holds.

The data flow, one module per stage::

    entries.py   both sides as sorted streams (local walk in S3 key order, S3 listing)
    plan.py      merge-join, filters, decide: copy / update / check / delete
    sides.py     what each side can tell about a key; identity comparison
    fileio.py    small local reads and hashes, many per thread hop
    conditions.py  IfNoneMatch / IfMatch for idempotent writes
    execute.py   the runner that performs one action; counts and events
    manifest.py  watermarks of finished work, for resume
    local.py     the local executor: a bounded queue into N runners
    job.py       validation, preflight, ``sync()``
    actor.py     the fleet worker: runs batches with its own engines
    split.py     on Ray, a large object's multipart upload, driven by the driver, parts by actors
    parts.py     an actor's part task: read one byte range, upload it as one part
    ray.py       the fleet executor on Ray (the ``ray`` extra): ``sync_on_ray()``
"""

from .._errors import SyncOrderError
from .execute import SyncEvent
from .job import SyncResult, sync
from .local import SyncProgress
from .ray import sync_on_ray

__all__ = ["SyncEvent", "SyncOrderError", "SyncProgress", "SyncResult", "sync", "sync_on_ray"]
