"""A scripted annotator for `rewardkit label`: judges items over the app's JSON API by a hidden rule, so that a round
of the feedback loop runs unattended (examples/feedback_loop.md, benchmarks/active_vs_random.py).

    python examples/scripted_annotator.py http://127.0.0.1:8080 TOKEN --limit 100

    python examples/scripted_annotator.py http://127.0.0.1:8080 TOKEN --reward-model runs/gold-rm

The hidden rule is a sentiment lexicon the reward model never sees: a response's score is its number of positive words
minus its number of negative words. With --reward-model the score is that reward model's instead (a stronger model as
the annotator: AI feedback, or a "gold" model whose preferences a reward model of its family can represent exactly).
Pairwise: the higher score wins, equal scores are a tie. Ranking: by score (ties broken by order shown). Rating: score
rounded and mapped onto 1..scale. Thumbs: up when the score is positive.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

POSITIVE = frozenset("""good great excellent wonderful best love loved loves lovely brilliant amazing superb
fantastic beautiful perfect enjoy enjoyed enjoyable fun funny favorite masterpiece touching powerful moving charming
delightful impressive recommend fine nice pleasant well highly gem classic strong terrific outstanding""".split())
NEGATIVE = frozenset("""bad worst awful terrible boring waste poor poorly horrible stupid dull hate hated mess
disappointing disappointed annoying ridiculous lame weak pathetic worse fails failed unfunny garbage pointless
predictable cheap bland tedious nonsense avoid badly unwatchable""".split())
_WORD = re.compile(r"[a-z']+")


def sentiment(text: str) -> int:
    """The hidden rule's score: positive words minus negative words."""
    words = _WORD.findall(text.lower())
    return sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)


Score = Callable[[object, list[str]], list[float]]  # (prompt, responses) -> how much the annotator likes each


def lexicon_score(prompt, responses: list[str]) -> list[float]:
    """The default hidden rule: each response's sentiment, whatever the prompt."""
    return [sentiment(r) for r in responses]


def reward_model_score(path: str) -> Score:
    """A reward model (folder or preset; an ensemble folder scores as its members' mean) as the hidden rule. An item's
    responses are scored in one batch."""
    from rewardkit.models.ensemble import load_reward_model

    model = load_reward_model(path)
    return lambda prompt, responses: [float(s) for s in model.score([prompt] * len(responses), responses)]


def judge(item: dict, score: Score = lexicon_score):
    """The value the rule gives an item of the app's JSON API (`GET /api/next`)."""
    scores = score(item["prompt"], item["responses"])
    if item["task"] == "pairs":
        return "A" if scores[0] > scores[1] else "B" if scores[1] > scores[0] else "tie"
    if item["task"] == "rankings":
        return sorted(range(len(scores)), key=lambda i: -scores[i])
    if item["task"] == "ratings":
        middle = (item["scale"] + 1) // 2
        return max(1, min(item["scale"], middle + round(scores[0])))
    return int(scores[0] > 0)


def annotate(url: str, token: str, limit: int | None = None, score: Score = lexicon_score) -> int:
    """Judge items until `limit` or until none is left; returns how many were judged."""
    import httpx

    done = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60.0) as client:
        while limit is None or done < limit:
            response = client.get("/api/next")
            response.raise_for_status()
            item = response.json()["item"]
            if item is None:
                break
            answer = client.post("/api/judgments", json={"item_id": item["id"], "value": judge(item, score)})
            answer.raise_for_status()
            done += 1
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the label app, e.g. http://127.0.0.1:8080")
    parser.add_argument("token", help="an annotator's token")
    parser.add_argument("--limit", type=int, default=None, help="judge at most this many items")
    parser.add_argument("--reward-model", default=None,
                        help="judge by this reward model's scores (folder or preset) instead of the lexicon")
    args = parser.parse_args()
    score = reward_model_score(args.reward_model) if args.reward_model else lexicon_score
    print(f"scripted annotator: judged {annotate(args.url, args.token, args.limit, score)} item(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
