"""A replica's HTTP edges: the request body read within a size and time limit (`read_body`), and
the V2 error answers (``{"error": message}``; `NotFound` for a route or method the replica does
not serve). Used by `serving.replica`.
"""

import asyncio
import sys
from http import HTTPStatus

from starlette.requests import Request
from starlette.responses import JSONResponse

from serving.v2.types import RequestTimeout
from serving.v2.wire import body_too_large


async def read_body(request: Request, limit: int, timeout_s: float | None) -> bytes:
    """The request body, refused past `limit` bytes or `timeout_s` seconds.

    `timeout_s` None: no deadline of its own, for a caller whose deadline comes first anyway
    (one timer less per request: a timer costs the replica's event loop about 10 us).

    Raises:
        PayloadTooLarge: content-length or the bytes read exceed `limit` (HTTP 413).
        RequestTimeout: the body did not arrive within `timeout_s` (HTTP 408).
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise body_too_large(int(declared), limit, declared=True)

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise body_too_large(limit, limit, declared=False)
            chunks.append(chunk)
        return b"".join(chunks)

    if timeout_s is None:
        return await read()
    try:
        if sys.version_info >= (3, 11):  # a deadline on this task, not a new task per request
            async with asyncio.timeout(timeout_s):
                return await read()
        return await asyncio.wait_for(read(), timeout_s)
    except (asyncio.TimeoutError, TimeoutError):
        raise RequestTimeout(
            f"Got no complete request body within {timeout_s} s (args.body_timeout_s). A "
            "replica holds a request slot while it waits, so slow uploads are cut off. Send "
            "the body at once, or raise args.body_timeout_s in the Serve config."
        ) from None


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message}, headers=headers)


class NotFound(Exception):
    """No route for the request (404), or the route does not take its method (405)."""

    def __init__(self, status: int, request: Request) -> None:
        super().__init__(f"{HTTPStatus(status).phrase}: {request.method} {request.url.path}")
        self.status = status
