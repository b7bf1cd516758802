"""Dynamic micro-batching: items of requests that arrive together are scored in one forward pass.

Requests put their items on one queue; a single batcher task takes the oldest items until the batch holds
`max_batch_size` items or `max_batch_tokens` padded tokens (items x longest item, what the forward pass allocates), or
`max_wait_s` has passed since it started waiting, then scores the batch on the model thread, one batch at a time, so
torch is never entered concurrently. Items are encoded on arrival on a second thread, which overlaps tokenizing the
next requests with the running forward pass, so that the next batch is ready (and full) when the model is free. The
tokenizer is only ever used from that thread (fast tokenizers keep mutable truncation state and must not be shared
between threads); a scorer that tokenizes inside `score` gets a single thread for both. A large request simply spans
several batches; a request that timed out or was cancelled has its not-yet-scored items dropped.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

from rewardkit.serve.metrics import ServeMetrics


class QueueFull(Exception):
    """More items are queued than the server accepts; the client should retry later."""


class ItemRejected(Exception):
    """The scorer could not encode one item (e.g. a conversation its chat template refuses)."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index


class Scored(NamedTuple):
    """Scores in item order and, from an ensemble, each item's disagreement (the std over its members; None from a
    single model)."""

    scores: list[float]
    spreads: list[float] | None


