"""Loading a backbone without a reward head says so in one line instead of transformers' MISSING table; every other
loading report (unexpected weights, weights missing outside the head) still goes out as transformers writes it."""

import logging

import pytest
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoTokenizer, BertConfig, BertForMaskedLM, BertModel, LlamaConfig, LlamaModel

from rewardkit.models.presets import resolve_tokenizer_path
from rewardkit.models.checkpoint import load_with_reward_head
from rewardkit.models.reward_model import RewardModel

NEW_HEAD = "has no reward head; initialized a new one"


def bert_config(tokenizer):
    return BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128)


def save_backbone(model, tokenizer, path):
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bert_tokenizer():
    return AutoTokenizer.from_pretrained(resolve_tokenizer_path("minilm-l6"))


@pytest.fixture
def log(caplog, monkeypatch):
    """Every warning logged, transformers' included: its loggers print through their own handler and do not pass
    records up to the root logger where caplog listens (except under CI=true), so they are made to here."""
    monkeypatch.setattr(logging.getLogger("transformers"), "propagate", True)
    with caplog.at_level(logging.WARNING):
        yield caplog


def messages(log, text):
    return [r.getMessage() for r in log.records if text in r.getMessage()]


def load(path):
    return load_with_reward_head(str(path), AutoConfig.from_pretrained(path, num_labels=1), use_safetensors=True)


def test_a_bare_backbone_gets_one_line_instead_of_the_missing_table(tmp_path, bert_tokenizer, log):
    path = save_backbone(BertModel(bert_config(bert_tokenizer)), bert_tokenizer, tmp_path / "bert")
    model = RewardModel.from_pretrained(str(path))
    assert messages(log, "") == [
        f"rewardkit: {path} has no reward head; initialized a new one (classifier), random until trained"]
    assert model.model.classifier.weight.shape == (1, 32)


def test_a_decoder_backbone_names_its_score_head(tmp_path, log):
    tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer_path("smollm2-135m"))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, max_position_embeddings=256)
    path = save_backbone(LlamaModel(config), tokenizer, tmp_path / "llama")
    RewardModel.from_pretrained(str(path))
    assert messages(log, "") == [
        f"rewardkit: {path} has no reward head; initialized a new one (score), random until trained"]


def test_unexpected_weights_keep_transformers_report(tmp_path, bert_tokenizer, log):
    # a masked-LM checkpoint: its prediction head is unexpected here, and it has no pooler or classifier
    path = save_backbone(BertForMaskedLM(bert_config(bert_tokenizer)), bert_tokenizer, tmp_path / "mlm")
    load(path)
    (report,) = messages(log, "LOAD REPORT")
    assert "UNEXPECTED" in report and "cls.predictions.bias" in report
    assert messages(log, NEW_HEAD) == [
        f"rewardkit: {path} has no reward head; initialized a new one (bert.pooler, classifier), random until trained"]


def test_weights_missing_outside_the_head_keep_transformers_report(tmp_path, bert_tokenizer, log):
    path = save_backbone(BertModel(bert_config(bert_tokenizer)), bert_tokenizer, tmp_path / "broken")
    weights = load_file(path / "model.safetensors")
    del weights["encoder.layer.1.output.dense.weight"]
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    load(path)
    (report,) = messages(log, "LOAD REPORT")
    assert "encoder.layer.1.output.dense.weight" in report and "MISSING" in report
    assert len(messages(log, NEW_HEAD)) == 1


def test_a_complete_reward_model_loads_without_a_word(tiny_bert_dir, log):
    load(tiny_bert_dir)
    assert messages(log, "") == []
