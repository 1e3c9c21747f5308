"""Where bytes come from or go: ``s3://bucket/key``, a local path, or ``-`` (stdin/stdout).

Keys are taken verbatim after ``s3://bucket/``: no URL decoding, so ``#``,
``+``, ``%`` and spaces are part of the key.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from ._exit import UsageError


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str  # may be "" (the whole bucket) or end with "/" (a "directory")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def is_dir(self) -> bool:
        return self.key == "" or self.key.endswith("/")

    @property
    def dir_prefix(self) -> str:
        """The key as a "directory" prefix: ``a/b`` → ``a/b/``; ``""`` stays ``""``."""
        return self.key if self.is_dir else self.key + "/"

    def child(self, name: str) -> S3Location:
        return S3Location(self.bucket, self.key + name)


@dataclass(frozen=True)
class LocalLocation:
    path: str

    def __str__(self) -> str:
        return self.path


@dataclass(frozen=True)
class StdioLocation:
    def __str__(self) -> str:
        return "-"


Location = S3Location | LocalLocation | StdioLocation


def parse(text: str) -> Location:
    if text == "-":
        return StdioLocation()
    if text.startswith("s3://"):
        rest = text[len("s3://") :]
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise UsageError(f"{text!r} has no bucket; write s3://BUCKET/KEY")
        return S3Location(bucket, key)
    if text.lower().startswith("s3:"):
        raise UsageError(f"{text!r} is not an S3 URL; write s3://BUCKET/KEY")
    if not text:
        raise UsageError("an empty path was given")
    return LocalLocation(text)


def parse_s3(text: str, what: str = "the argument") -> S3Location:
    location = parse(text)
    if not isinstance(location, S3Location):
        raise UsageError(f"{what} must be an s3://BUCKET/KEY URL, not {text!r}")
    return location


def key_basename(key: str) -> str:
    return posixpath.basename(key.rstrip("/"))
