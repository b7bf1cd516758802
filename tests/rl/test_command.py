"""`rewardkit rl` end to end on the toy task: outputs, the report, config errors, and exact resume."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from rewardkit.cli import main
from rewardkit.errors import RewardkitError
from rewardkit.rl.command import PromptOrder, run_rl
from rewardkit.rl.policy import load_prompts
from rewardkit.rl.config import RLConfig
from tests.conftest import kill_once_written
from tests.rl.conftest import toy_policy, toy_tokenizer


@pytest.fixture(scope="module")
def toy_run_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl-inputs")
    tokenizer = toy_tokenizer()
    policy = toy_policy(tokenizer, seed=0)
    policy.save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    (root / "reward.yaml").write_text("components:\n  - {type: custom, function: 'tests.rl.conftest:yes_fraction'}\n")
    (root / "gold.yaml").write_text("components:\n  - {type: keywords, forbidden: [bad]}\n")
    words = ["the movie", "a film", "the plot", "a scene", "very good", "not bad", "the actor", "a movie", "the film",
             "a plot", "good scene", "bad actor"]
    with (root / "prompts.jsonl").open("w") as f:
        for w in words:
            f.write(json.dumps({"prompt": w}) + "\n")
    return root


def toy_config(inputs, output_dir, **overrides):
    settings = dict(policy=str(inputs / "policy"), reward=str(inputs / "reward.yaml"),
                    gold_reward=str(inputs / "gold.yaml"), prompts=str(inputs / "prompts.jsonl"),
                    output_dir=str(output_dir), algorithm="ppo", steps=4, prompts_per_step=4, epochs=2,
                    learning_rate=3e-3, value_learning_rate=1e-2, max_new_tokens=5, eval_size=4,
                    eval_samples_per_prompt=2, eval_every=2, sample_every=2, save_every=2, tensorboard=False,
                    report=False, log_every=0, watch_window=2, progress=False)
    settings.update(overrides)
    return RLConfig(**settings)


def test_run_writes_metrics_samples_checkpoints_policy_and_report(toy_run_inputs, tmp_path):
    out = tmp_path / "run"
    assert main(["rl", "--config", str(_yaml(toy_run_inputs, out, tmp_path)), "--steps", "4", "--report"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "reward/proxy" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
    assert all("reward/gold" in r and "kl/ref" in r for r in train_rows)
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 2, 4]
    assert len((out / "samples" / "step-2.jsonl").read_text().splitlines()) == 4
    assert len((out / "samples" / "eval-step-0.jsonl").read_text().splitlines()) == 8  # 4 prompts x 2 samples
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2", "step-4"]
    assert (out / "policy" / "model.safetensors").exists()
    html = (out / "report.html").read_text()
    assert "Reward-hacking watch" in html and "data:image/png;base64" in html
    assert (out / "report.md").exists() and (out / "reward_vs_sqrt_kl.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and len(summary["evals"]) == 3


def _yaml(inputs, out, tmp_path, **overrides):
    cfg = toy_config(inputs, out, **overrides)
    path = tmp_path / "rl.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in dataclasses.asdict(cfg).items() if v is not None}))
    return path


def _train_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "reward/proxy" in line]


def test_resume_continues_exactly(toy_run_inputs, tmp_path):
    torch.manual_seed(0)
    run_rl(toy_config(toy_run_inputs, tmp_path / "straight"))
    run_rl(toy_config(toy_run_inputs, tmp_path / "resumed", steps=2))
    run_rl(toy_config(toy_run_inputs, tmp_path / "resumed", steps=4, resume=True))
    a = load_file(tmp_path / "straight" / "policy" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "policy" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    straight, resumed = _train_rows(tmp_path / "straight"), _train_rows(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert [r["reward/proxy"] for r in resumed] == [r["reward/proxy"] for r in straight]


def test_sigkill_then_resume_keeps_the_running_reward_normalizers(toy_run_inputs, tmp_path):
    """Proxy and gold rewards normalized by running statistics: a run killed after a checkpoint and resumed must
    normalize with the statistics of every response scored before the kill, as the uninterrupted run does."""
    (tmp_path / "proxy.yaml").write_text("components:\n  - {type: custom, function: "
                                         "'tests.rl.conftest:yes_fraction_slowly', normalize: running}\n")
    (tmp_path / "gold.yaml").write_text("components:\n  - {type: length, target: 20, normalize: running}\n")
    config = _yaml(toy_run_inputs, tmp_path / "unused", tmp_path, reward=str(tmp_path / "proxy.yaml"),
                   gold_reward=str(tmp_path / "gold.yaml"), steps=8, save_every=2, keep_checkpoints=10,
                   eval_size=0, sample_every=0, num_threads=1)
    command = [sys.executable, "-m", "rewardkit.cli", "rl", "--config", str(config), "--output-dir"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    repo = Path(__file__).resolve().parents[2]
    straight = subprocess.run([*command, str(tmp_path / "straight")], capture_output=True, text=True, timeout=240,
                              env=env, cwd=repo)
    assert straight.returncode == 0, straight.stderr[-3000:]

    out = tmp_path / "killed"
    kill_once_written([*command, str(out)], out / "checkpoints" / "step-2", env=env, cwd=repo)
    assert (out / "checkpoints" / "step-2").exists(), "the run never reached its first checkpoint"
    assert not (out / "policy").exists(), "killed too late: the run had already finished"

    resumed = subprocess.run([*command, str(out), "--resume"], capture_output=True, text=True, timeout=240, env=env,
                             cwd=repo)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    a = load_file(tmp_path / "straight" / "policy" / "model.safetensors")
    b = load_file(out / "policy" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rewards = lambda run: [(r["reward/proxy"], r["reward/gold"]) for r in _train_rows(run)]  # noqa: E731
    assert rewards(out) == rewards(tmp_path / "straight")


def test_progress_bar_and_keep_checkpoints_0(toy_run_inputs, tmp_path, capsys):
    out = tmp_path / "run"
    run_rl(toy_config(toy_run_inputs, out, steps=2, eval_size=0, save_every=1, keep_checkpoints=0, progress=True,
                      log_every=1))
    err = capsys.readouterr().err
    assert "rl: 100%" in err and "2/2" in err  # the bar, over the steps
    assert "step 2/2 | proxy" in err  # log lines still come through it
    assert (out / "policy" / "model.safetensors").exists() and not (out / "checkpoints").exists()
    with pytest.raises(RewardkitError, match="--keep-checkpoints must be 0 or more"):
        run_rl(toy_config(toy_run_inputs, tmp_path / "bad", keep_checkpoints=-1))


def test_existing_run_needs_resume(toy_run_inputs, tmp_path):
    run_rl(toy_config(toy_run_inputs, tmp_path / "run", steps=1, eval_size=0))
    with pytest.raises(RewardkitError, match="--resume"):
        run_rl(toy_config(toy_run_inputs, tmp_path / "run", steps=1, eval_size=0))


def test_config_errors_are_one_line(toy_run_inputs, tmp_path):
    with pytest.raises(RewardkitError, match="--reward is required"):
        run_rl(RLConfig(prompts="x.jsonl"))
    with pytest.raises(RewardkitError, match="samples-per-prompt"):
        run_rl(toy_config(toy_run_inputs, tmp_path / "g", algorithm="grpo"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    with pytest.raises(RewardkitError, match=r"bad.jsonl:2: no 'prompt' field"):
        load_prompts(str(bad))


def test_prompt_formats(tmp_path):
    (tmp_path / "p.txt").write_text("first prompt\n\nsecond prompt\n")
    assert load_prompts(str(tmp_path / "p.txt")) == (["first prompt", "second prompt"], None)
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"prompt": [{"role": "user", "content": "hi"}], "reference": "hello"}) + "\n")
    assert load_prompts(str(chat)) == ([[{"role": "user", "content": "hi"}]], ["hello"])
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    assert load_prompts(str(plain)) == (["a", "b"], None)
    partly = tmp_path / "partly.jsonl"
    partly.write_text('{"prompt": "a", "reference": "x"}\n{"prompt": "b"}\n')
    with pytest.raises(RewardkitError, match=r"partly.jsonl:2: no 'reference' field, but .*partly.jsonl:1 has one"):
        load_prompts(str(partly))


def test_prompt_order_is_a_seeded_shuffle_per_epoch():
    order = PromptOrder(5, 3, seed=0)
    first_epoch = order.next() + order.next()[:2]
    assert sorted(first_epoch) == [0, 1, 2, 3, 4]
    clone = PromptOrder(5, 3, seed=0)
    clone.load_state_dict(order.state_dict())
    assert clone.next() == order.next()


def test_lora_run_saves_adapters_and_resumes(toy_run_inputs, tmp_path):
    pytest.importorskip("peft")
    out = tmp_path / "lora"
    lora = dict(lora_rank=4, lora_alpha=8, learning_rate=1e-2, eval_size=0, save_every=1)
    run_rl(toy_config(toy_run_inputs, out, steps=2, **lora))
    assert (out / "policy" / "adapter_model.safetensors").exists()
    assert not (out / "policy" / "model.safetensors").exists()  # the base is not copied
    run_rl(toy_config(toy_run_inputs, out, steps=3, resume=True, **lora))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
