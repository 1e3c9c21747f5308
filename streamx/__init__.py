"""streamx: an asyncio-native streaming transfer engine for S3-compatible object storage."""

from ._budget import MemoryBudget
from ._config import TransferConfig
from ._engine import Engine
from ._errors import (
    AccessDeniedError,
    CheckpointError,
    ChecksumError,
    ConfigError,
    NetworkError,
    NotFoundError,
    ObjectChangedError,
    PartLimitError,
    S3Error,
    ServiceUnavailableError,
    SourceError,
    SourceTypeError,
    StreamxError,
)
from ._events import ProgressEvent
from ._limits import PartPlan
from ._results import UploadResult
from .upload.writer import UploadWriter

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "CheckpointError",
    "ChecksumError",
    "ConfigError",
    "Engine",
    "MemoryBudget",
    "NetworkError",
    "NotFoundError",
    "ObjectChangedError",
    "PartLimitError",
    "PartPlan",
    "ProgressEvent",
    "S3Error",
    "ServiceUnavailableError",
    "SourceError",
    "SourceTypeError",
    "StreamxError",
    "TransferConfig",
    "UploadResult",
    "UploadWriter",
    "__version__",
]
