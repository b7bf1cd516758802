"""The reward-model trainer: loss scale under accumulation, resume after SIGKILL, 2-process DDP, NaN stop, CLI."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardkit.config import parse_config
from rewardkit.device import choose_placement
from rewardkit.errors import RewardkitError
from rewardkit.models import RewardModel
from rewardkit.models.config import TrainRMConfig
from rewardkit.models.trainer import RewardModelTrainer, length_grouped_batches, shard
from tests.conftest import kill_once_written

REPO = Path(__file__).resolve().parents[2]
WORDS = "the a cat dog runs fast slow red blue green house tree river sky".split()


def write_pairs(path: Path, n: int = 48, seed: int = 0) -> Path:
    """Pairs where the chosen response says 'thanks' and the rejected one does not: learnable in a few steps."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n):
            body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
            f.write(json.dumps({"prompt": f"question {i}: {body}?", "chosen": f"{body} thanks",
                                "rejected": f"{body} {rng.choice(WORDS)}"}) + "\n")
    return path


def run_cli(*args: str, env_extra: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "rewardkit.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def assert_same_weights(a: Path, b: Path, atol: float = 0.0) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=atol, rtol=0), key


def test_length_grouped_batches_cover_every_example_once_and_depend_on_seed():
    lengths = [random.Random(1).randint(1, 100) for _ in range(103)]
    batches = length_grouped_batches(lengths, 8, seed=0, group_factor=4)
    assert sorted(i for b in batches for i in b) == list(range(103))
    assert batches == length_grouped_batches(lengths, 8, seed=0, group_factor=4)
    assert batches != length_grouped_batches(lengths, 8, seed=1, group_factor=4)
    inside = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert sum(inside) / len(inside) < 50  # grouped: far less spread than random batches (~85 expected)


def test_shard_splits_a_global_batch_across_processes_and_micro_batches():
    batch = list(range(8))
    parts = [shard(batch, rank, 2, 2) for rank in range(2)]
    assert parts == [[[0, 4], [2, 6]], [[1, 5], [3, 7]]]


def small_config(tmp_path: Path, model: Path, data: Path, **overrides) -> TrainRMConfig:
    values = dict(model=str(model), data=[str(data)], output_dir=str(tmp_path / "out"), max_length=64,
                  batch_size=8, learning_rate=1e-3, max_steps=4, save_every=0, progress=False, tensorboard=False,
                  eval_batch_size=16)
    values.update(overrides)
    return TrainRMConfig(**values)


def make_loss_nan_at_step(trainer: RewardModelTrainer, step: int) -> None:
    """Make the trainer's loss NaN at its `step`-th call (one micro-batch a step in these tests): a crash mid-run."""
    real_loss, calls = trainer.task.loss, {"n": 0}

    def loss(scores, examples):
        calls["n"] += 1
        return real_loss(scores, examples) * (float("nan") if calls["n"] == step else 1.0)

    object.__setattr__(trainer.task, "loss", loss)


def test_gradient_accumulation_keeps_the_loss_scale(tmp_path, tiny_bert_dir):
    data = write_pairs(tmp_path / "pairs.jsonl")
    batch = list(range(8))
    grads, results = [], []
    for accumulation in (1, 4):
        trainer = RewardModelTrainer(small_config(tmp_path / str(accumulation), tiny_bert_dir, data,
                                                  gradient_accumulation_steps=accumulation))
        results.append(trainer.accumulate_gradients(batch))
        grads.append({n: p.grad.clone() for n, p in trainer.reward_model.named_parameters() if p.grad is not None})
    assert results[0] == pytest.approx(results[1], abs=1e-6)
    # the reported loss is the mean Bradley-Terry loss, and the gradient is that of the mean: identical either way
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-7, rtol=1e-4), name


