"""Reference rewards on Chinese (and other CJK) text: tokenization, hand-computed ROUGE, BLEU and token similarity,
and the once-per-instance warning when a tokenizer misreads a text."""

import doctest
import re
import warnings
from pathlib import Path

import pytest
import sacrebleu
import torch
import yaml

from rewardkit.errors import RewardkitError
from rewardkit.rewards.reference import Bleu, Chrf, Rouge, TokenSimilarity
from rewardkit.rewards.spec import build_reward
from rewardkit.rewards.words import WORD_TOKENIZERS, TokenizerWarning, space_cjk

MIXED = "用 Python 写代码，好吗？ café_x 안녕 カタカナ"


def call(reward, hyps, refs):
    return reward([""] * len(hyps), hyps, refs).tolist()


def test_word_tokenizers_on_mixed_text():
    assert WORD_TOKENIZERS["auto"](MIXED) == ["用", "Python", "写", "代", "码", "好", "吗", "café", "x", "안", "녕",
                                             "カ", "タ", "カ", "ナ"]
    assert WORD_TOKENIZERS["words"](MIXED) == ["用", "Python", "写代码", "好吗", "café", "x", "안녕", "カタカナ"]
    assert WORD_TOKENIZERS["whitespace"](MIXED) == ["用", "Python", "写代码，好吗？", "café_x", "안녕", "カタカナ"]
    assert WORD_TOKENIZERS["char"]("写代码，ok") == ["写", "代", "码", "，", "o", "k"]
    assert space_cjk("ok写。") == "ok 写  。 "
    assert space_cjk("no cjk here") == "no cjk here"


# hyp 我喜欢吃苹果 ("I like eating apples"), ref 我不喜欢吃香蕉 ("I don't like eating bananas"), one token a character.
HYP, REF = "我喜欢吃苹果", "我不喜欢吃香蕉"


def test_rouge_on_chinese_equals_hand_values():
    # ROUGE-1: hyp 6 characters, ref 7, common 我 喜 欢 吃 = 4: P = 4/6, R = 4/7, F = 2PR/(P+R) = (16/21)/(26/21) = 8/13
    # ROUGE-2: hyp bigrams 我喜 喜欢 欢吃 吃苹 苹果 (5), ref 我不 不喜 喜欢 欢吃 吃香 香蕉 (6), common 喜欢 欢吃 = 2:
    #          P = 2/5, R = 2/6, F = (4/15)/(11/15) = 4/11
    # ROUGE-L: the longest common subsequence is 我喜欢吃 (4), so the same as ROUGE-1: 8/13
    assert call(Rouge(variant="rouge1"), [HYP], [REF]) == pytest.approx([8 / 13])
    assert call(Rouge(variant="rouge2"), [HYP], [REF]) == pytest.approx([4 / 11])
    assert call(Rouge(variant="rougeL"), [HYP], [REF]) == pytest.approx([8 / 13])
    assert call(Rouge(variant="rouge1", measure="recall"), [HYP], [REF]) == pytest.approx([4 / 7])
    # mixed text keeps Latin words whole: 我 爱 python 编 程 (5) against 我 爱 python 和 编 程 (6), all 5 common:
    # P = 1, R = 5/6, F = (10/6)/(11/6) = 10/11
    assert call(Rouge(variant="rouge1"), ["我爱 Python 编程"], ["我爱 python 和编程"]) == pytest.approx([10 / 11])


def test_rouge_default_tokenizer_drops_chinese_and_warns_once_per_instance():
    rouge = Rouge(tokenize="default")  # rouge-score's own: [a-z0-9] only; it reads the reference first
    with pytest.warns(TokenizerWarning, match="rouge with tokenize: default finds no token in '我不喜欢吃香蕉'") as record:
        assert call(rouge, [HYP, HYP], [REF, REF]) == [0.0, 0.0]
        assert call(rouge, [HYP], [REF]) == [0.0]
    assert len(record) == 1
    with pytest.warns(TokenizerWarning):  # another instance warns again
        call(Rouge(tokenize="default"), [HYP], [REF])


def test_word_tokenizers_that_glue_cjk_characters_warn_once():
    similarity = TokenSimilarity(tokenize="words")
    with pytest.warns(TokenizerWarning, match="token_similarity with tokenize: words reads '我喜欢吃苹果' as one token"):
        call(similarity, [HYP, HYP], [REF, REF])
    with pytest.warns(TokenizerWarning, match="bleu with tokenize: 13a reads '我喜欢吃苹果' as one token"):
        call(Bleu(tokenize="13a"), [HYP], [REF])
    with pytest.warns(TokenizerWarning, match="rouge with tokenize: whitespace reads"):
        call(Rouge(tokenize="whitespace"), [HYP], [REF])
    with pytest.warns(TokenizerWarning, match="chrf with tokenize: whitespace reads"):
        call(Chrf(word_order=2, tokenize="whitespace"), [HYP], [REF])


def test_auto_and_cjk_aware_tokenizers_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", TokenizerWarning)
        for reward in (Rouge(), Bleu(), Bleu(tokenize="zh"), Chrf(word_order=2), Rouge(tokenize="char")):
            call(reward, [HYP, "!!!", "The cat sat."], [REF, "...", "A cat sat."])


