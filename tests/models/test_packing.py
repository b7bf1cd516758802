"""Packed training batches: no padding, and a decoder group's shared prompt encoded once, with the padded rewards."""

from __future__ import annotations

import pytest
import torch

from rewardkit.models.packing import pack, pool_packed, row_layout, row_width, shared_prefix_length, shared_prefix_pays
from tests.conftest import build_tiny_reward_model

PROMPTS = [
    "\n\nHuman: hello there, how are you today?\n\nAssistant:",
    "\n\nHuman: what is 2+2? Explain slowly.\n\nAssistant: hm\n\nHuman: go on\n\nAssistant:",
]
RESPONSES = [["I am fine", "Bad, thanks for asking, a really bad day"],
             ["four", "five", "It is four, because two plus two is four"]]


@pytest.fixture(scope="module")
def llama():
    return build_tiny_reward_model("llama")


@pytest.fixture(scope="module")
def bert():
    return build_tiny_reward_model("bert")


def test_shared_prefix_length_stops_at_the_first_difference_and_keeps_a_last_token():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 9]]) == 2
    assert shared_prefix_length([[7, 1], [8, 1]]) == 0
    assert shared_prefix_length([[5, 6], [5, 6]]) == 1


def test_a_shared_prefix_pays_unless_many_long_responses_make_its_row_attention_costly():
    weight = 2 * 30 * 576 / 106e6  # SmolLM2-135M: attended pair vs token matmul cost
    assert shared_prefix_pays([200, 200], 150, weight)  # 250 + 20 < 400 + 26
    assert not shared_prefix_pays([600] * 8, 100, weight)  # 4100 + 5480 > 4800 + 939
    assert not shared_prefix_pays([5, 6], 0, weight)
    assert shared_prefix_pays([5, 6], 1, 0.0)


def test_decoder_pack_layout_by_hand():
    batch = pack([[[1, 2, 3, 4], [1, 2, 5]], [[7, 8], [9]], [[6, 6]]], causal=True)
    # row 0: prefix [1, 2] then [3, 4] and [5]; the group without a common prefix: a row per text; a single text
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 7, 8, 9, 6, 6]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 2, 0, 1, 0, 0, 1]]
    assert batch["row_lengths"].tolist() == [5, 2, 1, 2]
    assert batch["segments"].tolist() == [0, 0, 1, 1, 2, 1, 1, 1, 1, 1]
    assert batch["pool_index"].tolist() == [3, 4, 6, 7, 9]  # each text's last token
    assert batch["pool_owner"].tolist() == [0, 1, 2, 3, 4]
    lengths, masks, causal = row_layout(batch["row_lengths"], batch["segments"])
    assert lengths == [5, 2, 1, 2] and causal
    assert masks[0][0, 0].int().tolist() == [[1, 0, 0, 0, 0],
                                             [1, 1, 0, 0, 0],
                                             [1, 1, 1, 0, 0],  # first text: prefix and itself
                                             [1, 1, 1, 1, 0],
                                             [1, 1, 0, 0, 1]]  # second text: prefix and itself, not the first
    assert masks[1:] == [None, None, None]  # a row of one text: plain causal attention
    assert row_width([[1, 2, 3, 4], [1, 2, 5]], causal=True) == 5 and row_width([[7, 8], [9]], causal=True) == 2


def test_encoder_pack_layout_by_hand():
    batch = pack([[[101, 5, 102], [101, 6, 7, 102]]], causal=False, token_types=[[[0, 0, 0], [0, 1, 1, 1]]])
    assert batch["input_ids"].tolist() == [[101, 5, 102, 101, 6, 7, 102]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1]]
    assert batch["pool_index"].tolist() == [0, 3]  # CLS
    assert batch["pool_owner"].tolist() == [0, 1]
    assert batch["row_lengths"].tolist() == [3, 4] and "segments" not in batch
    assert row_layout(batch["row_lengths"], None) == ([3, 4], [None, None], False)


def _groups(rm):
    groups = [[rm.encode(prompt, r) for r in responses] for prompt, responses in zip(PROMPTS, RESPONSES)]
    # a pair whose prompt lost a different number of old tokens in each text, so the texts share no prefix
    prompt = "\n\nHuman: " + " ".join(f"word{i}" for i in range(rm.max_length)) + "\n\nAssistant:"
    groups.append([rm.encode(prompt, "no"), rm.encode(prompt, "yes " * 10)])
    assert all(e.truncated for e in groups[-1])
    return groups + [[rm.encode(PROMPTS[0], "a single rated response")]]


