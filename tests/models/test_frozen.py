"""train-rm --frozen: a head trained on cached frozen-backbone features by train-rm's own losses, saved as a folder
that every command (and, with the HF class's own pooling and head, plain transformers) scores as training did."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from rewardkit.device import choose_placement
from rewardkit.errors import RewardkitError
from rewardkit.models import RewardModel
from rewardkit.models.config import TrainRMConfig
from rewardkit.models.frozen import FrozenHeadTrainer
from rewardkit.models.remote_code import MODULE_FILE
from tests.conftest import reward_tolerance
from tests.models.test_trainer import run_cli, small_config, write_pairs

FP32 = choose_placement("cpu", "fp32")


def close(got, expected) -> bool:
    """Two fp32 scorings of one text that batch it otherwise differ by summation order only: within 1e-5 of the
    largest |reward| (at least 1; conftest's fp32 reward tolerance)."""
    return torch.allclose(got, expected, atol=reward_tolerance(expected, precision="fp32"), rtol=0)

SUMMARY_FIELDS = {"model", "feedback", "steps", "train_examples", "val_examples", "examples_seen", "train_seconds",
                  "examples_per_second", "val_accuracy", "best_val_accuracy", "val_reward_stats", "stopped_early",
                  "processes", "placement", "truncated_train_examples", "config"}


def frozen_config(tmp_path, model_dir, data, **overrides):
    # small_config's fine-tuning schedule back at train-rm's defaults (--frozen refuses it), the head's own instead
    schedule = {f.name: f.default for f in dataclasses.fields(TrainRMConfig)
                if f.name in ("batch_size", "learning_rate", "max_steps")}
    values = dict(frozen=True, precision="fp32", feature_cache=str(tmp_path / "cache"), head_epochs=20,
                  head_batch_size=16, head_learning_rate=3e-2, **schedule)
    values.update(overrides)
    return small_config(tmp_path, model_dir, data, **values)


def val_texts(trainer):
    return [t for e in trainer.val_examples for t in e.encoded]


def plain_scores(folder, trainer, remote: bool) -> torch.Tensor:
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=remote).eval()
    with torch.no_grad():
        return torch.stack([model(input_ids=torch.tensor([t.input_ids]),
                                  **({"token_type_ids": torch.tensor([t.token_type_ids])} if t.token_type_ids else {})
                                  ).logits[0, 0] for t in val_texts(trainer)])


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("frozen-data") / "pairs.jsonl", n=64)


def test_a_linear_head_learns_and_the_folder_is_a_plain_hf_folder(tmp_path, tiny_bert_dir, pairs):
    trainer = FrozenHeadTrainer(frozen_config(tmp_path, tiny_bert_dir, pairs, pooling="cls"))
    backbone = {k: v.clone() for k, v in trainer.reward_model.model.bert.encoder.state_dict().items()}
    summary = trainer.train()
    assert SUMMARY_FIELDS <= set(summary) and summary["frozen"] is True
    assert summary["val_accuracy"] >= 0.8  # 'thanks' wins: learnt from frozen random features (chance: 0.5)
    assert summary["features_computed"] == summary["feature_texts"] == 2 * 64
    on_disk = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert on_disk["val_accuracy"] == summary["val_accuracy"] and on_disk["features_read_from_cache"] == 0
    for key, value in trainer.reward_model.model.bert.encoder.state_dict().items():
        assert torch.equal(value, backbone[key]), key  # frozen
    expected = trainer.val_scores().cpu()
    assert float(expected.max() - expected.min()) > 1e-3  # texts score apart: a mix-up would show
    assert not (tmp_path / "out" / MODULE_FILE).exists()  # BERT's own CLS and head: nothing to run
    loaded = RewardModel.from_pretrained(str(tmp_path / "out"), placement=FP32)
    assert close(loaded.score_encoded(val_texts(trainer)), expected)
    assert close(plain_scores(tmp_path / "out", trainer, remote=False), expected)


