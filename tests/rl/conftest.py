"""Toy RL setting: a word-level tokenizer with a dozen words and a tiny random Llama policy (hidden 32, 2 layers), so
that a reward for one word is reachable by sampling within a few dozen steps."""

from __future__ import annotations

import pytest
import torch

# Tiny models gain nothing from intra-op threads, and on a shared CPU the threads' synchronisation makes them ~4x slower.
torch.set_num_threads(1)

WORDS = ["the", "a", "movie", "film", "good", "bad", "plot", "actor", "scene", "very", "not", "yes"]
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]


def toy_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                   bos_token="<bos>", unk_token="<unk>")


def toy_policy(tokenizer, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=False)
    return LlamaForCausalLM(config)


def yes_fraction(prompts, responses, references=None):
    """Toy reward: the share of words in the response that are "yes"."""
    return torch.tensor([r.split().count("yes") / max(len(r.split()), 1) for r in responses])


@pytest.fixture
def tokenizer():
    return toy_tokenizer()


def film_fraction(prompts, responses, references=None):
    """Toy reward that greedy decoding of the toy policy already varies across prompts: the share of "film"."""
    return torch.tensor([r.split().count("film") / max(len(r.split()), 1) for r in responses])


def yes_fraction_slowly(prompts, responses, references=None):
    """`yes_fraction`, a quarter of a second late: a run slow enough to be killed between two checkpoints."""
    import time

    time.sleep(0.25)
    return yes_fraction(prompts, responses, references)
