"""What the thread sender needs of botocore's S3 model: one operation's headers in and out.

Why a model of its own: the thread sender (:mod:`._threaded`) writes an
UploadPart's or PutObject's arguments as headers and reads the answer's headers
back without botocore's serialiser and parser (its parser takes about 40 µs of
the event loop per answer, this about 6 µs: no shape dispatch and case folding
per member), doing nothing the model does not say. Both directions follow the
model (header names and types); whatever is not a plain header of a plain type
(a timestamp, a JSON value, a body member) is left to botocore: :meth:`plain`
turns such a request away and :attr:`Operation.answers` is false for an output
shape with such a member, so botocore's own parser reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

_PLAIN_TYPES = {"string": str, "integer": int, "long": int, "boolean": bool}
_PATH_PARAMS = {"Bucket", "Key", "UploadId", "PartNumber"}


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    netloc: str
    path: str
    query: tuple[tuple[str, str], ...]  # the presigned URL's, but for its X-Amz-* params


def parse_target(url: str) -> Target:
    """Where a presigned URL points, without its signature."""
    parts = urlsplit(url)
    query = tuple(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("x-amz-")
    )
    return Target(parts.scheme.lower(), parts.netloc, parts.path, query)


class Operation:
    """One operation's header parameters and answer headers, from botocore's S3 model."""

    def __init__(self, client: Any, name: str) -> None:
        self.name = name
        self.model = client.meta.service_model.operation_model(name)
        self._in: dict[str, tuple[str, str]] = {}  # member -> (header, shape type)
        self._prefix: dict[str, str] = {}  # map members (Metadata) -> header prefix
        for member, shape in self.model.input_shape.members.items():
            location = shape.serialization.get("location")
            if location == "header":
                self._in[member] = (shape.serialization.get("name", member), shape.type_name)
            elif location == "headers":
                self._prefix[member] = shape.serialization.get("name", "")
        # member, lower-cased header (or header prefix of a map), shape type: the output
        # members read from headers; ``answers`` if that is every member
        self._out: list[tuple[str, str, str]] = []
        self.answers = True
        output = self.model.output_shape
        for member, shape in output.members.items() if output is not None else ():
            location = shape.serialization.get("location")
            kind = shape.type_name
            plain = kind in _PLAIN_TYPES and not shape.serialization.get("jsonvalue")
            if location == "header" and (plain or kind == "timestamp"):
                self._out.append((member, shape.serialization.get("name", member).lower(), kind))
            elif location == "headers" and kind == "map":
                self._out.append((member, shape.serialization.get("name", "").lower(), kind))
            else:
                self.answers = False  # botocore's parser reads this answer (or the body)

    def plain(self, params: Mapping[str, Any]) -> bool:
        """Every param is a header of a plain type (strings, numbers, booleans, a str map)."""
        for member, value in params.items():
            if member in _PATH_PARAMS:
                continue
            if member.startswith("SSECustomer"):  # botocore encodes the key and adds its MD5
                return False
            if member in self._prefix:
                if not isinstance(value, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, str) and (k + v).isascii()
                    for k, v in value.items()
                ):
                    return False
                continue
            spec = self._in.get(member)
            if spec is None or spec[1] not in _PLAIN_TYPES:
                return False
            if not isinstance(value, _PLAIN_TYPES[spec[1]]) or (
                isinstance(value, str) and not value.isascii()
            ):
                return False
        return True

    def headers(self, params: Mapping[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for member, value in params.items():
            if member in _PATH_PARAMS:
                continue
            if member in self._prefix:
                out.update({f"{self._prefix[member]}{k}": v for k, v in value.items()})
            elif isinstance(value, bool):
                out[self._in[member][0]] = "true" if value else "false"
            else:
                out[self._in[member][0]] = str(value)
        return out

    def answer(self, status: int, headers: Mapping[str, str]) -> dict[str, Any]:
        """A 2xx answer as botocore's parser gives it: the output members from their
        headers, and ``ResponseMetadata`` (all of it if :attr:`answers`; else what is not
        in the body). Header maps (``Metadata``) are keyed by lower-cased names, as
        aiobotocore has them; a timestamp that is no HTTP date is left out."""
        lower = {k.lower(): v for k, v in headers.items()}
        parsed: dict[str, Any] = {}
        for member, header, kind in self._out:
            if kind == "map":  # present even when empty, as botocore's parser has it
                parsed[member] = {
                    k[len(header) :]: v for k, v in lower.items() if k.startswith(header)
                }
                continue
            value = lower.get(header)
            if value is None:
                continue
            if kind == "string":
                parsed[member] = value
            elif kind == "boolean":
                parsed[member] = value == "true"  # as botocore's REST-XML parser has it
            elif kind == "timestamp":
                try:  # botocore's dateutil parse costs ~0.2 ms; headers carry HTTP dates
                    parsed[member] = parsedate_to_datetime(value)
                except (TypeError, ValueError):
                    continue
            else:
                parsed[member] = int(value)
        meta: dict[str, Any] = {}
        if "x-amzn-requestid" in lower:
            meta["RequestId"] = lower["x-amzn-requestid"]
        elif "x-amz-request-id" in lower:
            meta["RequestId"] = lower["x-amz-request-id"]
            meta["HostId"] = lower.get("x-amz-id-2", "")
        meta["HTTPStatusCode"] = status
        meta["HTTPHeaders"] = lower
        parsed["ResponseMetadata"] = meta
        return parsed


__all__ = ["Operation", "Target", "parse_target"]