def _rewards_and_grads(rm, batch):
    rm.zero_grad(set_to_none=True)
    rewards = rm(**batch)
    (rewards.square().sum() + rewards[0]).backward()
    return rewards.detach(), {n: p.grad.clone() for n, p in rm.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind,padding_side,pooling", [
    ("llama", "left", None), ("llama", "right", None), ("bert", "right", None),
    ("llama", "left", "mean"), ("llama", "right", "mean"), ("bert", "right", "mean"), ("bert", "right", "last"),
    ("llama", "left", "response"), ("llama", "right", "response"), ("bert", "right", "response")])
def test_packed_forward_and_backward_equal_the_padded_forward(kind, padding_side, pooling, llama, bert,
                                                              monkeypatch):
    rm = (llama if kind == "llama" else bert) if pooling is None else build_tiny_reward_model(kind, pooling=pooling)
    monkeypatch.setattr(rm.tokenizer, "padding_side", padding_side)
    groups = _groups(rm)
    texts = [e for g in groups for e in g]
    packed = rm.collate_groups(groups)
    assert rm._packing_ok and "row_lengths" in packed and packed["pool_owner"][-1] == len(texts) - 1
    if kind == "llama":  # the two prompts are not repeated
        assert packed["input_ids"].shape[1] < sum(len(e.input_ids) for e in texts) - len(groups[1][0].input_ids)
    rewards, grads = _rewards_and_grads(rm, packed)
    expected, expected_grads = _rewards_and_grads(rm, rm.collate(texts))
    torch.testing.assert_close(rewards, expected, atol=1e-5, rtol=1e-4)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], atol=1e-5, rtol=1e-3, msg=name)


@pytest.mark.parametrize("batch_size", [2, 32])
def test_scoring_packs_texts_that_share_a_prompt_with_the_padded_rewards(llama, batch_size, monkeypatch):
    prompts = [PROMPTS[0]] * 2 + [PROMPTS[1]] * 3 + [PROMPTS[0]]
    responses = [r for rs in RESPONSES for r in rs] + ["and a third answer to the first prompt"]
    encoded = llama.encode_many(prompts, responses)
    with torch.no_grad():
        expected = llama(**llama.collate(encoded))
    packed_groups = []
    original = llama._pack
    monkeypatch.setattr(llama, "_pack", lambda groups: packed_groups.append(len(groups)) or original(groups))
    torch.testing.assert_close(llama.score(prompts, responses, batch_size=batch_size), expected, atol=1e-5, rtol=1e-4)
    assert packed_groups and sum(packed_groups) <= (4 if batch_size == 2 else 2)  # texts grouped by prompt


def test_a_backbone_that_cannot_pack_trains_on_padded_batches():
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    from rewardkit.models import RewardModel
    from rewardkit.models.presets import resolve_tokenizer_path

    # RoBERTa offsets its positions by the padding index, so explicit positions from 0 change its rewards
    tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer_path("minilm-l6"))
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    rm = RewardModel(RobertaForSequenceClassification(config), tokenizer, max_length=64)
    groups = [[rm.encode(PROMPTS[0], r) for r in RESPONSES[0]]]
    with pytest.warns(UserWarning, match="padded batches"):
        batch = rm.collate_groups(groups)
    assert "row_lengths" not in batch and rm._packing_ok is False
    assert "row_lengths" not in rm.collate_groups(groups)  # checked once


def test_a_sliding_window_shorter_than_max_length_keeps_batches_padded():
    from transformers import AutoTokenizer, MistralConfig, MistralForSequenceClassification

    from rewardkit.models import RewardModel
    from rewardkit.models.presets import resolve_tokenizer_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer_path("smollm2-135m"))
    torch.manual_seed(0)
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           num_key_value_heads=1, intermediate_size=64, num_labels=1, sliding_window=8,
                           pad_token_id=tokenizer.pad_token_id)
    rm = RewardModel(MistralForSequenceClassification(config), tokenizer, max_length=128)
    # short texts pass a packed-against-padded check (the window never binds), long ones would not: packing stays off
    short = [[rm.encode("Hi", r) for r in ("a", "b")]]
    with pytest.warns(UserWarning, match="sliding window of 8 tokens"):
        assert "row_lengths" not in rm.collate_groups(short)
    long = [[rm.encode(PROMPTS[1], r) for r in RESPONSES[1]]]
    texts = [e for g in long for e in g]
    with torch.no_grad():
        torch.testing.assert_close(rm.score_encoded(texts), rm(**rm.collate(texts)), atol=1e-5, rtol=1e-4)
    rm.max_length = 8  # a window no text can outgrow does not bind
    assert rm._binding_sliding_window() is None


