"""Core feedback records: plain dataclasses with no torch, each carrying the Location it was read from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A prompt is plain text, or a conversation: a list of {"role": ..., "content": ...} messages (TRL's conversational
# format). The reward model decides how to render it (chat template or plain text).
Message = dict[str, str]
Prompt = str | list[Message]


@dataclass(frozen=True, slots=True)
class Location:
    """Where a record came from, so any later error can name the file and line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(slots=True)
class PreferencePair:
    """A pairwise preference: `chosen` is better than `rejected` for `prompt` (by `margin` when given)."""

    prompt: Prompt
    chosen: str
    rejected: str
    margin: float | None = None
    subset: str | None = None
    source: Location | None = field(default=None, compare=False)


@dataclass(slots=True)
class RatedResponse:
    """An absolute rating of one response (Likert or real-valued)."""

    prompt: Prompt
    response: str
    score: float
    subset: str | None = None
    source: Location | None = field(default=None, compare=False)


@dataclass(slots=True)
class RankedGroup:
    """Responses to one prompt, best first (ties are not represented)."""

    prompt: Prompt
    responses: list[str]
    subset: str | None = None
    source: Location | None = field(default=None, compare=False)


@dataclass(slots=True)
class BinaryFeedback:
    """A thumbs up (label 1) or down (label 0) on one response."""

    prompt: Prompt
    response: str
    label: int
    subset: str | None = None
    source: Location | None = field(default=None, compare=False)


FeedbackRecord = PreferencePair | RatedResponse | RankedGroup | BinaryFeedback


def prompt_as_text(prompt: Prompt) -> str:
    """Render a conversation the HH way ("\\n\\nHuman: ...\\n\\nAssistant: ...") ending with an open assistant turn.

    Used for models without a chat template and for length statistics; plain-text prompts are returned unchanged.
    """
    if isinstance(prompt, str):
        return prompt
    names = {"user": "Human", "assistant": "Assistant", "system": "System"}
    turns = "".join(f"\n\n{names.get(m['role'], m['role'].title())}: {m['content']}" for m in prompt)
    return turns + "\n\nAssistant:"


_HH_TURN = re.compile(r"\n\n(Human|Assistant|System): ?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant", "System": "system"}


def conversation_from_text(prompt: str) -> list[Message]:
    """Turn an HH-style dialogue ("\\n\\nHuman: ...\\n\\nAssistant:") into messages for a chat template.

    The trailing open "Assistant:" turn is dropped (the response fills it). Text without HH markers becomes one
    user message.
    """
    pieces = _HH_TURN.split(prompt)
    if len(pieces) < 3 or pieces[0].strip():
        return [{"role": "user", "content": prompt}]
    messages = [{"role": _HH_ROLES[role], "content": content.strip()}
                for role, content in zip(pieces[1::2], pieces[2::2])]
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages
