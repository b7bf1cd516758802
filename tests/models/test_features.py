"""Frozen-backbone features: what they are (the pooled states the head reads, a layer range's mean), the on-disk
cache (keys, reuse, exactness, safety against partial and concurrent writes) and its one-line errors."""

from __future__ import annotations

import torch
import pytest

from rewardkit.device import choose_placement
from rewardkit.errors import RewardkitError
from rewardkit.models.features import (FeatureCache, backbone_digest, extract_features, feature_setting,
                                       parse_feature_layers, text_key)
from rewardkit.models.heads import mean_of_layers
from tests.conftest import build_tiny_reward_model

FP32 = choose_placement("cpu", "fp32")
BF16 = choose_placement("cpu", "bf16")
PROMPTS = ["Say hi.", "What is two plus two?", "", "Say hi."]
RESPONSES = ["Hi there, nice to meet you!", "Four.", "A response without a prompt", "Hello!"]


def encoded(model):
    return model.encode_many(PROMPTS, RESPONSES)


@pytest.mark.parametrize("kind,pooling", [("bert", "cls"), ("bert", "mean"), ("bert", "response"), ("llama", "last"),
                                          ("llama", "mean")])
def test_features_are_the_pooled_states_the_head_reads(kind, pooling):
    model = build_tiny_reward_model(kind, pooling=pooling)
    features, stats = extract_features(model, encoded(model), FP32, batch_size=3)
    assert features.dtype == torch.float32 and features.shape == (4, 32)
    assert (stats.read, stats.computed) == (0, 4)
    with torch.no_grad():  # the head on the features gives the model's own scores (fp32; other batches)
        from_features = model._head(features)
    assert torch.allclose(from_features, model.score(PROMPTS, RESPONSES), atol=1e-6, rtol=0)


def test_a_layer_range_is_the_mean_of_those_layers_hidden_states_then_pooled():
    model = build_tiny_reward_model("bert", pooling="mean")
    batch = model.collate(encoded(model))
    with torch.no_grad():
        out = model.model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     token_type_ids=batch["token_type_ids"], output_hidden_states=True)
        layers = out.hidden_states  # embeddings, layer 1, layer 2
        mask = batch["attention_mask"][..., None].float()
        expected = (((layers[1] + layers[2]) / 2) * mask).sum(1) / mask.sum(1)
        model.feature_layers = (1, 2)
        got = model.pooled_states(**batch)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, ((layers[2] * mask).sum(1) / mask.sum(1)), atol=1e-3)  # not the last layer alone
    assert torch.equal(mean_of_layers(layers, (2, 2)), layers[2])


@pytest.mark.parametrize("spec,expected", [("", None), ("4-6", (4, 6)), ("6", (6, 6)), ("0-6", (0, 6))])
def test_feature_layers_parse(spec, expected):
    assert parse_feature_layers(spec, 6) == expected


@pytest.mark.parametrize("spec", ["5-3", "0-7", "7", "a-b", "1-2-3", "-1"])
def test_bad_feature_layers_are_one_line_errors(spec):
    with pytest.raises(RewardkitError, match="--feature-layers") as error:
        parse_feature_layers(spec, 6)
    assert "\n" not in str(error.value)


def test_cached_features_equal_computed_ones_exactly_and_skip_the_backbone(tmp_path, monkeypatch):
    model = build_tiny_reward_model("bert", pooling="mean")
    texts = encoded(model)
    without, _ = extract_features(model, texts, FP32, batch_size=2)
    first, stats1 = extract_features(model, texts, FP32, batch_size=2, cache_root=tmp_path)
    assert (stats1.read, stats1.computed) == (0, 4)
    calls = []
    monkeypatch.setattr(model, "pooled_states", lambda **kw: calls.append(kw) or 1 / 0)  # the backbone must not run
    second, stats2 = extract_features(model, texts, FP32, batch_size=2, cache_root=tmp_path)
    assert (stats2.read, stats2.computed) == (4, 0) and not calls
    assert torch.equal(first, without) and torch.equal(second, without)  # exact, fp32
    with torch.no_grad():
        assert torch.equal(model._head(second), model._head(without))


