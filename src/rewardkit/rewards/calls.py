"""Scoring that calls out (a server, a sandboxed subprocess): one call per response, run concurrently up to a limit,
each with a timeout and retries with backoff, results cached by their inputs, failures counted and reported.

A component built on `CallingReward` implements `call(item, timeout) -> Outcome` (one response's score and, when it
is not a plain pass, the reason) and `identity()` (the settings that change its scores, part of every cache key). A
call raises:
- `TransientError` for what may go away on its own (a refused connection, HTTP 5xx, a timeout, a sandbox that could
  not start): it is retried `retries` times, `backoff` · 2^k seconds apart (plus up to 10% jitter). If every attempt
  fails, `on_failure: error` (default) stops with a one-line error naming the component and the response, and
  `on_failure: neutral` scores the response `neutral` (default 0.0), counts it in `stats.failed` and gives the reason
  in `last_reasons`; `rewardkit score` prints the count and writes the reason on the record. Never silently.
- `RewardkitError` (a `ResponseError` naming the response) for bad input (a record without tests): not retried,
  always an error.

The cache holds successful outcomes only, keyed by sha256 of (identity, prompt, response, reference, fields). It
lives in memory (`cache: true`, the default; at most 65,536 entries, least recently used dropped first) or in a
SQLite file shared across runs (`cache: path/to/cache.sqlite`); `cache: false` turns it off. Identical inputs within
one batch (a GRPO group often repeats a response) are called once.

`stats` (cumulative) and `last_stats` (the last batch) count calls, cache hits, retries and failures and keep the
latency of every call; `CallStats.describe()` is the line the score log prints.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import ResponseError, RewardFunction, at_least_one, finite_float

FAILURE_POLICIES = ("error", "neutral")
MEMORY_CACHE_ENTRIES = 65_536


class TransientError(Exception):
    """A call failed in a way that may not repeat (network, server overload, timeout): retried with backoff."""


@dataclass
class Outcome:
    """One response's score, and why it is not full marks (or None)."""

    score: float
    reason: str | None = None
    failed: bool = False  # every attempt failed: a neutral score, never cached


@dataclass
class CallItem:
    """What one call scores."""

    prompt: Any
    response: str
    reference: Any = None
    fields: dict = field(default_factory=dict)


@dataclass
class CallStats:
    """Counts and latencies of calls (a batch's, or every batch's so far)."""

    responses: int = 0
    calls: int = 0
    cached: int = 0
    duplicates: int = 0
    retries: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, other: "CallStats") -> None:
        for name in ("responses", "calls", "cached", "duplicates", "retries", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies += other.latencies
        self.seconds += other.seconds

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    def describe(self, name: str, neutral: float | None = None) -> str:
        text = (f"{name}: {self.responses} responses, {self.calls} calls ({self.cached} cached, {self.duplicates} "
                f"repeated in a batch), {self.retries} retries, {self.failed} failed")
        if self.failed and neutral is not None:
            text += f" (scored neutral {neutral:g})"
        if self.latencies:
            text += (f"; latency p50 {self.percentile(0.5):.3f} s, p95 {self.percentile(0.95):.3f} s, "
                     f"max {max(self.latencies):.3f} s")
        return text + f"; {self.seconds:.2f} s in all"

    def as_dict(self) -> dict:
        return {"responses": self.responses, "calls": self.calls, "cached": self.cached,
                "duplicates": self.duplicates, "retries": self.retries, "failed": self.failed,
                "latency_p50_s": self.percentile(0.5), "latency_p95_s": self.percentile(0.95),
                "latency_max_s": max(self.latencies, default=0.0), "seconds": self.seconds}


class ResultCache:
    """Outcomes by key: an LRU dict in memory, or a SQLite file (thread-safe; shared by processes through SQLite)."""

    def __init__(self, path: str | None = None, max_entries: int = MEMORY_CACHE_ENTRIES):
        self.path, self.max_entries = path, max_entries
        self._memory: OrderedDict[str, Outcome] = OrderedDict()
        self._lock = threading.Lock()
        self._db = None
        if path is not None:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(path, check_same_thread=False, timeout=30)
                self._db.execute("CREATE TABLE IF NOT EXISTS outcomes (key TEXT PRIMARY KEY, score REAL, reason TEXT)")
                self._db.commit()
            except (OSError, sqlite3.Error) as exc:
                raise RewardkitError(f"cache {path!r} cannot be opened as a SQLite file ({exc})")

    def get(self, key: str) -> Outcome | None:
        with self._lock:
            if self._db is None:
                outcome = self._memory.get(key)
                if outcome is not None:
                    self._memory.move_to_end(key)
                return outcome
            row = self._db.execute("SELECT score, reason FROM outcomes WHERE key = ?", (key,)).fetchone()
            return None if row is None else Outcome(float(row[0]), row[1])

    def put(self, key: str, outcome: Outcome) -> None:
        with self._lock:
            if self._db is None:
                self._memory[key] = outcome
                self._memory.move_to_end(key)
                while len(self._memory) > self.max_entries:
                    self._memory.popitem(last=False)
                return
            self._db.execute("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?)", (key, outcome.score, outcome.reason))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            if self._db is None:
                return len(self._memory)
            return int(self._db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])


