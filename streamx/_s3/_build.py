"""Building the S3 layer for an engine: the client, and which part sender it gets.

The worker-thread sender (:mod:`._threaded`) goes with a client streamx creates
itself: its HTTP settings are captured as botocore resolved them (see
:mod:`._session`), and its credentials are those streamx passed, else the
session's (``session.get_credentials()``, refreshed as botocore refreshes them).
A client passed in, or a rate limit (metered through botocore's events), gets
aiobotocore's request path.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from ._client import S3
from ._sender import AiobotocoreSender, PartSender
from ._session import HttpSettings, client_config, session_for
from ._threaded import ThreadSender
from ._translate import translate


async def open_s3(
    stack: AsyncExitStack,
    *,
    profile: str | None,
    client_args: dict[str, Any],
    sign_payload: bool,
    addressing_style: str | None,
    pool: int,
    threads: bool,
) -> S3:
    """A client of streamx's own, closed by ``stack``; parts from worker threads if
    ``threads`` (and credentials are found), else through aiobotocore."""
    box: list[HttpSettings] = []
    config = client_config(
        sign_payload=sign_payload, addressing_style=addressing_style, pool=pool, box=box
    )
    session = session_for(profile)
    args = {k: v for k, v in client_args.items() if v is not None}
    try:
        client = await stack.enter_async_context(session.create_client("s3", config=config, **args))
    except Exception as exc:
        raise translate(exc, "creating the S3 client") from exc
    fallback = AiobotocoreSender(client)
    sender: PartSender = fallback
    if threads and box:
        credentials: Any = None
        if "aws_access_key_id" in args:
            token = args.get("aws_session_token")
            credentials = (args["aws_access_key_id"], args["aws_secret_access_key"], token)
        else:
            try:
                credentials = await session.get_credentials()
            except Exception as exc:
                raise translate(exc, "finding AWS credentials") from exc
        if credentials is not None:  # else aiobotocore raises NoCredentials at the first call
            sender = ThreadSender(
                client,
                settings=box[-1],
                credentials=credentials,
                sign_payload=sign_payload,
                fallback=fallback,
            )
    stack.callback(sender.close)
    return S3(client, sender)


def borrowed_s3(client: Any) -> S3:
    """The S3 layer over a client the caller created (aiobotocore's request path)."""
    return S3(client, AiobotocoreSender(client))
