"""Reference-based rewards: BLEU and chrF (sacrebleu, sentence level), ROUGE-1/2/L (rouge-score), embedding cosine
similarity (minilm-l6, mean pooling, embeddings cached by text) and the position-aligned word similarity average.

Scales: BLEU and chrF are sacrebleu's sentence scores divided by 100 (so all reference rewards live in [0, 1] or, for
cosines, [−1, 1]); ROUGE is rouge-score's F-measure (or precision/recall). A response's reference may be one text or a
list: BLEU/chrF use all of them as sacrebleu does; ROUGE and the embedding rewards take the best-matching reference.

BLEU, chrF, ROUGE and token similarity take `tokenize`; its default, auto, reads every CJK character as a token and
words elsewhere (`rewardkit.rewards.words`), and on text without CJK characters gives the libraries' own tokens.
Each warns once when its tokenizer finds no token in a text that has letters, or reads several CJK characters as
one token (`rewardkit.rewards.words.TokenizerWatch`).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from typing import Any

import torch

from rewardkit.device import Placement, choose_placement, component_placement, on_host
from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import RewardFunction, at_least_one, reference_lists
from rewardkit.rewards.words import WORD_TOKENIZERS, TokenizerWatch, space_cjk


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
    """Sentence BLEU / 100 with sacrebleu's sentence defaults (exp smoothing, effective order).

    `tokenize`: auto (default) is sacrebleu's 13a with every CJK character split off as its own token (identical to
    13a on text without CJK characters; on Chinese text, sacrebleu's zh does the same for Han characters), or any
    sacrebleu tokenizer by name: 13a, zh, char, intl, none, ja-mecab, ko-mecab, spm, ... sacrebleu's tokenizers keep
    every character but whitespace; 13a, intl and none read a run of CJK characters as one token, and say so once."""

    name = "bleu"
    # sacrebleu tokenizers that know nothing of CJK text (the others split it into characters or segment it into words)
    CJK_BLIND = ("13a", "intl", "none")

    def __init__(self, tokenize: str = "auto", lowercase: bool = False):
        from sacrebleu.metrics import BLEU
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

        self.tokenize = tokenize
        # auto tokenizes before sacrebleu sees the text, which then only splits it at whitespace ("none")
        self.pretokenize = (lambda text: Tokenizer13a()(space_cjk(text))) if tokenize == "auto" else None
        try:
            self.metric = BLEU(tokenize="none" if tokenize == "auto" else tokenize, lowercase=lowercase,
                               effective_order=True)
        except Exception as exc:  # sacrebleu raises plain Exceptions for unknown tokenizers
            raise RewardkitError(f"bleu: tokenize must be auto or a sacrebleu tokenizer ({exc})")
        self.watch = TokenizerWatch(self.name, tokenize) if tokenize in self.CJK_BLIND else None

    def _prepare(self, text: str) -> str:
        if self.pretokenize is not None:
            return self.pretokenize(text)
        if self.watch is not None and not self.watch.warned:
            self.watch.check(text, self.metric.tokenizer(text).split())
        return text

    def score_with_references(self, responses, references):
        return torch.tensor([self.metric.sentence_score(self._prepare(h), [self._prepare(r) for r in refs]).score
                             / 100.0 for h, refs in zip(responses, references)])


class Chrf(_ReferenceReward):
    """Sentence chrF / 100 (`word_order: 2` gives chrF++).

    `tokenize` only matters to chrF++'s word n-grams (character n-grams ignore whitespace): auto (default) reads every
    CJK character as a word and is otherwise sacrebleu's whitespace split; whitespace is sacrebleu's split alone (a
    run of Chinese characters is one word, and chrF++ says so once)."""

    name = "chrf"
    TOKENIZERS = ("auto", "whitespace")

    def __init__(self, char_order: int = 6, word_order: int = 0, beta: int = 2, lowercase: bool = False,
                 tokenize: str = "auto"):
        from sacrebleu.metrics import CHRF

        if tokenize not in self.TOKENIZERS:
            raise RewardkitError(f"tokenize must be one of {', '.join(self.TOKENIZERS)}, got {tokenize!r}")
        if word_order < 0 or beta < 0:
            raise RewardkitError(f"word_order and beta must be 0 or more, got {word_order} and {beta}")
        self.tokenize = tokenize
        self.metric = CHRF(char_order=at_least_one(char_order, "char_order"), word_order=word_order, beta=beta,
                           lowercase=lowercase)
        self.watch = TokenizerWatch(self.name, tokenize) if tokenize == "whitespace" and word_order > 0 else None

    def _prepare(self, text: str) -> str:
        if self.tokenize == "auto":
            return space_cjk(text)
        if self.watch is not None:
            self.watch.check(text, text.split())
        return text

    def score_with_references(self, responses, references):
        return torch.tensor([self.metric.sentence_score(self._prepare(h), [self._prepare(r) for r in refs]).score
                             / 100.0 for h, refs in zip(responses, references)])


class _RougeTokenizer:
    """The `tokenize()` object rouge-score calls: lowercases (as rouge-score's own does), splits by one of
    `WORD_TOKENIZERS`, stems words longer than 3 characters when asked (rouge-score's rule), and reports texts that
    yield no token. `default` is rouge-score's own tokenizer, which keeps only [a-z0-9]."""

    def __init__(self, tokenize: str, use_stemmer: bool, watch: TokenizerWatch):
        from nltk.stem import porter
        from rouge_score import tokenizers

        self.default = tokenizers.DefaultTokenizer(use_stemmer) if tokenize == "default" else None
        self.split = WORD_TOKENIZERS.get(tokenize)
        self.stemmer = porter.PorterStemmer() if use_stemmer else None
        self.watch = watch

    def tokenize(self, text: str) -> list[str]:
        if self.default is not None:
            tokens = self.default.tokenize(text)
        else:
            tokens = self.split(text.lower())
            if self.stemmer is not None:
                tokens = [self.stemmer.stem(t) if len(t) > 3 else t for t in tokens]
        self.watch.check(text, tokens)
        return tokens


class Rouge(_ReferenceReward):
    """ROUGE-1, ROUGE-2, ROUGE-L or ROUGE-Lsum from rouge-score; `measure` fmeasure (default), precision or recall.

    `tokenize` (text is lowercased first, as rouge-score does): auto (default) reads every CJK character as a token
    and runs of letters and digits elsewhere, the same tokens as rouge-score's own on ASCII text but keeping letters
    such as é or Cyrillic that it drops; default is rouge-score's own ([a-z0-9] runs only: 0 for any Chinese text);
    words, whitespace and char as in `rewardkit.rewards.words`."""

    name = "rouge"
    VARIANTS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
    TOKENIZERS = ("default", *WORD_TOKENIZERS)

    def __init__(self, variant: str = "rougeL", measure: str = "fmeasure", use_stemmer: bool = False,
                 tokenize: str = "auto"):
        from rouge_score import rouge_scorer

        if variant not in self.VARIANTS:
            raise RewardkitError(f"variant must be one of {', '.join(self.VARIANTS)}, got {variant!r}")
        if measure not in ("fmeasure", "precision", "recall"):
            raise RewardkitError(f"measure must be fmeasure, precision or recall, got {measure!r}")
        if tokenize not in self.TOKENIZERS:
            raise RewardkitError(f"tokenize must be one of {', '.join(self.TOKENIZERS)}, got {tokenize!r}")
        self.variant, self.measure, self.tokenize = variant, measure, tokenize
        self.watch = TokenizerWatch(self.name, tokenize)
        self.scorer = rouge_scorer.RougeScorer(
            [variant], tokenizer=_RougeTokenizer(tokenize, use_stemmer, self.watch))

    def score_with_references(self, responses, references):
        flat = [getattr(self.scorer.score(ref, hyp)[self.variant], self.measure)
                for hyp, refs in zip(responses, references) for ref in refs]
        return _best_over_references(torch.tensor(flat), references)


@lru_cache(maxsize=4)
def load_encoder(name_or_path: str, placement: Placement | None = None) -> tuple[Any, Any]:
    """(tokenizer, model) of a sentence encoder, loaded once per process and placement, in eval mode; None: on the
    CPU in fp32 (for its embedding table alone)."""
    from transformers import AutoModel, AutoTokenizer

    from rewardkit.models.presets import resolve_model_path

    path = resolve_model_path(name_or_path)
    dtype = placement.weights_dtype if placement is not None else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, dtype=dtype, use_safetensors=True).eval()
        if placement is not None:
            model.to(placement.torch_device)
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
    states over real tokens, L2-normalized; texts embedded once (LRU cache), new ones batched longest first. The
    encoder runs where `placement` says (the rule of `rewardkit.device`); pooling and the vectors are fp32, on the
    CPU."""

    def __init__(self, model: str = "minilm-l6", batch_size: int = 64, max_length: int = 256,
                 cache_size: int = 100_000, placement: Placement | None = None):
        self.batch_size = at_least_one(batch_size, "batch_size")
        self.max_length = at_least_one(max_length, "max_length")
        self.placement = placement if placement is not None else choose_placement()
        self.tokenizer, self.model = load_encoder(model, self.placement)
        self.cache = _LRU(cache_size)

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = sorted({t for t in texts if self.cache.get(t) is None}, key=len, reverse=True)
        fresh = {}
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            batch = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt").to(self.placement.torch_device)
            hidden = self.model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            with on_host():  # the vectors are cached and compared on the CPU
                vectors = torch.nn.functional.normalize(pooled, dim=-1).cpu()
            fresh.update(zip(chunk, vectors))
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
    """Cosine similarity of the response's and the reference's sentence embeddings, in [−1, 1]; the encoder runs on
    `device` in `precision` (auto: the command's choice)."""

    name = "embedding_similarity"

    def __init__(self, model: str = "minilm-l6", batch_size: int = 64, max_length: int = 256,
                 cache_size: int = 100_000, device: str = "auto", precision: str = "auto", *,
                 placement: Placement | None = None):
        self.embedder = TextEmbedder(model, batch_size, max_length, cache_size,
                                     component_placement(device, precision, placement))

    def score_with_references(self, responses, references):
        hyps = [h for h, refs in zip(responses, references) for _ in refs]
        refs = [r for rs in references for r in rs]
        vectors = self.embedder(hyps + refs)
        cosines = (vectors[:len(hyps)] * vectors[len(hyps):]).sum(-1)
        return _best_over_references(cosines, references)


class TokenSimilarity(_ReferenceReward):
    """Position-aligned word similarity R = (1/|y|) Σ_i sim(y_i, ref_i).

    Words come from `tokenize` (see `rewardkit.rewards.words`): auto (default) reads every CJK character as a word and
    runs of letters and digits elsewhere; words reads runs of letters and digits (a run of Chinese characters is then
    one word); whitespace and char also exist. Punctuation is ignored except by whitespace and char. Words are aligned
    by position; response words beyond the reference's length add 0, and an empty response scores 0.

    sim is 1 for identical words, otherwise the cosine of static word embeddings: the mean of the word's word-piece
    vectors in the encoder's input embedding matrix (minilm-l6 by default). Static rather than contextual on purpose:
    a word at position i is compared with the word at position i, not with its neighbourhood, and it costs no forward
    pass. Pieces the encoder does not know (its unknown token) are left out of the mean, so that two different
    unknown words do not look identical; a word with no known piece matches only itself. Only the embedding table is
    read, by lookups on the CPU: there is no forward pass to place on a GPU. minilm-l6 knows only 244 Han
    characters: for Chinese, most characters then count only when they match exactly, and an encoder with a Chinese
    vocabulary (`model:`, any HF encoder folder) gives graded similarities.
    """

    name = "token_similarity"

    def __init__(self, model: str = "minilm-l6", lowercase: bool = True, cache_size: int = 200_000,
                 tokenize: str = "auto"):
        if tokenize not in WORD_TOKENIZERS:
            raise RewardkitError(f"tokenize must be one of {', '.join(WORD_TOKENIZERS)}, got {tokenize!r}")
        self.tokenizer, encoder = load_encoder(model)
        self.table = encoder.get_input_embeddings().weight.detach()
        self.lowercase, self.tokenize = lowercase, tokenize
        self.split = WORD_TOKENIZERS[tokenize]
        self.watch = TokenizerWatch(self.name, tokenize)
        self.cache = _LRU(cache_size)

    def words(self, text: str) -> list[str]:
        words = self.split(text.lower() if self.lowercase else text)
        self.watch.check(text, words)
        return words

    def word_vectors(self, words: list[str]) -> torch.Tensor:
        """Unit-norm static embedding per word (cached); a word with no known piece gets a zero vector."""
        missing = [w for w in dict.fromkeys(words) if self.cache.get(w) is None]
        fresh = {}
        if missing:
            unknown = self.tokenizer.unk_token_id
            pieces = [[i for i in p if i != unknown]
                      for p in self.tokenizer(missing, add_special_tokens=False)["input_ids"]]
            flat = torch.tensor([i for p in pieces for i in p], dtype=torch.long)
            offsets = torch.tensor([0] + [len(p) for p in pieces[:-1]], dtype=torch.long).cumsum(0)
            vectors = torch.nn.functional.embedding_bag(flat, self.table, offsets, mode="mean")  # empty bag: zeros
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
            sims = torch.where(left == right, 1.0, (table[left] * table[right]).sum(-1))
            owner = torch.repeat_interleave(torch.arange(len(aligned)), torch.tensor([len(a) for a, _ in aligned]))
            sums = torch.zeros(len(aligned)).index_add_(0, owner, sims)
        else:
            sums = torch.zeros(len(aligned))
        sizes = torch.tensor([max(len(hw), 1) for hw, _ in pairs], dtype=torch.float32)
        return _best_over_references(sums / sizes, references)