def test_a_decoder_with_its_last_token_and_linear_head_loads_in_plain_transformers(tmp_path, tiny_llama_dir, pairs):
    trainer = FrozenHeadTrainer(frozen_config(tmp_path, tiny_llama_dir, pairs))
    trainer.train()
    assert not (tmp_path / "out" / MODULE_FILE).exists()
    expected = trainer.val_scores().cpu()
    assert float(expected.max() - expected.min()) > 1e-4
    loaded = RewardModel.from_pretrained(str(tmp_path / "out"), placement=FP32)
    assert close(loaded.score_encoded(val_texts(trainer)), expected)
    assert close(plain_scores(tmp_path / "out", trainer, remote=False), expected)


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_an_mlp_head_on_a_layer_range_loads_in_rewardkit_and_through_remote_code(tmp_path, kind, pairs, request):
    model_dir = request.getfixturevalue(f"tiny_{kind}_dir")
    trainer = FrozenHeadTrainer(frozen_config(tmp_path, model_dir, pairs, head="mlp", head_width=16,
                                              feature_layers="1-2", pooling="mean"))
    summary = trainer.train()
    assert summary["feature_layers"] == [1, 2] and summary["head"] == "mlp"
    folder = tmp_path / "out"
    metadata = json.loads((folder / "rewardkit.json").read_text())
    assert metadata["head"] == {"type": "mlp", "width": 16} and metadata["feature_layers"] == [1, 2]
    expected = trainer.val_scores().cpu()
    assert float(expected.max() - expected.min()) > 1e-4
    loaded = RewardModel.from_pretrained(str(folder), placement=FP32)
    assert loaded.head_spec == {"type": "mlp", "width": 16} and loaded.feature_layers == (1, 2)
    assert close(loaded.score_encoded(val_texts(trainer)), expected)
    assert close(plain_scores(folder, trainer, remote=True), expected)
    # resaved (e.g. by a calibration) it keeps its head and layers
    loaded.save_pretrained(tmp_path / "again")
    again = RewardModel.from_pretrained(str(tmp_path / "again"), placement=FP32)
    assert close(again.score_encoded(val_texts(trainer)), expected)


def test_a_second_recipe_reads_the_cached_features_and_scores_exactly_alike(tmp_path, tiny_bert_dir, pairs):
    first = FrozenHeadTrainer(frozen_config(tmp_path, tiny_bert_dir, pairs, output_dir=str(tmp_path / "a")))
    s1 = first.train()
    second = FrozenHeadTrainer(frozen_config(tmp_path, tiny_bert_dir, pairs, output_dir=str(tmp_path / "b")))
    second.reward_model.pooled_states = None  # the backbone must not run: reading the cache is all it may do
    s2 = second.train()
    assert (s2["features_read_from_cache"], s2["features_computed"]) == (128, 0)
    assert torch.equal(second.train_features, first.train_features)
    assert torch.equal(second.val_scores(), first.val_scores())  # exact, fp32: same features, same head training
    assert s2["val_accuracy"] == s1["val_accuracy"]
    uncached = FrozenHeadTrainer(frozen_config(tmp_path, tiny_bert_dir, pairs, output_dir=str(tmp_path / "c"),
                                               feature_cache="off"))
    s3 = uncached.train()
    assert s3["feature_cache"] is None and s3["features_computed"] == 128
    assert torch.equal(uncached.val_scores(), first.val_scores())
    # another split of the same data: the same texts, read back
    other = FrozenHeadTrainer(frozen_config(tmp_path, tiny_bert_dir, pairs, output_dir=str(tmp_path / "d"), seed=3))
    assert other.train()["features_read_from_cache"] == 128


@pytest.mark.parametrize("feedback,rows,accuracy", [
    ("rankings", lambda i: {"prompt": f"q{i}", "responses": [f"a{i} thanks", f"a{i} ok", f"a{i} no"]}, 0.7),
    ("ratings", lambda i: {"prompt": f"q{i}", "response": f"a{i} " + "thanks " * (i % 3), "score": i % 3}, 0.6),
    ("binary", lambda i: {"prompt": f"q{i}", "response": f"a{i} " + ("thanks" if i % 2 else "no"),
                          "label": i % 2}, 0.8),
])
def test_every_kind_trains_a_head_with_its_own_loss(tmp_path, tiny_bert_dir, feedback, rows, accuracy):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(rows(i)) + "\n" for i in range(80)))
    trainer = FrozenHeadTrainer(frozen_config(tmp_path, tiny_bert_dir, data, feedback=feedback, pooling="mean",
                                              head_epochs=60, val_fraction=0.25))
    assert trainer.task.name == feedback
    summary = trainer.train()
    assert summary["feedback"] == feedback and summary["val_accuracy"] >= accuracy, summary["val_accuracy"]