def test_training_learns_a_simple_preference_and_writes_summary(tmp_path, tiny_bert_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=200)
    cfg = small_config(tmp_path, tiny_bert_dir, data, max_steps=40, learning_rate=3e-3, eval_every=20,
                       tensorboard=True)
    trainer = RewardModelTrainer(cfg)
    summary = trainer.train()
    out = Path(cfg.output_dir)
    saved = json.loads((out / "train_summary.json").read_text())
    assert saved["val_accuracy"] == summary["val_accuracy"] > 0.8
    # the saved model carries the mean and std of its rewards on the validation texts
    model = RewardModel.from_pretrained(str(out))
    rewards = model.score_encoded([t for e in trainer.val_examples for t in e.encoded]).double()
    assert model.reward_stats == saved["val_reward_stats"]
    assert model.reward_stats["count"] == len(rewards) == 2 * len(trainer.val_examples)
    assert model.reward_stats["mean"] == pytest.approx(float(rewards.mean()), abs=1e-5)
    assert model.reward_stats["std"] == pytest.approx(float(rewards.std(unbiased=False)), abs=1e-5)
    for key in ("train_examples", "train_seconds", "examples_per_second", "val_accuracy"):
        assert key in saved
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val/accuracy" in r] == [20, 40]
    assert any((out / "tensorboard").iterdir())


def test_frozen_lower_layers_keep_their_weights_while_the_rest_trains(tmp_path, tiny_bert_dir):
    data = write_pairs(tmp_path / "pairs.jsonl")
    cfg = small_config(tmp_path, tiny_bert_dir, data, freeze_layers=1)
    RewardModelTrainer(cfg).train()
    before, after = weights(tiny_bert_dir), weights(Path(cfg.output_dir))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not {k for k in changed if ".embeddings." in k or ".layer.0." in k}
    assert any(".layer.1." in k for k in changed)


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_last_checkpoint(tmp_path, tiny_bert_dir):
    data = write_pairs(tmp_path / "pairs.jsonl")
    trainer = RewardModelTrainer(small_config(tmp_path, tiny_bert_dir, data, max_steps=6, save_every=2))
    make_loss_nan_at_step(trainer, 4)
    with pytest.raises(RewardkitError, match=r"loss became nan at step 4.*step-2"):
        trainer.train()
    assert (tmp_path / "out" / "checkpoints" / "step-2" / "model.safetensors").exists()


def test_keep_checkpoints_0_keeps_the_newest_while_running_and_none_once_the_model_is_saved(tmp_path, tiny_bert_dir):
    data = write_pairs(tmp_path / "pairs.jsonl")
    checkpoints = tmp_path / "out" / "checkpoints"
    crashing = RewardModelTrainer(small_config(tmp_path, tiny_bert_dir, data, max_steps=6, save_every=2,
                                               keep_checkpoints=0))
    make_loss_nan_at_step(crashing, 5)
    with pytest.raises(RewardkitError, match=r"step-4"):
        crashing.train()
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-4"]  # what a resumed run needs, and no more

    finished = run_cli("train-rm", "--model", str(tiny_bert_dir), "--data", str(data), "--output-dir",
                       str(tmp_path / "out"), "--max-length", "64", "--batch-size", "8", "--max-steps", "6",
                       "--save-every", "2", "--keep-checkpoints", "0", "--resume", "--no-progress", "--no-tensorboard")
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "resumed from" in finished.stderr
    assert (tmp_path / "out" / "model.safetensors").exists() and not checkpoints.exists()


def test_without_validation_data_nothing_is_evaluated_and_the_logs_hold_null_not_nan(tmp_path, tiny_bert_dir,
                                                                                        capsys):
    data = write_pairs(tmp_path / "pairs.jsonl", n=16)
    summary = RewardModelTrainer(small_config(tmp_path, tiny_bert_dir, data, max_steps=2, val_fraction=0.0,
                                              eval_every=1)).train()
    assert summary["val_accuracy"] is None and summary["best_val_accuracy"] is None
    out = tmp_path / "out"
    rows = [json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} written as JSON"))
            for text in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] and not [r for r in rows if "val/accuracy" in r]
    assert "validation accuracy" not in capsys.readouterr().err
    assert json.loads((out / "train_summary.json").read_text())["val_accuracy"] is None


def test_existing_checkpoints_without_resume_is_a_user_error(tmp_path, tiny_bert_dir):
    data = write_pairs(tmp_path / "pairs.jsonl")
    RewardModelTrainer(small_config(tmp_path, tiny_bert_dir, data, max_steps=3, save_every=2)).train()
    with pytest.raises(RewardkitError, match="--resume"):
        RewardModelTrainer(small_config(tmp_path, tiny_bert_dir, data, max_steps=3, save_every=2)).train()


