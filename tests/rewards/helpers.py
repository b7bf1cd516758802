"""Test helpers: custom reward functions importable by path, a tiny byte-level BPE policy tokenizer, a char counter,
a scripted stand-in for a judge's causal LM."""

from __future__ import annotations

import math
from functools import lru_cache
from types import SimpleNamespace

import torch

from rewardkit.rewards.base import RewardFunction

CORPUS = ["the cat sat on the mat", "a dog ran in the park", "step one\nstep two\nstep three", "café au lait"] * 20


@lru_cache(maxsize=1)
def bpe_tokenizer():
    """A GPT-2-like policy tokenizer (byte-level BPE, spaces glued to the next word, an <eos> special token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")


def byte_token_ids(tokenizer, text: str) -> list[int]:
    """One token per UTF-8 byte (GPT-2's byte-to-unicode map): a segmentation the tokenizer itself would not pick."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return tokenizer.convert_tokens_to_ids([mapping[b] for b in text.encode("utf-8")])


class CharCount(RewardFunction):
    """R(x, y) = number of characters: its shaped rewards are the characters each token adds."""

    name = "chars"

    def _score(self, prompts, responses, references, finished):
        return torch.tensor([float(len(r)) for r in responses])


def word_count(prompts, responses, references, scale=1.0):
    return [scale * len(r.split()) for r in responses]


def nan_for_second(prompts, responses, references):
    return [math.nan if i == 1 else 0.0 for i in range(len(responses))]


def too_few(prompts, responses, references):
    return [1.0]


def not_numbers(prompts, responses, references):
    return ["high"] * len(responses)


NOT_CALLABLE = 3


class ScriptedLM(torch.nn.Module):
    """A stand-in causal LM: at the last position of each row, `probabilities(text)` ({text of a token: probability})
    sets the next token's distribution (every other token gets none); `generate` appends `reply(text)`."""

    def __init__(self, tokenizer, probabilities=None, reply=None):
        super().__init__()
        self.tokenizer, self.probabilities, self.reply = tokenizer, probabilities, reply
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.texts = []

    def forward(self, input_ids, attention_mask):
        logits = torch.full((*input_ids.shape, len(self.tokenizer)), -1e4)
        for r, (ids, mask) in enumerate(zip(input_ids, attention_mask)):
            text = self.tokenizer.decode(ids[mask.bool()])
            self.texts.append(text)
            for token, p in self.probabilities(text).items():
                (token_id,) = self.tokenizer(token, add_special_tokens=False).input_ids
                logits[r, int(mask.sum()) - 1, token_id] = math.log(p)
        return SimpleNamespace(logits=logits)

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        text = self.tokenizer.decode(input_ids[0])
        self.texts.append(text)
        reply = self.tokenizer(self.reply(text), add_special_tokens=False, return_tensors="pt").input_ids
        return torch.cat([input_ids, reply[:, :max_new_tokens]], dim=1)


def shown_as_a(text):
    return text.split("[Response A]\n", 1)[1].split("\n\n", 1)[0]
