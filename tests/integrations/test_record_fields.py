"""The framework adapters pass a record's other fields to the rewards that read them: TRL from dataset columns, verl
from `extra_info`, OpenRLHF from a JSON-object label."""

import json

import pytest

from rewardkit.errors import RewardkitError
from rewardkit.integrations.openrlhf import make_reward_func
from rewardkit.integrations.trl import reward_func
from rewardkit.integrations.verl import make_compute_score, make_compute_score_batch

SPEC = {"components": [{"type": "custom", "function": "tests.integrations.test_record_fields:contains_target",
                        "fields": ["target"]},
                       {"type": "math", "weight": 0.0}]}


def contains_target(prompts, responses, references=None, fields=None):
    """1 when the response contains its record's target, else 0."""
    return [float(f["target"] in r) for r, f in zip(responses, fields)]


def test_trl_reads_fields_from_dataset_columns():
    reward = reward_func(SPEC, name="rk")
    scores = reward(prompts=["p1", "p2", "p3"], completions=["it is 42", "it is 41", "\\boxed{7}"],
                    target=["42", "42", "7"], reference=["42", "42", "7"], trainer_state=None)
    assert scores == [1.0, 0.0, 1.0]
    with pytest.raises(RewardkitError, match=r"reads each record's target, but the dataset has no such column "
                                             r"\(its columns: reference\)"):
        reward(prompts=["p"], completions=["x"], reference=["1"], trainer_state=None)


def test_verl_reads_fields_from_extra_info():
    single = make_compute_score(SPEC)
    result = single(data_source="d", solution_str="so 42", ground_truth="42",
                    extra_info={"prompt": "q", "target": "42"})
    assert result["score"] == 1.0 and result["custom"] == 1.0 and result["math"] == 1.0
    batch = make_compute_score_batch(SPEC, components=False)
    assert batch(data_sources=["d", "d"], solution_strs=["so 42", "so 3"], ground_truths=["42", "3"],
                 extra_infos=[{"prompt": "q", "target": "42"}, {"prompt": "q", "target": "4"}]) == [1.0, 0.0]
    with pytest.raises(RewardkitError, match="'target' field; response 0 has none"):
        single(data_source="d", solution_str="so 42", ground_truth="42", extra_info={"prompt": "q"})


def test_openrlhf_reads_fields_from_a_json_label():
    func = make_reward_func(SPEC)
    out = func(["q it is 42", "q it is 5"], ["q", "q"], [json.dumps({"target": "42", "reference": "42"}),
                                                          {"target": "4", "reference": "4"}])
    assert out["rewards"].tolist() == [1.0, 0.0]
    assert out["extra_logs"]["math"].tolist() == [1.0, 0.0]  # the reference came from the label's "reference"
    with pytest.raises(RewardkitError, match="make the label column a JSON object"):
        func(["q x"], ["q"], ["42"])


def test_code_tests_in_trl_runs_the_records_tests():
    try:
        reward = reward_func({"components": [{"type": "code_tests", "time_limit": 5}]}, name="code")
    except RewardkitError as exc:  # no sandbox on this machine (no unshare, or no permission)
        pytest.skip(str(exc))
    code = "```python\ndef add(a, b):\n    return a + b\n```"
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    tests = "assert add(1, 2) == 3\nassert add(0, 0) == 0\n"
    assert reward(prompts=["Write add.", "Write add."], completions=[code, wrong], tests=[tests, tests],
                  trainer_state=None) == [1.0, 0.5]  # a − b passes add(0, 0) == 0 only