def test_cli_trains_then_score_and_eval_rm_load_the_folder_and_score_as_training_did(tmp_path, tiny_bert_dir, pairs):
    out = tmp_path / "out"
    result = run_cli("train-rm", "--frozen", "--head", "mlp", "--head-width", "16", "--pooling", "mean",
                     "--model", str(tiny_bert_dir), "--data", str(pairs), "--output-dir", str(out),
                     "--feature-cache", str(tmp_path / "cache"), "--max-length", "64", "--head-epochs", "20",
                     "--head-learning-rate", "3e-2", "--precision", "fp32", "--no-progress", "--no-tensorboard")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "128 computed by the backbone in fp32" in result.stderr and "validation accuracy:" in result.stdout
    records = [json.loads(line) for line in pairs.read_text().splitlines()]
    rm = RewardModel.from_pretrained(str(out), placement=FP32)
    chosen = rm.score([r["prompt"] for r in records], [r["chosen"] for r in records]).double().numpy()
    rejected = rm.score([r["prompt"] for r in records], [r["rejected"] for r in records]).double().numpy()
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"prompt": r["prompt"], "response": r["chosen"]}) + "\n" for r in records))
    scored = run_cli("score", str(out), "--input", str(inputs), "--precision", "fp32", "--no-progress")
    assert scored.returncode == 0, scored.stderr[-2000:]
    totals = [json.loads(line)["total"] for line in scored.stdout.splitlines()]
    tol = reward_tolerance(chosen, rejected, precision="fp32")
    assert totals == pytest.approx(chosen.tolist(), abs=tol)
    evaluated = run_cli("eval-rm", str(out), str(pairs), "--json", "--no-progress", "--bootstrap-resamples", "50",
                        "--precision", "fp32")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    entry = next(iter(json.loads(evaluated.stdout)["datasets"].values()))
    assert np.abs(chosen - rejected).min() > 2 * tol  # no pair close enough to flip between the two paths
    assert entry["accuracy"] == pytest.approx(float((chosen > rejected).mean()), abs=1e-12)


def test_a_reward_spec_component_loads_the_frozen_folder(tmp_path, tiny_bert_dir, pairs):
    """The path of serve, label import and the TRL/verl/OpenRLHF functions: a reward_model component."""
    from rewardkit.rewards.spec import build_reward

    trainer = FrozenHeadTrainer(frozen_config(tmp_path, tiny_bert_dir, pairs, head="mlp", head_width=8,
                                              pooling="mean", feature_layers="2"))
    trainer.train()
    spec = {"components": [{"type": "reward_model", "path": str(tmp_path / "out")}]}
    component = build_reward(spec, placement=FP32).components[0].reward.model
    assert component.head_spec == {"type": "mlp", "width": 8}
    assert close(component.score_encoded(val_texts(trainer)), trainer.val_scores().cpu())


@pytest.mark.parametrize("args,message", [
    (["--frozen", "--lora-r", "4"], "--lora-rank does not apply to --frozen"),
    (["--frozen", "--ensemble", "2"], "--ensemble does not apply to --frozen"),
    (["--frozen", "--max-steps", "5"], "--max-steps does not apply to --frozen: the head's is --head-epochs"),
    (["--frozen", "--learning-rate", "1e-3"], "--learning-rate does not apply to --frozen: the head's is "
                                              "--head-learning-rate"),
    (["--head", "mlp"], "--head mlp trains a head on frozen features: add --frozen"),
    (["--feature-layers", "1-2"], "--feature-layers trains a head on frozen features: add --frozen"),
    (["--frozen", "--feature-layers", "3-9"], "--feature-layers '3-9'"),
    (["--frozen", "--head-epochs", "0"], "--head-epochs must be at least 1"),
])
def test_option_errors_are_one_line(tmp_path, tiny_bert_dir, pairs, args, message):
    result = run_cli("train-rm", "--model", str(tiny_bert_dir), "--data", str(pairs), "--output-dir",
                     str(tmp_path / "o"), "--feature-cache", str(tmp_path / "cache"), "--no-progress", *args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if "error" in line.lower()]) == 1


def test_a_frozen_trainer_refuses_incompatible_options_in_python_too(tmp_path, tiny_bert_dir, pairs):
    with pytest.raises(RewardkitError, match="--length-head does not apply"):
        FrozenHeadTrainer(frozen_config(tmp_path, tiny_bert_dir, pairs, length_head=True, length_decorrelation=1.0))


@pytest.mark.slow
def test_minilm_frozen_features_on_real_hh_pairs(tmp_path, shared_data):
    """The real minilm-l6 (mean pooling: its folder gets remote code), 96 HH pairs, features cached then re-read."""
    hh = shared_data / "hh-rlhf" / "helpful-base.test.jsonl.gz"
    cfg = frozen_config(tmp_path, "minilm-l6", hh, max_length=128, head_epochs=5, val_fraction=0.5,
                        head_learning_rate=1e-3, pooling="mean")
    import gzip

    rows = gzip.open(hh, "rt").read().splitlines()[:96]
    data = tmp_path / "hh.jsonl"
    data.write_text("\n".join(rows) + "\n")
    cfg.data = [str(data)]
    trainer = FrozenHeadTrainer(cfg)
    summary = trainer.train()
    assert summary["features_computed"] > 150
    expected = trainer.val_scores().cpu()
    assert close(plain_scores(tmp_path / "out", trainer, remote=True), expected)
    again = FrozenHeadTrainer(dataclasses.replace(cfg, output_dir=str(tmp_path / "again")))
    assert again.train()["features_computed"] == 0
