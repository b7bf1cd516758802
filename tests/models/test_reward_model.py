"""The tokenization rule, pooling and save/load of RewardModel, on tiny random models."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rewardkit.device import choose_placement
from rewardkit.errors import RewardkitError
from rewardkit.models import RewardModel
from rewardkit.models.checkpoint import LENGTH_HEAD_FILE
from rewardkit.models.heads import final_linear, last_token_index, pool_padded
from rewardkit.models.tokenization import _truncate_left
from tests.conftest import build_tiny_reward_model

PROMPTS = ["\n\nHuman: What is the capital of France?\n\nAssistant:", "Say hi.", "\n\nHuman: Count to three.\n\nAssistant:"]
RESPONSES = [" Paris is the capital of France.", "Hi!", " One, two, three. That is all, and it is a longer reply."]


@pytest.fixture(scope="module", params=["bert", "llama"])
def tiny(request):
    return build_tiny_reward_model(request.param)


def test_truncate_left_cuts_prompt_first_then_response_start():
    assert _truncate_left([1, 2, 3], [4, 5], 5) == ([1, 2, 3], [4, 5], False)
    assert _truncate_left([1, 2, 3], [4, 5], 3) == ([3], [4, 5], True)
    assert _truncate_left([1, 2, 3], [4, 5, 6], 2) == ([], [5, 6], True)


def test_last_token_index_both_padding_sides():
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert last_token_index(right).tolist() == [2, 4]
    assert last_token_index(left).tolist() == [4, 4]


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_truncation_keeps_the_response_end(kind):
    rm = build_tiny_reward_model(kind)
    rm.max_length = 40
    response = " final answer: forty-two."
    full = rm.encode("\n\nHuman: " + "blah " * 200 + "\n\nAssistant:", response)
    short = rm.encode("Hi", response)
    assert full.truncated and not short.truncated
    assert len(full.input_ids) == 40
    # the response tokens (and what follows them) are identical at the end of both encodings
    tail = short.input_ids[short.response_start:]
    assert full.input_ids[-len(tail):] == tail


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_overlong_response_loses_its_start_not_its_end(kind):
    rm = build_tiny_reward_model(kind)
    rm.max_length = 24
    response = " ".join(f"w{i}" for i in range(60)) + " THE END"
    enc = rm.encode("prompt", response)
    assert enc.truncated and len(enc.input_ids) == 24
    assert "end" in rm.tokenizer.decode(enc.input_ids[-6:]).lower()


def test_scores_do_not_depend_on_padding_side_or_batch(tiny):
    alone = torch.stack([tiny.score([p], [r])[0] for p, r in zip(PROMPTS, RESPONSES)])
    encoded = [tiny.encode(p, r) for p, r in zip(PROMPTS, RESPONSES)]
    with torch.no_grad():
        tiny.eval()
        right = tiny(**tiny.collate(encoded, padding_side="right"))
        left = tiny(**tiny.collate(encoded, padding_side="left"))
    assert torch.allclose(alone, right, atol=1e-5)
    assert torch.allclose(alone, left, atol=1e-5)
    assert torch.allclose(tiny.score(PROMPTS, RESPONSES, batch_size=2), alone, atol=1e-5)


def test_decoder_pools_the_last_real_token_even_when_it_is_the_pad_token():
    rm = build_tiny_reward_model("llama")
    assert rm.tokenizer.pad_token_id == rm.tokenizer.eos_token_id  # the SmolLM2 trap
    enc = rm.encode("Say hi.", "Hi!")
    assert rm.tokenizer.eos_token_id in enc.input_ids[enc.response_start:]  # chat template closes the turn
    batch = rm.collate([enc, rm.encode("Say hi.", "Hi! " * 10)], padding_side="right")
    with torch.no_grad():
        rm.eval()
        hidden = rm.model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        expected = rm.model.score(hidden[0, len(enc.input_ids) - 1])[0]
        assert torch.allclose(rm(**batch)[0], expected, atol=1e-5)


def test_chat_template_renders_hh_dialogue_as_messages():
    rm = build_tiny_reward_model("llama")
    enc = rm.encode(PROMPTS[0], RESPONSES[0])
    text = rm.tokenizer.decode(enc.input_ids)
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in text
    assert "Human:" not in text
    assert rm.tokenizer.decode(enc.input_ids[enc.response_start:]).lstrip().startswith("Paris is the capital")


def test_a_prompt_rendered_by_the_chat_template_is_not_rendered_twice():
    rm = build_tiny_reward_model("llama")
    messages = [{"role": "user", "content": "What is 2+2?"}]
    rendered = rm.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rm.encode(rendered, "4").input_ids == rm.encode(messages, "4").input_ids
    assert rm.encode(rendered, "4").response_start == rm.encode(messages, "4").response_start


def test_encoder_uses_sentence_pairs():
    rm = build_tiny_reward_model("bert")
    enc = rm.encode("Say hi.", "Hi!")
    tokens = rm.tokenizer.convert_ids_to_tokens(enc.input_ids)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens.count("[SEP]") == 2
    assert enc.token_type_ids[enc.response_start] == 1 and enc.token_type_ids[1] == 0


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_llama_dir"])
def test_saved_model_loads_in_plain_transformers_with_identical_scores(fixture, request):
    path = request.getfixturevalue(fixture)
    rm = RewardModel.from_pretrained(str(path), placement=choose_placement("cpu", "fp32"))  # plain HF loads fp32
    ours = rm.score(PROMPTS, RESPONSES)
    hf_model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert hf_model.config.num_labels == 1
    theirs = []
    for prompt, response in zip(PROMPTS, RESPONSES):
        if rm.is_decoder:  # a user would apply the chat template to the conversation
            from rewardkit.data import conversation_from_text
            messages = conversation_from_text(prompt) + [{"role": "assistant", "content": response}]
            inputs = tokenizer.apply_chat_template(messages, return_tensors="pt", return_dict=True)
        else:
            inputs = tokenizer(prompt, response, return_tensors="pt")
        with torch.no_grad():
            theirs.append(hf_model(**inputs).logits[0, 0])
    assert torch.allclose(ours, torch.stack(theirs), atol=1e-5)


def test_temperature_and_max_length_survive_save(tmp_path):
    rm = build_tiny_reward_model("bert")
    rm.temperature, rm.max_length = 1.7, 96
    rm.save_pretrained(tmp_path)
    again = RewardModel.from_pretrained(str(tmp_path))
    assert (again.temperature, again.max_length) == (1.7, 96)
    assert [p.name for p in tmp_path.glob(".*")] == []  # written through a temporary file, none left behind
    (tmp_path / "rewardkit.json").write_text('{"max_length": 96,\n "temperature": ')  # cut short by a crash
    with pytest.raises(RewardkitError, match="rewardkit.json:2: not valid JSON"):
        RewardModel.from_pretrained(str(tmp_path))


def test_missing_model_folder_is_a_one_line_user_error(tmp_path):
    from rewardkit.errors import RewardkitError
    with pytest.raises(RewardkitError, match="not a model folder"):
        RewardModel.from_pretrained(str(tmp_path))
    with pytest.raises(RewardkitError, match="no such model folder"):
        RewardModel.from_pretrained(str(tmp_path / "nope"))


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_freezing_lower_layers_leaves_them_without_gradients(kind):
    rm = build_tiny_reward_model(kind)
    rm.freeze_lower_layers(1)
    batch = rm.collate([rm.encode("Say hi.", "Hi!"), rm.encode("Say hi.", "Go away.")])
    rm(**batch).sum().backward()
    grads = {name: p.grad is not None for name, p in rm.model.named_parameters()}
    embeddings = [n for n in grads if "embed" in n]
    assert embeddings and not any(grads[n] for n in embeddings)
    assert not any(g for n, g in grads.items() if ".layers.0." in n or ".layer.0." in n)
    assert all(g for n, g in grads.items() if ".layers.1." in n or ".layer.1." in n)
    with pytest.raises(RewardkitError, match="at least one must train"):
        rm.freeze_lower_layers(rm.model.config.num_hidden_layers)


# ------------------------------------------------------------------------------------------------ pooling

def test_pool_padded_reads_the_claimed_tokens_on_both_padding_sides():
    # two rows of real values 1..3 and 4..5 (hidden size 1), padded with 99 on the right, then on the left
    right = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 99.0]])[..., None]
    right_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    left = torch.tensor([[1.0, 2.0, 3.0], [99.0, 4.0, 5.0]])[..., None]
    left_mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    for hidden, mask in ((right, right_mask), (left, left_mask)):
        assert pool_padded(hidden, mask, "cls")[:, 0].tolist() == [1.0, 4.0]
        assert pool_padded(hidden, mask, "last")[:, 0].tolist() == [3.0, 5.0]
        assert pool_padded(hidden, mask, "mean")[:, 0].tolist() == [2.0, 4.5]
        # responses starting at the 2nd real token of row 0 and the 1st of row 1 (counted among real tokens)
        assert pool_padded(hidden, mask, "response", torch.tensor([1, 0]))[:, 0].tolist() == [2.5, 4.5]
        assert pool_padded(hidden, mask, "response", torch.tensor([2, 1]))[:, 0].tolist() == [3.0, 5.0]


POOLINGS_BY_KIND = [("bert", "cls"), ("bert", "mean"), ("bert", "response"), ("bert", "last"), ("llama", "last"),
                    ("llama", "mean"), ("llama", "response")]


def _expected_reward(rm, encoded):
    """The reward of one text computed by hand: the backbone on the text alone, the claimed token(s), the head."""
    ids = torch.tensor([encoded.input_ids])
    kwargs = {} if rm.is_decoder else {"token_type_ids": torch.tensor([encoded.token_type_ids])}
    hidden = rm.model.base_model(input_ids=ids, **kwargs).last_hidden_state[0]
    pooled = {"cls": hidden[0], "last": hidden[-1], "mean": hidden.mean(0),
              "response": hidden[encoded.response_start:].mean(0)}[rm.pooling]
    return rm._head(pooled[None])[0]


@pytest.mark.parametrize("kind,pooling", POOLINGS_BY_KIND)
def test_each_pooling_scores_the_tokens_it_claims_with_either_padding_side(kind, pooling):
    rm = build_tiny_reward_model(kind, pooling=pooling).eval()
    encoded = [rm.encode(p, r) for p, r in zip(PROMPTS, RESPONSES)]
    assert len({len(e.input_ids) for e in encoded}) == 3  # every batch below pads
    with torch.no_grad():
        expected = torch.stack([_expected_reward(rm, e) for e in encoded])
        for side in ("left", "right"):  # an encoder pads right whatever it is asked
            torch.testing.assert_close(rm(**rm.collate(encoded, padding_side=side)), expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(rm.score(PROMPTS, RESPONSES, batch_size=2), expected, atol=1e-5, rtol=1e-4)
        # the packed training batch reads the same tokens
        torch.testing.assert_close(rm(**rm._pack([encoded[:1], encoded[1:]])), expected, atol=1e-5, rtol=1e-4)
    if pooling != ("last" if rm.is_decoder else "cls"):  # another pooling gives other rewards than the native one
        native = build_tiny_reward_model(kind).eval()
        assert not torch.allclose(native.score(PROMPTS, RESPONSES), expected, atol=1e-4)
    if pooling == "response":  # and it is not the mean over the whole text
        assert all(0 < e.response_start < len(e.input_ids) - 1 for e in encoded)
        whole = build_tiny_reward_model(kind, pooling="mean").eval()
        assert not torch.allclose(whole.score(PROMPTS, RESPONSES), expected, atol=1e-4)


def test_response_pooling_of_an_empty_response_reads_the_last_token():
    rm = build_tiny_reward_model("llama", pooling="response").eval()
    encoded = rm.encode(PROMPTS[0], "")
    with torch.no_grad():
        hidden = rm.model.base_model(input_ids=torch.tensor([encoded.input_ids])).last_hidden_state[0]
        start = min(encoded.response_start, len(encoded.input_ids) - 1)  # nothing after the prompt: its last token
        expected = rm._head(hidden[start:].mean(0)[None])
        torch.testing.assert_close(rm.score([PROMPTS[0]], [""]), expected, atol=1e-5, rtol=1e-4)


def test_a_plain_folder_reads_its_reward_the_hf_class_way_unless_asked_or_saved_otherwise(tmp_path):
    import json

    build_tiny_reward_model("bert").save_pretrained(tmp_path)
    (tmp_path / "rewardkit.json").unlink()  # a plain HF folder, as a sentence-transformers model ships
    (tmp_path / "1_Pooling").mkdir()  # trained with mean pooling: what plain transformers computes is still CLS
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    assert RewardModel.from_pretrained(str(tmp_path)).pooling == "cls"
    assert RewardModel.from_pretrained(str(tmp_path), pooling="mean").pooling == "mean"
    (tmp_path / "rewardkit.json").write_text(json.dumps({"pooling": "last"}))
    assert RewardModel.from_pretrained(str(tmp_path)).pooling == "last"


def test_pooling_survives_save_and_a_decoder_refuses_cls(tmp_path):
    build_tiny_reward_model("bert", pooling="mean").save_pretrained(tmp_path)
    assert RewardModel.from_pretrained(str(tmp_path)).pooling == "mean"
    assert RewardModel.from_pretrained(str(tmp_path), pooling="last").pooling == "last"
    with pytest.raises(RewardkitError, match="decoder"):
        build_tiny_reward_model("llama", pooling="cls")
    with pytest.raises(RewardkitError, match="choose one of"):
        build_tiny_reward_model("bert", pooling="max")


# ------------------------------------------------------------------------------------------------ the length head

@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_length_head_reads_the_reward_heads_features_and_survives_save(kind, tmp_path):
    rm = build_tiny_reward_model(kind, pooling="mean" if kind == "bert" else None).eval()
    rm.add_length_head()
    with torch.no_grad():
        rm.length_head.weight.normal_()
        encoded = [rm.encode(p, r) for p, r in zip(PROMPTS, RESPONSES)]
        both = rm(**rm.collate(encoded), with_length=True)
        assert both.shape == (3, 2)
        torch.testing.assert_close(both[:, 0], rm.score(PROMPTS, RESPONSES), atol=1e-5, rtol=1e-4)
        # the length head is a linear map of what the reward head's last layer reads
        features = []
        hook = final_linear(rm.model).register_forward_pre_hook(lambda m, args: features.append(args[0]))
        rm(**rm.collate(encoded))
        hook.remove()
        torch.testing.assert_close(both[:, 1], rm.length_head(features[0].reshape(3, -1))[:, 0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(rm(**rm._pack([encoded[:2], encoded[2:]]), with_length=True), both,
                                   atol=1e-5, rtol=1e-4)
    rm.save_pretrained(tmp_path)
    assert (tmp_path / LENGTH_HEAD_FILE).exists()
    again = RewardModel.from_pretrained(str(tmp_path), placement=choose_placement("cpu", "fp32")).eval()  # as saved
    with torch.no_grad():
        torch.testing.assert_close(again(**again.collate(encoded), with_length=True), both, atol=1e-5, rtol=1e-4)
    # plain transformers loads the reward head alone: one label, the reward without the length head
    hf_model = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert hf_model.config.num_labels == 1
    if kind == "llama":
        with torch.no_grad():
            theirs = hf_model(**rm.collate(encoded[:1])).logits[0, 0]
        torch.testing.assert_close(theirs, both[0, 0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_a_deep_copy_scores_with_its_own_head(kind):
    import copy

    rm = build_tiny_reward_model(kind)
    encoded = rm.encode_many(["hi there"], ["a response"])
    original = rm.score_encoded(encoded)
    twin = copy.deepcopy(rm)  # e.g. a frozen reference copy
    with torch.no_grad():
        final_linear(twin.model).weight.zero_()
        if final_linear(twin.model).bias is not None:
            final_linear(twin.model).bias.zero_()
    assert torch.equal(twin.score_encoded(encoded), torch.zeros(1))
    assert torch.equal(rm.score_encoded(encoded), original)
