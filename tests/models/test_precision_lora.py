"""Mixed precision, low-precision inference, LoRA reward models and gradient checkpointing, on tiny models (CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardkit.device import choose_placement
from rewardkit.models import RewardModel
from rewardkit.models.heads import head_modules
from rewardkit.models.trainer import RewardModelTrainer
from tests.conftest import RELATIVE_TOLERANCE
from tests.models.test_trainer import small_config, write_pairs

BF16 = choose_placement("cpu", "bf16")
PROMPTS = ["Say hi.", "What is two plus two?", "Name a colour.", "Tell me a joke."]
RESPONSES = ["Hi there!", "Four.", "Blue, like the sky.", "Why did the chicken cross the road? To get across."]


def test_a_bf16_training_step_runs_and_learns_with_fp32_master_weights(tmp_path, tiny_bert_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=200)
    cfg = small_config(tmp_path, tiny_bert_dir, data, max_steps=40, learning_rate=3e-3, device="cpu",
                       precision="bf16")
    trainer = RewardModelTrainer(cfg)
    summary = trainer.train()
    assert summary["val_accuracy"] > 0.8
    saved = json.loads((Path(cfg.output_dir) / "train_summary.json").read_text())
    assert saved["placement"] == {"device": "cpu", "precision": "bf16", "reason": "as asked"}
    assert {t.dtype for t in load_file(Path(cfg.output_dir) / "model.safetensors").values()} == {torch.float32}
    # the optimizer state is fp32 too: autocast only changes the forward's arithmetic
    states = [s for s in trainer.optimizer.state.values() if "exp_avg" in s]
    assert states and all(s["exp_avg"].dtype == torch.float32 for s in states)


@pytest.mark.parametrize("kind", ["tiny_bert_dir", "tiny_llama_dir"])
def test_packing_stays_on_under_bf16_autocast(kind, request, tmp_path):
    """Packed batches round differently from padded ones in bf16; the once-per-run check must still accept them."""
    rm = RewardModel.from_pretrained(str(request.getfixturevalue(kind)), train=True)
    with torch.no_grad():
        for module in head_modules(rm.model):
            for p in module.parameters():
                p.mul_(50.0)  # rewards of order 1-10, as after training, not the fresh head's ~0.01
    groups = [rm.encode_many([p, p], [r, r + " Indeed."]) for p, r in zip(PROMPTS, RESPONSES)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        batch = rm.collate_groups(groups)
    assert rm._packing_ok and "row_lengths" in batch


def test_bf16_inference_keeps_the_head_in_fp32_and_the_order_of_rewards(varied_bert_dir):
    fp32 = RewardModel.from_pretrained(str(varied_bert_dir))
    bf16 = RewardModel.from_pretrained(str(varied_bert_dir), placement=BF16)
    assert bf16.model.bert.encoder.layer[0].attention.self.query.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for m in head_modules(bf16.model) for p in m.parameters())
    a, b = fp32.score(PROMPTS, RESPONSES), bf16.score(PROMPTS, RESPONSES)
    assert b.dtype == torch.float32
    assert torch.equal(a.argsort(), b.argsort())
    assert torch.allclose(a, b, rtol=0.05, atol=0.05 * float(a.abs().max()))
    # an fp32 head keeps distinct texts apart: a bf16 head would round near rewards onto one value
    near = bf16.score(["Say hi."] * 8, [f"Hi there{'!' * k}" for k in range(8)])
    assert len(set(near.tolist())) == 8


def lora_config(tmp_path, model_dir, data, **overrides):
    values = dict(max_steps=6, learning_rate=3e-3, lora_rank=4, lora_alpha=8.0, freeze_layers=0)
    values.update(overrides)
    return small_config(tmp_path, model_dir, data, **values)


def test_lora_trains_adapters_and_head_only_and_saves_a_plain_merged_model(tmp_path, tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    data = write_pairs(tmp_path / "pairs.jsonl", n=64)
    cfg = lora_config(tmp_path, tiny_bert_dir, data)
    trainer = RewardModelTrainer(cfg)
    trainable = {n for n, p in trainer.reward_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".classifier." in n or ".pooler." in n for n in trainable)
    assert any("lora_A" in n for n in trainable) and any(".classifier." in n for n in trainable)
    trainer.train()
    out = Path(cfg.output_dir)
    before, after = load_file(tiny_bert_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys()  # merged: no adapter or base_layer keys left
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(".attention.self.query.weight" in k for k in changed)      # adapters folded into the weights
    assert not any("embeddings" in k or "LayerNorm" in k for k in changed)  # nothing else of the backbone moved
    assert "classifier.weight" in changed

    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert plain.config.num_labels == 1
    with torch.no_grad():
        expected = torch.stack([plain(**tokenizer(p, r, return_tensors="pt")).logits[0, 0]
                                for p, r in zip(PROMPTS, RESPONSES)])
    # plain transformers loads fp32 weights: rewardkit compared in fp32 too
    fp32 = choose_placement("cpu", "fp32")
    assert torch.allclose(RewardModel.from_pretrained(str(out), placement=fp32).score(PROMPTS, RESPONSES), expected,
                          atol=1e-5)


def test_lora_decoder_scores_the_same_after_merging(tmp_path, tiny_llama_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=64)
    trainer = RewardModelTrainer(lora_config(tmp_path, tiny_llama_dir, data, max_steps=3,
                                             lora_targets="q_proj,v_proj"))
    trainer.train()
    # the merge is exact up to fp32 rounding: the trained (fp32 master) weights against the reload, both in fp32
    reloaded = RewardModel.from_pretrained(str(tmp_path / "out"), placement=choose_placement("cpu", "fp32"))
    assert torch.allclose(trainer.reward_model.score(PROMPTS, RESPONSES), reloaded.score(PROMPTS, RESPONSES),
                          atol=1e-5)


def test_lora_targets_that_do_not_exist_are_a_user_error(tmp_path, tiny_bert_dir):
    from rewardkit.errors import RewardkitError

    data = write_pairs(tmp_path / "pairs.jsonl", n=16)
    with pytest.raises(RewardkitError, match="no such linear layer.*query"):
        RewardModelTrainer(lora_config(tmp_path, tiny_bert_dir, data, lora_targets="q_proj"))


def test_lora_resume_from_a_checkpoint_ends_with_the_same_weights(tmp_path, tiny_bert_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=96)
    straight = lora_config(tmp_path / "a", tiny_bert_dir, data, save_every=3, keep_checkpoints=5)
    RewardModelTrainer(straight).train()
    resumed_dir = tmp_path / "b" / "out"
    shutil.copytree(Path(straight.output_dir) / "checkpoints" / "step-3", resumed_dir / "checkpoints" / "step-3")
    RewardModelTrainer(lora_config(tmp_path / "b", tiny_bert_dir, data, save_every=3, resume=True)).train()
    a, b = load_file(Path(straight.output_dir) / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", ["tiny_bert_dir", "tiny_llama_dir"])
def test_gradient_checkpointing_gives_the_same_gradients(kind, request, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", n=16)
    grads = []
    for checkpointing in (False, True):
        trainer = RewardModelTrainer(small_config(tmp_path / str(checkpointing), request.getfixturevalue(kind), data,
                                                  freeze_layers=1, gradient_checkpointing=checkpointing))
        trainer.reward_model.train()
        trainer.accumulate_gradients(list(range(8)))
        grads.append({n: p.grad.clone() for n, p in trainer.reward_model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    bf16 = trainer.placement.precision == "bf16"
    for name in grads[0]:
        # fp32: exact up to summation order. bf16: checkpointing trains on padded batches, not packed ones, which
        # round differently through every layer (see tests/conftest.py RELATIVE_TOLERANCE): 2^-5 of the largest
        # gradient entry
        atol = RELATIVE_TOLERANCE["bf16"] * float(grads[0][name].abs().max()) if bf16 else 1e-6
        assert torch.allclose(grads[0][name], grads[1][name], atol=atol, rtol=0 if bf16 else 1e-4), name
