"""Turning rankings and ratings into the preference pairs they imply.

Binary feedback has no pairwise reading (a thumbs up on one prompt says nothing against a thumbs down on another), so
there is no converter for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from rewardkit.data.types import PreferencePair, Prompt, RankedGroup, RatedResponse


def prompt_key(prompt: Prompt) -> str:
    """A string identifying a prompt, text or conversation (conversations get a prefix no text starts with)."""
    if isinstance(prompt, str):
        return prompt
    return "\x00" + json.dumps(prompt, ensure_ascii=False, sort_keys=True)


def rankings_to_pairs(groups: Iterable[RankedGroup]) -> list[PreferencePair]:
    """Every (better, worse) pair a ranking implies: k responses give k(k-1)/2 pairs, in ranking order."""
    return [
        PreferencePair(group.prompt, better, worse, None, group.subset, group.source)
        for group in groups
        for position, better in enumerate(group.responses)
        for worse in group.responses[position + 1:]
    ]


def ratings_to_pairs(ratings: Iterable[RatedResponse], min_gap: float = 0.0,
                     with_margin: bool = False) -> list[PreferencePair]:
    """Pairs of differently rated responses to the same prompt, the higher-rated one chosen.

    Ratings of the same response to the same prompt (several raters) are averaged first. A pair needs a score
    difference above zero and at least `min_gap`; with `with_margin` the difference becomes the pair's margin.
    Each pair keeps the chosen rating's source; its subset when both ratings share it. Prompts are taken in order of
    first appearance and responses within a prompt likewise, so the output order is deterministic.
    """
    by_prompt: dict[str, dict[str, list[RatedResponse]]] = {}
    for rating in ratings:
        by_prompt.setdefault(prompt_key(rating.prompt), {}).setdefault(rating.response, []).append(rating)
    pairs = []
    for responses in by_prompt.values():
        scored = [(sum(r.score for r in same) / len(same), same[0]) for same in responses.values()]
        for position, (score_a, a) in enumerate(scored):
            for score_b, b in scored[position + 1:]:
                gap = abs(score_a - score_b)
                if gap == 0 or gap < min_gap:
                    continue
                (chosen, rejected) = (a, b) if score_a > score_b else (b, a)
                pairs.append(PreferencePair(
                    chosen.prompt, chosen.response, rejected.response, gap if with_margin else None,
                    chosen.subset if chosen.subset == rejected.subset else None, chosen.source))
    return pairs
