"""Dense rewards: token alignment, potential-based shaping summing to the sparse reward, step rewards."""

import pytest
import torch

from rewardkit.rewards.composite import Component, CompositeReward
from rewardkit.rewards.dense import (plan_prefixes, resolve_token_ends, sparse_on_last_token, step_boundaries,
                                     token_ends_from_ids)
from rewardkit.rewards.learned import LearnedReward
from rewardkit.rewards.rules import NoEOSPenalty, TargetLength
from tests.conftest import build_tiny_reward_model
from tests.rewards.helpers import CharCount, bpe_tokenizer, byte_token_ids

PROMPTS = ["Say something.", "Count the steps."]
RESPONSES = ["the cat sat on the mat", "step one\nstep two\nstep three"]


def policy_ids(responses, eos=True):
    tok = bpe_tokenizer()
    return [tok(r, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if eos else []) for r in responses]


def test_shaped_char_count_gives_each_token_its_characters():
    response = "ab\ncd\nef"
    ends = [list(range(1, 9))]  # one token per character
    rewards = CharCount().per_token([""], [response], token_ends=ends)
    assert rewards[0].tolist() == [1.0] * 8  # Φ(empty) = 0, so token 1 carries R(y≤1) = 1
    steps = CharCount().per_token([""], [response], token_ends=ends, shaping="step", step_separator="\n")
    assert steps[0].tolist() == [0, 0, 3, 0, 0, 3, 0, 2]  # each step's increment on its separator token


def test_plan_scores_each_distinct_prefix_once_and_the_whole_response_always():
    plan = plan_prefixes(["abc", ""], [[1, 1, 3, 3], [0]])
    assert plan.texts == ["a", "abc", ""]
    assert plan.token == [0, 2, 0]
    assert plan.complete == [False, True, True]
    assert step_boundaries("a\n\nb\n", "\n") == [2, 3, 5]


def test_policy_tokens_align_with_eos_getting_zero():
    tok = bpe_tokenizer()
    ids = policy_ids(RESPONSES)
    rewards = CharCount().per_token(PROMPTS, RESPONSES, response_token_ids=ids, tokenizer=tok)
    for r, response, token_ids in zip(rewards, RESPONSES, ids):
        assert len(r) == len(token_ids)
        assert r[-1] == 0.0  # EOS adds no text
        texts = [tok.decode([i]) for i in token_ids[:-1]]
        assert r[:-1].tolist() == [float(len(t)) for t in texts]
        assert float(r.sum()) == len(response)


def test_decoding_fallback_handles_a_split_multibyte_character():
    tok = bpe_tokenizer()
    text = "café ok"
    ids = byte_token_ids(tok, text)  # the tokenizer would not produce this segmentation: no offset fast path
    assert tok.decode(ids) == text
    # "é" is two bytes: the first decodes to U+FFFD, which does not count
    assert token_ends_from_ids(text, ids, tok) == [1, 2, 3, 3, 4, 5, 6, 7]


def test_both_alignment_paths_count_a_split_character_on_its_last_piece():
    tok = bpe_tokenizer()
    text = "café ok 我喜"  # the tokenizer splits each CJK character into byte pieces
    ids = tok(text, add_special_tokens=False)["input_ids"]
    fast = token_ends_from_ids(text, ids, tok)  # the tokenizer's own segmentation: from the offset mapping
    # what the other path (decoding every prefix) gives, and what resolve_token_ends reads from the tokenizer
    decoded = [len(p.rstrip("\ufffd")) for p in tok.batch_decode([ids[:t + 1] for t in range(len(ids))])]
    assert fast == decoded == resolve_token_ends([text], tokenizer=tok)[0] == [4, 5, 6, 7, 8, 8, 8, 9, 9, 9, 10]


def test_token_ends_are_cleaned_so_the_last_token_closes_the_text():
    assert resolve_token_ends(["abcd"], token_ends=[[2, 1, 9, 3]]) == [[2, 2, 4, 4]]


@pytest.fixture(scope="module")
def learned():
    return LearnedReward.from_model(build_tiny_reward_model("bert", seed=1))


@pytest.mark.parametrize("shaping", ["token", "step"])
def test_dense_learned_reward_sums_to_the_sparse_reward(learned, shaping):
    sparse = learned(PROMPTS, RESPONSES)
    dense = learned.per_token(PROMPTS, RESPONSES, response_token_ids=policy_ids(RESPONSES),
                              tokenizer=bpe_tokenizer(), shaping=shaping)
    assert torch.stack([d.sum() for d in dense]).tolist() == pytest.approx(sparse.tolist(), abs=1e-5)
    assert all(float(d.abs().sum()) > 0 for d in dense)
    if shaping == "step":  # rewards only on the two newline tokens and the last text token of the second response
        assert int((dense[1] != 0).sum()) == 3


def test_dense_composite_freezes_normalization_on_whole_responses(learned):
    reward = CompositeReward([Component(learned, "rm", normalize="running"),
                              Component(TargetLength(target=10, unit="chars"), "length", weight=0.5)])
    dense = reward.per_token(PROMPTS, RESPONSES, response_token_ids=policy_ids(RESPONSES), tokenizer=bpe_tokenizer())
    stats = reward.components[0].normalizer.running
    assert stats.count == 2  # prefixes do not move the running statistics
    totals = reward.last_total
    assert torch.stack([d.sum() for d in dense]).tolist() == pytest.approx(totals.tolist(), abs=1e-5)
    fresh = CompositeReward([Component(learned, "rm", normalize="running"),
                             Component(TargetLength(target=10, unit="chars"), "length", weight=0.5)])
    # the same totals as a sparse call (up to batch-composition rounding, magnified by the small std of 2 scores)
    assert fresh(PROMPTS, RESPONSES).tolist() == pytest.approx(totals.tolist(), abs=1e-4)
    per_component = reward.last_token_contributions
    summed = [per_component["rm"][i] + per_component["length"][i] for i in range(2)]
    assert all(torch.allclose(s, d, atol=1e-6) for s, d in zip(summed, dense))


def test_no_eos_penalty_lands_on_the_last_token_only():
    ids = policy_ids(RESPONSES, eos=False)
    dense = NoEOSPenalty(penalty=-1).per_token(PROMPTS, RESPONSES, response_token_ids=ids,
                                               tokenizer=bpe_tokenizer(), finished=[True, False])
    assert float(dense[0].abs().sum()) == 0.0
    assert dense[1][-1] == -1.0 and float(dense[1][:-1].abs().sum()) == 0.0


def test_token_rewards_follow_the_mode():
    ids = policy_ids(RESPONSES)
    reward = CompositeReward([Component(CharCount(), "chars")])
    sparse = reward.token_rewards(PROMPTS, RESPONSES, response_token_ids=ids, tokenizer=bpe_tokenizer())
    assert [s.tolist() for s in sparse] == [[0.0] * (len(i) - 1) + [float(len(r))] for i, r in zip(ids, RESPONSES)]
    reward.mode = "dense"
    dense = reward.token_rewards(PROMPTS, RESPONSES, response_token_ids=ids, tokenizer=bpe_tokenizer())
    assert [float(d.sum()) for d in dense] == [float(len(r)) for r in RESPONSES]
    # each token earns the characters it adds: the first, "the", its 3
    assert float(dense[0][0]) == 3.0


def test_sparse_on_last_token():
    assert [t.tolist() for t in sparse_on_last_token(torch.tensor([2.0, -1.0]), [3, 1])] == [[0, 0, 2.0], [-1.0]]
