"""Several processes take the update of one: the pure helpers by hand, and `rewardkit rl` under torchrun (2 gloo
processes) against one process, on the toy task with greedy decoding (rollouts that do not depend on the RNG)."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from rewardkit.rl.advantages import reinforce_advantages
from rewardkit.rl.distributed import Processes, held_rows, minibatch_order
from rewardkit.runs import derived_seed
from rewardkit.rl.masked import masked_moments, masked_var, masked_whiten
from tests.rl.conftest import toy_policy, toy_tokenizer

REPO = Path(__file__).resolve().parents[2]


def close(actual, expected, tol=1e-6):
    return torch.allclose(torch.as_tensor(actual, dtype=torch.float32), torch.as_tensor(expected), atol=tol)


def test_masked_moments_by_hand():
    values = torch.tensor([[1.0, 2.0, 100.0], [3.0, 6.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    mean, var = masked_moments(values, mask)
    # valid 1, 2, 3, 6: mean 3, squared deviations 4 + 1 + 0 + 9 = 14, / (4 - 1)
    assert close(mean, 3.0) and close(var, 14 / 3)
    assert close(var, masked_var(values, mask))
    # given moments replace the local ones: (values - 1) / sqrt(4)
    assert close(masked_whiten(values, mask, moments=(torch.tensor(1.0), torch.tensor(4.0))),
                 [[0.0, 0.5, 100.0], [1.0, 2.5, 100.0]])


def threaded_all_sum(shards, function):
    """Run `function(shard, all_sum)` for each shard in its own thread, `all_sum` adding a tensor over the threads
    (a stand-in for the processes' all-reduce); returns each thread's result."""
    barrier = threading.Barrier(len(shards))
    slots, results = [None] * len(shards), [None] * len(shards)

    def run(i):
        def all_sum(tensor):
            slots[i] = tensor
            barrier.wait()
            total = sum(slots)
            barrier.wait()  # every thread has read the slots before any writes the next ones
            return total
        results[i] = function(shards[i], all_sum)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(shards))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_masked_moments_over_shards_are_those_of_the_whole_batch():
    values = torch.tensor([[1.0, 2.0], [3.0, 0.0], [6.0, 5.0], [-1.0, 4.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    whole = masked_moments(values, mask)
    # valid 1, 2, 3, 6, 5, -1: mean 16/6, squared deviations sum 31.333..., / 5
    assert close(whole[0], 16 / 6) and close(whole[1], (sum(v * v for v in (1, 2, 3, 6, 5, -1)) - 16 ** 2 / 6) / 5)
    shards = [(values[:2], mask[:2]), (values[2:], mask[2:])]
    for mean, var in threaded_all_sum(shards, lambda shard, all_sum: masked_moments(*shard, all_sum=all_sum)):
        assert close(mean, whole[0]) and close(var, whole[1])


def test_reinforce_baseline_can_come_from_the_whole_batch():
    returns = torch.tensor([[1.0, 1.0], [3.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert close(reinforce_advantages(returns, mask, mean_return=torch.tensor(2.0)), [[-1.0, -1.0], [1.0, 0.0]])


def test_minibatch_order_is_the_same_for_any_process_count():
    order = minibatch_order(8, seed=3, step=5, epoch=1)
    assert sorted(order.tolist()) == list(range(8))
    assert torch.equal(order, minibatch_order(8, seed=3, step=5, epoch=1))
    assert not torch.equal(order, minibatch_order(8, seed=3, step=5, epoch=0))
    assert derived_seed(3, 5, 1) == derived_seed(3, 5, 1) != derived_seed(3, 1, 5)
    rows = torch.tensor([5, 0, 6, 3])
    # process 1 of 2 holds global rows 4..7: local 1 and 2, in the minibatch's order
    assert held_rows(rows, Processes(2, 1).share(8)).tolist() == [1, 2]
    assert held_rows(rows, Processes(2, 0).share(8)).tolist() == [0, 3]
    assert Processes().share(8) == slice(0, 8)
    with pytest.raises(ValueError):
        Processes(3, 0).share(8)


@pytest.fixture(scope="module")
def toy_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl-distributed")
    tokenizer = toy_tokenizer()
    toy_policy(tokenizer, seed=0).save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    (root / "reward.yaml").write_text("components:\n  - {type: custom, function: 'tests.rl.conftest:film_fraction'}\n")
    (root / "normalized.yaml").write_text(
        "components:\n  - {type: custom, function: 'tests.rl.conftest:film_fraction', normalize: running}\n"
        "  - {type: length, target: 4, normalize: rank, weight: 0.5}\n")
    words = ["the movie", "a film", "the plot", "a scene", "very good", "not bad", "the actor", "a movie"]
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": w}) + "\n" for w in words))
    return root


def rl_args(inputs, output_dir, *extra):
    return ["rl", "--policy", str(inputs / "policy"), "--reward", str(inputs / "reward.yaml"),
            "--prompts", str(inputs / "prompts.jsonl"), "--output-dir", str(output_dir), "--steps", "3",
            "--max-new-tokens", "5", "--temperature", "0", "--eval-size", "2", "--eval-every", "2",
            "--sample-every", "2", "--learning-rate", "1e-3", "--no-tensorboard", "--no-report", "--num-threads", "1",
            "--device", "cpu", *extra]


def run(args, processes=1):
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                 "--master-port", str(29500 + os.getpid() % 1000), "-m", "rewardkit.cli"] if processes > 1
                else [sys.executable, "-m", "rewardkit.cli"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(launcher + args, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def train_rows(output_dir):
    return [row for row in map(json.loads, (output_dir / "metrics.jsonl").read_text().splitlines())
            if "reward/proxy" in row]


SETTINGS = {
    # batch whitening (advantages and rewards), a value head, 2 epochs of minibatches of 3 out of 4 samples
    "ppo": ["--algorithm", "ppo", "--prompts-per-step", "4", "--epochs", "2", "--minibatch-size", "3",
            "--forward-batch-size", "2", "--whiten-rewards", "--value-learning-rate", "1e-2"],
    # running and rank normalizers fitted on the whole batch (every process's responses), as one process fits them
    "reinforce-normalized": ["--algorithm", "reinforce", "--prompts-per-step", "4",
                             "--reward", "{inputs}/normalized.yaml"],
    # groups of 2 samples, token counts over the minibatch, KL and entropy in the loss (greedy samples of a prompt
    # are equal, so the group advantages alone would not move the policy)
    "grpo": ["--algorithm", "grpo", "--prompts-per-step", "4", "--samples-per-prompt", "2", "--epochs", "2",
             "--minibatch-size", "3", "--kl-in", "loss", "--kl-estimator", "k3", "--entropy-coef", "0.05"],
}


@pytest.mark.parametrize("algorithm", sorted(SETTINGS))
def test_two_processes_take_the_update_of_one(toy_inputs, tmp_path, algorithm):
    from safetensors.torch import load_file

    settings = [arg.format(inputs=toy_inputs) for arg in SETTINGS[algorithm]]
    run(rl_args(toy_inputs, tmp_path / "one", *settings))
    two = run(rl_args(toy_inputs, tmp_path / "two", *settings), processes=2)
    assert two.stderr.count("rewardkit rl: device cpu") == 1  # only the main process prints
    one_rows, two_rows = train_rows(tmp_path / "one"), train_rows(tmp_path / "two")
    assert [r["step"] for r in two_rows] == [1, 2, 3]
    keys = [k for k in one_rows[0] if k.split("/")[0] in ("reward", "kl", "loss", "policy", "response", "value")]
    assert "loss/policy" in keys and "kl/ref" in keys and "policy/grad_norm" in keys
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["placement"]["device"] == "cpu"
    assert abs(two_rows[-1]["kl/ref"]) > 1e-4  # the policy moved
    if summary["placement"]["precision"] == "bf16":
        # Each process forwards half the batch, and bf16 (autocast) rounds other shapes otherwise at 2^-9 per
        # operation: the first step, from the same weights, agrees within 1% (0.004% measured). Adam turns that
        # rounding of near-zero gradients into whole updates afterwards (the weights after 3 steps differed by a third
        # of the largest update, measured), so later steps are not compared: CI runs this test in fp32 as well
        # (REWARDKIT_CPU_BF16_UNITS=0), where every step and weight is compared below.
        for key in keys:
            assert two_rows[0][key] == pytest.approx(one_rows[0][key], rel=1e-2, abs=1e-4), key
    else:  # fp32: the same sums in another order
        for a, b in zip(one_rows, two_rows):
            for key in keys:
                assert b[key] == pytest.approx(a[key], abs=1e-5), (a["step"], key)
        a = load_file(tmp_path / "one" / "policy" / "model.safetensors")
        b = load_file(tmp_path / "two" / "policy" / "model.safetensors")
        for name in a:
            assert torch.allclose(a[name], b[name], atol=1e-5), name
    one_evals = (tmp_path / "one" / "eval.jsonl").read_text().splitlines()
    assert len(one_evals) == 3 and len((tmp_path / "two" / "eval.jsonl").read_text().splitlines()) == 3
    assert summary["processes"] == 2 and summary["placement"]["device"] == "cpu"
    assert len((tmp_path / "two" / "samples" / "step-2.jsonl").read_text().splitlines()) == 4 * (
        2 if algorithm == "grpo" else 1)
    if algorithm == "reinforce-normalized":  # both processes hold the statistics of every response scored
        state = torch.load(tmp_path / "two" / "checkpoints" / "step-3" / "trainer.pt", weights_only=False)
        assert state["reward_states"]["proxy"]["custom"]["running"]["count"] == 3 * 4


def test_prompts_per_step_must_split_over_the_processes(toy_inputs, tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--master-port", str(29600 + os.getpid() % 1000), "-m", "rewardkit.cli"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(launcher + rl_args(toy_inputs, tmp_path / "odd", "--algorithm", "reinforce",
                                                "--prompts-per-step", "3"),
                            capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert result.returncode != 0 and "--prompts-per-step 3 must be divisible by the number of processes (2)" in (
        result.stderr)


def test_bf16_run_on_the_cpu_records_its_placement(toy_inputs, tmp_path):
    """Autocast in bf16 for sampling and the forwards, fp32 master weights, a bf16 reference."""
    from rewardkit.cli import main

    out = tmp_path / "bf16"
    assert main(rl_args(toy_inputs, out, "--algorithm", "ppo", "--prompts-per-step", "4", "--steps", "2",
                        "--precision", "bf16")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["placement"] == {"device": "cpu", "precision": "bf16", "reason": "as asked"}
    assert json.loads((out / "config.json").read_text())["precision"] == "bf16"
    rows = train_rows(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(v == v for r in rows for v in r.values())  # no NaN
    from safetensors.torch import load_file
    weights = load_file(out / "policy" / "model.safetensors")
    assert all(w.dtype == torch.float32 for w in weights.values())  # the master weights stay fp32
    assert (out / "checkpoints" / "step-2" / "trainer.pt").exists()


def _sampled_grpo_run(rank: int, world: int, init_file: str, result_file: str) -> None:
    """Two GRPO steps on sampled (temperature 1) rollouts: every process samples the whole step's batch with the same
    seed and keeps its share, so that one process and two see the same samples, which greedy decoding cannot give a
    group (its samples would all be equal, their advantages 0)."""
    import copy

    from rewardkit.rl.config import RLConfig
    from rewardkit.rl.trainer import RLTrainer
    from tests.rl.conftest import yes_fraction

    torch.set_num_threads(1)
    if world > 1:
        torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    tokenizer = toy_tokenizer()
    policy = toy_policy(tokenizer, seed=0)
    cfg = RLConfig(algorithm="grpo", prompts_per_step=4, samples_per_prompt=4, epochs=2, minibatch_size=6,
                   forward_batch_size=4, learning_rate=3e-3, max_new_tokens=6, kl_coef=0.05, whiten_rewards=True)
    trainer = RLTrainer(cfg, policy, tokenizer, yes_fraction, reference=copy.deepcopy(policy),
                        processes=Processes(world, rank))
    sample_all = trainer.generate
    metrics = []
    for step, prompts in enumerate((["the movie", "a film", "the plot", "a scene"],
                                    ["very good", "not bad", "the actor", "a movie"])):
        torch.manual_seed(100 + step)
        everything = sample_all([p for p in prompts for _ in range(4)])
        share = trainer.processes.share(len(everything))
        trainer.generate = lambda local, rollout=everything.select(share): rollout
        metrics.append(trainer.step(prompts))
    if rank == 0:
        torch.save({"weights": trainer.policy.state_dict(), "metrics": metrics}, result_file)
    if world > 1:
        torch.distributed.destroy_process_group()


def test_two_processes_sampled_grpo_groups_stay_whole(tmp_path):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    _sampled_grpo_run(0, 1, "", str(one))
    torch.multiprocessing.spawn(_sampled_grpo_run, args=(2, str(tmp_path / "init"), str(two)), nprocs=2)
    a, b = torch.load(one), torch.load(two)
    assert any(abs(m["loss/policy"]) > 1e-4 for m in a["metrics"])  # the groups' advantages did move the policy
    for ma, mb in zip(a["metrics"], b["metrics"]):
        for key in ("reward/proxy", "reward/proxy_std", "kl/ref", "loss/policy", "policy/clip_fraction",
                    "policy/grad_norm", "policy/entropy"):
            assert mb[key] == pytest.approx(ma[key], abs=1e-5), key
    for name, weight in a["weights"].items():
        assert torch.allclose(weight, b["weights"][name], atol=1e-5), name
