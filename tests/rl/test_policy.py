"""rl/policy.py: what rl, best-of-n and label import share about a policy (its prompt reading is tested in
test_command.py and test_record_fields.py)."""

from __future__ import annotations

from rewardkit.device import choose_placement
from rewardkit.rl.policy import sample_responses
from rewardkit.rl.rollout import SamplingSettings
from tests.rl.conftest import toy_policy


def test_n_responses_per_prompt_in_prompt_order_the_same_for_every_caller(tokenizer):
    policy = toy_policy(tokenizer).eval()
    greedy = SamplingSettings(max_new_tokens=4, temperature=0)  # each prompt's responses are then its own, known
    placement = choose_placement("cpu", "fp32")
    texts, truncated = sample_responses(policy, tokenizer, ["the movie", "a film"], 3, greedy, placement, False, None)
    assert len(texts) == len(truncated) == 6
    # one prompt at a time, as label import samples: the same responses, in prompt order
    alone = [sample_responses(policy, tokenizer, [p], 3, greedy, placement, False, None)[0]
             for p in ("the movie", "a film")]
    assert texts == alone[0] + alone[1]


def test_a_long_prompt_keeps_its_last_tokens(tokenizer):
    policy = toy_policy(tokenizer).eval()
    settings = SamplingSettings(max_new_tokens=2, temperature=1.0)
    long_prompt = " ".join(["movie"] * 50 + ["yes"])
    seen = []
    original = policy.forward

    def record(*args, **kwargs):
        seen.append((kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]).shape[-1])
        return original(*args, **kwargs)

    policy.forward = record
    sample_responses(policy, tokenizer, [long_prompt], 1, settings, choose_placement("cpu", "fp32"), False, 8)
    assert seen[0] <= 8  # the prompt's first forward pass: truncated to 8 tokens
