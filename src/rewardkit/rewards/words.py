"""How the reference rewards split text into tokens, with languages written without spaces in mind.

Chinese and Japanese put no spaces between words. A tokenizer that splits at spaces, or keeps runs of letters, reads a
whole Chinese sentence as one word (BLEU and word similarity then see one token that rarely matches); one that keeps
only [a-z0-9] (rouge-score's) reads nothing at all, and the reward is silently 0. `auto` takes every CJK character
(Han, Hiragana, Katakana, Hangul) as a token and keeps words elsewhere, so that mixed text ("用 Python 写代码") gets
both: 用, python, 写, 代, 码. Character-level tokens are what sacrebleu's `zh` tokenizer and the usual Chinese ROUGE
set-ups use, and they need no word segmenter.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

# The Unicode blocks read one character at a time.
CJK_RANGES = (
    ("\u1100", "\u11ff"),  # Hangul Jamo
    ("\u2e80", "\u2fdf"),  # CJK and Kangxi radicals
    ("\u3000", "\u303f"),  # CJK symbols and punctuation (、。「」)
    ("\u3040", "\u30ff"),  # Hiragana, Katakana
    ("\u3100", "\u318f"),  # Bopomofo, Hangul compatibility Jamo
    ("\u31a0", "\u31ff"),  # Bopomofo extended, CJK strokes, Katakana phonetic extensions
    ("\u3400", "\u4dbf"),  # CJK Unified Ideographs Extension A
    ("\u4e00", "\u9fff"),  # CJK Unified Ideographs
    ("\ua960", "\ua97f"),  # Hangul Jamo Extended-A
    ("\uac00", "\ud7ff"),  # Hangul syllables, Hangul Jamo Extended-B
    ("\uf900", "\ufaff"),  # CJK Compatibility Ideographs
    ("\ufe30", "\ufe4f"),  # CJK Compatibility Forms
    ("\uff00", "\uffef"),  # Halfwidth and Fullwidth Forms (，！？, halfwidth Katakana)
    ("\U00020000", "\U0003134f"),  # CJK Unified Ideographs Extensions B to G, Compatibility Supplement
)
_CJK = "".join(f"{lo}-{hi}" for lo, hi in CJK_RANGES)
_CJK_CHAR = re.compile(f"[{_CJK}]")
# A letter or digit ([^\W_]: a word character that is not the underscore); on ASCII text exactly [a-zA-Z0-9].
_LETTER = re.compile(r"[^\W_]")
# auto: a run of letters/digits outside CJK, or one CJK letter (CJK punctuation is not a letter, so it is dropped).
_AUTO = re.compile(rf"[^\W_{_CJK}]+|(?=[^\W_])[{_CJK}]")
_WORDS = re.compile(r"[^\W_]+")

WORD_TOKENIZERS: dict[str, Callable[[str], list[str]]] = {
    "auto": _AUTO.findall,
    "words": _WORDS.findall,
    "whitespace": str.split,
    "char": lambda text: [c for c in text if not c.isspace()],
}
WORD_TOKENIZER_HELP = ("auto: every CJK character one token, runs of letters and digits elsewhere (punctuation "
                       "dropped); words: runs of letters and digits (a run of CJK characters is one word); "
                       "whitespace: split at whitespace; char: every character but whitespace")


def has_cjk(text: str) -> bool:
    return _CJK_CHAR.search(text) is not None


def space_cjk(text: str) -> str:
    """`text` with a space on each side of every CJK character, so that a whitespace-based tokenizer (sacrebleu's
    13a, chrF++'s words) reads each one as a token; text without CJK characters comes back unchanged."""
    return _CJK_CHAR.sub(r" \g<0> ", text) if has_cjk(text) else text


def has_letters(text: str) -> bool:
    return _LETTER.search(text) is not None


class TokenizerWarning(UserWarning):
    """A reference reward's tokenizer misread a text: it found no token in it, or read several CJK characters as one."""


class TokenizerWatch:
    """Warns, once per reward instance, when its tokenizer misreads a text, so that a reward that is 0 or near it for
    that reason does not go unnoticed:
    - no token in a text that has letters or digits: the reward is 0 there (rouge-score's own tokenizer does this to
      any Chinese text);
    - several CJK characters read as one token: a whole Chinese clause becomes one "word" that matches only if the
      clause is identical (sacrebleu's 13a, whitespace splits, runs of letters).
    `auto` never does either."""

    def __init__(self, reward_name: str, tokenize: str):
        self.reward_name, self.tokenize = reward_name, tokenize
        self.warned = False

    def check(self, text: str, tokens: list[str]) -> None:
        if self.warned:
            return
        if not tokens and has_letters(text):
            snippet = text if len(text) <= 40 else text[:40] + "..."
            problem = f"finds no token in {snippet!r}, so it scores 0 there"
        else:
            glued = has_cjk(text) and next((t for t in tokens if len(_CJK_CHAR.findall(t)) > 1), None)
            if not glued:
                return
            problem = f"reads {glued!r} as one token"
        self.warned = True
        warnings.warn(f"rewardkit: {self.reward_name} with tokenize: {self.tokenize} {problem} (tokenize: auto reads "
                      "every CJK character as a token; this warning is given once)", TokenizerWarning, stacklevel=2)
