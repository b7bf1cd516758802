"""Reference-based rewards: BLEU and chrF (sacrebleu, sentence level), ROUGE-1/2/L (rouge-score), embedding cosine
similarity (minilm-l6, mean pooling, embeddings cached by text) and the position-aligned word similarity average.

Scales: BLEU and chrF are sacrebleu's sentence scores divided by 100 (so all reference rewards live in [0, 1] or, for
cosines, [−1, 1]); ROUGE is rouge-score's F-measure (or precision/recall). A response's reference may be one text or a
list: BLEU/chrF use all of them as sacrebleu does; ROUGE and the embedding rewards take the best-matching reference.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from functools import lru_cache
from typing import Any

import torch

from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import RewardFunction, reference_lists


class _ReferenceReward(RewardFunction):
    needs_reference = True

    def _score(self, prompts, responses, references, finished):
        return self.score_with_references(responses, reference_lists(references, len(responses), repr(self.name)))

    def score_with_references(self, responses: list[str], references: list[list[str]]) -> torch.Tensor:
        raise NotImplementedError


def _best_over_references(pair_scores: torch.Tensor, references: list[list[str]]) -> torch.Tensor:
    """Max over each response's references, given one score per (response, reference) pair in flat order."""
    counts = torch.tensor([len(r) for r in references])
    owner = torch.repeat_interleave(torch.arange(len(references)), counts)
    best = torch.full((len(references),), -torch.inf)
    return best.scatter_reduce(0, owner, pair_scores.float(), reduce="amax")


class Bleu(_ReferenceReward):
    """Sentence BLEU / 100 with sacrebleu's sentence defaults (exp smoothing, effective order, 13a tokenizer)."""

    name = "bleu"

    def __init__(self, tokenize: str = "13a", lowercase: bool = False):
        from sacrebleu.metrics import BLEU

        try:
            self.metric = BLEU(tokenize=tokenize, lowercase=lowercase, effective_order=True)
        except Exception as exc:  # sacrebleu raises plain Exceptions for unknown tokenizers
            raise RewardkitError(f"bleu: {exc}")

    def score_with_references(self, responses, references):
        return torch.tensor([self.metric.sentence_score(h, refs).score / 100.0
                             for h, refs in zip(responses, references)])


class Chrf(_ReferenceReward):
    """Sentence chrF / 100 (`word_order: 2` gives chrF++)."""

    name = "chrf"

    def __init__(self, char_order: int = 6, word_order: int = 0, beta: int = 2, lowercase: bool = False):
        from sacrebleu.metrics import CHRF

        self.metric = CHRF(char_order=char_order, word_order=word_order, beta=beta, lowercase=lowercase)

    def score_with_references(self, responses, references):
        return torch.tensor([self.metric.sentence_score(h, refs).score / 100.0
                             for h, refs in zip(responses, references)])


class Rouge(_ReferenceReward):
    """ROUGE-1, ROUGE-2, ROUGE-L or ROUGE-Lsum from rouge-score; `measure` fmeasure (default), precision or recall."""

    name = "rouge"
    VARIANTS = ("rouge1", "rouge2", "rougeL", "rougeLsum")

    def __init__(self, variant: str = "rougeL", measure: str = "fmeasure", use_stemmer: bool = False):
        from rouge_score import rouge_scorer

        if variant not in self.VARIANTS:
            raise RewardkitError(f"variant must be one of {', '.join(self.VARIANTS)}, got {variant!r}")
        if measure not in ("fmeasure", "precision", "recall"):
            raise RewardkitError(f"measure must be fmeasure, precision or recall, got {measure!r}")
        self.variant, self.measure = variant, measure
        self.scorer = rouge_scorer.RougeScorer([variant], use_stemmer=use_stemmer)

    def score_with_references(self, responses, references):
        flat = [getattr(self.scorer.score(ref, hyp)[self.variant], self.measure)
                for hyp, refs in zip(responses, references) for ref in refs]
        return _best_over_references(torch.tensor(flat), references)


@lru_cache(maxsize=4)
def load_encoder(name_or_path: str) -> tuple[Any, Any]:
    """(tokenizer, model) of a sentence encoder, loaded once per process, in eval mode, fp32."""
    from transformers import AutoModel, AutoTokenizer

    from rewardkit.models.presets import resolve_model_path

    path = resolve_model_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, dtype=torch.float32, use_safetensors=True).eval()
    except OSError as exc:
        raise RewardkitError(f"cannot load encoder {name_or_path!r}: {str(exc).splitlines()[0]}")
    return tokenizer, model


class _LRU:
    """A bounded text → tensor cache; the least recently used entry goes first."""

    def __init__(self, size: int):
        self.size, self.data = size, OrderedDict()

    def get(self, key):
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)