def test_a_partly_cached_set_computes_only_the_new_texts(tmp_path):
    model = build_tiny_reward_model("bert", pooling="mean")
    texts = encoded(model)
    extract_features(model, texts[:2], FP32, cache_root=tmp_path)
    features, stats = extract_features(model, texts, FP32, cache_root=tmp_path)
    assert (stats.read, stats.computed) == (2, 2)
    alone, _ = extract_features(model, texts, FP32)
    assert torch.allclose(features, alone, atol=1e-6, rtol=0)  # other batches: summation order only


def test_repeated_texts_are_computed_once():
    model = build_tiny_reward_model("bert")
    texts = encoded(model)
    features, stats = extract_features(model, texts + texts[:1], FP32)
    assert (stats.texts, stats.distinct, stats.computed) == (5, 4, 4)
    assert torch.equal(features[4], features[0])


def test_the_cache_key_holds_backbone_pooling_layers_precision_and_tokens(tmp_path):
    model = build_tiny_reward_model("bert", pooling="mean")
    base = feature_setting(model, FP32)
    assert feature_setting(model, BF16) != base
    other_weights = build_tiny_reward_model("bert", seed=1, pooling="mean")
    assert feature_setting(other_weights, FP32)["backbone"] != base["backbone"]
    model.feature_layers = (1, 2)
    assert feature_setting(model, FP32) != base
    model.feature_layers = None
    # the head is not part of the backbone: a trained head reads the same cached features
    before = backbone_digest(model)
    with torch.no_grad():
        model.model.classifier.weight.add_(1.0)
        model.model.bert.pooler.dense.weight.add_(1.0)
    assert backbone_digest(model) == before
    with torch.no_grad():
        model.model.bert.encoder.layer[0].output.dense.weight[0, 0] += 1e-3
    assert backbone_digest(model) != before
    a, b = encoded(model)[:2]
    assert text_key(a, False) != text_key(b, False)
    moved = type(a)(a.input_ids, a.token_type_ids, a.response_start + 1, a.truncated)
    assert text_key(moved, False) == text_key(a, False) and text_key(moved, True) != text_key(a, True)


def test_partial_and_foreign_files_are_ignored_and_a_damaged_chunk_is_recomputed(tmp_path, capsys):
    model = build_tiny_reward_model("bert", pooling="mean")
    texts = encoded(model)
    _, stats = extract_features(model, texts, FP32, cache_root=tmp_path)
    folder = tmp_path / stats.cache.split("/")[-1]
    chunks = list(folder.glob("chunk-*.safetensors"))
    assert len(chunks) == 1 and not list(folder.glob(".*.tmp"))  # written whole, then renamed
    (folder / ".chunk-1.safetensors.123.abcd.tmp").write_bytes(b"half a file")  # a writer that died mid-way
    chunks[0].write_bytes(chunks[0].read_bytes()[:40])  # damaged
    features, stats = extract_features(model, texts, FP32, cache_root=tmp_path)
    assert (stats.read, stats.computed) == (0, 4)
    assert "skipping unreadable feature chunk" in capsys.readouterr().err


def test_two_writers_of_one_setting_both_leave_whole_chunks(tmp_path):
    import threading

    model = build_tiny_reward_model("bert", pooling="mean")
    setting = feature_setting(model, FP32)
    keys = [bytes([i]) * 16 for i in range(50)]
    values = torch.arange(50 * 32, dtype=torch.float32).reshape(50, 32)

    def writer():
        cache = FeatureCache(tmp_path, setting)
        for start in range(0, 50, 5):
            cache.write(keys[start:start + 5], values[start:start + 5])

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = FeatureCache(tmp_path, setting).read(keys)
    assert len(found) == 50 and all(torch.equal(found[k], values[i]) for i, k in enumerate(keys))
    assert len(list(FeatureCache(tmp_path, setting).folder.glob("chunk-*"))) == 30


def test_bf16_features_are_computed_with_the_weights_inference_loads(tmp_path):
    """In bf16 the features are those of the bf16 working weights (what `score` loads), stored in fp32."""
    from rewardkit.models import RewardModel

    model = build_tiny_reward_model("bert", pooling="mean")
    model.save_pretrained(tmp_path / "m")
    features, stats = extract_features(model, encoded(model), BF16, batch_size=4)
    assert features.dtype == torch.float32 and stats.precision == "bf16"
    loaded = RewardModel.from_pretrained(str(tmp_path / "m"), placement=BF16)
    with torch.no_grad():
        direct = loaded.pooled_states(**loaded.collate(encoded(loaded))).float()
    assert torch.equal(features, direct)  # same weights, same batch: bit for bit
