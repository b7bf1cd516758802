"""TRL: a rewardkit reward in TRL's own `GRPOTrainer` (1.16), and the call it makes for conversational datasets."""

from __future__ import annotations

import pytest
import torch

from rewardkit.errors import RewardkitError
from rewardkit.integrations.trl import reward_func
from rewardkit.rewards.spec import load_reward
from tests.integrations.conftest import readme_block
from tests.rl.conftest import toy_policy, toy_tokenizer

pytest.importorskip("trl")


def test_the_readme_snippet_trains_grpo_with_a_rewardkit_spec(spec_path, in_readme_dir, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig

    torch.set_num_threads(1)
    tokenizer = toy_tokenizer()
    dataset = Dataset.from_dict({"prompt": ["the movie", "a film", "the plot", "an actor"],
                                 "solution": ["good movie", "bad film", "good plot", "very good actor"]})
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=4, max_steps=2, learning_rate=1e-3, logging_steps=1, report_to="none",
                      use_cpu=True, bf16=False, save_strategy="no", seed=0, dataloader_num_workers=0)
    policy = toy_policy(tokenizer)
    scope = {"policy": policy, "args": args, "dataset": dataset, "tokenizer": tokenizer}
    exec(readme_block("GRPOTrainer("), scope)  # builds the trainer and trains, exactly as the README shows
    trainer = scope["trainer"]

    assert trainer.state.global_step == 2
    # What TRL recorded for the last generation batch is rewardkit's own score of the same texts, with the
    # `solution` column as the rouge reference.
    prompts, completions = list(trainer._logs["prompt"]), list(trainer._logs["completion"])
    solutions = [dataset["solution"][dataset["prompt"].index(p)] for p in prompts]
    expected = load_reward(str(spec_path))(prompts, completions, solutions)
    assert trainer._logs["rewards"]["rewardkit"] == pytest.approx(expected.tolist(), abs=1e-6)
    # every component is logged beside TRL's own reward mean
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"rewards/rewardkit/mean", "rewards/rewardkit/reward_model", "rewards/rewardkit/rouge"} <= logged


def test_grpo_trainer_on_a_conversational_dataset_passes_messages(spec_path, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(1)
    tokenizer = toy_tokenizer()
    # a chat template in the toy vocabulary: each message's words, then the generation starts
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": "the movie"}],
                                            [{"role": "user", "content": "a film"}]],
                                 "reference": ["good movie", "bad film"]})
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=3, max_steps=1, logging_steps=1, report_to="none", use_cpu=True,
                      bf16=False, save_strategy="no", seed=0, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=toy_policy(tokenizer), processing_class=tokenizer,
                          reward_funcs=reward_func(str(spec_path)), args=args, train_dataset=dataset)
    trainer.train()

    prompts, completions = list(trainer._logs["prompt"]), list(trainer._logs["completion"])
    assert all(isinstance(p, list) and isinstance(c, list) and c[-1]["role"] == "assistant"
               for p, c in zip(prompts, completions))  # TRL handed the reward messages, not text
    references = [dataset["reference"][dataset["prompt"].index(p)] for p in prompts]
    expected = load_reward(str(spec_path))(prompts, [c[-1]["content"] for c in completions], references)
    assert trainer._logs["rewards"]["rewardkit"] == pytest.approx(expected.tolist(), abs=1e-6)


def test_conversational_prompts_and_completions_are_scored_as_messages(spec_path):
    reward = reward_func(str(spec_path), name="rk")
    prompts = [[{"role": "system", "content": "be brief"}, {"role": "user", "content": "a film?"}],
               [{"role": "user", "content": [{"type": "text", "text": "the plot?"}]}]]
    completions = [[{"role": "assistant", "content": "good film"}],
                   [{"role": "assistant", "content": "calling a tool"}, {"role": "tool", "content": "42"},
                    {"role": "assistant", "content": "bad plot"}]]
    logged = {}
    got = reward(prompts=prompts, completions=completions, completion_ids=[[1], [2]],
                 reference=["good film", "good plot"], trainer_state=None, log_extra=None,
                 log_metric=lambda name, value: logged.__setitem__(name, value))
    expected = load_reward(str(spec_path))(
        [[{"role": "system", "content": "be brief"}, {"role": "user", "content": "a film?"}],
         [{"role": "user", "content": "the plot?"}]], ["good film", "bad plot"], ["good film", "good plot"])
    assert got == pytest.approx(expected.tolist(), abs=1e-6)
    assert reward.__name__ == "rk"
    # rouge1 F of "good film" against itself is 1, of "bad plot" against "good plot" 1/2: mean 0.75
    assert logged["rewards/rk/rouge"] == pytest.approx(0.75)


def test_a_reference_reward_without_a_reference_column_names_the_columns(spec_path):
    reward = reward_func(str(spec_path))
    with pytest.raises(RewardkitError, match="no reference or references or solution or ground_truth or answer "
                                             "column \\(its columns: topic\\)"):
        reward(prompts=["p"], completions=["c"], topic=["x"], trainer_state=None)
