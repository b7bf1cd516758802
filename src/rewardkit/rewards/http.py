"""`http`: a reward from any HTTP endpoint that scores one response per request (a verifier service, a grader, a
reward model behind someone else's server), called concurrently through `rewardkit.rewards.calls`.

Each response is one `POST url` with the JSON body `{"prompt": ..., "response": ..., "reference": ...}` (reference
only when the record has one); the answer is a JSON object whose `score_key` (default "score") is a finite number,
and whose optional "reason" is kept for the log. A refused connection, a timeout, HTTP 429 or 5xx is retried with
backoff; any other HTTP error, or an answer without a number, is a one-line error naming the component and the
response. (`remote` is for `rewardkit serve`, which takes whole batches.)
"""

from __future__ import annotations

import math
from typing import Any

from rewardkit.errors import RewardkitError
from rewardkit.rewards.calls import (CallingReward, CallItem, Outcome, json_client, policy_kwargs,
                                     post_json)


class HttpReward(CallingReward):
    """POST each response to `url` and read the number at `score_key` of the JSON answer.

    `headers` are sent with every request; `token_env` names an environment variable whose value is sent as a bearer
    token (the token itself never goes in a spec). `concurrency`, `timeout` (seconds per request), `retries`,
    `backoff`, `cache`, `on_failure` and `neutral` are those of every calling component (rewardkit.rewards.calls)."""

    name = "http"

    def __init__(self, url: str, score_key: str = "score", headers: dict | None = None, token_env: str | None = None,
                 concurrency: int = 8, timeout: float = 30.0, retries: int = 2, backoff: float = 0.5,
                 cache: bool | str = True, on_failure: str = "error", neutral: float = 0.0):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise RewardkitError(f"url must start with http:// or https://, got {url!r}")
        if headers is not None and not (isinstance(headers, dict)
                                        and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())):
            raise RewardkitError(f"headers must map header names to text, got {headers!r}")
        self.url, self.score_key = url, score_key
        policy = policy_kwargs(concurrency, timeout, retries, backoff, cache, on_failure, neutral)
        self._http = json_client(policy, headers, token_env)
        super().__init__(policy)

    def identity(self) -> Any:
        return ["http", self.url, self.score_key]

    def call(self, item: CallItem, timeout: float) -> Outcome:
        body: dict[str, Any] = {"prompt": item.prompt, "response": item.response}
        if item.reference is not None:
            body["reference"] = item.reference
        answer = post_json(self._http, self.url, body, timeout)
        try:
            data = answer.json()
            value = data[self.score_key]
        except (ValueError, KeyError, TypeError):
            raise RewardkitError(f"{self.url} answered {answer.text[:120]!r}, not a JSON object with a number at "
                                 f"{self.score_key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RewardkitError(f"{self.url} answered {self.score_key}={value!r}, not a finite number")
        reason = data.get("reason") if isinstance(data.get("reason"), str) else None
        return Outcome(float(value), reason)
