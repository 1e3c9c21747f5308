"""botocore's data loader, without the scan of every service's directory on the first client.

``Loader.load_service_model("s3", ...)`` first asks ``list_available_services``,
which lists each of the ~430 service directories botocore ships and looks for
the model file in each: 31 ms (then 8 ms for the endpoint rules) of every fresh
process's first client, to learn that ``s3`` is one of them. Here the answer is a
lazy sequence: asking whether one service is in it asks botocore's
``list_api_versions`` for that service alone (which the model's load asks next
anyway, from botocore's cache); iterating,
counting or indexing it (an error message naming the known services,
``session.get_available_services()``) runs botocore's own scan, once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, overload

from botocore.exceptions import DataNotFoundError
from botocore.loaders import Loader


class _Services(Sequence[str]):
    """The services of ``type_name`` the loader can load (see the module docstring)."""

    def __init__(self, loader: Loader, type_name: str) -> None:
        self._loader = loader
        self._type_name = type_name
        self._all: list[str] | None = None

    def __contains__(self, name: object) -> bool:
        if self._all is not None:
            return name in self._all
        if not isinstance(name, str) or not name or os.sep in name or name.startswith("."):
            return False
        try:  # botocore's own look into one service's directories (cached: the model's
            # load asks it again for the latest version)
            return bool(self._loader.list_api_versions(name, self._type_name))
        except DataNotFoundError:
            return False

    def _listed(self) -> list[str]:
        if self._all is None:
            self._all = Loader.list_available_services(self._loader, self._type_name)
        return self._all

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: Any) -> Any:
        return self._listed()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._listed())

    def __len__(self) -> int:
        return len(self._listed())


class ServiceLoader(Loader):  # type: ignore[misc]
    """botocore's :class:`Loader` whose ``list_available_services`` is :class:`_Services`."""

    def list_available_services(self, type_name: str) -> Sequence[str]:
        return _Services(self, type_name)


__all__ = ["ServiceLoader"]