@dataclass
class CallPolicy:
    """How a calling component calls: at most `concurrency` calls at once, `timeout` seconds per call, `retries`
    extra attempts after a transient failure (`backoff` seconds before the first, doubling), the cache, and what a
    call that fails every attempt scores."""

    concurrency: int = 8
    timeout: float = 60.0
    retries: int = 2
    backoff: float = 0.5
    cache: bool | str = True
    on_failure: str = "error"
    neutral: float = 0.0

    def __post_init__(self):
        at_least_one(self.concurrency, "concurrency")
        if finite_float(self.timeout, "timeout") <= 0:
            raise RewardkitError(f"timeout must be above 0 seconds, got {self.timeout!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise RewardkitError(f"retries must be an integer of at least 0, got {self.retries!r}")
        if finite_float(self.backoff, "backoff") < 0:
            raise RewardkitError(f"backoff must be at least 0 seconds, got {self.backoff!r}")
        if self.on_failure not in FAILURE_POLICIES:
            raise RewardkitError(f"on_failure must be one of {', '.join(FAILURE_POLICIES)}, got {self.on_failure!r}")
        finite_float(self.neutral, "neutral")
        if not isinstance(self.cache, (bool, str)) or self.cache == "":
            raise RewardkitError(f"cache must be true, false or the path of a SQLite file, got {self.cache!r}")


def _stable(value: Any) -> Any:
    """A JSON-able form of an input for the cache key (messages, lists, numbers, text)."""
    if isinstance(value, dict):
        return {str(k): _stable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_stable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def cache_key(identity: Any, item: CallItem) -> str:
    payload = json.dumps(_stable([identity, item.prompt, item.response, item.reference, item.fields]),
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class CallRunner:
    """Runs `call(item, timeout) -> Outcome` over a batch under a `CallPolicy` (see the module docstring)."""

    def __init__(self, name: str, policy: CallPolicy, call: Callable[[CallItem, float], Outcome],
                 identity: Any):
        self.name, self.policy, self.call, self.identity = name, policy, call, identity
        self.cache = None
        if policy.cache:
            self.cache = ResultCache(None if policy.cache is True else str(policy.cache))
        self.stats = CallStats()
        self.last_stats = CallStats()
        # called with the number of responses each finished call (or cache hit) answered, e.g. a progress bar's update
        self.progress: Callable[[int], None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._sleep = time.sleep  # tests replace it to check the backoff without waiting

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.policy.concurrency,
                                                thread_name_prefix=f"rewardkit-{self.name}")
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def _attempts(self, index: int, item: CallItem, stats: CallStats, lock: threading.Lock) -> Outcome:
        """One response: its attempts, with backoff between them; the outcome, or the failure after the last one."""
        policy = self.policy
        problems = []
        for attempt in range(policy.retries + 1):
            if attempt:
                delay = policy.backoff * 2 ** (attempt - 1)
                self._sleep(delay * (1 + 0.1 * random.random()))
                with lock:
                    stats.retries += 1
            start = time.perf_counter()
            try:
                outcome = self.call(item, policy.timeout)
            except TransientError as exc:
                problems.append(str(exc) or type(exc).__name__)
                continue
            except ResponseError as exc:
                raise ResponseError(str(exc), index) from None
            except RewardkitError as exc:
                raise ResponseError(f"response {index}: {exc}", index) from None
            finally:
                with lock:
                    stats.latencies.append(time.perf_counter() - start)
                    stats.calls += 1
            if not isinstance(outcome, Outcome):
                outcome = Outcome(float(outcome))
            return outcome
        attempts = policy.retries + 1
        reason = f"failed after {attempts} attempt{'s' if attempts > 1 else ''}: {problems[-1]}"
        if policy.on_failure == "error":
            raise ResponseError(f"response {index}: {reason} (on_failure: neutral scores such responses "
                                f"{policy.neutral:g} instead, counted and reported)", index)
        with lock:
            stats.failed += 1
        return Outcome(policy.neutral, f"{reason}; scored neutral {policy.neutral:g}", failed=True)

    def run(self, items: list[CallItem]) -> list[Outcome]:
        """Outcomes in input order."""
        start = time.perf_counter()
        stats = CallStats(responses=len(items))
        lock = threading.Lock()
        outcomes: list[Outcome | None] = [None] * len(items)
        pending: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            key = cache_key(self.identity, item)
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                outcomes[index] = hit
                stats.cached += 1
                if self.progress is not None:
                    self.progress(1)
            elif key in pending:
                pending[key].append(index)
                stats.duplicates += 1
            else:
                pending[key] = [index]
        keys = list(pending)

        def work(key: str) -> Outcome:
            first = pending[key][0]
            outcome = self._attempts(first, items[first], stats, lock)
            if self.progress is not None:
                self.progress(len(pending[key]))
            return outcome

        try:
            if self.policy.concurrency == 1 or len(keys) <= 1:
                results = [work(key) for key in keys]
            else:
                futures = [self._executor().submit(work, key) for key in keys]
                results, first_error = [], None
                for future in futures:  # wait for all of them, so that none runs on after an error is raised
                    try:
                        results.append(future.result())
                    except Exception as exc:  # noqa: BLE001 - the first (in input order) is raised below
                        results.append(None)
                        first_error = first_error or exc
                if first_error is not None:
                    raise first_error
            for key, outcome in zip(keys, results):
                if self.cache is not None and not outcome.failed:
                    self.cache.put(key, outcome)
                for index in pending[key]:
                    outcomes[index] = outcome
        finally:
            stats.seconds = time.perf_counter() - start
            self.last_stats = stats
            self.stats.add(stats)
        return outcomes  # type: ignore[return-value]


def policy_kwargs(concurrency, timeout, retries, backoff, cache, on_failure, neutral) -> CallPolicy:
    return CallPolicy(concurrency=concurrency, timeout=timeout, retries=retries, backoff=backoff, cache=cache,
                      on_failure=on_failure, neutral=neutral)


def json_client(policy: CallPolicy, headers: dict[str, str] | None = None, token_env: str | None = None):
    """An HTTP client for a component that posts JSON: the policy's timeout, as many connections as its
    concurrency, and a bearer token read from the environment variable `token_env` when one is named."""
    import os

    import httpx

    sent = {"Content-Type": "application/json", **(headers or {})}
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise RewardkitError(f"token_env: the environment variable {token_env} is not set")
        sent["Authorization"] = f"Bearer {token}"
    return httpx.Client(timeout=policy.timeout, headers=sent,
                        limits=httpx.Limits(max_connections=policy.concurrency,
                                            max_keepalive_connections=policy.concurrency))


# statuses a server answers when it is overloaded or restarting: the call is worth another try
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def post_json(client, url: str, body: dict, timeout: float):
    """POST `body` to `url` and return the answer: no answer, a dropped connection or a retryable status raise
    `TransientError` (retried with backoff); another error status is a `RewardkitError` naming the url."""
    import httpx

    try:
        answer = client.post(url, json=body, timeout=timeout)
    except httpx.TimeoutException:
        raise TransientError(f"{url}: no answer within {timeout:g} s")
    except httpx.TransportError as exc:
        raise TransientError(f"{url}: {type(exc).__name__}: {exc}")
    if answer.status_code in RETRY_STATUS:
        raise TransientError(f"{url}: HTTP {answer.status_code}")
    if answer.is_error:
        raise RewardkitError(f"{url}: HTTP {answer.status_code}: {answer.text[:200]}")
    return answer


class CallingReward(RewardFunction):
    """A reward whose responses are scored one call each, through a `CallRunner` (see the module docstring).

    Subclasses implement `call(item, timeout) -> Outcome` and `identity()`, and pass a `CallPolicy` to `__init__`.
    After each batch `last_reasons[j]` says why response j did not get full marks (None when it did, or when the
    component gives no reasons), and `last_stats` / `stats` count its calls."""

    calls_out = True

    def __init__(self, policy: CallPolicy):
        self.policy = policy
        self.runner = CallRunner(self.name, policy, self.call, self.identity())
        self.last_reasons: list[str | None] = []

    @property
    def stats(self) -> CallStats:
        return self.runner.stats

    @property
    def last_stats(self) -> CallStats:
        return self.runner.last_stats

    def describe_stats(self, name: str | None = None) -> str:
        neutral = self.policy.neutral if self.policy.on_failure == "neutral" else None
        return self.stats.describe(name or self.name, neutral)

    def identity(self) -> Any:
        raise NotImplementedError

    def call(self, item: CallItem, timeout: float) -> Outcome:
        raise NotImplementedError

    def items(self, prompts, responses, references, fields) -> list[CallItem]:
        return [CallItem(prompts[j], responses[j], None if references is None else references[j],
                         {k: (fields[j] if fields is not None else {}).get(k) for k in self.needs_fields})
                for j in range(len(responses))]

    def _score(self, prompts, responses, references, finished, fields=None):
        outcomes = self.runner.run(self.items(prompts, responses, references, fields))
        self.last_reasons = [o.reason for o in outcomes]
        return [o.score for o in outcomes]

    def _potentials(self, prompts, texts, references, finished, complete, fields=None):
        """Dense mode calls only for whole responses: a prefix's potential is 0, so the reward sits on the token that
        completes the response (one call per response, not one per token)."""
        import torch

        whole = complete.nonzero().reshape(-1).tolist()
        potentials = torch.zeros(len(texts))
        if whole:
            pick = lambda seq: None if seq is None else [seq[k] for k in whole]  # noqa: E731
            extra = {"fields": pick(fields)} if self.needs_fields else {}
            try:
                scores = self(pick(prompts), pick(texts), pick(references), finished=pick(finished), **extra)
            except ResponseError as exc:
                raise ResponseError(str(exc), whole[exc.index]) from None
            potentials[whole] = scores
        return potentials
