"""verl: rewardkit's `compute_score` and `compute_score_batch` called as verl's reward managers call them.

verl cannot be installed here (verl 0.9.1 pins transformers < 5.11 and needs ray), so the calling code below is copied
from its 0.9.1 wheel (PyPI `verl-0.9.1-py3-none-any.whl`; the same code is at github.com/volcengine/verl commit
b178a3cd) with the DataProto plumbing replaced by plain lists; each copy names its file. What is copied verbatim is
how the function is loaded, how it is called and how its result is read.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import re
import warnings
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import pytest

from rewardkit.integrations import verl as rk_verl
from rewardkit.rewards.spec import load_reward
from tests.integrations.conftest import readme_block

ROWS = [  # (data_source, prompt, response, ground_truth)
    ("hh", "How do I bake bread?", "Mix flour, water and yeast, then bake it.", "Mix flour and water, bake."),
    ("hh", "Name a colour.", "Blue.", "Red."),
    ("gsm8k", "What is 6 x 7?", "The answer is 42", 42),
]


def expected_rows(spec_path):
    reward = load_reward(str(spec_path))
    total = reward([p for _, p, _, _ in ROWS], [r for _, _, r, _ in ROWS], [str(g) for *_, g in ROWS])
    return [{"score": float(total[i]), **{k: float(v[i]) for k, v in reward.last_components.items()}}
            for i in range(len(ROWS))]


# --- verl 0.9.1 verl/utils/import_utils.py load_module + load_extern_object (pkg:// and file paths)
def load_extern_object(module_path: str, object_name: str):
    if module_path.startswith("pkg://"):
        module = importlib.import_module(module_path[len("pkg://"):].replace("/", "."))
    else:
        spec = importlib.util.spec_from_file_location(f"custom_module_{hash(os.path.abspath(module_path))}",
                                                      module_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return getattr(module, object_name)


# --- verl 0.9.1 verl/trainer/ppo/reward.py: get_custom_reward_fn wraps the function with reward_kwargs
def _call_with_kwargs(raw_fn, extra_kwargs, *args, **kwargs):
    merged_kwargs = {**kwargs, **extra_kwargs}
    return raw_fn(*args, **merged_kwargs)


def get_custom_reward_fn(path: str, name: str, reward_kwargs: dict):
    raw_fn = load_extern_object(module_path=path, object_name=name)
    return partial(_call_with_kwargs, raw_fn, dict(reward_kwargs))


# --- verl 0.9.1 verl/workers/reward_manager/naive.py NaiveRewardManager.__call__ (per response)
def naive_manager(compute_score, rows):
    rewards, reward_extra_info = [], defaultdict(list)
    for data_source, prompt, response_str, ground_truth in rows:
        extra_info = {"prompt": prompt}  # the row's extra_info, as the user prepared the data
        extra_info["num_turns"] = None
        extra_info["rollout_reward_scores"] = {}
        score = compute_score(
            data_source=data_source,
            solution_str=response_str,
            ground_truth=ground_truth,
            extra_info=extra_info,
        )
        if isinstance(score, dict):
            reward = score["score"]
            for key, value in score.items():
                reward_extra_info[key].append(value)
        else:
            reward = score
        rewards.append(reward)
    return rewards, dict(reward_extra_info)


# --- verl 0.9.1 verl/workers/reward_manager/batch.py BatchRewardManager.verify + __call__
def batch_manager(compute_score, rows, **reward_kwargs):
    extras = [{"prompt": p} for _, p, _, _ in rows]
    for i in range(len(rows)):
        extras[i]["rollout_reward_scores"] = {}
    scores = compute_score(
        data_sources=[d for d, *_ in rows],
        solution_strs=[r for _, _, r, _ in rows],
        ground_truths=[g for *_, g in rows],
        extra_infos=extras,
        **reward_kwargs,
    )
    rewards, reward_extra_info = [], defaultdict(list)
    for i in range(len(rows)):
        score = scores[i]
        if isinstance(score, dict):
            reward = score["score"]
            for key, value in score.items():
                reward_extra_info[key].append(value)
        else:
            reward = score
        rewards.append(reward)
    return rewards, dict(reward_extra_info)


# --- verl 0.9.1 verl/experimental/reward_loop/reward_manager/naive.py run_single: one row per task, the function run
# in the loop's default thread pool, many rows at once
async def reward_loop_manager(compute_score, rows):
    loop = asyncio.get_running_loop()

    async def run_single(data_source, prompt, response_str, ground_truth):
        extra_info = {"prompt": prompt, "num_turns": None, "rollout_reward_scores": {}}
        result = await loop.run_in_executor(
            None,
            lambda: compute_score(
                data_source=data_source,
                solution_str=response_str,
                ground_truth=ground_truth,
                extra_info=extra_info,
            ),
        )
        reward_extra_info = {}
        if isinstance(result, dict):
            score = result["score"]
            for key, value in result.items():
                reward_extra_info[key] = value
        else:
            score = result
            reward_extra_info["acc"] = score
        return {"reward_score": score, "reward_extra_info": reward_extra_info}

    return await asyncio.gather(*(run_single(*row) for row in rows))


def test_naive_manager_with_the_module_function_configured_by_reward_kwargs(spec_path):
    compute_score = get_custom_reward_fn("pkg://rewardkit.integrations.verl", "compute_score",
                                         {"rewardkit_reward": str(spec_path)})
    rewards, extra = naive_manager(compute_score, ROWS)
    want = expected_rows(spec_path)
    assert rewards == pytest.approx([w["score"] for w in want], abs=1e-6)
    assert set(extra) == {"score", "reward_model", "rouge"}  # verl logs each key
    for key in extra:
        assert extra[key] == pytest.approx([w[key] for w in want], abs=1e-6)
    # rouge1 F1 of "Blue." against "Red.": no word in common
    assert extra["rouge"][1] == 0.0


def readme_overrides() -> dict[str, str]:
    """The verl command line of the README, as {key: value}."""
    overrides = re.findall(r"^\s*\+?([\w.]+)=(\S+)", readme_block("custom_reward_function.path="), re.M)
    return dict(overrides)


def test_batch_manager_configured_as_the_readme_says(spec_path, in_readme_dir):
    overrides = readme_overrides()
    assert overrides["reward_model.reward_manager"] == "batch"
    reward_kwargs = {key.rsplit(".", 1)[1]: value for key, value in overrides.items()
                     if key.startswith("custom_reward_function.reward_kwargs.")}
    assert reward_kwargs == {"rewardkit_reward": "rewards.yaml"}
    compute_score = get_custom_reward_fn(overrides["custom_reward_function.path"],
                                         overrides["custom_reward_function.name"], reward_kwargs)
    rewards, extra = batch_manager(compute_score, ROWS)
    want = expected_rows(spec_path)
    assert rewards == pytest.approx([w["score"] for w in want], abs=1e-6)
    assert extra["reward_model"] == pytest.approx([w["reward_model"] for w in want], abs=1e-6)


def test_batch_manager_with_the_readmes_file_of_your_own(spec_path, in_readme_dir):
    user_file = in_readme_dir / "rk_reward.py"
    user_file.write_text(readme_block("# rk_reward.py"))
    compute_score = get_custom_reward_fn(str(user_file), "compute_score", {})  # verl's default name
    rewards, extra = batch_manager(compute_score, ROWS)
    want = expected_rows(spec_path)
    assert rewards == pytest.approx([w["score"] for w in want], abs=1e-6)
    assert extra["rouge"] == pytest.approx([w["rouge"] for w in want], abs=1e-6)


def test_batch_manager_with_the_environment_variable(spec_path, monkeypatch):
    monkeypatch.setenv("REWARDKIT_REWARD", str(spec_path))
    compute_score = get_custom_reward_fn("pkg://rewardkit.integrations.verl", "compute_score_batch", {})
    rewards, _ = batch_manager(compute_score, ROWS)
    assert rewards == pytest.approx([w["score"] for w in expected_rows(spec_path)], abs=1e-6)


def test_reward_loop_calls_from_many_threads_at_once(spec_path):
    compute_score = get_custom_reward_fn("pkg://rewardkit.integrations.verl", "compute_score",
                                         {"rewardkit_reward": str(spec_path)})
    rows = ROWS * 8
    results = asyncio.run(reward_loop_manager(compute_score, rows))
    want = expected_rows(spec_path) * 8
    assert [r["reward_score"] for r in results] == pytest.approx([w["score"] for w in want], abs=1e-6)
    assert [r["reward_extra_info"]["rouge"] for r in results] == pytest.approx([w["rouge"] for w in want])


# --- verl 0.9.1 verl/workers/reward_manager/prime.py single_compute_score / parallel_compute_score_async (positional
# arguments, subprocesses, a bare number expected)
async def single_compute_score(evaluation_func, completion, reference, task, task_extra_info, executor, timeout=300.0):
    loop = asyncio.get_event_loop()
    future = loop.run_in_executor(executor, partial(evaluation_func, task, completion, reference, task_extra_info))
    return await asyncio.wait_for(future, timeout=timeout)


async def prime_manager(evaluation_func, completions, references, tasks, extra_info):
    scores = []
    with ProcessPoolExecutor(max_workers=2) as executor:
        results = await asyncio.gather(*[
            single_compute_score(evaluation_func, c, r, t, ei, executor, timeout=300.0)
            for c, r, t, ei in zip(completions, references, tasks, extra_info, strict=True)])
    for result in results:
        if isinstance(result, Exception) or result is None:
            scores.append(0.0)
        elif isinstance(result, int | float | bool):
            scores.append(float(result))
        else:
            scores.append(float(result[0]))
    return scores


def test_prime_manager_gets_bare_numbers_with_components_off(tmp_path):
    spec = tmp_path / "ref.yaml"
    spec.write_text("components: [{type: rouge, variant: rouge1}]\n")
    compute_score = get_custom_reward_fn("pkg://rewardkit.integrations.verl", "compute_score",
                                         {"rewardkit_reward": str(spec), "rewardkit_components": False})
    scores = asyncio.run(prime_manager(compute_score, ["good film", "bad plot", "x"], ["good film", "good plot", "y"],
                                       ["a", "a", "a"], [{"prompt": "p"}] * 3))
    assert scores == [1.0, 0.5, 0.0]  # rouge1 F1, hand-computed


def test_missing_prompt_warns_once_and_scores_with_an_empty_prompt(spec_path, monkeypatch):
    from rewardkit.integrations import common

    monkeypatch.setattr(common, "_warned", set())  # another test may have warned already
    compute = rk_verl.make_compute_score(str(spec_path))
    with pytest.warns(UserWarning, match="extra_info\\['prompt'\\]"):
        got = compute("hh", "Blue.", "Red.", {"index": 3})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: the second response is scored without a second warning
        compute("hh", "Blue.", "Red.", None)
    reward = load_reward(str(spec_path))
    assert got["score"] == pytest.approx(float(reward([""], ["Blue."], ["Red."])[0]), abs=1e-6)


def test_no_reward_configured_says_how_to_give_one(monkeypatch):
    from rewardkit.errors import RewardkitError

    monkeypatch.delenv("REWARDKIT_REWARD", raising=False)
    with pytest.raises(RewardkitError, match="set \\$REWARDKIT_REWARD"):
        rk_verl.compute_score("hh", "x", None, {})
