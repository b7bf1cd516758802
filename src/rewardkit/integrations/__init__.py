"""rewardkit rewards inside the RL frameworks people use: one small module per framework.

- `rewardkit.integrations.trl`: `reward_func(source)`, a `GRPOTrainer` `reward_funcs` entry (plain or conversational);
- `rewardkit.integrations.verl`: `compute_score` and `compute_score_batch` (`custom_reward_function`), returning
  `{"score": r, **components}`;
- `rewardkit.integrations.openrlhf`: `make_reward_func(source)`, the `reward_func(queries, prompts, labels)` of a
  `--reward.remote_url file.py`.

A source is a reward spec, a reward model (preset or folder) or a `rewardkit serve` URL; all of them score through
`rewardkit.integrations.common.shared_reward`, so a response gets the same score whichever framework asks.
"""