def test_group_length_is_the_attention_row_width(llama, bert):
    pair = [llama.encode(PROMPTS[0], r) for r in RESPONSES[0]]
    k = shared_prefix_length([e.input_ids for e in pair])
    assert llama.group_length(pair) == k + sum(len(e.input_ids) - k for e in pair) < 2 * len(pair[1].input_ids)
    bert_pair = [bert.encode(PROMPTS[0], r) for r in RESPONSES[0]]
    assert bert.group_length(bert_pair) == max(len(e.input_ids) for e in bert_pair)


def test_attention_runs_in_whichever_precision_was_measured_faster(monkeypatch, tmp_path):
    from rewardkit.models import packing

    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path))
    seconds = {torch.bfloat16: 2.0, torch.float32: 1.0}
    monkeypatch.setattr(packing, "_time_attention", lambda dtype, *args: seconds[dtype])
    packing.attention_dtype.cache_clear()
    try:
        assert packing.attention_dtype(torch.bfloat16, "cpu", 4, 4, 8, 64, True) == torch.float32
        seconds[torch.bfloat16] = 0.5
        assert packing.attention_dtype(torch.bfloat16, "cpu", 4, 4, 8, 64, True) == torch.float32  # this process
        packing.attention_dtype.cache_clear()
        # a later process (a resumed run) reads the machine's measurement instead of timing again
        assert packing.attention_dtype(torch.bfloat16, "cpu", 4, 4, 8, 64, True) == torch.float32
        assert packing.attention_dtype(torch.bfloat16, "cpu", 4, 4, 8, 128, True) == torch.bfloat16  # another shape
        assert packing.attention_dtype(torch.float32, "cpu", 4, 4, 8, 64, True) == torch.float32
        assert (tmp_path / "attention_dtype.json").exists()
    finally:
        packing.attention_dtype.cache_clear()


def test_packed_bf16_attention_upcast_to_fp32_matches_the_fp32_attention(monkeypatch):
    from rewardkit.models import packing

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 10, 8) for _ in range(3))
    layout = packing.row_layout(torch.tensor([4, 6]), None)
    expected, _ = packing.packed_attention(None, q, k, v, None, **{packing.LAYOUT_KWARG: layout})
    for chosen in (torch.float32, torch.bfloat16):
        monkeypatch.setattr(packing, "attention_dtype", lambda *args, chosen=chosen: chosen)
        got, _ = packing.packed_attention(None, *(t.bfloat16() for t in (q, k, v)), None,
                                          **{packing.LAYOUT_KWARG: layout})
        assert got.dtype == torch.bfloat16
        # inputs rounded to bf16 (2^-9 relative), attention in fp32 or bf16, output rounded: within 2^-5 of max
        assert torch.allclose(got.float(), expected, atol=2 ** -5 * float(expected.abs().max()))


def test_mean_pooling_of_a_long_packed_bf16_text_sums_in_fp32():
    # 300 states of 1.0 + i/1000 in bf16: their mean, summed at bf16's 8 bits one addition at a time, drifted by over
    # 10%; summed in fp32 it is the mean of the bf16 values, rounded once to bf16 (relative error <= 2^-8)
    hidden = (1.0 + torch.arange(300, dtype=torch.float32)[:, None] / 1000).expand(300, 4).to(torch.bfloat16)
    index, owner = torch.arange(300), torch.zeros(300, dtype=torch.long)
    pooled = pool_packed(hidden, index, owner)
    expected = hidden.float().mean(0)
    assert pooled.dtype == torch.bfloat16
    assert torch.allclose(pooled.float(), expected, rtol=2 ** -8, atol=0)


def test_a_bf16_training_forward_keeps_packing_on():
    # the check compares pooled states relative to their norm, so bf16 rounding passes it (the old check compared a
    # fresh head's near-zero rewards and turned packing off for minilm-l6 in every bf16 train-rm)
    from rewardkit.models.precision import WorkingWeights

    model = build_tiny_reward_model("bert")
    model.pooling = "mean"
    encoded = model.encode_many(["a question about cats"] * 4, ["cats sleep a lot " * 8, "no", "they purr " * 5, "?"])
    with WorkingWeights(model, torch.bfloat16).in_use():  # the bf16 training forward's weights
        assert model._packing_works([encoded[:2], encoded[2:]])
