"""Each rule-based reward against values computed by hand."""

import math

import pytest
import torch

from rewardkit.errors import RewardkitError
from rewardkit.rewards.rules import (Keywords, NoEOSPenalty, OverlongPenalty, RegexMatch, RepetitionPenalty,
                                     TargetLength, repeated_ngram_fraction)


def call(reward, responses, **kwargs):
    return reward([""] * len(responses), responses, **kwargs).tolist()


def test_target_length_is_zero_inside_tolerance_and_linear_outside():
    reward = TargetLength(target=10, tolerance=2, unit="chars")  # scale defaults to the target: 10
    assert call(reward, ["x" * 10, "x" * 12, "x" * 8, "x" * 15, "x" * 4]) == pytest.approx([0, 0, 0, -0.3, -0.4])
    assert math.copysign(1.0, call(reward, ["x" * 10])[0]) == 1.0  # 0.0, not -0.0, in the output files


def test_target_length_gaussian_falloff_and_words():
    reward = TargetLength(target=2, tolerance=0, unit="words", falloff="gaussian", scale=1)
    got = call(reward, ["two words", "now three words", "one"])
    assert got == pytest.approx([0.0, math.exp(-0.5) - 1, math.exp(-0.5) - 1])


def test_target_length_in_tokens_needs_a_tokenizer():
    with pytest.raises(RewardkitError, match="needs a tokenizer"):
        TargetLength(target=5, unit="tokens")
    reward = TargetLength(target=1, tolerance=0, unit="tokens", tokenizer="minilm-l6", scale=1)
    assert call(reward, ["hello world"]) == [-1.0]  # two word pieces, one too many


def test_regex_match_modes():
    assert call(RegexMatch(r"\d+"), ["abc 42", "none"]) == [1.0, 0.0]
    assert call(RegexMatch(r"\d+", match="fullmatch"), ["42 \n", "abc 42"]) == [1.0, 0.0]
    assert call(RegexMatch(r"answer:", match="start", ignore_case=True), ["Answer: 3", "the answer: 3"]) == [1.0, 0.0]
    with pytest.raises(RewardkitError, match="invalid pattern"):
        RegexMatch("(")


def test_repetition_penalty_counts_repeated_ngrams():
    # trigrams of "a b c a b c": abc, bca, cab, abc -> 4 total, 3 distinct -> 1 - 3/4
    assert repeated_ngram_fraction("a b c a b c".split(), 3) == pytest.approx(0.25)
    assert call(RepetitionPenalty(n=3), ["a b c a b c", "A B C a b c", "short", "x y z w"]) == pytest.approx(
        [-0.25, -0.25, 0.0, 0.0])
    assert call(RepetitionPenalty(n=1), ["go go go go"]) == pytest.approx([-0.75])


def test_keywords_required_and_forbidden():
    reward = Keywords(required=["cat", "hat"], forbidden=["dog"])
    got = call(reward, ["The Cat in the HAT", "the cat", "cat hat dog", "category", "dog"])
    assert got == pytest.approx([0.0, -0.5, -1.0, -1.0, -2.0])
    assert call(Keywords(required=["cat"], whole_word=False), ["category"]) == [0.0]
    with pytest.raises(RewardkitError, match="at least one"):
        Keywords()


def test_no_eos_penalty_reads_flags_or_the_eos_text():
    assert call(NoEOSPenalty(penalty=-2), ["a", "b"], finished=[True, False]) == [0.0, -2.0]
    assert call(NoEOSPenalty(eos_text="<|im_end|>"), ["done<|im_end|>", "cut off"]) == [0.0, -1.0]
    with pytest.raises(RewardkitError, match="finished"):
        call(NoEOSPenalty(), ["a"])


def test_overlong_penalty_is_linear_inside_the_buffer():
    reward = OverlongPenalty(max_length=10, buffer=4, unit="chars")
    assert call(reward, ["x" * 6, "x" * 8, "x" * 10, "x" * 30]) == pytest.approx([0.0, -0.5, -1.0, -1.0])


def test_rules_return_one_float_per_response():
    out = RegexMatch("a")(["p", "q"], ["a", "b"])
    assert out.dtype == torch.float32 and out.shape == (2,)
