"""`DrainUnreadBody` on a fake ASGI exchange: the rest of the body is read before an early answer, within bounds."""

from __future__ import annotations

import asyncio

from rewardkit.serve.drain import DrainUnreadBody


async def answer_413_unread(scope, receive, send):
    await send({"type": "http.response.start", "status": 413, "headers": []})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def exchange(chunks: list[bytes], headers: tuple = (), max_bytes: int = 1 << 20, max_seconds: float = 5.0,
             stall: bool = False) -> list[str]:
    """What happened, in order: "read N" per body chunk read, "start STATUS" when the answer started."""
    events: list[str] = []
    pending = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
               for i, chunk in enumerate(chunks)]

    async def receive():
        if stall:
            await asyncio.sleep(60)  # a client that stopped sending
        message = pending.pop(0)
        events.append(f"read {len(message['body'])}")
        return message

    async def send(message):
        if message["type"] == "http.response.start":
            events.append(f"start {message['status']}")

    middleware = DrainUnreadBody(answer_413_unread, max_bytes=max_bytes, max_seconds=max_seconds)
    asyncio.run(middleware({"type": "http", "headers": list(headers)}, receive, send))
    return events


def test_the_unread_body_is_read_before_the_answer_starts():
    assert exchange([b"x" * 10] * 3) == ["read 10", "read 10", "read 10", "start 413"]


def test_draining_stops_past_the_byte_bound():
    assert exchange([b"x" * 10] * 100, max_bytes=25) == ["read 10"] * 3 + ["start 413"]


def test_draining_stops_at_the_time_bound():
    assert exchange([b"x"], max_seconds=0.05, stall=True) == ["start 413"]


def test_a_client_waiting_for_100_continue_is_answered_without_asking_for_its_body():
    assert exchange([b"x" * 10] * 3, headers=((b"expect", b"100-continue"),)) == ["start 413"]
