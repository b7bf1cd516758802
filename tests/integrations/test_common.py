"""The shared pieces: what frameworks hold turned into rewardkit prompts, responses and references."""

from __future__ import annotations

import numpy as np
import pytest

from rewardkit.errors import RewardkitError
from rewardkit.integrations.common import as_prompt, as_reference, as_response, shared_reward


def test_prompts_from_text_messages_and_parquet_arrays():
    assert as_prompt("Hi") == "Hi" and as_prompt(None) == ""
    messages = np.array([{"role": "user", "content": [{"type": "text", "text": "a "}, {"type": "text", "text": "b"}]}],
                        dtype=object)
    assert as_prompt(messages) == [{"role": "user", "content": "a b"}]
    with pytest.raises(RewardkitError, match="a prompt is text or a list of"):
        as_prompt([1, 2])


def test_responses_are_the_text_of_the_last_assistant_message():
    assert as_response("x") == "x"
    assert as_response([{"role": "assistant", "content": "call"}, {"role": "tool", "content": "42"},
                        {"role": "assistant", "content": "It is 42."}]) == "It is 42."
    with pytest.raises(RewardkitError, match="with an assistant message"):
        as_response([{"role": "tool", "content": "42"}])


def test_references_from_labels_of_any_shape():
    assert as_reference(42) == "42" and as_reference(None) is None
    assert as_reference(np.array(["a", "b"])) == ["a", "b"]
    assert as_reference(np.int64(42)) == "42" and as_reference(np.float32(1.5)) == "1.5"  # read back from parquet
    with pytest.raises(RewardkitError, match="a reference is text or a list of texts, got dict"):
        as_reference({"answer": 1})


def test_a_component_named_score_is_refused():
    with pytest.raises(RewardkitError, match="a component is named 'score'"):
        shared_reward({"components": [{"type": "length", "target": 3, "name": "score"}]})


def test_a_source_is_loaded_once_per_process_whether_named_or_given_as_a_mapping(spec_path, in_readme_dir):
    assert shared_reward("rewards.yaml") is shared_reward(str(spec_path))  # relative or absolute: one file
    spec = {"components": [{"type": "length", "target": 3, "unit": "words"}]}
    assert shared_reward(spec) is shared_reward({"components": [{"unit": "words", "target": 3, "type": "length"}]})


def test_labels_of_any_type_are_ignored_by_a_reward_without_references():
    from rewardkit.integrations import openrlhf, verl

    spec = {"components": [{"type": "length", "target": 2, "unit": "words"}]}
    compute_score = verl.make_compute_score(spec)
    # verl's ground_truth is often a dict (countdown: target and numbers) or a bool: a length rule never reads it
    scores = [compute_score("countdown", "two words", label, {"prompt": "p"})["score"]
              for label in ({"target": 24, "numbers": [1, 2]}, True, np.int64(3), "42")]
    assert scores == [scores[-1]] * 4
    out = openrlhf.make_reward_func(spec)(["p two words"], ["p"], [{"a": 1}])
    assert float(out["rewards"][0]) == scores[-1]
