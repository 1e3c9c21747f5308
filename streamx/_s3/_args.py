"""The put-argument model: which S3 arguments an upload takes, and their checks.

Names and shapes come from botocore's S3 service model (the one every session
shares, see :mod:`._session`); values are checked by :mod:`streamx._validate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from .._errors import ConfigError
from .._validate import check_put_values
from ._session import service_model

# Parameters streamx manages itself and a caller may not pass through.
_MANAGED = {
    "Bucket",
    "Key",
    "Body",
    "ContentLength",
    "ContentMD5",
    "UploadId",
    "ChecksumAlgorithm",
    "ChecksumType",
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
}


#: S3's write conditions. They go on PutObject, CompleteMultipartUpload and CopyObject,
#: never on CreateMultipartUpload or UploadPart (S3 takes them only where the object appears).
CONDITIONS = ("IfMatch", "IfNoneMatch")


@lru_cache(maxsize=1)
def upload_param_names() -> frozenset[str]:
    """Parameters valid for both PutObject and CreateMultipartUpload, plus the conditions."""
    model = service_model()
    put = set(model.operation_model("PutObject").input_shape.members)
    create = set(model.operation_model("CreateMultipartUpload").input_shape.members)
    return frozenset((put & create) - _MANAGED) | frozenset(CONDITIONS)


def check_conditions(args: Mapping[str, Any]) -> None:
    """``IfNoneMatch`` takes only ``"*"``; ``IfMatch`` an ETag; not both at once."""
    if_none, if_match = args.get("IfNoneMatch"), args.get("IfMatch")
    if "IfNoneMatch" in args and if_none != "*":
        raise ConfigError(
            f"IfNoneMatch must be '*' (write only if the key does not exist), not {if_none!r}; "
            "S3 takes no other value on a write"
        )
    if "IfMatch" in args and (not isinstance(if_match, str) or not if_match.strip('" ')):
        raise ConfigError(
            f"IfMatch must be the ETag of the object to replace (a non-empty str), not {if_match!r}"
        )
    if "IfNoneMatch" in args and "IfMatch" in args:
        raise ConfigError(
            "IfNoneMatch='*' (key must not exist) and IfMatch (key must exist) exclude each "
            "other; pass one"
        )


def split_conditions(args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(args without the conditions, the conditions)``."""
    rest = {k: v for k, v in args.items() if k not in CONDITIONS}
    return rest, {k: args[k] for k in CONDITIONS if k in args}


@lru_cache(maxsize=1)
def _put_shapes() -> dict[str, Any]:
    """The botocore shape of every argument an upload may send (for value checks)."""
    model = service_model()
    shapes: dict[str, Any] = {}
    for op in ("CompleteMultipartUpload", "CreateMultipartUpload", "PutObject"):
        shapes.update(model.operation_model(op).input_shape.members)
    return shapes


def check_put_args(put_args: Mapping[str, Any]) -> dict[str, Any]:
    """Names known and values safe as headers (see :mod:`streamx._validate`); returns the
    arguments as they are to be sent (non-ASCII ``Metadata`` values RFC 2047-encoded)."""
    allowed = upload_param_names()
    unknown = sorted(set(put_args) - allowed)
    if unknown:
        managed = [u for u in unknown if u in _MANAGED]
        if managed:
            raise ConfigError(f"{', '.join(managed)} is set by streamx and cannot be passed")
        raise ConfigError(
            f"unknown S3 upload argument(s) {', '.join(unknown)}; "
            f"valid ones include ContentType, Metadata, StorageClass, Tagging, ServerSideEncryption, "
            "IfNoneMatch, IfMatch"
        )
    check_conditions(put_args)
    return check_put_values(put_args, _put_shapes())
