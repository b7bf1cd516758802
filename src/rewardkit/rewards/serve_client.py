"""Client for a `rewardkit serve` server: score (prompt, response) pairs remotely, as a learned reward would locally.

    with RewardClient("http://127.0.0.1:8000", api_token=...) as client:
        scores = client.score(prompts, responses)     # list[float], in input order
        scores, spreads = client.score_with_spread(prompts, responses)  # spreads: an ensemble's disagreement, or None

Requests are split into chunks under the server's item and body limits (read once from GET /health). Connection
failures and 502/503/504 answers are retried with exponential backoff (scoring is idempotent); other errors raise
RewardkitError with the server's message, which names the faulty field.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

import httpx

from rewardkit.errors import RewardkitError

TOKEN_ENV = "REWARDKIT_API_TOKEN"
_RETRY_STATUS = frozenset({502, 503, 504})
_ENVELOPE = len(b'{"items":[]}')


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class RewardClient:
    def __init__(self, url: str, api_token: str | None = None, timeout: float = 120.0, retries: int = 3,
                 backoff_s: float = 0.5):
        """`url`: the server's base URL (a trailing /score is accepted too). `api_token` defaults to
        $REWARDKIT_API_TOKEN. `timeout`: seconds per HTTP request; `retries`: extra attempts after a transient failure.
        """
        self.url = url.rstrip("/").removesuffix("/score")
        token = api_token if api_token is not None else os.environ.get(TOKEN_ENV) or None
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.retries = retries
        self.backoff_s = backoff_s
        self._http = httpx.Client(timeout=timeout, headers=headers)
        self._limits: dict[str, Any] | None = None

    def __enter__(self) -> "RewardClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def limits(self) -> dict[str, Any]:
        """The server's limits (max_items_per_request, max_body_bytes, ...), fetched once."""
        if self._limits is None:
            self._limits = self._request("GET", "/health").json()["limits"]
        return self._limits

    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> list[float]:
        """Scores for (prompt, response) pairs; a prompt is text or a list of {"role", "content"} messages."""
        return self.score_with_spread(prompts, responses)[0]

    def score_with_spread(self, prompts: Sequence[Any],
                          responses: Sequence[str]) -> tuple[list[float], list[float] | None]:
        """Scores and, when the server serves an ensemble, each item's disagreement (the std over its members, in the
        units of the scores); None from a single model (or for no items)."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        scores: list[float] = []
        spreads: list[float] | None = None
        for chunk in self._chunks(prompts, responses):
            body = b'{"items":[' + b",".join(chunk) + b"]}"
            answer = self._request("POST", "/score", content=body).json()
            scores += self._floats(answer, "scores", len(chunk))
            if "disagreement" in answer:  # the same server answers every chunk, so all carry it or none does
                spreads = (spreads or []) + self._floats(answer, "disagreement", len(chunk))
        return scores, spreads

    def _floats(self, answer: dict, key: str, count: int) -> list[float]:
        values = answer[key]
        if len(values) != count:
            raise RewardkitError(f"{self.url}/score returned {len(values)} {key} for {count} items")
        return [float(v) for v in values]

    def _chunks(self, prompts: Sequence[Any], responses: Sequence[str]):
        """Encoded items grouped so that each request stays under the server's item and byte limits."""
        limits = self.limits()
        max_items, max_bytes = int(limits["max_items_per_request"]), int(limits["max_body_bytes"])
        chunk: list[bytes] = []
        size = _ENVELOPE
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            item = _dumps({"prompt": prompt, "response": response})
            if _ENVELOPE + len(item) > max_bytes:
                raise RewardkitError(f"item {i} is {len(item)} bytes of JSON, over the server's body limit of "
                                     f"{max_bytes} (its --max-body-bytes)")
            if chunk and (len(chunk) >= max_items or size + 1 + len(item) > max_bytes):
                yield chunk
                chunk, size = [], _ENVELOPE
            size += len(item) + (1 if chunk else 0)
            chunk.append(item)
        if chunk:
            yield chunk

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        url = self.url + path
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in _RETRY_STATUS:
                problem = f"HTTP {response.status_code}: {_detail(response)}"
                continue
            if response.is_error:
                raise RewardkitError(f"{url}: HTTP {response.status_code}: {_detail(response)}")
            return response
        raise RewardkitError(f"{url}: no answer after {self.retries + 1} attempts ({problem})")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        detail = body.get("detail", body)
    except (ValueError, AttributeError):
        return response.text[:200]
    return str(detail)
