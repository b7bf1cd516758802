"""Read what is left of a request body before answering it, as nginx's lingering close does.

The app may answer before it has read the whole body (413 on the Content-Length alone, 401). Closing a socket whose
unread data is still arriving makes the kernel reset the connection, and clients that send their whole body before
reading the answer (urllib, requests) then see ECONNRESET or a broken pipe instead of the status. So, before a
response starts, `DrainUnreadBody` reads and drops the rest of the body; within bounds, so that no client can make
the server read forever: past them the connection is closed as before.
"""

from __future__ import annotations

import asyncio

DRAIN_SECONDS = 30.0  # nginx's lingering_time
DRAIN_MIN_BYTES = 256 * 1024 * 1024  # covers clients that ignore a small --max-body-bytes by a wide margin
DRAIN_LIMIT_MULTIPLE = 4  # and bodies a few times a large one


class DrainUnreadBody:
    """Pure ASGI middleware: when a response starts before the request body was read to its end, read the rest
    (at most `max_bytes`, for at most `max_seconds`) and drop it."""

    def __init__(self, app, max_bytes: int, max_seconds: float = DRAIN_SECONDS):
        self.app, self.max_bytes, self.max_seconds = app, max_bytes, max_seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = read_any = False

        async def tracking_receive():
            nonlocal body_done, read_any
            message = await receive()
            read_any = True
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def draining_send(message):
            # A client that sent `Expect: 100-continue` sends its body only once told to: if nothing was read, it was
            # not told (the server says it on the first read), and reading now would ask for a body nobody wants.
            waiting_client = not read_any and _expects_continue(scope)
            if message["type"] == "http.response.start" and not body_done and not waiting_client:
                await self._drain(tracking_receive)
            await send(message)

        await self.app(scope, tracking_receive, draining_send)

    async def _drain(self, receive) -> None:
        dropped = 0
        try:
            async with asyncio.timeout(self.max_seconds):
                while dropped <= self.max_bytes:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        return
                    dropped += len(message.get("body", b""))
        except TimeoutError:
            pass  # a client too slow to finish: answer anyway, and let the server close the connection


def drain_bound(max_body_bytes: int) -> int:
    """How much of an over-limit body the server reads (and drops) so that its client still hears the 413."""
    return max(DRAIN_MIN_BYTES, DRAIN_LIMIT_MULTIPLE * max_body_bytes)


def _expects_continue(scope) -> bool:
    return any(name == b"expect" and value.lower() == b"100-continue" for name, value in scope["headers"])
