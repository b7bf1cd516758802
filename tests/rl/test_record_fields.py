"""`rewardkit rl` passes each prompt's record fields (code_tests' "tests", any field a custom reward names) to the
rewards, with every sample of the prompt, in training and in evaluation; a record without a field a reward reads is a
one-line error naming its file and line, before any training."""

import json

import pytest

from rewardkit.errors import RewardkitError
from rewardkit.rl.command import run_rl
from rewardkit.rl.policy import load_prompt_records
from tests.rl.test_command import toy_config

SEEN: list[tuple[list, list]] = []  # (prompts, fields) of every call


def target_seen(prompts, responses, references=None, fields=None):
    """1 for every response; records what it was given."""
    SEEN.append((list(prompts), list(fields)))
    return [1.0] * len(responses)


@pytest.fixture()
def inputs(tmp_path):
    from tests.rl.conftest import toy_policy, toy_tokenizer

    tokenizer = toy_tokenizer()
    toy_policy(tokenizer, seed=0).save_pretrained(tmp_path / "policy")
    tokenizer.save_pretrained(tmp_path / "policy")
    (tmp_path / "reward.yaml").write_text(
        "components:\n  - {type: custom, function: 'tests.rl.test_record_fields:target_seen', fields: [target]}\n")
    with (tmp_path / "prompts.jsonl").open("w") as f:
        for k in range(6):
            f.write(json.dumps({"prompt": f"the movie {k}", "target": f"t{k}", "tests": ["assert True"]}) + "\n")
    return tmp_path


def test_load_prompt_records_keeps_the_other_fields(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "2+2?", "reference": "4", "tests": "assert f() == 4", "empty": ""}) + "\n")
    prompts, references, fields, locations = load_prompt_records(str(path))
    assert (prompts, references, fields) == (["2+2?"], ["4"], [{"tests": "assert f() == 4"}])
    assert str(locations[0]).endswith("p.jsonl:1")


def test_rl_passes_each_prompts_fields_with_its_samples(inputs, tmp_path):
    SEEN.clear()
    cfg = toy_config(inputs, tmp_path / "run", reward=str(inputs / "reward.yaml"), gold_reward=None,
                     algorithm="grpo", samples_per_prompt=2, steps=2, prompts_per_step=2, eval_size=2,
                     eval_every=2, save_every=0, sample_every=0)
    assert run_rl(cfg) == 0
    assert len(SEEN) == 2 + 2  # an evaluation before and after training, and 2 steps
    for prompts, fields in SEEN:
        assert fields == [{"target": f"t{p.split()[-1]}"} for p in prompts]  # each sample's own record's field
    train_calls = SEEN[1:3]
    assert all(len(p) == 4 and p[0] == p[1] and p[2] == p[3] for p, _ in train_calls)  # 2 prompts x 2 samples
    assert set(SEEN[0][0]) == {"the movie 4", "the movie 5"}  # the held-out prompts: the last 2


def test_a_record_without_a_field_a_reward_reads_is_named(inputs, tmp_path):
    lines = (inputs / "prompts.jsonl").read_text().splitlines()
    lines[2] = json.dumps({"prompt": "no target here"})
    (inputs / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    cfg = toy_config(inputs, tmp_path / "run", reward=str(inputs / "reward.yaml"), gold_reward=None, steps=1)
    with pytest.raises(RewardkitError, match=r"prompts.jsonl:3: custom reads each prompt's 'target' field, and this "
                                             r"record has none"):
        run_rl(cfg)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
