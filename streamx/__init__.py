"""streamx: an asyncio-native streaming transfer engine for S3-compatible object storage."""

from ._budget import MemoryBudget
from ._config import TransferConfig
from ._engine import Engine
from ._errors import (
    AccessDeniedError,
    CheckpointError,
    ChecksumError,
    CompletedChecksumError,
    ConditionalConflictError,
    ConfigError,
    ConfigTypeError,
    InvalidRangeError,
    LocalFileError,
    NetworkError,
    NotFoundError,
    ObjectChangedError,
    ObjectChangedSinceCheckpoint,
    PartLimitError,
    PreconditionFailedError,
    S3Error,
    ServiceUnavailableError,
    SourceError,
    SourceTypeError,
    StreamxError,
    SyncOrderError,
    UsageError,
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
from ._ratelimit import RateLimit
from ._results import UploadResult
from ._retry import RetryPolicy
from ._stores import StoreProfile
from .bulk import SyncEvent, SyncProgress, SyncResult, sync, sync_on_ray
from .download.stream import DownloadStream
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
    "CompletedChecksumError",
    "ConditionalConflictError",
    "ConfigError",
    "ConfigTypeError",
    "CopyResult",
    "DeleteError",
    "DeleteResult",
    "DownloadResult",
    "DownloadStream",
    "Engine",
    "ListPage",
    "Listing",
    "InvalidRangeError",
    "LocalFileError",
    "MemoryBudget",
    "MigrationFailure",
    "MigrationResult",
    "NetworkError",
    "NotFoundError",
    "ObjectChangedError",
    "ObjectChangedSinceCheckpoint",
    "ObjectInfo",
    "PartLimitError",
    "PartPlan",
    "PreconditionFailedError",
    "ProgressEvent",
    "RateLimit",
    "ResumeToken",
    "RetryPolicy",
    "S3Error",
    "ServiceUnavailableError",
    "SourceError",
    "SourceTypeError",
    "StaleUpload",
    "StoreProfile",
    "StreamxError",
    "SyncEvent",
    "SyncOrderError",
    "SyncProgress",
    "SyncResult",
    "TransferConfig",
    "UploadResult",
    "UploadWriter",
    "UsageError",
    "__version__",
    "migrate_prefix",
    "sync",
    "sync_on_ray",
]