def test_bleu_on_chinese_equals_hand_value_and_sacrebleu_zh():
    # hyp 我喜欢吃苹果 against ref 我喜欢吃香蕉, both 6 characters (brevity penalty 1):
    # 1-grams 4/6, 2-grams 3/5 (我喜 喜欢 欢吃), 3-grams 2/4 (我喜欢 喜欢吃), 4-grams 1/3 (我喜欢吃), no smoothing needed:
    # BLEU = (4/6 · 3/5 · 2/4 · 1/3)^(1/4) = (1/15)^(1/4)
    ref = "我喜欢吃香蕉"
    assert call(Bleu(), [HYP], [ref]) == pytest.approx([15 ** -0.25])
    assert call(Bleu(tokenize="zh"), [HYP], [ref]) == pytest.approx([15 ** -0.25])
    # with punctuation and Latin words auto reads what sacrebleu's zh reads
    hyp, ref = "我用 Python 写代码。", "我们用 Python 写了代码！"
    assert call(Bleu(), [hyp], [ref]) == pytest.approx([sacrebleu.sentence_bleu(hyp, [ref], tokenize="zh").score
                                                        / 100])
    # 13a reads each sentence as one token: no n-gram matches, so sacrebleu returns 0, for a near miss as for nonsense
    with pytest.warns(TokenizerWarning):
        assert call(Bleu(tokenize="13a"), [HYP, "完全不同"], [ref, ref]) == [0.0, 0.0]


def test_chrf_auto_reads_chinese_characters_as_words():
    # character n-grams ignore whitespace, so plain chrF is the same; chrF++'s word n-grams see one word a character
    assert call(Chrf(), [HYP], [REF]) == pytest.approx([sacrebleu.sentence_chrf(HYP, [REF]).score / 100])
    spaced = sacrebleu.sentence_chrf(" ".join(HYP), [" ".join(REF)], word_order=2).score / 100
    assert call(Chrf(word_order=2), [HYP], [REF]) == pytest.approx([spaced])
    assert call(Chrf(word_order=2), [HYP], [REF]) != pytest.approx(
        [sacrebleu.sentence_chrf(HYP, [REF], word_order=2).score / 100])


@pytest.fixture(scope="module")
def similarity():
    return TokenSimilarity()


def test_token_similarity_on_chinese_equals_hand_values(similarity):
    table, tokenizer = similarity.table, similarity.tokenizer
    up, down = (tokenizer.convert_tokens_to_ids(c) for c in "上下")
    cos = float(torch.nn.functional.cosine_similarity(table[up], table[down], dim=0))
    got = call(similarity, ["我的花很美", "山上有花", "齉爨", "齉爨", "我很喜欢猫"],
               ["我的草美", "山下有花", "齉爨", "爨齉", "我喜欢猫"])
    # R = 1/|y| Σ_i sim(y_i, ref_i), one word a character:
    # 我的花很美 / 我的草美: 我=我 1, 的=的 1, 花/草 0 (草 is unknown to minilm-l6: it matches only itself),
    #   很/美 0 (很 unknown), 美 has no partner 0: 2/5
    # 山上有花 / 山下有花: 1 + cos(上, 下) + 1 + 1, over 4
    # 齉爨 / 齉爨: identical unknown characters 1 + 1, over 2; 齉爨 / 爨齉: different unknown characters 0
    # 我很喜欢猫 / 我喜欢猫: only 我 matches in position (很/喜, 喜/欢, 欢/猫 are unknown and different), 1/5
    assert got == pytest.approx([2 / 5, (3 + cos) / 4, 1.0, 0.0, 1 / 5], abs=1e-6)


def test_tokenize_is_a_spec_field_and_bad_values_are_user_errors():
    reward = build_reward({"components": [{"type": "rouge", "variant": "rouge1", "tokenize": "char"}]})
    assert reward([""], ["ab"], ["ba"]).tolist() == pytest.approx([1.0])  # a, b against b, a: all 2 unigrams match
    with pytest.raises(RewardkitError, match=r"component 1 \(rouge\): tokenize must be one of default, auto"):
        build_reward({"components": [{"type": "rouge", "tokenize": "zh"}]})
    with pytest.raises(RewardkitError, match="bleu: tokenize must be auto or a sacrebleu tokenizer"):
        Bleu(tokenize="nope")
    with pytest.raises(RewardkitError, match="tokenize must be one of auto, whitespace"):
        Chrf(tokenize="char")
    with pytest.raises(RewardkitError, match="tokenize must be one of auto, words, whitespace, char"):
        TokenSimilarity(tokenize="default")


def readme_section(heading: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = text.index(heading)
    following = re.search(r"\n#{2,3} ", text[start + len(heading):])
    return text[start:start + len(heading) + following.start()] if following else text[start:]


def test_readme_chinese_examples_run_as_written():
    section = readme_section("### Chinese and other languages without spaces")
    (session,) = re.findall(r"```pycon\n(.*?)```", section, re.S)
    examples = doctest.DocTestParser().get_doctest(session, {}, "README: Chinese", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(examples)
    assert runner.summarize(verbose=False) == (0, 5)  # (failed, attempted)
    (spec,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    reward = build_reward(yaml.safe_load(spec))
    assert [c.name for c in reward.components] == ["rouge", "bleu"]
    assert reward([""], ["我喜欢吃苹果"], ["我喜欢吃苹果"]).tolist() == pytest.approx([2.0])  # both 1 on identical text