class TextEmbedder:
    """Sentence embeddings as sentence-transformers computes them for all-MiniLM-L6-v2: mean of the last hidden
    states over real tokens, L2-normalized; texts embedded once (LRU cache), new ones batched longest first."""

    def __init__(self, model: str = "minilm-l6", batch_size: int = 64, max_length: int = 256,
                 cache_size: int = 100_000):
        self.tokenizer, self.model = load_encoder(model)
        self.batch_size, self.max_length = batch_size, max_length
        self.cache = _LRU(cache_size)

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = sorted({t for t in texts if self.cache.get(t) is None}, key=len, reverse=True)
        fresh = {}
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            batch = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            fresh.update(zip(chunk, torch.nn.functional.normalize(pooled, dim=-1)))
        out = []
        for t in texts:  # look up after embedding everything: a small cache may have evicted early entries
            vector = fresh.get(t)
            if vector is None:
                vector = self.cache.get(t)
            out.append(vector)
        for t, vector in fresh.items():
            self.cache.put(t, vector)
        return torch.stack(out) if out else torch.empty(0, self.model.config.hidden_size)


class EmbeddingSimilarity(_ReferenceReward):
    """Cosine similarity of the response's and the reference's sentence embeddings, in [−1, 1]."""

    name = "embedding_similarity"

    def __init__(self, model: str = "minilm-l6", batch_size: int = 64, max_length: int = 256,
                 cache_size: int = 100_000):
        self.embedder = TextEmbedder(model, batch_size, max_length, cache_size)

    def score_with_references(self, responses, references):
        hyps = [h for h, refs in zip(responses, references) for _ in refs]
        refs = [r for rs in references for r in rs]
        vectors = self.embedder(hyps + refs)
        cosines = (vectors[:len(hyps)] * vectors[len(hyps):]).sum(-1)
        return _best_over_references(cosines, references)


_WORDS = re.compile(r"\w+")


class TokenSimilarity(_ReferenceReward):
    """Position-aligned word similarity R = (1/|y|) Σ_i sim(y_i, ref_i).

    Words are `\\w+` runs (punctuation ignored), aligned by position; response words beyond the reference's length
    add 0, and an empty response scores 0. sim is the cosine of static word embeddings: the mean of the word's
    word-piece vectors in the encoder's input embedding matrix (minilm-l6 by default). Static rather than contextual
    on purpose: a word at position i is compared with the word at position i, not with its neighbourhood, and it
    costs no forward pass. Identical words score 1.
    """

    name = "token_similarity"

    def __init__(self, model: str = "minilm-l6", lowercase: bool = True, cache_size: int = 200_000):
        self.tokenizer, encoder = load_encoder(model)
        self.table = encoder.get_input_embeddings().weight.detach()
        self.lowercase = lowercase
        self.cache = _LRU(cache_size)

    def words(self, text: str) -> list[str]:
        return _WORDS.findall(text.lower() if self.lowercase else text)

    def word_vectors(self, words: list[str]) -> torch.Tensor:
        """Unit-norm static embedding per word (cached); a word the tokenizer maps to nothing gets a zero vector."""
        missing = [w for w in dict.fromkeys(words) if self.cache.get(w) is None]
        fresh = {}
        if missing:
            pieces = self.tokenizer(missing, add_special_tokens=False)["input_ids"]
            flat = torch.tensor([i for p in pieces for i in p], dtype=torch.long)
            offsets = torch.tensor([0] + [len(p) for p in pieces[:-1]], dtype=torch.long).cumsum(0)
            vectors = torch.nn.functional.embedding_bag(flat, self.table, offsets, mode="mean")
            fresh = dict(zip(missing, torch.nn.functional.normalize(vectors, dim=-1)))
        out = torch.stack([fresh[w] if w in fresh else self.cache.get(w) for w in words])
        for w, v in fresh.items():
            self.cache.put(w, v)
        return out

    def score_with_references(self, responses, references):
        hyp_words = [self.words(h) for h in responses]
        pairs = [(hw, self.words(r)) for hw, refs in zip(hyp_words, references) for r in refs]
        aligned = [(hw[:len(rw)], rw[:len(hw)]) for hw, rw in pairs]
        vocabulary = list(dict.fromkeys(w for a, b in aligned for w in a + b))
        if vocabulary:
            index = {w: k for k, w in enumerate(vocabulary)}
            table = self.word_vectors(vocabulary)
            left = torch.tensor([index[w] for a, _ in aligned for w in a], dtype=torch.long)
            right = torch.tensor([index[w] for _, b in aligned for w in b], dtype=torch.long)
            owner = torch.repeat_interleave(torch.arange(len(aligned)), torch.tensor([len(a) for a, _ in aligned]))
            sums = torch.zeros(len(aligned)).index_add_(0, owner, (table[left] * table[right]).sum(-1))
        else:
            sums = torch.zeros(len(aligned))
        sizes = torch.tensor([max(len(hw), 1) for hw, _ in pairs], dtype=torch.float32)
        return _best_over_references(sums / sizes, references)
