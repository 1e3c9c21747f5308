"""Store profiles: what each S3-compatible store accepts, verifies and honours.

One table, :data:`PROFILES`, each fact with its source (a documentation page, an issue
thread, or "measured here" for the servers the test suite runs). ``None`` means "not
documented": :meth:`streamx.Engine.probe` finds it out with one scratch key.

A profile is chosen by ``Engine(store="r2")``, or detected from the endpoint's host
name (:func:`detect`), or found by the probe; an engine without an endpoint talks to
AWS. The decisions taken from it are pure functions, unit-tested without a server:

* :func:`adapt` — the :class:`TransferConfig` a store needs: no checksum headers where
  they are refused (B2, GCS's XML API), an algorithm whose multipart checksum type a
  store that checks the type verifies (R2 verifies CRC32C only as COMPOSITE, so the
  default CRC32C/FULL_OBJECT becomes CRC64NVME/FULL_OBJECT; MinIO quietly keeps a
  composite value, which streamx verifies, so CRC32C stays), equal parts where
  required (R2);
* :func:`condition_points` and :func:`check_conditions` — a conditional write on a store
  that ignores the condition is refused before any byte is sent, never silently turned
  into an overwrite;
* ``max_object_size`` — the planner's limit (48.8 TiB on AWS, 5 TiB elsewhere).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._errors import ConfigError
from ._limits import MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_PARTS, TiB

if TYPE_CHECKING:
    from ._config import TransferConfig

FULL, COMPOSITE = "FULL_OBJECT", "COMPOSITE"

#: Where a write condition can be honoured (or silently ignored) by a store.
POINTS = (
    "PutObject:IfNoneMatch",
    "PutObject:IfMatch",
    "CompleteMultipartUpload:IfNoneMatch",
    "CompleteMultipartUpload:IfMatch",
    "CopyObject:IfNoneMatch",
    "CopyObject:IfMatch",
    "DeleteObjects:ETag",
)
_ALL = MappingProxyType(dict.fromkeys(POINTS, True))

# Sources, named once.
_AWS_LIMITS = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html"
_AWS_SUMS = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html"
_AWS_COND = (
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html; "
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html "
    "(DeleteObjects: the ETag element, per-object errors); CopyObject.IfNoneMatch/IfMatch "
    "in botocore's S3 model"
)
_R2_API = "https://developers.cloudflare.com/r2/api/s3/api/"
_R2_LIMITS = "https://developers.cloudflare.com/r2/platform/limits/"
_B2_SUMS = "home-assistant/core#143995, jschneier/django-storages#1498 (400 InvalidArgument)"
_B2_API = "https://www.backblaze.com/docs/cloud-storage-s3-compatible-api"
_GCS = "https://cloud.google.com/storage/docs/xml-api/reference-headers (x-goog-hash)"
_GCS_LIMITS = "https://cloud.google.com/storage/quotas"
_MINIO = "https://min.io/docs/minio/linux/operations/concepts/thresholds.html"
_MINIO_COND = "https://blog.min.io/leading-the-way-minios-conditional-write-feature-for-modern-data-workloads/"
_WASABI = "https://docs.wasabi.com/docs/wasabi-api (S3 API compatibility)"
_CEPH = "https://docs.ceph.com/en/latest/radosgw/s3/"
_MEASURED = "measured here (tests/test_stores.py, /work/shared/S3-SERVERS.md)"


@dataclass(frozen=True, kw_only=True)
class StoreProfile:
    """What one store accepts, verifies and honours; ``None``: not known (probe it).

    ``checksums`` maps an algorithm to the multipart checksum types the store verifies;
    ``checksum_type_checked``: a multipart checksum type the store does not verify for the
    algorithm is refused (R2), not quietly replaced by COMPOSITE (MinIO, whose composite
    values streamx verifies just as well);
    ``checksum_headers=False``: the store refuses ``x-amz-checksum-*`` headers outright;
    (no profile makes a store's reported checksum proof of corruption: a mismatch is
    settled by reading the object back, see ``streamx/upload/completer.py``);
    ``conditions`` maps each of :data:`POINTS` to whether the store honours it.
    """

    name: str
    title: str
    max_object_size: int = MAX_OBJECT_SIZE
    equal_parts: bool = False
    checksum_headers: bool | None = True
    checksums: Mapping[str, tuple[str, ...]] | None = None
    checksum_type_checked: bool = False
    conditions: Mapping[str, bool] = field(default_factory=dict)
    upload_part_copy: bool | None = None
    post_policy: bool | None = None
    sources: Mapping[str, str] = field(default_factory=dict)
    probed: bool = False

    def honours(self, point: str) -> bool | None:
        return self.conditions.get(point)

    def with_facts(self, **facts: Any) -> StoreProfile:
        return dataclasses.replace(self, **facts)


_AWS_CHECKSUMS = {
    "CRC64NVME": (FULL,),
    "CRC32": (FULL, COMPOSITE),
    "CRC32C": (FULL, COMPOSITE),
    "SHA1": (COMPOSITE,),
    "SHA256": (COMPOSITE,),
}

PROFILES: Mapping[str, StoreProfile] = MappingProxyType(
    {
        p.name: p
        for p in (
            StoreProfile(
                name="aws",
                title="AWS S3",
                max_object_size=MAX_PARTS * MAX_PART_SIZE,  # 48.8 TiB: 10,000 parts of 5 GiB
                checksums=_AWS_CHECKSUMS,
                conditions=_ALL,
                upload_part_copy=True,
                post_policy=True,
                sources={"size": _AWS_LIMITS, "checksums": _AWS_SUMS, "conditions": _AWS_COND},
            ),
            StoreProfile(
                name="minio",
                title="MinIO",
                max_object_size=50 * TiB,
                checksums={a: (COMPOSITE,) for a in ("CRC32", "CRC32C", "SHA1", "SHA256")},
                conditions={
                    "PutObject:IfNoneMatch": True,
                    "PutObject:IfMatch": True,
                    "CompleteMultipartUpload:IfNoneMatch": True,
                    "CompleteMultipartUpload:IfMatch": True,
                },
                upload_part_copy=True,
                post_policy=True,
                sources={
                    "size": _MINIO,
                    "checksums": "reports COMPOSITE values whatever type is asked "
                    "(streamx/_checksum.py)",
                    "conditions": _MINIO_COND + "; minio/minio#21526",
                },
            ),
            StoreProfile(
                name="r2",
                title="Cloudflare R2",
                max_object_size=MAX_OBJECT_SIZE,
                equal_parts=True,
                checksum_type_checked=True,
                checksums={
                    "CRC64NVME": (FULL,),
                    "CRC32": (COMPOSITE,),
                    "CRC32C": (COMPOSITE,),
                    "SHA1": (COMPOSITE,),
                    "SHA256": (COMPOSITE,),
                },
                conditions={"PutObject:IfNoneMatch": True, "PutObject:IfMatch": True},
                upload_part_copy=True,
                post_policy=False,
                sources={
                    "size": _R2_LIMITS,
                    "parts": _R2_LIMITS + " (all parts but the last of equal size)",
                    "checksums": _R2_API + " (checksum types table)",
                    "conditions": _R2_API + " (PutObject: conditional operations)",
                    "post_policy": _R2_API + " (PostObject not implemented)",
                },
            ),
            StoreProfile(
                name="b2",
                title="Backblaze B2",
                max_object_size=10 * 10**12,  # 10 TB
                checksum_headers=False,
                checksums={},
                upload_part_copy=True,
                sources={"size": _B2_API, "checksums": _B2_SUMS, "copy": _B2_API},
            ),
            StoreProfile(
                name="gcs",
                title="Google Cloud Storage (XML API)",
                max_object_size=MAX_OBJECT_SIZE,
                checksum_headers=False,
                checksums={},
                upload_part_copy=False,
                post_policy=True,
                sources={
                    "size": _GCS_LIMITS,
                    "checksums": _GCS,
                    "copy": "https://cloud.google.com/storage/docs/multipart-uploads",
                },
            ),
            StoreProfile(
                name="wasabi",
                title="Wasabi",
                max_object_size=MAX_OBJECT_SIZE,
                checksum_headers=None,
                upload_part_copy=True,
                post_policy=True,
                sources={"all": _WASABI},
            ),
            StoreProfile(
                name="ceph",
                title="Ceph RGW",
                max_object_size=MAX_OBJECT_SIZE,
                checksum_headers=None,
                upload_part_copy=True,
                post_policy=True,
                sources={"all": _CEPH},
            ),
            StoreProfile(
                name="seaweedfs",
                title="SeaweedFS",
                max_object_size=MAX_OBJECT_SIZE,
                checksums={
                    "CRC32": (FULL,),
                    "CRC32C": (FULL,),
                    "CRC64NVME": (FULL,),
                    "SHA256": (COMPOSITE,),
                },
                conditions=_ALL,
                upload_part_copy=True,
                post_policy=True,  # and it enforces content-length-range (EntityTooLarge)
                sources={"all": _MEASURED + " (SeaweedFS 4.48)"},
            ),
            StoreProfile(
                name="rclone",
                title="rclone serve s3",
                max_object_size=MAX_OBJECT_SIZE,
                checksums={},  # accepted, neither checked nor kept
                conditions=dict.fromkeys(POINTS, False),
                upload_part_copy=False,  # answers with an empty part
                post_policy=False,  # browser POST uploads are refused
                sources={"all": _MEASURED},
            ),
            StoreProfile(
                name="moto",
                title="moto",
                max_object_size=MAX_OBJECT_SIZE,
                checksums={a: (FULL, COMPOSITE) for a in ("CRC32", "CRC32C", "CRC64NVME")}
                | {"SHA256": (COMPOSITE,)},
                # without the optional crc32c package moto computes CRC32 where CRC32C is
                # asked (tests/test_wrong_store_checksums.py): settled by the read-back
                conditions={
                    "PutObject:IfNoneMatch": True,
                    "PutObject:IfMatch": True,
                    "CompleteMultipartUpload:IfNoneMatch": True,
                    "CompleteMultipartUpload:IfMatch": False,
                    "CopyObject:IfNoneMatch": False,
                    "CopyObject:IfMatch": False,
                    "DeleteObjects:ETag": False,
                },
                upload_part_copy=True,
                post_policy=True,
                sources={"all": _MEASURED + " (moto 5.2)"},
            ),
        )
    }
)

#: An endpoint streamx cannot name: conservative limits, conditions unknown until probed.
UNKNOWN = StoreProfile(name="unknown", title="unknown S3-compatible store", checksum_headers=None)

_HOSTS = (
    (".r2.cloudflarestorage.com", "r2"),
    (".backblazeb2.com", "b2"),
    ("storage.googleapis.com", "gcs"),
    (".wasabisys.com", "wasabi"),
    (".amazonaws.com", "aws"),
    (".amazonaws.com.cn", "aws"),
)


def profile(name: str) -> StoreProfile:
    """The profile called ``name`` (``ConfigError`` listing the known ones otherwise)."""
    if not isinstance(name, str) or name not in PROFILES:
        raise ConfigError(f"store must be one of {', '.join(PROFILES)}, not {name!r}")
    return PROFILES[name]


def detect(endpoint_url: str | None) -> StoreProfile:
    """The profile for an endpoint, from its host name; no endpoint means AWS."""
    if not endpoint_url:
        return PROFILES["aws"]
    host = (urlsplit(endpoint_url).hostname or "").lower()
    for suffix, name in _HOSTS:
        if host.endswith(suffix) or host == suffix.lstrip("."):
            return PROFILES[name]
    return UNKNOWN


def adapt(config: TransferConfig, store: StoreProfile) -> TransferConfig:
    """``config`` with what ``store`` needs: checksum headers, algorithm, equal parts."""
    changes: dict[str, Any] = {}
    if store.equal_parts and not config.equal_parts:
        changes["equal_parts"] = True
    if config.checksum == "when_supported":
        if store.checksum_headers is False:
            changes["checksum"] = "when_required"  # compute, but send no checksum header
        elif store.checksums and store.checksum_type_checked:
            algorithm = config.checksum_algorithm
            wanted = FULL if algorithm != "SHA256" else COMPOSITE  # streamx's type per algorithm
            if wanted not in store.checksums.get(algorithm, ()):
                better = [a for a, kinds in store.checksums.items() if FULL in kinds]
                if better:
                    changes["checksum_algorithm"] = better[0]
                elif "SHA256" in store.checksums:
                    changes["checksum_algorithm"] = "SHA256"
    return dataclasses.replace(config, **changes) if changes else config


def condition_points(
    operation: str, conditions: Iterable[str], *, multipart: bool | None = None
) -> list[str]:
    """The :data:`POINTS` a write of ``operation`` with ``conditions`` relies on.

    ``operation``: "upload" (``multipart=None``: either path may be taken), "copy"
    (``multipart``: CopyObject or a multipart copy) or "delete".
    """
    names = sorted(conditions)
    if operation == "delete":
        return ["DeleteObjects:ETag"] if names else []
    single = "CopyObject" if operation == "copy" else "PutObject"
    ops = {
        False: [single],
        True: ["CompleteMultipartUpload"],
        None: [single, "CompleteMultipartUpload"],
    }
    return [f"{op}:{name}" for op in ops[multipart] for name in names]


def unknown_points(store: StoreProfile, points: Iterable[str]) -> list[str]:
    return [p for p in points if store.honours(p) is None]


def check_conditions(store: StoreProfile, points: Iterable[str]) -> None:
    """Refuse (``ConfigError``) a condition the store is known to ignore."""
    ignored = [p for p in points if store.honours(p) is False]
    if ignored:
        what = ", ".join(p.replace(":", " with ") for p in ignored)
        raise ConfigError(
            f"{store.title} ignores {what}: the write would silently replace the object. "
            "Nothing was sent. Drop the condition to overwrite on purpose, or use a store "
            "that honours conditional writes (see the README's store profiles)"
        )
