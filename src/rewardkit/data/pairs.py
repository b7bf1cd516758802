"""Pairwise rows -> PreferencePair: explicit prompt, HH-style dialogues, TRL conversations, LLMBar.

- Explicit: `{prompt, chosen, rejected[, margin][, subset]}`; texts, or (TRL) conversations as message lists.
- HH dialogues: `{chosen, rejected}` full "\\n\\nHuman: ...\\n\\nAssistant: ..." texts. The prompt is the longest
  shared prefix ending in "\\n\\nAssistant:" (kept as text, marker included); each response is what follows, less
  one leading space.
- TRL conversational without a prompt: `{chosen: [messages], rejected: [messages]}`; the prompt is the shared message
  prefix and each side must end in exactly one assistant message after it (its content is the response).
- LLMBar: `{input, output_1, output_2, label: 1|2}` (label names the better output).
"""

from __future__ import annotations

from rewardkit.data.fields import BadRecord, RowContext, check_text, is_blank, messages
from rewardkit.data.readers import Row, json_type
from rewardkit.data.types import Location, Message, PreferencePair, Prompt

ASSISTANT_TURN = "\n\nAssistant:"


def parse_explicit_pair(row: Row, location: Location, ctx: RowContext) -> list[PreferencePair]:
    prompt, chosen, rejected = _pair_texts(ctx.prompt(row), row, ctx)
    return ctx.pair(location, prompt, chosen, rejected, ctx.number(row, "margin", False), ctx.subset(row))


def parse_implicit_pair(row: Row, location: Location, ctx: RowContext) -> list[PreferencePair]:
    prompt, chosen, rejected = _pair_texts(None, row, ctx)
    return ctx.pair(location, prompt, chosen, rejected, ctx.number(row, "margin", False), ctx.subset(row))


def parse_llmbar_pair(row: Row, location: Location, ctx: RowContext) -> list[PreferencePair]:
    prompt = _literal_text(row, "input")
    if is_blank(prompt):
        raise BadRecord("empty text in 'input'")
    first, second = _literal_text(row, "output_1"), _literal_text(row, "output_2")
    label = row.get("label")
    if isinstance(label, str) and label.strip() in ("1", "2"):
        label = int(label)
    if isinstance(label, bool) or label not in (1, 2):
        raise BadRecord(f"'label' must be 1 or 2 (the better output), got {label!r}")
    chosen, rejected = (first, second) if label == 1 else (second, first)
    return ctx.pair(location, prompt, chosen, rejected, None, ctx.subset(row))


def split_dialogues(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen reply, rejected reply) of two HH dialogues sharing their history.

    The split is at the last "\\n\\nAssistant:" that both share, i.e. the longest common prefix ending in it.
    """
    if chosen == rejected:  # nothing to split; the caller drops identical pairs
        return "", chosen, rejected
    end = len(chosen)
    while (turn := chosen.rfind(ASSISTANT_TURN, 0, end)) >= 0:
        cut = turn + len(ASSISTANT_TURN)
        if rejected.startswith(chosen[:cut]):
            return chosen[:cut], _strip_one_space(chosen[cut:]), _strip_one_space(rejected[cut:])
        end = turn
    raise BadRecord("chosen and rejected share no '\\n\\nAssistant:' turn, so the prompt cannot be found "
                    "(HH-style dialogues expected; give a 'prompt' field otherwise)")


def split_conversations(prompt: Prompt | None, chosen: list[Message], rejected: list[Message],
                        fields: tuple[str, str] = ("'chosen'", "'rejected'")) -> tuple[Prompt, str, str]:
    """(prompt, chosen reply, rejected reply) of two conversations that share all but their final assistant reply.

    With an explicit prompt, chosen/rejected may be just the replies (TRL) or whole conversations repeating the
    prompt (UltraFeedback-style); both give the same prompt.
    """
    limit = min(len(chosen), len(rejected)) - 1
    shared = 0
    while shared < limit and chosen[shared] == rejected[shared]:
        shared += 1
    for field, conversation in zip(fields, (chosen, rejected)):
        if not conversation:
            raise BadRecord(f"empty conversation in {field}")
    if prompt is None and shared == 0:
        raise BadRecord(f"{fields[0]} and {fields[1]} share no messages, so the prompt cannot be found "
                        f"(give a 'prompt' field)")
    for field, conversation in zip(fields, (chosen, rejected)):
        if len(conversation) - shared != 1:
            raise BadRecord(f"{field} must end in one assistant reply after the messages it shares with the other "
                            f"side; it has {len(conversation) - shared} messages after them")
        if conversation[-1]["role"] != "assistant":
            raise BadRecord(f"{field} must end with an assistant message, not a {conversation[-1]['role']!r} one")
    history = chosen[:shared]
    replies = chosen[-1]["content"], rejected[-1]["content"]
    if prompt is None:
        return (history, *replies)
    if not history:
        return (prompt, *replies)
    prompt_messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    if history[: len(prompt_messages)] == prompt_messages:  # the conversations repeat the prompt
        return (history, *replies)
    return (prompt_messages + history, *replies)


def _pair_texts(prompt: Prompt | None, row: Row, ctx: RowContext) -> tuple[Prompt, str, str]:
    chosen, rejected = ctx.get(row, "chosen"), ctx.get(row, "rejected")
    names = ctx.field("chosen"), ctx.field("rejected")
    if isinstance(chosen, list) and isinstance(rejected, list):
        return split_conversations(prompt, messages(chosen, names[0]), messages(rejected, names[1]), names)
    if isinstance(chosen, list) or isinstance(rejected, list):
        raise BadRecord(f"{names[0]} and {names[1]} must both be texts or both be conversations, got "
                        f"{json_type(chosen)} and {json_type(rejected)}")
    chosen, rejected = check_text(chosen, names[0]), check_text(rejected, names[1])
    if prompt is None:
        return split_dialogues(chosen, rejected)
    return prompt, chosen, rejected


def _literal_text(row: Row, key: str) -> str:
    if row.get(key) is None:
        raise BadRecord(f"missing field '{key}'")
    return check_text(row[key], f"'{key}'")


def _strip_one_space(reply: str) -> str:
    return reply[1:] if reply.startswith(" ") else reply
