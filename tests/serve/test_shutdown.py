"""Graceful shutdown of a real server process: SIGTERM while a request is being scored lets it finish with 200."""

from __future__ import annotations

import signal
import threading
import time

import httpx

from tests.serve.conftest import ServerProcess


def test_sigterm_finishes_the_in_flight_request_then_exits(tmp_path):
    server = ServerProcess("tests.serve.slow_app", ["fake", "--max-wait-ms", "0"],
                           env={"SLOW_SCORER_DELAY": "1.5"}, log_dir=tmp_path).wait_ready()
    result: dict = {}

    def slow_request():
        try:
            result["answer"] = httpx.post(server.url + "/score", timeout=30.0,
                                          json={"items": [{"prompt": "", "response": "abc"}, {"prompt": "", "response": "hello"}]})
        except Exception as exc:  # reported by the assertion below
            result["error"] = exc

    try:
        client = threading.Thread(target=slow_request)
        client.start()
        time.sleep(0.5)  # the request is now being scored (1.5 s)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        refused = False
        try:
            httpx.get(server.url + "/health", timeout=2.0)
        except httpx.TransportError:
            refused = True  # no new connections once shutting down
        client.join(30)
        exit_code = server.proc.wait(30)
    finally:
        server.stop()
    assert "error" not in result, result.get("error")
    assert result["answer"].status_code == 200
    assert result["answer"].json() == {"scores": [3.0, 5.0]}
    assert refused
    # uvicorn re-raises the signal once shut down, so the exit status is "terminated by SIGTERM" (or 0).
    assert exit_code in (0, -signal.SIGTERM), server.log()
    assert "Application shutdown complete" in server.log()
