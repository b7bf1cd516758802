"""EOS handling, padding layout and log-prob consistency between sampling and the training forward."""

import torch

from rewardkit.rl.rollout import (Rollout, SamplingSettings, decode_responses, forward_responses, left_pad,
                                  prompt_token_ids, response_mask_after_eos, sample)
from tests.rl.conftest import toy_policy, toy_tokenizer

EOS, PAD = 1, 0


def test_mask_includes_first_eos_and_drops_the_rest():
    ids = torch.tensor([[5, 6, EOS, 7, EOS], [5, 6, 7, 8, 9], [EOS, 6, 7, 8, 9]])
    mask, truncated = response_mask_after_eos(ids, [EOS])
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert truncated.tolist() == [False, True, False]
    # several EOS ids (e.g. <|im_end|> and <|endoftext|>): the first of any ends the response
    mask, truncated = response_mask_after_eos(torch.tensor([[5, 9, 6, EOS]]), [EOS, 9])
    assert mask.tolist() == [[1, 1, 0, 0]] and truncated.tolist() == [False]


def test_left_pad_and_select_trim():
    ids, mask = left_pad([[4, 5, 6], [7]], PAD)
    assert ids.tolist() == [[4, 5, 6], [PAD, PAD, 7]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    rollout = Rollout(ids, mask, torch.tensor([[8, EOS, PAD], [8, 9, 10]]), torch.tensor([[1.0, 1, 0], [1, 1, 1]]),
                      torch.tensor([False, True]))
    first = rollout.select(slice(0, 1))
    assert first.query_ids.tolist() == [[4, 5, 6]] and first.response_ids.tolist() == [[8, EOS]]
    second = rollout.select(torch.tensor([1]))
    assert second.query_ids.tolist() == [[7]] and second.response_ids.tolist() == [[8, 9, 10]]


def test_prompt_truncation_keeps_the_end():
    tokenizer = toy_tokenizer()
    ids, truncated = prompt_token_ids(tokenizer, ["the movie not very good", "a film"], max_prompt_tokens=3)
    assert tokenizer.decode(ids[0]) == "not very good" and truncated == 1
    assert tokenizer.decode(ids[1]) == "a film"


def _generate_with_logits(policy, tokenizer, prompts, settings, eos_ids, pad_id):
    ids, _ = prompt_token_ids(tokenizer, prompts)
    query_ids, query_mask = left_pad(ids, pad_id)
    torch.manual_seed(3)
    rollout = sample(policy, query_ids, query_mask, settings, eos_ids, pad_id)
    torch.manual_seed(3)
    from transformers import GenerationConfig
    out = policy.generate(input_ids=query_ids, attention_mask=query_mask, generation_config=GenerationConfig(
        do_sample=True, max_new_tokens=settings.max_new_tokens, top_k=0, temperature=settings.temperature,
        eos_token_id=eos_ids, pad_token_id=pad_id, return_dict_in_generate=True, output_logits=True))
    return rollout, torch.stack(out.logits, dim=1)


def test_training_logprobs_match_sampling_distribution_with_left_padding():
    """The forward used for training must score exactly the distribution generate sampled from, with prompts of
    different lengths (left padding) and a temperature."""
    tokenizer = toy_tokenizer()
    policy = toy_policy(tokenizer, seed=1).eval()
    settings = SamplingSettings(max_new_tokens=12, temperature=0.7)
    prompts = ["the movie not very good and", "a", "not bad"] * 4
    rollout, logits = _generate_with_logits(policy, tokenizer, prompts, settings, [tokenizer.eos_token_id],
                                            tokenizer.pad_token_id)
    reference = torch.log_softmax(logits.float() / 0.7, -1).gather(2, rollout.response_ids[..., None]).squeeze(-1)
    with torch.no_grad():
        forward = forward_responses(policy, rollout, temperature=0.7, with_entropy=True)
    mask = rollout.response_mask.bool()
    assert torch.allclose(forward.logprobs[mask], reference[mask], atol=1e-4)
    # what sampling recorded on the way equals the training forward (so no extra forward pass is needed)
    assert torch.allclose(rollout.logprobs[mask], forward.logprobs[mask], atol=1e-4)
    assert torch.allclose(rollout.entropy[mask], forward.entropy[mask], atol=1e-4)
    assert (~rollout.truncated).any() and rollout.truncated.any()  # responses of both kinds were checked


def test_sampling_when_pad_equals_eos():
    """Tokenizers like SmolLM2's pad with the EOS token: the first EOS stays in the response, the padding after it
    does not, and rows that never emit it are flagged truncated."""
    tokenizer = toy_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    eos = tokenizer.eos_token_id
    policy = toy_policy(tokenizer, seed=2).eval()
    ids, _ = prompt_token_ids(tokenizer, ["the movie", "a", "not bad at all very"] * 6)
    query_ids, query_mask = left_pad(ids, eos)
    torch.manual_seed(0)
    rollout = sample(policy, query_ids, query_mask, SamplingSettings(max_new_tokens=12), [eos], eos)
    ended = ~rollout.truncated
    assert ended.any() and rollout.truncated.any()  # both cases occur with this seed
    for row in range(len(rollout)):
        n = int(rollout.lengths[row])
        assert int((rollout.response_ids[row, :n] == eos).sum()) == int(ended[row])
        if ended[row]:
            assert rollout.response_ids[row, n - 1] == eos and n < 12 or n == 12
    assert all("<eos>" not in text for text in decode_responses(tokenizer, rollout))


def test_chat_template_prompts_end_with_an_open_assistant_turn():
    from transformers import AutoTokenizer

    from rewardkit.models.presets import resolve_tokenizer_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer_path("smollm2-135m"))
    conversation = [{"role": "user", "content": "Recommend a film."}]
    ids, _ = prompt_token_ids(tokenizer, [conversation, "Recommend a film."], chat_template=True)
    assert ids[0] == ids[1]
    assert tokenizer.decode(ids[0]).endswith("<|im_start|>assistant\n")
    raw, _ = prompt_token_ids(tokenizer, ["Recommend a film."])
    assert tokenizer.decode(raw[0]) == "Recommend a film."