def test_sigkill_then_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, tiny_bert_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=160)
    common = ["train-rm", "--model", str(tiny_bert_dir), "--data", str(data), "--max-length", "64",
              "--batch-size", "8", "--learning-rate", "1e-3", "--max-steps", "18", "--save-every", "3",
              "--keep-checkpoints", "10", "--no-progress", "--no-tensorboard", "--dropout"]
    straight = run_cli(*common, "--output-dir", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr

    out = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    kill_once_written([sys.executable, "-m", "rewardkit.cli", *common, "--output-dir", str(out)],
                      out / "checkpoints" / "step-6", cwd=REPO, env=env)
    assert (out / "checkpoints" / "step-6").exists(), "the run never reached its second checkpoint"
    assert not (out / "model.safetensors").exists(), "killed too late: the run had already finished"

    resumed = run_cli(*common, "--output-dir", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    assert_same_weights(tmp_path / "straight", out)

    def logged(folder):  # which rows, in order: a resumed run logs none twice
        rows = map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
        return [(row["step"], sorted(row)) for row in rows]
    assert logged(out) == logged(tmp_path / "straight")


def test_resumed_early_stopping_still_ends_with_the_best_weights(tmp_path, tiny_bert_dir):
    """Validation accuracies are scripted: the best comes at step 2, before the step-3 checkpoint, and the run stops at
    step 5. A run interrupted at step 4 and resumed from step 3 must still end with step 2's weights. Its checkpoint
    also carries a CUDA RNG state, as one written on a GPU does: a CPU-only machine resumes from it all the same."""
    data = write_pairs(tmp_path / "pairs.jsonl")
    accuracies = [0.5, 0.8, 0.6, 0.6, 0.6, 0.6]  # validations at steps 1..6

    def trainer(out: str, first_step: int = 1, **overrides) -> RewardModelTrainer:
        cfg = small_config(tmp_path, tiny_bert_dir, data, output_dir=str(tmp_path / out), max_steps=6, eval_every=1,
                           early_stopping_patience=3, save_every=3, keep_checkpoints=10, **overrides)
        built = RewardModelTrainer(cfg)
        scripted = iter(accuracies[first_step - 1:])
        built.validate = lambda: next(scripted)
        return built

    straight = trainer("straight").train()
    assert straight["stopped_early"] and straight["steps"] == 5 and straight["val_accuracy"] == 0.8

    interrupted = trainer("resumed")
    make_loss_nan_at_step(interrupted, 4)
    with pytest.raises(RewardkitError, match="step 4"):
        interrupted.train()
    checkpoint = tmp_path / "resumed" / "checkpoints" / "step-3"
    assert (checkpoint / "best.safetensors").exists()
    [rng] = torch.load(checkpoint / "rng.pt", weights_only=True)  # one process: one RNG state
    torch.save([{**rng, "cuda": torch.zeros(16, dtype=torch.uint8)}], checkpoint / "rng.pt")

    resumed = trainer("resumed", first_step=4, resume=True).train()
    assert resumed["stopped_early"] and resumed["steps"] == 5 and resumed["val_accuracy"] == 0.8
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed")


def test_two_process_data_parallel_matches_one_process(tmp_path, tiny_bert_dir):
    # 63 pairs: 57 to train on, 7 batches of 8 and a last one of 1, which leaves the second process without an
    # example: it must still take part in the step (a zero-loss backward), or the processes' all-reduces misalign
    data = write_pairs(tmp_path / "pairs.jsonl", n=63)
    common = ["--model", str(tiny_bert_dir), "--data", str(data), "--max-length", "64", "--batch-size", "8",
              "--learning-rate", "1e-3", "--epochs", "1", "--save-every", "0", "--no-progress",
              "--no-tensorboard", "--num-threads", "1"]
    one = run_cli("train-rm", *common, "--output-dir", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    # one process accumulating the same two shards of each batch: the same sums, so the same weights to the bit
    accumulated = run_cli("train-rm", *common, "--gradient-accumulation-steps", "2", "--output-dir",
                          str(tmp_path / "accumulated"))
    assert accumulated.returncode == 0, accumulated.stderr
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", str(29500 + os.getpid() % 1000), "-m", "rewardkit.cli", "train-rm",
                          *common, "--save-every", "2", "--keep-checkpoints", "1", "--output-dir",
                          str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    assert two.returncode == 0, two.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 8 and summary["train_examples"] == 57
    # the checkpoint holds each process's RNG state, so that a resume on 2 processes replays both streams
    assert len(torch.load(tmp_path / "two" / "checkpoints" / "step-6" / "rng.pt", weights_only=True)) == 2
    assert_same_weights(tmp_path / "accumulated", tmp_path / "two", atol=0.0)
    if summary["placement"]["precision"] == "fp32":
        # Against one micro-batch per step, only the summation order differs; Adam divides each gradient by its own
        # scale, so near-zero gradients turn that into updates of up to 1.2e-5 (measured; the largest update is 4e-3).
        # In bf16 the two batch shapes round differently (18% of the update's norm, measured): compared above only.
        assert_same_weights(tmp_path / "one", tmp_path / "two", atol=5e-5)


def test_cli_flags_and_yaml_fill_the_same_config(tmp_path):
    yaml_file = tmp_path / "train.yaml"
    yaml_file.write_text("model: some/model\nbatch-size: 4\nlearning_rate: 1e-4\ndata: [a.jsonl, b.jsonl]\n")
    from_yaml = parse_config(TrainRMConfig, ["--config", str(yaml_file)])
    from_flags = parse_config(TrainRMConfig, ["--model", "some/model", "--batch-size", "4", "--learning-rate", "1e-4",
                                              "--data", "a.jsonl", "b.jsonl"])
    assert from_yaml == from_flags
    assert parse_config(TrainRMConfig, ["--config", str(yaml_file), "--batch-size", "2"]).batch_size == 2


def test_cli_user_errors_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": "a"}\n')
    result = run_cli("train-rm", "--data", str(bad), "--output-dir", str(tmp_path / "o"), timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1 and f"{bad}:2" in error_lines[0]
    good = write_pairs(tmp_path / "good.jsonl", n=8)
    no_validation = run_cli("train-rm", "--data", str(good), "--val-fraction", "0", "--early-stopping-patience", "2",
                            "--output-dir", str(tmp_path / "o"), timeout=120)
    assert no_validation.returncode == 2 and "Traceback" not in no_validation.stderr
    assert "--early-stopping-patience needs validation data" in no_validation.stderr


def test_minilm_trains_a_few_steps_on_real_hh_pairs(tmp_path, shared_data):
    """Integration: the real default backbone on real pairs, a few steps, short texts to stay fast."""
    cfg = TrainRMConfig(model="minilm-l6", data=[str(shared_data / "hh-rlhf" / "helpful-base.test.jsonl.gz")],
                        output_dir=str(tmp_path / "rm"), max_length=96, batch_size=8, max_steps=3,
                        val_fraction=0.02, save_every=0, progress=False, tensorboard=False)
    trainer = RewardModelTrainer(cfg)
    summary = trainer.train()
    assert summary["steps"] == 3 and summary["examples_seen"] == 24
    assert summary["train_examples"] + summary["val_examples"] == 2352  # 2354 minus the 2 identical pairs
    # max_length 96 truncates, but nothing is dropped: counted here from the tokenizer alone (a pair is truncated when
    # either text's prompt and response tokens, plus BERT's [CLS] [SEP] [SEP], exceed 96)
    from rewardkit.data.types import prompt_as_text

    train_records, _ = trainer._load_records()
    tokens = lambda text: len(trainer.reward_model.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    expected = sum(any(tokens(prompt_as_text(r.prompt)) + tokens(text) + 3 > 96 for text in (r.chosen, r.rejected))
                   for r in train_records)
    assert summary["truncated_train_examples"] == expected > 0
    from rewardkit.models import RewardModel
    reloaded = RewardModel.from_pretrained(str(tmp_path / "rm"))
    assert reloaded.max_length == 96 and reloaded.model.config.num_labels == 1
    assert reloaded.pooling == "cls"  # auto: the HF class's own, saved with the model
    # the reported accuracy is the saved model's on the held-out pairs: chosen scored higher, ties half
    # In bf16 too: validation scored with working weights equal to those the reload rounds to, in the same batches
    assert reloaded.placement.precision == trainer.placement.precision
    scores = reloaded.score_encoded([t for e in trainer.val_examples for t in e.encoded],
                                    batch_size=cfg.eval_batch_size)
    chosen, rejected = scores[0::2], scores[1::2]
    expected = float(((chosen > rejected).float() + 0.5 * (chosen == rejected).float()).sum()) / len(chosen)
    assert summary["val_accuracy"] == pytest.approx(expected, abs=1e-12)


def write_length_confounded_pairs(path: Path, n: int, seed: int = 0) -> Path:
    """Pairs where the chosen response says 'thanks' and where the longer response is the chosen one in half of
    them: a model learns the word, but nothing keeps its reward from tracking length too."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n):
            body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))
            padding = " " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))
            chosen, rejected = f"{body} thanks", f"{body} {rng.choice(WORDS)}"
            if i % 2:
                chosen += padding
            else:
                rejected += padding
            f.write(json.dumps({"prompt": f"question {i}?", "chosen": chosen, "rejected": rejected}) + "\n")
    return path


def _length_correlations(model: RewardModel, texts: list[str]) -> tuple[float, float]:
    """Pearson correlation with the response length (tokens) of the reward and of the length head."""
    from rewardkit.losses import pearson_correlation

    encoded = model.encode_many(["question?"] * len(texts), texts)
    model.eval()
    with torch.no_grad():
        both = model(**model.collate(encoded), with_length=True)
    lengths = torch.tensor([float(len(e.input_ids) - e.response_start) for e in encoded])
    return float(pearson_correlation(both[:, 0], lengths)), float(pearson_correlation(both[:, 1], lengths))


def test_odin_length_head_takes_the_length_signal_and_resumes(tmp_path, tiny_bert_dir):
    data = write_length_confounded_pairs(tmp_path / "pairs.jsonl", n=160)
    cfg = small_config(tmp_path, tiny_bert_dir, data, max_steps=40, learning_rate=3e-3, length_head=True,
                       length_decorrelation=1.0, save_every=20, log_every=5)
    summary = RewardModelTrainer(cfg).train()
    out = Path(cfg.output_dir)
    assert (out / "length_head.safetensors").exists() and summary["val_accuracy"] > 0.8
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("train/length_decorrelation" in row for row in logged)
    # What the heads learnt, read in fp32: a bf16 forward of this 32-wide model rounds away part of the length
    # signal its features carry (the same fp32-trained model: length correlation 0.84 in fp32, 0.74 in bf16)
    model = RewardModel.from_pretrained(str(out), placement=choose_placement("cpu", "fp32"))
    rng = random.Random(5)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))) for _ in range(64)]
    reward_corr, length_corr = _length_correlations(model, texts)
    assert length_corr > 0.8 and abs(reward_corr) < 0.5, (reward_corr, length_corr)
    # the checkpoint holds the length head: a resumed run starts from its weights, not from a fresh head
    checkpoint = sorted(out.glob("checkpoints/step-*"))[-1]
    resumed = RewardModelTrainer(small_config(tmp_path, tiny_bert_dir, data, max_steps=40, length_head=True,
                                              length_decorrelation=1.0, resume=True))
    resumed.optimizer, resumed.scheduler = resumed._optimizer(), None
    resumed.scheduler = torch.optim.lr_scheduler.LambdaLR(resumed.optimizer, lambda step: 1.0)
    resumed._load_checkpoint(checkpoint)
    saved = load_file(checkpoint / "length_head.safetensors")
    assert torch.equal(resumed.reward_model.length_head.weight, saved["weight"])
    # resuming with options that change what the checkpoint holds is a one-line error naming them
    changed = RewardModelTrainer(small_config(tmp_path, tiny_bert_dir, data, max_steps=40, lora_rank=2, resume=True))
    changed.optimizer = changed._optimizer()
    with pytest.raises(RewardkitError, match=r"step-20 was written with --lora-rank 0, not 2; --length-head True, "
                                             r"not False: resume with the options"):
        changed._load_checkpoint(checkpoint)


def test_length_head_without_decorrelation_is_refused(tmp_path, tiny_bert_dir):
    data = write_pairs(tmp_path / "pairs.jsonl")
    with pytest.raises(RewardkitError, match="--length-decorrelation"):
        RewardModelTrainer(small_config(tmp_path, tiny_bert_dir, data, length_head=True))


def test_a_sharded_launch_is_refused_in_one_line(tmp_path, tiny_bert_dir, monkeypatch):
    # Accelerate shards only on GPUs (on a CPU it ignores ACCELERATE_USE_FSDP): the launch's type is set by hand
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    from rewardkit.errors import RewardkitError
    from rewardkit.models import trainer as trainer_module

    class ShardedAccelerator(Accelerator):
        distributed_type = DistributedType.FSDP

    monkeypatch.setattr(trainer_module, "Accelerator", ShardedAccelerator)
    data = write_pairs(tmp_path / "pairs.jsonl", n=16)
    with pytest.raises(RewardkitError, match="this launch asks for FSDP"):
        RewardModelTrainer(small_config(tmp_path, tiny_bert_dir, data))
