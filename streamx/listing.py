"""Listing: a lazy async iterator over ListObjectsV2 pages.

A page is requested only when the previous one has been consumed, so
stopping early stops paginating and memory holds one page (at most 1,000
entries) whatever the size of the listing::

    async for obj in engine.list("bucket", "logs/2025/"):
        ...

With a delimiter, common prefixes come as :class:`~streamx.ObjectInfo` with
``is_prefix=True``, merged in key order with the page's objects.
:meth:`Listing.pages` yields whole pages instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigError
from ._objects import ObjectInfo
from ._s3 import S3

MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class ListPage:
    """One ListObjectsV2 answer: its objects and its common prefixes."""

    objects: tuple[ObjectInfo, ...]
    prefixes: tuple[str, ...]

    def entries(self) -> list[ObjectInfo]:
        """Objects and prefixes merged in key order."""
        items = list(self.objects) + [ObjectInfo.prefix(p) for p in self.prefixes]
        if self.prefixes:
            items.sort(key=lambda info: info.key)
        return items


def check_list_args(
    prefix: object, delimiter: object, start_after: object, page_size: object
) -> None:
    if not isinstance(prefix, str):
        raise ConfigError(f"prefix must be a str, not {type(prefix).__name__}")
    if delimiter is not None and (not isinstance(delimiter, str) or not delimiter):
        raise ConfigError(f"delimiter must be a non-empty str or None, not {delimiter!r}")
    if start_after is not None and not isinstance(start_after, str):
        raise ConfigError(f"start_after must be a str or None, not {start_after!r}")
    if (
        isinstance(page_size, bool)
        or not isinstance(page_size, int)
        or not 1 <= page_size <= MAX_PAGE_SIZE
    ):
        raise ConfigError(f"page_size must be an int from 1 to {MAX_PAGE_SIZE}, not {page_size!r}")


class Listing:
    """The objects under a prefix, fetched a page at a time as they are consumed."""

    def __init__(
        self,
        s3: S3,
        bucket: str,
        prefix: str = "",
        *,
        delimiter: str | None = None,
        start_after: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.delimiter = delimiter
        self.start_after = start_after
        self.page_size = page_size
        self._token: str | None = None
        self._done = False
        self._buffer: deque[ObjectInfo] = deque()
        self.pages_fetched = 0

    async def next_page(self) -> ListPage | None:
        """The next page, or ``None`` after the last one."""
        if self._done:
            return None
        params: dict[str, Any] = {"Prefix": self.prefix, "MaxKeys": self.page_size}
        if self.delimiter is not None:
            params["Delimiter"] = self.delimiter
        if self._token is not None:
            params["ContinuationToken"] = self._token
        elif self.start_after is not None:
            params["StartAfter"] = self.start_after
        response = await self._s3.list_objects_v2(self.bucket, **params)
        self.pages_fetched += 1
        token = response.get("NextContinuationToken")
        if not response.get("IsTruncated") or not token:
            self._done = True
        self._token = token
        return ListPage(
            objects=tuple(ObjectInfo.from_listing(e) for e in response.get("Contents", [])),
            prefixes=tuple(str(p["Prefix"]) for p in response.get("CommonPrefixes", [])),
        )

    async def pages(self) -> AsyncIterator[ListPage]:
        """Async iterator of :class:`ListPage` (from where the listing stands)."""
        while True:
            page = await self.next_page()
            if page is None:
                return
            yield page

    def __aiter__(self) -> Listing:
        return self

    async def __anext__(self) -> ObjectInfo:
        while not self._buffer:
            page = await self.next_page()
            if page is None:
                raise StopAsyncIteration
            self._buffer.extend(page.entries())
        return self._buffer.popleft()

    async def collect(self, limit: int | None = None) -> list[ObjectInfo]:
        """Up to ``limit`` entries (all of them with ``None``) as a list."""
        out: list[ObjectInfo] = []
        async for info in self:
            out.append(info)
            if limit is not None and len(out) >= limit:
                break
        return out
