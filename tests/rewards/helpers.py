"""Test helpers: custom reward functions importable by path, a tiny byte-level BPE policy tokenizer, a char counter."""

from __future__ import annotations

import math
from functools import lru_cache

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
