"""streamx's botocore data loader answers as botocore's own, without its first scan."""

from __future__ import annotations

import pytest
from botocore.exceptions import UnknownServiceError
from botocore.loaders import Loader

from streamx._s3._loader import ServiceLoader

pytestmark = pytest.mark.unit  # pure logic: botocore's data files, no server


@pytest.mark.parametrize("type_name", ["service-2", "endpoint-rule-set-1", "paginators-1"])
def test_the_services_are_botocores(type_name: str) -> None:
    ours, theirs = ServiceLoader(), Loader()
    listed = theirs.list_available_services(type_name)
    assert "s3" in listed and "sts" in listed
    for name in ("s3", "sts", "dynamodb", "no-such-service", "", "s3/../s3", ".", 3):
        assert (name in ours.list_available_services(type_name)) == (name in listed), name
    assert list(ours.list_available_services(type_name)) == listed
    assert len(ours.list_available_services(type_name)) == len(listed)
    assert ours.list_available_services(type_name)[:3] == listed[:3]


def test_models_load_as_botocores() -> None:
    ours, theirs = ServiceLoader(), Loader()
    assert ours.load_service_model("s3", "service-2") == theirs.load_service_model(
        "s3", "service-2"
    )
    with pytest.raises(UnknownServiceError, match=r"Valid service names are: .*s3"):
        ours.load_service_model("no-such-service", "service-2")
