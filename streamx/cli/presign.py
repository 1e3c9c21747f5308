"""``streamx presign``: a GET or PUT URL that works without credentials until it expires.

The URL carries a signature: it is printed on stdout (the command's product)
and nowhere else, never in a log line or an error message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import click

from .._s3 import map_errors
from ._common import DURATION, Options, Output, common_options, options, run_async
from ._exit import EXIT_OK, UsageError
from ._location import S3Location, parse_s3

MAX_EXPIRY = 7 * 24 * 3600  # SigV4's limit


@asynccontextmanager
async def presign_client(opts: Options) -> AsyncIterator[Any]:
    """A client that signs with SigV4 (botocore may pick the deprecated SigV2 for URLs)."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession

    session = AioSession(profile=opts.profile) if opts.profile else AioSession()
    region = opts.region or session.get_config_variable("region") or "us-east-1"
    args: dict[str, Any] = {"region_name": region}
    if opts.endpoint_url:
        args["endpoint_url"] = opts.endpoint_url
    config = AioConfig(signature_version="s3v4")
    with map_errors("presign"):
        async with session.create_client("s3", config=config, **args) as client:
            yield client


async def _presign(
    opts: Options, location: S3Location, method: str, expires: int, content_type: str | None
) -> int:
    operation = "get_object" if method == "GET" else "put_object"
    params = {"Bucket": location.bucket, "Key": location.key}
    if content_type:
        params["ContentType"] = content_type
    async with presign_client(opts) as client:
        with map_errors("presign", bucket=location.bucket, key=location.key):
            url = await client.generate_presigned_url(
                operation, Params=params, ExpiresIn=expires, HttpMethod=method
            )
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires)
    out = Output(opts)
    out.record(
        {
            "url": url,
            "method": method,
            "bucket": location.bucket,
            "key": location.key,
            "expires_in": expires,
            "expires_at": expires_at.isoformat(timespec="seconds"),
            **({"required_headers": {"Content-Type": content_type}} if content_type else {}),
        }
    )
    out.line(url)
    if content_type:  # signed into the URL: S3 refuses a PUT without exactly this header
        out.info(
            f"the uploader must send the header 'Content-Type: {content_type}' with the PUT "
            f"(it is signed into the URL), e.g. curl -T FILE -H 'Content-Type: {content_type}' URL"
        )
    return EXIT_OK


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("url")
@click.option(
    "--method",
    type=click.Choice(["GET", "PUT"], case_sensitive=False),
    default="GET",
    show_default=True,
    help="What the URL allows.",
)
@click.option(
    "--expires-in",
    type=DURATION,
    default="1h",
    show_default=True,
    help="Lifetime, e.g. 900, 15m, 12h, 7d (at most 7d).",
)
@click.option(
    "--content-type",
    metavar="TYPE",
    help="For PUT: sign this Content-Type in; the uploader must then send exactly this header.",
)
@common_options
def presign(url: str, method: str, expires_in: float, content_type: str | None) -> int:
    """Print a presigned URL for s3://bucket/key.

    \b
      streamx presign s3://bucket/report.pdf --expires-in 15m
      curl -T file "$(streamx presign s3://bucket/upload --method PUT)"
    """
    location = parse_s3(url)
    if location.is_dir:
        raise UsageError(f"presign needs an object key: s3://{location.bucket}/KEY")
    seconds = int(expires_in)
    if not 1 <= seconds <= MAX_EXPIRY:
        raise UsageError(f"--expires-in must be between 1 second and 7 days, not {seconds} s")
    if content_type and method.upper() != "PUT":
        raise UsageError("--content-type applies to PUT URLs")
    opts = options()
    return run_async(lambda: _presign(opts, location, method.upper(), seconds, content_type))
