"""Scoring many (prompt, response) texts with bounded memory, and the scored datasets the command and report share.

`RewardModel.score` tokenizes all its inputs before scoring them; for 10,000 pairs that is 20,000 token lists held at
once. `score_texts` instead orders texts by character length (a cheap proxy for token length, so batches stay tightly
padded across chunks), then tokenizes and scores one chunk at a time, keeping only one float per text.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rewardkit.data.types import Prompt, prompt_as_text
from rewardkit.device import on_host

if TYPE_CHECKING:
    from rewardkit.kinds import FeedbackKind

# Texts tokenized at once: large enough to sort well within the chunk, small enough to keep token lists negligible.
CHUNK_SIZE = 1024


@functools.cache
def _libc_malloc_trim():
    """glibc's malloc_trim, or None elsewhere (macOS, musl): returns freed heap pages to the OS."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Hand memory freed by the last chunk back to the OS.

    Batches of varying shapes leave glibc's heap fragmented: the freed tensors are not live, but the process keeps
    their pages, so without this the peak RSS crept up with the number of pairs (+76 MB at 2,500 pairs, +128 MB at
    20,000 in benchmarks/eval_scoring_memory.py) although nothing is retained; with it the peak stays at +79..88 MB
    from 5,000 to 20,000 pairs (one chunk of the longest texts).
    """
    trim = _libc_malloc_trim()
    if trim is not None:
        trim(0)


@dataclass
class ScoreStats:
    """What scoring did besides returning scores."""

    n_texts: int = 0
    n_truncated: int = 0  # texts cut to max_length (oldest context first; see RewardModel.encode)


def score_texts(rm, prompts: Sequence[Prompt], responses: Sequence[str], batch_size: int = 32,
                progress: bool = True, description: str = "scoring", stats: ScoreStats | None = None,
                chunk_size: int = CHUNK_SIZE, members: bool = False, with_length: bool = False) -> np.ndarray:
    """Rewards (float64, input order) for each (prompt, response) through `rm.encode` and `rm.score_encoded`; with
    `members` and an ensemble, every member's rewards ([K, N], through `rm.member_scores_encoded`); with
    `with_length` and a model with a length head, the rewards and the length head's outputs ([2, N], or [K, 2, N]
    for an ensemble's members).

    Longest texts go first so that an out-of-memory batch shows up at the start, not after an hour. The progress bar
    goes to stderr and only when it is a terminal.
    """
    from tqdm.auto import tqdm

    n = len(responses)
    if len(prompts) != n:
        raise ValueError(f"{len(prompts)} prompts but {n} responses")
    character_lengths = np.fromiter((len(prompt_as_text(p)) + len(r) for p, r in zip(prompts, responses)),
                                    dtype=np.int64, count=n)
    order = np.argsort(-character_lengths, kind="stable")
    score_encoded = rm.member_scores_encoded if members and getattr(rm, "is_ensemble", False) else rm.score_encoded
    if with_length:
        score_encoded = functools.partial(score_encoded, with_length=True)
    scores = None
    # disable=None lets tqdm hide the bar when stderr is not a terminal (logs, CI)
    with tqdm(total=n, desc=description, unit="text", file=sys.stderr, disable=True if not progress else None,
              leave=False) as bar:
        for start in range(0, n, chunk_size):
            rows = order[start:start + chunk_size]
            encoded = [rm.encode(prompts[i], responses[i]) for i in rows]
            if stats is not None:
                stats.n_texts += len(encoded)
                stats.n_truncated += sum(e.truncated for e in encoded)
            with on_host():  # score_encoded returns rewards on the CPU, for the numpy figures
                chunk = score_encoded(encoded, batch_size=batch_size).double().numpy()
            if scores is None:
                scores = np.empty(chunk.shape[:-1] + (n,), dtype=np.float64)
            scores[..., rows] = chunk
            del encoded
            release_freed_memory()
            bar.update(len(rows))
    return scores if scores is not None else np.empty(0, dtype=np.float64)


@dataclass
class ScoredDataset:
    """One dataset's records reduced to what the metrics need: per-model rewards, lengths, labels, subsets.

    kind pairs: `scores[m]` is (chosen, rejected) arrays, `lengths` likewise.
    kind rankings: `scores[m]` is a list of per-group arrays (best first), `lengths` the matching list.
    kind ratings / binary: `scores[m]` is one array, `lengths` one array, `targets` the ratings or 0/1 labels.
    `subsets[i]` names the subset of record i (None when the data has none). `disagreement[m]`, for an ensemble,
    is the members' disagreement on each record (see `FeedbackKind.disagreement`), else None. `length_scores[m]`,
    for a model with a length head (ODIN), is that head's outputs laid out as `scores[m]`, else None.
    """

    name: str
    kind: FeedbackKind
    subsets: list[str | None]
    lengths: object
    scores: list[object] = field(default_factory=list)
    targets: np.ndarray | None = None
    sources: list[str] = field(default_factory=list)
    disagreement: list[np.ndarray | None] = field(default_factory=list)
    length_scores: list[object | None] = field(default_factory=list)

    @property
    def subset_names(self) -> list[str]:
        """Subsets in order of first appearance; empty unless there are at least two (one would repeat the whole)."""
        names = list(dict.fromkeys(s for s in self.subsets if s is not None))
        return names if len(names) > 1 else []
