"""`judge`: an LLM grades each response by a rubric, through any OpenAI-compatible chat-completions server (vLLM,
llama.cpp's server, TGI, a hosted API), called concurrently through `rewardkit.rewards.calls`.

Each response is one `POST {url}/chat/completions` with `model`, `temperature` (default 0) and the messages: the
optional `system` text, then the `rubric` with {prompt}, {response} and {reference} filled in (a conversation prompt
is written out one "role: content" line per message; {reference} is empty without one). The judge's reply must end
its verdict with "Score: N" (the last such line counts; without one, the last number in the reply), N within
`scale` [lo, hi]; the reward is (N − lo) / (hi − lo), in [0, 1]. A reply without a score in range is retried like a
failed call (a sampled judge may answer otherwise the next time), then handled by `on_failure`; the judge's last
words are kept in the reason.
"""

from __future__ import annotations

import math
import re
from typing import Any

from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import finite_float
from rewardkit.rewards.calls import (CallingReward, CallItem, Outcome, TransientError, json_client,
                                     policy_kwargs, post_json)

DEFAULT_RUBRIC = """Rate how well the response answers the user's request: correct, helpful, honest and clear.

[Request]
{prompt}

[Reference answer, if any]
{reference}

[Response]
{response}

Explain briefly, then end with a line "Score: N", where N is a whole number from 1 (useless) to 10 (excellent)."""
_SCORE = re.compile(r"score\s*[:=]\s*\**\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

def prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in prompt or [])


def read_score(reply: str, lo: float, hi: float) -> float | None:
    """The verdict in `reply`: the last "Score: N", else the last number; None when none is within [lo, hi]."""
    found = _SCORE.findall(reply) or _NUMBER.findall(reply)
    if not found:
        return None
    value = float(found[-1])
    return value if lo <= value <= hi else None


class LLMJudge(CallingReward):
    """An LLM's rubric grade of each response, scaled to [0, 1] (see the module docstring).

    `url`: the server's OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1). `model`: the model name it
    serves. `rubric`: the grading instructions with {prompt}, {response} and {reference}; `system`: an optional system
    message. `scale`: the score range the rubric asks for (default [1, 10]). `max_tokens` of the judge's reply.
    `token_env`: the environment variable holding an API key (sent as a bearer token). `concurrency` (default 8),
    `timeout` (default 60 s a request), `retries`, `backoff`, `cache`, `on_failure`, `neutral`: as for every calling
    component."""

    name = "judge"

    def __init__(self, url: str, model: str, rubric: str = DEFAULT_RUBRIC, system: str | None = None,
                 scale: list[float] | None = None, temperature: float = 0.0, max_tokens: int = 512,
                 token_env: str | None = None, concurrency: int = 8, timeout: float = 60.0, retries: int = 2,
                 backoff: float = 1.0, cache: bool | str = True, on_failure: str = "error", neutral: float = 0.0):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise RewardkitError(f"url must start with http:// or https://, got {url!r}")
        if "{response}" not in rubric:
            raise RewardkitError("rubric must contain {response} (and may contain {prompt} and {reference})")
        try:
            rubric.format(prompt="", response="", reference="")
        except (KeyError, IndexError, ValueError) as exc:
            raise RewardkitError(f"rubric has a placeholder other than {{prompt}}, {{response}}, {{reference}} "
                                 f"({exc!r}); write literal braces as {{{{ and }}}}")
        scale = [1, 10] if scale is None else scale
        if not isinstance(scale, (list, tuple)) or len(scale) != 2:
            raise RewardkitError(f"scale must be [lo, hi], got {scale!r}")
        lo, hi = (finite_float(v, "scale") for v in scale)
        if lo >= hi:
            raise RewardkitError(f"scale must be [lo, hi] with lo < hi, got {scale!r}")
        self.url = url.rstrip("/").removesuffix("/chat/completions")
        self.model, self.rubric, self.system, self.lo, self.hi = model, rubric, system, lo, hi
        self.temperature = finite_float(temperature, "temperature")
        self.max_tokens = int(max_tokens)
        policy = policy_kwargs(concurrency, timeout, retries, backoff, cache, on_failure, neutral)
        self._http = json_client(policy, token_env=token_env)
        super().__init__(policy)

    def identity(self) -> Any:
        return ["judge", self.url, self.model, self.rubric, self.system, self.lo, self.hi, self.temperature,
                self.max_tokens]

    def messages(self, item: CallItem) -> list[dict]:
        reference = item.reference if isinstance(item.reference, str) else "\n".join(item.reference or [])
        user = self.rubric.format(prompt=prompt_text(item.prompt), response=item.response, reference=reference)
        return ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": user}]

    def call(self, item: CallItem, timeout: float) -> Outcome:
        body = {"model": self.model, "messages": self.messages(item), "temperature": self.temperature,
                "max_tokens": self.max_tokens}
        endpoint = f"{self.url}/chat/completions"
        answer = post_json(self._http, endpoint, body, timeout)
        try:
            reply = answer.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise RewardkitError(f"{endpoint} answered {answer.text[:120]!r}, not a chat completion")
        value = read_score(reply or "", self.lo, self.hi)
        if value is None or not math.isfinite(value):
            tail = " ".join((reply or "").split())[-120:]
            raise TransientError(f"the judge gave no score in [{self.lo:g}, {self.hi:g}] (it said: {tail!r})")
        reason = None if value == self.hi else f"judge score {value:g} of {self.hi:g}"
        return Outcome((value - self.lo) / (self.hi - self.lo), reason)
