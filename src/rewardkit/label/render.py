"""Safe HTML for prompts and responses: conversations, Markdown and code, from text nobody has vetted.

The rule is escape first, then format: every character of the text is HTML-escaped before any formatting is applied,
and the formatting only wraps escaped text in a fixed set of tags (`pre`, `code`, `strong`, `em`, headings, lists)
that carry no attributes (a fenced code block's language becomes a class name only after it is reduced to letters,
digits, `+`, `-` and `_`). Links and images are not rendered: a `[text](javascript:...)` stays visible text, so no
URL from the data can ever become clickable. The app's Content-Security-Policy forbids inline scripts as a second
line of defence.

Language: the page's own words are English (`<html lang="en">`), but the data may not be. `language_of` tells
Chinese, Japanese and Korean text apart by its script, and each prompt turn and response written in one of them is
marked `lang="zh"`, `"ja"` or `"ko"`, so that the browser picks a CJK font of that language (the style sheet lists
them) rather than falling back glyph by glyph. Text in other scripts keeps the page's language: it is not known.
"""

from __future__ import annotations

import html
import re

from rewardkit.data.types import Prompt, conversation_from_text

_FENCE = re.compile(r"^```[ \t]*([^\n`]*)\n(.*?)(?:^```[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![*\w])")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*$")
_BULLET = re.compile(r"^[ \t]*[-*+][ \t]+(.*)$")
_NUMBERED = re.compile(r"^[ \t]*\d{1,9}[.)][ \t]+(.*)$")
_LANGUAGE = re.compile(r"[^A-Za-z0-9+_-]")
_ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System"}
_INLINE_CODE_SPAN = re.compile(r"`[^`\n]*`")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
CJK_SHARE = 0.2  # of the letters outside code: a text this much Chinese, Japanese or Korean is marked as such


def escape(text: str) -> str:
    return html.escape(str(text), quote=True)


def language_of(text: str) -> str | None:
    """"zh", "ja" or "ko" for text written mostly in Chinese, Japanese or Korean (at least CJK_SHARE of its letters
    outside code are Han, kana or Hangul); None otherwise. Japanese is told by its kana, Korean by Hangul outnumbering
    Han; other CJK text is Chinese."""
    prose = _INLINE_CODE_SPAN.sub("", _FENCE.sub("", text))
    letters = sum(ch.isalpha() for ch in prose)
    han, kana, hangul = (len(pattern.findall(prose)) for pattern in (_HAN, _KANA, _HANGUL))
    if not letters or han + kana + hangul < CJK_SHARE * letters:
        return None
    if kana:
        return "ja"
    return "ko" if hangul > han else "zh"


def lang_attribute(text: str) -> str:
    """` lang="…"` for an element holding `text` when its language is known (`language_of`), else ""."""
    language = language_of(text)
    return f' lang="{language}"' if language else ""


def _inline(escaped: str) -> str:
    """Inline Markdown on already-escaped text: `code` first (its content is left alone), then **bold** and *em*."""
    pieces = _INLINE_CODE.split(escaped)
    out = []
    for index, piece in enumerate(pieces):
        if index % 2:
            out.append(f"<code>{piece}</code>")
        else:
            out.append(_ITALIC.sub(r"<em>\1</em>", _BOLD.sub(r"<strong>\1</strong>", piece)))
    return "".join(out)


def _blocks(text: str) -> str:
    """Paragraphs, headings and lists of text outside code fences (escaped here, line by line)."""
    out, paragraph, items, list_tag = [], [], [], None

    def flush() -> None:
        nonlocal paragraph, items, list_tag
        if paragraph:
            out.append("<p>" + "<br>".join(_inline(escape(line)) for line in paragraph) + "</p>")
            paragraph = []
        if items:
            out.append(f"<{list_tag}>" + "".join(f"<li>{_inline(escape(i))}</li>" for i in items) + f"</{list_tag}>")
            items, list_tag = [], None

    for line in text.split("\n"):
        heading, bullet, numbered = _HEADING.match(line), _BULLET.match(line), _NUMBERED.match(line)
        if not line.strip():
            flush()
        elif heading:
            flush()
            level = len(heading.group(1)) + 2  # h3..h8 -> the page's own h1/h2 stay above the content
            tag = f"h{min(level, 6)}"
            out.append(f"<{tag}>{_inline(escape(heading.group(2)))}</{tag}>")
        elif bullet or numbered:
            tag = "ul" if bullet else "ol"
            if paragraph or (items and list_tag != tag):
                flush()
            list_tag = tag
            items.append((bullet or numbered).group(1))
        else:
            if items:
                flush()
            paragraph.append(line)
    flush()
    return "".join(out)


def render_markdown(text: str) -> str:
    """HTML for `text` read as Markdown; every character of it escaped (see the module docstring)."""
    out, position = [], 0
    for fence in _FENCE.finditer(text):
        out.append(_blocks(text[position:fence.start()]))
        language = _LANGUAGE.sub("", fence.group(1))[:32]
        attribute = f' class="language-{language}"' if language else ""
        out.append(f"<pre><code{attribute}>{escape(fence.group(2).rstrip(chr(10)))}</code></pre>")
        position = fence.end()
    out.append(_blocks(text[position:]))
    return "".join(out)


def conversation(prompt: Prompt) -> list[dict[str, str]]:
    """The prompt as messages: a conversation as given, an HH dialogue split into turns, other text one user turn."""
    if isinstance(prompt, list):
        return prompt
    return conversation_from_text(prompt)


def render_conversation(prompt: Prompt) -> str:
    parts = []
    for message in conversation(prompt):
        role = str(message.get("role", ""))
        css = role if role in _ROLE_NAMES else "other"
        content = str(message.get("content", ""))
        parts.append(f'<div class="msg msg-{css}"><div class="role">{escape(_ROLE_NAMES.get(role, role.title()))}'
                     f'</div><div class="md"{lang_attribute(content)}>{render_markdown(content)}</div></div>')
    return "".join(parts)
