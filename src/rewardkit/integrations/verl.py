"""A rewardkit reward as verl's `compute_score` (per response) and its batch form.

verl imports a reward function by path and name (`custom_reward_function.path` / `.name`); `path` may be a file or
`pkg://rewardkit.integrations.verl`. Its reward managers call it so (verl 0.9.1):
- `naive` (`verl/workers/reward_manager/naive.py`, and the reward loop's `experimental/reward_loop/reward_manager/
  naive.py`, which runs it in a thread pool): `compute_score(data_source=, solution_str=, ground_truth=,
  extra_info=)`, one response per call;
- `batch` (`verl/workers/reward_manager/batch.py`): `compute_score(data_sources=, solution_strs=, ground_truths=,
  extra_infos=)`, the whole batch in one call: use `compute_score_batch` (`reward_model.reward_manager=batch`), which
  scores a learned reward in batches instead of one response at a time;
- `prime` runs the function in 64 subprocesses and needs a bare number: give `rewardkit_components: false` and a
  `rewardkit serve` URL, so that each subprocess does not load its own model.
Both forms return `{"score": r, COMPONENT: raw value, ...}` per response; verl rewards `score` and logs every key.
The keyword arguments of `custom_reward_function.reward_kwargs` reach the function too (`verl/trainer/ppo/
reward.py` `_call_with_kwargs`), which is how the module-level functions here are configured:

    custom_reward_function.path=pkg://rewardkit.integrations.verl
    custom_reward_function.name=compute_score_batch
    +custom_reward_function.reward_kwargs.rewardkit_reward=runs/hh-rm     # or $REWARDKIT_REWARD

or a file of your own holding `compute_score = make_compute_score("rewards.yaml")`.

`solution_str` is the response alone, decoded without special tokens. verl does not pass the prompt: put it in each
row's `extra_info` when preparing the data (`extra_info["prompt"]`, text or the row's `prompt` messages; the key is
`prompt_key`). Without one, the response is scored with an empty prompt and a warning says so once. `ground_truth`
(the row's `reward_model.ground_truth`) is the reference of reference-based components. A reward that reads other
record fields (code_tests' `tests`, a custom reward's `fields`) reads them from `extra_info` (`extra_info["tests"]`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from rewardkit.errors import RewardkitError
from rewardkit.integrations.common import (SharedReward, as_prompt, configured_source, shared_reward,
                                           warn_once)

PROMPT_KEY = "prompt"


def _prompt_of(extra_info: Any, prompt_key: str) -> Any:
    if extra_info is not None and hasattr(extra_info, "get") and extra_info.get(prompt_key) is not None:
        return as_prompt(extra_info.get(prompt_key))
    warn_once("verl-prompt", f"verl passed no extra_info[{prompt_key!r}]: responses are scored without their prompt. "
                             f"Add the prompt to each row's extra_info when preparing the data")
    return ""


def _score_rows(reward: SharedReward, solution_strs: Sequence[str], ground_truths: Sequence[Any],
                extra_infos: Sequence[Any], prompt_key: str, components: bool) -> list:
    for j, solution in enumerate(solution_strs):
        if not isinstance(solution, str):
            raise RewardkitError(f"solution_str {j} is {type(solution).__name__}, not text")
    prompts = [_prompt_of(info, prompt_key) for info in extra_infos]
    fields = None
    if reward.needs_fields:
        fields = [{name: info.get(name) for name in reward.needs_fields if info.get(name) is not None}
                  if info is not None and hasattr(info, "get") else {} for info in extra_infos]
    scored = reward.score(prompts, list(solution_strs), list(ground_truths), fields)
    return scored.rows() if components else scored.scores


def make_compute_score(source: Any, prompt_key: str = PROMPT_KEY, components: bool = True) -> Callable[..., Any]:
    """verl's per-response `compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)`
    scoring with `source` (a reward spec, model, `rewardkit serve` URL or built reward). It returns
    `{"score": r, **components}`, or the bare number with `components=False`."""
    reward = shared_reward(source)

    def compute_score(data_source: Any = None, solution_str: str = "", ground_truth: Any = None,
                      extra_info: Any = None, **kwargs: Any) -> Any:
        return _score_rows(reward, [solution_str], [ground_truth], [extra_info], prompt_key, components)[0]

    return compute_score


def make_compute_score_batch(source: Any, prompt_key: str = PROMPT_KEY,
                             components: bool = True) -> Callable[..., list]:
    """verl's batch form, `compute_score(data_sources, solution_strs, ground_truths, extra_infos, **kwargs)`, one
    result per response, scoring the batch in one call."""
    reward = shared_reward(source)

    def compute_score_batch(data_sources: Sequence[Any] = (), solution_strs: Sequence[str] = (),
                            ground_truths: Sequence[Any] | None = None, extra_infos: Sequence[Any] | None = None,
                            **kwargs: Any) -> list:
        count = len(solution_strs)
        return _score_rows(reward, solution_strs, list(ground_truths) if ground_truths is not None else [None] * count,
                           list(extra_infos) if extra_infos is not None else [None] * count, prompt_key, components)

    return compute_score_batch


def compute_score(data_source: Any = None, solution_str: str = "", ground_truth: Any = None, extra_info: Any = None,
                  rewardkit_reward: Any = None, rewardkit_prompt_key: str = PROMPT_KEY,
                  rewardkit_components: bool = True, **kwargs: Any) -> Any:
    """`make_compute_score`'s function for the reward in `rewardkit_reward` (from `custom_reward_function.
    reward_kwargs`) or $REWARDKIT_REWARD, loaded once per process."""
    source = configured_source(rewardkit_reward, "verl")
    return make_compute_score(source, rewardkit_prompt_key, rewardkit_components)(
        data_source, solution_str, ground_truth, extra_info)


def compute_score_batch(data_sources: Sequence[Any] = (), solution_strs: Sequence[str] = (),
                        ground_truths: Sequence[Any] | None = None, extra_infos: Sequence[Any] | None = None,
                        rewardkit_reward: Any = None, rewardkit_prompt_key: str = PROMPT_KEY,
                        rewardkit_components: bool = True, **kwargs: Any) -> list:
    """`make_compute_score_batch`'s function for the reward in `rewardkit_reward` or $REWARDKIT_REWARD."""
    source = configured_source(rewardkit_reward, "verl")
    return make_compute_score_batch(source, rewardkit_prompt_key, rewardkit_components)(
        data_sources, solution_strs, ground_truths, extra_infos)