class ScorerAdapter:
    """Drives any scorer with `score(prompts, responses) -> sequence of floats`.

    If it also has `encode(prompt, response)` returning an object with `input_ids` (like RewardModel), each item is
    encoded once on arrival, which validates it (a bad item fails its own request, not the batch it would join) and
    gives its token count for the batch budget; with `score_encoded(encoded, batch_size=...)` too, those encodings
    are scored directly instead of being tokenized a second time. Without `encode`, items count as zero tokens.
    An ensemble (`is_ensemble`, like RewardEnsemble) is scored through `member_scores_encoded`: one forward pass per
    member gives both the mean and the spread, so the disagreement costs no second scoring.
    """

    def __init__(self, scorer: Any):
        self.scorer = scorer
        self._encode = getattr(scorer, "encode", None)
        self._score_encoded = getattr(scorer, "score_encoded", None) if self._encode else None
        self._member_scores = (scorer.member_scores_encoded
                               if self._score_encoded and getattr(scorer, "is_ensemble", False) else None)

    @property
    def members(self) -> int | None:
        """The number of members of an ensemble scorer; None for a single model."""
        return len(self.scorer.members) if self._member_scores else None

    @property
    def tokenizes_in_score(self) -> bool:
        """Whether `score` runs the tokenizer too (then encoding and scoring must share one thread)."""
        return self._score_encoded is None

    def prepare(self, prompts: Sequence[Any], responses: Sequence[str]) -> list[tuple[Any, int]]:
        """(payload to score later, token count) per item."""
        if self._encode is None:
            return [((p, r), 0) for p, r in zip(prompts, responses)]
        prepared = []
        for index, (p, r) in enumerate(zip(prompts, responses)):
            try:
                encoded = self._encode(p, r)
            except Exception as exc:  # only this item's content varies here, so the item is what is wrong
                raise ItemRejected(index, f"cannot be encoded: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            prepared.append((encoded if self._score_encoded else (p, r), len(encoded.input_ids)))
        return prepared

    def score(self, payloads: list[Any]) -> Scored:
        if self._member_scores is not None:
            # imported here, not at the top: only an ensemble needs torch, and a served ensemble has loaded it already
            from rewardkit.models.ensemble import mean_and_spread

            scores, spreads = mean_and_spread(self._member_scores(payloads, batch_size=len(payloads)))
            return Scored(_checked(scores, len(payloads), "score"), _checked(spreads, len(payloads), "disagreement"))
        if self._score_encoded is not None:
            scores = self._score_encoded(payloads, batch_size=len(payloads))
        else:
            scores = self.scorer.score([p for p, _ in payloads], [r for _, r in payloads])
        return Scored(_checked(scores, len(payloads), "score"), None)


def _checked(values: Any, count: int, what: str) -> list[float]:
    """`values` (a tensor or sequence) as `count` finite floats, or a RuntimeError (a scorer bug: answered 500)."""
    values = values.tolist() if hasattr(values, "tolist") else list(values)
    if len(values) != count:
        raise RuntimeError(f"scorer returned {len(values)} {what}s for {count} items")
    values = [float(v) for v in values]
    if not all(math.isfinite(v) for v in values):
        raise RuntimeError(f"scorer returned a non-finite {what}")
    return values


@dataclass(eq=False)
class _Job:
    """One request: its future resolves to its `Scored` in item order once every item is scored."""

    future: asyncio.Future
    scores: list[float | None]
    spreads: list[float | None] | None  # per item from an ensemble, else None
    remaining: int


@dataclass(eq=False)
class _Item:
    job: _Job
    index: int
    payload: Any
    tokens: int

    @property
    def live(self) -> bool:
        return not self.job.future.done()


class MicroBatcher:
    def __init__(self, scorer: Any, *, max_batch_size: int, max_batch_tokens: int, max_wait_s: float,
                 max_queued_items: int, metrics: ServeMetrics | None = None):
        self.adapter = ScorerAdapter(scorer)
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.max_queued_items = max_queued_items
        self.metrics = metrics
        self._pending: deque[_Item] = deque()
        self._reserved = 0  # items of requests being encoded: counted against max_queued_items before they queue
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewardkit-model")
        self._encode_thread = (self._model_thread if self.adapter.tokenizes_in_score else
                               ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewardkit-encode"))

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rewardkit-batcher")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def close(self) -> None:
        """Score everything still queued, then stop the batcher task and the worker thread."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._encode_thread.shutdown(wait=True)
        self._model_thread.shutdown(wait=True)

    # ---------------------------------------------------------------- requests
    async def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> Scored:
        """Scores (and an ensemble's spreads) of one request's items, in order. Cancelling the call drops its items
        not yet scored."""
        if self._closing:
            raise QueueFull("the server is shutting down")
        queued = len(self._pending) + self._reserved
        if queued + len(responses) > self.max_queued_items:
            raise QueueFull(f"{queued} items are already queued (limit {self.max_queued_items})")
        loop = asyncio.get_running_loop()
        # reserved while encoding, so that concurrent requests cannot all pass the check above before any queues
        self._reserved += len(responses)
        try:
            prepared = await loop.run_in_executor(self._encode_thread, self.adapter.prepare, prompts, responses)
        finally:
            self._reserved -= len(responses)
        ensemble = self.adapter.members is not None
        if not prepared:
            return Scored([], [] if ensemble else None)
        if not self.running:  # closed while this request was being encoded: nobody would score it
            raise QueueFull("the server is shutting down")
        job = _Job(loop.create_future(), [None] * len(prepared), [None] * len(prepared) if ensemble else None,
                   len(prepared))
        self._pending.extend(_Item(job, i, payload, tokens) for i, (payload, tokens) in enumerate(prepared))
        self._update_queue_gauge()
        self._wakeup.set()
        try:
            return await job.future
        finally:
            if not job.future.done():  # cancelled or timed out: the batcher skips its remaining items
                job.future.cancel()

    # ---------------------------------------------------------------- batching
    async def _run(self) -> None:
        while (batch := await self._collect()) is not None:
            await self._score_batch(batch)

    def _drop_dead_head(self) -> None:
        while self._pending and not self._pending[0].live:
            self._pending.popleft()

    def _fits(self, count: int, longest: int, item: _Item) -> bool:
        if count == 0:
            return True  # an item longer than the token budget still gets scored, alone
        padded = (count + 1) * max(longest, item.tokens)
        return count < self.max_batch_size and padded <= self.max_batch_tokens

    def _batch_is_full(self) -> bool:
        """Whether the live items queued now already fill a batch (by size or token budget)."""
        count, longest = 0, 0
        for item in self._pending:
            if not item.live:
                continue
            if not self._fits(count, longest, item):
                return True
            count, longest = count + 1, max(longest, item.tokens)
        return count >= self.max_batch_size

    async def _collect(self) -> list[_Item] | None:
        """Wait for the next batch; None once closing and nothing is left."""
        loop = asyncio.get_running_loop()
        self._drop_dead_head()
        while not self._pending:
            if self._closing:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
            self._drop_dead_head()
        deadline = loop.time() + self.max_wait_s
        while not self._closing and not self._batch_is_full():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        return self._take()

    def _take(self) -> list[_Item]:
        batch: list[_Item] = []
        longest = 0
        while self._pending:
            item = self._pending[0]
            if not item.live:
                self._pending.popleft()
                continue
            if not self._fits(len(batch), longest, item):
                break
            batch.append(self._pending.popleft())
            longest = max(longest, item.tokens)
        self._update_queue_gauge()
        return batch

    async def _score_batch(self, batch: list[_Item]) -> None:
        if not batch:
            return
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:
            scored = await loop.run_in_executor(self._model_thread, self.adapter.score, [it.payload for it in batch])
        except Exception as exc:  # every request in the batch fails with the scorer's error
            for item in batch:
                if not item.job.future.done():
                    item.job.future.set_exception(exc)
            return
        if self.metrics is not None:
            self.metrics.batch_duration.observe(time.perf_counter() - start)
            self.metrics.batch_size.observe(len(batch))
            self.metrics.batch_tokens.observe(len(batch) * max(it.tokens for it in batch))
            self.metrics.items_scored.inc(len(batch))
        for position, item in enumerate(batch):
            job = item.job
            if job.future.done():
                continue
            job.scores[item.index] = scored.scores[position]
            if job.spreads is not None:
                job.spreads[item.index] = scored.spreads[position]
            job.remaining -= 1
            if job.remaining == 0:
                job.future.set_result(Scored(job.scores, job.spreads))

    def _update_queue_gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queued_items.set(len(self._pending))
