"""Reference-based rewards equal the metric packages' direct values; embedding rewards check against hand values."""

import pytest
import sacrebleu
import torch
from rouge_score import rouge_scorer

from rewardkit.errors import RewardkitError
from rewardkit.rewards.reference import Bleu, Chrf, EmbeddingSimilarity, Rouge, TokenSimilarity, load_encoder

HYPS = ["The cat sat on the mat.", "A quick brown fox jumps over the lazy dog", "completely unrelated words here",
        "the the the"]
REFS = ["The cat is sitting on the mat.", "The quick brown fox jumped over a lazy dog.", "Paris is in France.",
        "the cat"]


def call(reward, hyps, refs):
    return reward([""] * len(hyps), hyps, refs).tolist()


def test_bleu_and_chrf_equal_sacrebleu_sentence_scores():
    assert call(Bleu(), HYPS, REFS) == pytest.approx(
        [sacrebleu.sentence_bleu(h, [r]).score / 100 for h, r in zip(HYPS, REFS)], abs=1e-6)
    assert call(Chrf(), HYPS, REFS) == pytest.approx(
        [sacrebleu.sentence_chrf(h, [r]).score / 100 for h, r in zip(HYPS, REFS)], abs=1e-6)
    assert call(Chrf(word_order=2), HYPS, REFS) == pytest.approx(
        [sacrebleu.sentence_chrf(h, [r], word_order=2).score / 100 for h, r in zip(HYPS, REFS)], abs=1e-6)


def test_bleu_auto_is_13a_on_text_without_cjk():
    assert call(Bleu(), HYPS, REFS) == call(Bleu(tokenize="13a"), HYPS, REFS)


def test_bleu_uses_all_references_as_sacrebleu_does():
    refs = [["The cat is on the mat.", "There is a cat on the mat."]]
    assert call(Bleu(), HYPS[:1], refs) == pytest.approx([sacrebleu.sentence_bleu(HYPS[0], refs[0]).score / 100])


@pytest.mark.parametrize("variant", ["rouge1", "rouge2", "rougeL"])
def test_rouge_equals_rouge_score(variant):
    scorer = rouge_scorer.RougeScorer([variant])
    assert call(Rouge(variant=variant), HYPS, REFS) == pytest.approx(
        [scorer.score(r, h)[variant].fmeasure for h, r in zip(HYPS, REFS)], abs=1e-6)
    assert call(Rouge(variant=variant, measure="recall"), HYPS, REFS) == pytest.approx(
        [scorer.score(r, h)[variant].recall for h, r in zip(HYPS, REFS)], abs=1e-6)
    stemming = rouge_scorer.RougeScorer([variant], use_stemmer=True)  # auto stems as rouge-score does
    for tokenize in ("auto", "default"):
        assert call(Rouge(variant=variant, use_stemmer=True, tokenize=tokenize), HYPS, REFS) == pytest.approx(
            [stemming.score(r, h)[variant].fmeasure for h, r in zip(HYPS, REFS)], abs=1e-6)


def test_rouge_takes_the_best_reference():
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    refs = ["Paris is in France.", "The cat is sitting on the mat."]
    expected = max(scorer.score(r, HYPS[0])["rougeL"].fmeasure for r in refs)
    assert call(Rouge(), HYPS[:1], [refs]) == pytest.approx([expected])


def test_missing_reference_is_a_user_error():
    with pytest.raises(RewardkitError, match="needs a reference"):
        Rouge()(["p"], ["text"])
    with pytest.raises(RewardkitError, match="response 1"):
        Bleu()(["p", "p"], ["a", "b"], ["a", None])


@pytest.fixture(scope="module")
def embedding():
    return EmbeddingSimilarity(precision="fp32")  # compared with sentence-transformers' fp32 recipe below


def mean_pooled(text):
    """sentence-transformers' all-MiniLM-L6-v2 recipe for one text: mean over tokens, L2-normalized."""
    tokenizer, model = load_encoder("minilm-l6")
    with torch.no_grad():
        hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]
    return torch.nn.functional.normalize(hidden.mean(0), dim=-1)


def test_embedding_similarity_is_the_cosine_of_mean_pooled_embeddings(embedding):
    got = call(embedding, HYPS, REFS)
    expected = [float(mean_pooled(h) @ mean_pooled(r)) for h, r in zip(HYPS, REFS)]
    assert got == pytest.approx(expected, abs=1e-5)  # batched with padding == one text at a time
    assert call(embedding, ["same text"], ["same text"]) == pytest.approx([1.0], abs=1e-5)
    assert got[0] > got[2]  # a paraphrase is closer than an unrelated sentence


def test_embedding_similarity_runs_in_the_placement_it_is_given():
    bf16 = EmbeddingSimilarity(device="cpu", precision="bf16")
    assert bf16.embedder.model.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    expected = [float(mean_pooled(h) @ mean_pooled(r)) for h, r in zip(HYPS, REFS)]
    # a cosine of unit vectors whose entries bf16 rounds at 2^-9 relative through 6 layers: 0.0027 measured
    assert call(bf16, HYPS, REFS) == pytest.approx(expected, abs=0.01)


def test_embeddings_are_cached_by_text(embedding, monkeypatch):
    call(embedding, HYPS[:2], REFS[:2])
    assert all(embedding.embedder.cache.get(t) is not None for t in HYPS[:2] + REFS[:2])
    monkeypatch.setattr(embedding.embedder, "model", None)  # any new forward pass would now fail
    call(embedding, HYPS[:2], REFS[:2])


def test_embedding_cache_is_bounded():
    small = EmbeddingSimilarity(cache_size=2)
    got = call(small, HYPS, REFS)
    assert len(small.embedder.cache.data) == 2
    assert got == pytest.approx(call(EmbeddingSimilarity(), HYPS, REFS), abs=1e-5)


def test_token_similarity_averages_position_aligned_word_cosines():
    reward = TokenSimilarity()
    table = reward.table
    tokenizer = reward.tokenizer
    cat, dog = (tokenizer.convert_tokens_to_ids(w) for w in ("cat", "dog"))
    cos = float(torch.nn.functional.cosine_similarity(table[cat], table[dog], dim=0))
    got = call(reward, ["the cat sat", "cat dog", "", "The CAT!"], ["the cat", "cat cat", "anything", "the cat"])
    # words beyond the reference count 0; |y| = 3 -> (1 + 1 + 0) / 3
    assert got == pytest.approx([2 / 3, (1 + cos) / 2, 0.0, 1.0], abs=1e-5)
