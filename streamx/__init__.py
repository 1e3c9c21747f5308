"""streamx: an asyncio-native streaming transfer engine for S3-compatible object storage."""

from ._budget import MemoryBudget
from ._config import TransferConfig
from ._engine import Engine
from ._errors import (
    AccessDeniedError,
    CheckpointError,
    ChecksumError,
    ConditionalConflictError,
    ConfigError,
    NetworkError,
    NotFoundError,
    ObjectChangedError,
    PartLimitError,
    PreconditionFailedError,
    S3Error,
    ServiceUnavailableError,
    SourceError,
    SourceTypeError,
    StreamxError,
)
from ._events import ProgressEvent
from ._limits import PartPlan
from ._objects import (
    CopyResult,
    DeleteError,
    DeleteResult,
    DownloadResult,
    MigrationFailure,
    MigrationResult,
    ObjectInfo,
)
from ._results import UploadResult
from ._stores import StoreProfile
from .download.fetcher import DownloadStream
from .listing import Listing, ListPage
from .maintenance import StaleUpload
from .migrate import migrate_prefix
from .upload.resume import ResumeToken
from .upload.writer import UploadWriter

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "CheckpointError",
    "ChecksumError",
    "ConditionalConflictError",
    "ConfigError",
    "CopyResult",
    "DeleteError",
    "DeleteResult",
    "DownloadResult",
    "DownloadStream",
    "Engine",
    "ListPage",
    "Listing",
    "MemoryBudget",
    "MigrationFailure",
    "MigrationResult",
    "NetworkError",
    "NotFoundError",
    "ObjectChangedError",
    "ObjectInfo",
    "PartLimitError",
    "PartPlan",
    "PreconditionFailedError",
    "ProgressEvent",
    "ResumeToken",
    "S3Error",
    "ServiceUnavailableError",
    "SourceError",
    "SourceTypeError",
    "StaleUpload",
    "StoreProfile",
    "StreamxError",
    "TransferConfig",
    "UploadResult",
    "UploadWriter",
    "__version__",
    "migrate_prefix",
]
