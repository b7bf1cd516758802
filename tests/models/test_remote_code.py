"""A saved folder scores the same in plain transformers as in rewardkit, for every pooling (fp32 both): the HF class's
own pooling natively, any other through the folder's modeling_rewardkit.py (trust_remote_code=True)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rewardkit.device import choose_placement
from rewardkit.models import RewardModel
from rewardkit.models.remote_code import MODULE_FILE
from tests.conftest import build_tiny_reward_model
from tests.models.test_trainer import small_config, write_pairs

PROMPTS = ["Say hi.", "What is two plus two?", ""]
RESPONSES = ["Hi there, nice to meet you!", "Four.", "A response without a prompt"]
FP32 = choose_placement("cpu", "fp32")


def plain_scores(folder, encoded=None) -> torch.Tensor:
    """The README's snippet, one text at a time: an encoder reads (prompt, response) as a sentence pair; a decoder's
    text is rewardkit's rendering of the conversation (its chat template), given as token ids."""
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        if encoded is not None:
            return torch.stack([model(input_ids=torch.tensor([e.input_ids])).logits[0, 0] for e in encoded])
        return torch.stack([model(**(tokenizer(p, r, return_tensors="pt") if p else tokenizer(r, return_tensors="pt")))
                            .logits[0, 0] for p, r in zip(PROMPTS, RESPONSES)])


@pytest.mark.parametrize("kind,pooling", [("bert", "cls"), ("bert", "mean"), ("bert", "response"), ("bert", "last"),
                                          ("llama", "last"), ("llama", "mean")])
def test_plain_transformers_scores_every_pooling_as_rewardkit_does(tmp_path, kind, pooling):
    build_tiny_reward_model(kind, pooling=pooling).save_pretrained(tmp_path)
    native = (kind, pooling) in (("bert", "cls"), ("llama", "last"))
    assert (tmp_path / MODULE_FILE).exists() != native
    ours = RewardModel.from_pretrained(str(tmp_path), placement=FP32)
    expected = ours.score(PROMPTS, RESPONSES)
    assert float(expected.max() - expected.min()) > 1e-4  # the texts score differently: a mix-up would show
    got = plain_scores(tmp_path, ours.encode_many(PROMPTS, RESPONSES) if kind == "llama" else None)
    assert torch.allclose(got, expected, atol=1e-6), (got, expected)  # fp32 both: summation order only


def test_a_folder_resaved_with_the_native_pooling_loses_the_code(tmp_path):
    build_tiny_reward_model("bert", pooling="mean").save_pretrained(tmp_path)
    reloaded = RewardModel.from_pretrained(str(tmp_path), placement=FP32, pooling="cls")
    reloaded.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert not (tmp_path / MODULE_FILE).exists() and "auto_map" not in config and "rewardkit_pooling" not in config


def test_a_decoder_with_response_pooling_gets_no_code_plain_transformers_cannot_run(tmp_path):
    build_tiny_reward_model("llama", pooling="response").save_pretrained(tmp_path)
    assert not (tmp_path / MODULE_FILE).exists()
    assert "auto_map" not in json.loads((tmp_path / "config.json").read_text())


def test_a_lora_model_trained_with_mean_pooling_scores_the_same_in_plain_transformers(tmp_path, tiny_bert_dir):
    from rewardkit.models.trainer import RewardModelTrainer

    data = write_pairs(tmp_path / "pairs.jsonl", n=32)
    RewardModelTrainer(small_config(tmp_path, tiny_bert_dir, data, lora_rank=4, pooling="mean", max_steps=2,
                                    precision="fp32")).train()
    expected = RewardModel.from_pretrained(str(tmp_path / "out"), placement=FP32).score(PROMPTS, RESPONSES)
    assert torch.allclose(plain_scores(tmp_path / "out"), expected, atol=1e-6)
