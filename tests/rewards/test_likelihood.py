"""`likelihood`: log-probabilities of the response under a causal LM (tiny models built from configs; the real
smollm2-135m preset only under -m slow)."""

import math

import pytest
import torch

from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import ResponseError
from rewardkit.rewards.likelihood import Likelihood
from rewardkit.rewards.spec import build_reward
from tests.rewards.helpers import bpe_tokenizer

TEXTS = ["The cat sat on the mat.", "Dogs bark", "café au lait, s'il vous plaît"]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from rewardkit.models.presets import resolve_tokenizer_path

    return AutoTokenizer.from_pretrained(resolve_tokenizer_path("smollm2-135m"))


def tiny_lm(tokenizer, seed=0, uniform=False):
    """A random 2-layer Llama causal LM over the SmolLM2 vocabulary; `uniform`: its output layer zeroed, so every
    token has probability 1/V whatever the context."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    if uniform:
        with torch.no_grad():
            model.lm_head.weight.zero_()
    return model.eval()


@pytest.fixture(scope="module")
def uniform(tokenizer):
    return tiny_lm(tokenizer, uniform=True)


@pytest.fixture(scope="module")
def random_lm(tokenizer):
    return tiny_lm(tokenizer, seed=3)


def n_tokens(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def test_a_uniform_model_gives_minus_log_v_per_token(uniform, tokenizer):
    v = len(tokenizer)  # 49152: every token has log-probability -log V
    assert v == 49152
    prompts = ["Say something.", [{"role": "user", "content": "Hi"}], ""]
    mean = Likelihood.from_model(uniform, tokenizer)(prompts, TEXTS)
    assert mean.tolist() == pytest.approx([-math.log(v)] * 3, abs=1e-4)  # -10.8028
    total = Likelihood.from_model(uniform, tokenizer, reduce="sum")(prompts, TEXTS)
    assert total.tolist() == pytest.approx([-n_tokens(tokenizer, t) * math.log(v) for t in TEXTS], rel=1e-5)
    perplexity = Likelihood.from_model(uniform, tokenizer, reduce="neg_perplexity", condition=False)(prompts, TEXTS)
    assert perplexity.tolist() == pytest.approx([-v] * 3, rel=1e-4)  # perplexity of a uniform model: V


def manual_logprobs(model, context, ids):
    """log p(ids[t] | context, ids[<t]) by a plain forward pass over the one sequence."""
    sequence = torch.tensor([context + ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=sequence).logits.float(), dim=-1)[0]
    return [float(logprobs[len(context) + t - 1, token]) for t, token in enumerate(ids)]


def test_scores_equal_a_plain_forward_pass_whatever_the_batch(random_lm, tokenizer):
    prompts = ["Tell me about cats.", "Bark?", "Order a coffee."]
    reward = Likelihood.from_model(random_lm, tokenizer, batch_size=2)  # padding: two rows of different lengths
    scores = reward(prompts, TEXTS)
    for k, (prompt, text) in enumerate(zip(prompts, TEXTS)):
        ids = tokenizer(text, add_special_tokens=False).input_ids
        expected = manual_logprobs(random_lm, tokenizer(prompt).input_ids, ids)
        assert float(scores[k]) == pytest.approx(sum(expected) / len(expected), abs=1e-4)
    alone = [float(Likelihood.from_model(random_lm, tokenizer)([p], [t])[0]) for p, t in zip(prompts, TEXTS)]
    assert scores.tolist() == pytest.approx(alone, abs=1e-4)


def test_conditioning_on_the_prompt(random_lm, tokenizer):
    text = "The cat sat on the mat."
    conditioned = Likelihood.from_model(random_lm, tokenizer)(["A story about a cat:"], [text])
    alone = Likelihood.from_model(random_lm, tokenizer, condition=False)(["A story about a cat:"], [text])
    ids = tokenizer(text, add_special_tokens=False).input_ids
    expected_alone = manual_logprobs(random_lm, [tokenizer.bos_token_id], ids)  # the BOS token is the context
    assert float(alone[0]) == pytest.approx(sum(expected_alone) / len(ids), abs=1e-4)
    assert float(conditioned[0]) != pytest.approx(float(alone[0]), abs=1e-4)
    chat = [{"role": "user", "content": "A story about a cat:"}]
    templated = tokenizer(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True),
                          add_special_tokens=False).input_ids
    expected_chat = manual_logprobs(random_lm, templated, ids)
    assert float(Likelihood.from_model(random_lm, tokenizer)([chat], [text])[0]) == pytest.approx(
        sum(expected_chat) / len(ids), abs=1e-4)
    as_message = Likelihood.from_model(random_lm, tokenizer, chat_template=True)(["A story about a cat:"], [text])
    assert float(as_message[0]) == pytest.approx(sum(expected_chat) / len(ids), abs=1e-4)


def test_dense_rewards_are_the_per_token_logprobs_on_the_policy_tokens(random_lm, tokenizer):
    prompt, text = "Tell me about cats.", "The cat sat on the mat."
    reward = Likelihood.from_model(random_lm, tokenizer)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    expected = manual_logprobs(random_lm, tokenizer(prompt).input_ids, ids)
    # the policy has the LM's own tokens: token t carries log p(y_t) / N
    rows = reward.per_token([prompt], [text], response_token_ids=[ids], tokenizer=tokenizer)
    assert rows[0].tolist() == pytest.approx([lp / len(ids) for lp in expected], abs=1e-5)
    summed = Likelihood.from_model(random_lm, tokenizer, reduce="sum")
    rows = summed.per_token([prompt], [text], response_token_ids=[ids], tokenizer=tokenizer)
    assert rows[0].tolist() == pytest.approx(expected, abs=1e-4)
    # another policy tokenizer: the rewards still sum to the sparse score, in a composite as alone
    policy = bpe_tokenizer()
    policy_ids = [policy(t, add_special_tokens=False).input_ids + [policy.eos_token_id] for t in TEXTS]
    for reduce in ("mean", "neg_perplexity"):
        alone = Likelihood.from_model(random_lm, tokenizer, reduce=reduce)
        rows = alone.per_token([prompt] * 3, TEXTS, response_token_ids=policy_ids, tokenizer=policy)
        sparse = alone([prompt] * 3, TEXTS)
        assert [float(r.sum()) for r in rows] == pytest.approx(sparse.tolist(), rel=1e-6, abs=1e-4)
        assert [len(r) for r in rows] == [len(i) for i in policy_ids] and float(rows[0][-1]) == 0.0  # EOS adds no text
    from rewardkit.rewards.composite import Component, CompositeReward

    composite = CompositeReward([Component(Likelihood.from_model(random_lm, tokenizer), "likelihood")], mode="dense")
    together = composite.token_rewards([prompt] * 3, TEXTS, response_token_ids=policy_ids, tokenizer=policy)
    apart = Likelihood.from_model(random_lm, tokenizer).per_token([prompt] * 3, TEXTS, response_token_ids=policy_ids,
                                                                  tokenizer=policy)
    for a, b in zip(together, apart):
        assert a.tolist() == pytest.approx(b.tolist(), abs=1e-6)


def test_empty_and_too_long_responses(random_lm, tokenizer):
    reward = Likelihood.from_model(random_lm, tokenizer)
    with pytest.raises(ResponseError, match=r"likelihood: response 1 has no tokens to score \(give `empty") as info:
        reward(["", ""], ["fine", ""])
    assert info.value.index == 1
    assert Likelihood.from_model(random_lm, tokenizer, empty=-20.0)([""], [""]).tolist() == [-20.0]
    short = Likelihood.from_model(random_lm, tokenizer, max_length=4)
    with pytest.raises(ResponseError, match="response 0 has 7 tokens, more than max_length 4 allows"):
        short([""], ["The cat sat on the mat."])
    # a long prompt loses its opening: the response is still scored in full
    ids = tokenizer("Dogs bark", add_special_tokens=False).input_ids
    prompt_ids = tokenizer("one two three four five six", add_special_tokens=False).input_ids
    expected = manual_logprobs(random_lm, prompt_ids[-2:], ids)
    assert float(short(["one two three four five six"], ["Dogs bark"])[0]) == pytest.approx(
        sum(expected) / len(ids), abs=1e-4)


def test_bad_settings_are_one_line_errors(random_lm, tokenizer):
    for kwargs, message in [({"reduce": "median"}, "reduce must be one of"), ({"max_length": 1}, "max_length"),
                            ({"batch_size": 0}, "batch_size"), ({"empty": float("nan")}, "empty")]:
        with pytest.raises(RewardkitError, match=message):
            Likelihood.from_model(random_lm, tokenizer, **kwargs)
    with pytest.raises(RewardkitError, match=r"component 1 \(likelihood\): cannot load the causal language model"):
        build_reward({"components": [{"type": "likelihood", "model": "/nonexistent/model"}]})


def test_in_a_spec_it_loads_a_folder_and_follows_the_device_rule(random_lm, tokenizer, tmp_path):
    from rewardkit.device import choose_placement

    random_lm.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reward = build_reward({"components": [{"type": "likelihood", "model": str(tmp_path), "precision": "fp32"}]})
    component = reward.components[0].reward
    assert component.placement == choose_placement("auto", "fp32")
    expected = Likelihood.from_model(random_lm, tokenizer)(["Hi"], ["Dogs bark"])
    assert reward(["Hi"], ["Dogs bark"]).tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    placed = build_reward({"components": [{"type": "likelihood", "model": str(tmp_path)}]},
                          placement=choose_placement("cpu", "bf16"))
    assert placed.components[0].reward.placement.precision == "bf16"
    assert next(placed.components[0].reward.model.parameters()).dtype == torch.bfloat16


@pytest.mark.slow
def test_smollm2_finds_fluent_text_likelier_than_shuffled_words():
    reward = Likelihood(model="smollm2-135m", device="cpu", precision="fp32")
    fluent = "The capital of France is Paris, a city known for its museums and cafes."
    shuffled = "cafes capital museums The Paris, of its known a is for France city and."
    scores = reward(["Tell me about Paris."] * 2, [fluent, shuffled])
    assert float(scores[0]) > float(scores[1]) + 1.0
    assert -8.0 < float(scores[0]) < -0.5
