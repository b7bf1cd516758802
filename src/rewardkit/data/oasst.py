"""OpenAssistant (OASST) message trees -> RankedGroups of sibling assistant replies.

A row is one tree: the tree export `{message_tree_id, prompt: {message, replies: [...]}}` or the message export (the
root message itself with nested `replies`). Every message with two or more ranked assistant replies (`rank` 0 = best)
gives a RankedGroup whose prompt is the conversation from the root to that message as a list of {role, content}
messages (OASST's "prompter" becomes "user").

Messages flagged `synthetic` (machine-written), `deleted`, or that failed review (`review_result: false`) are dropped
together with their replies; `OasstStats` counts what that cost so the loader can say it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewardkit.data.feedback import order_by_ranks
from rewardkit.data.fields import BadRecord, RowContext, check_text
from rewardkit.data.readers import Row, json_type
from rewardkit.data.types import Location, Message, RankedGroup

_ROLES = {"prompter": "user", "assistant": "assistant"}


def is_oasst_tree(row: Row) -> bool:
    root = row.get("prompt")
    if isinstance(root, dict) and "replies" in root:
        return True
    return {"replies", "text", "role"} <= row.keys()


@dataclass
class OasstStats:
    trees: int = 0
    ranked_groups_in_file: int = 0  # before dropping anything
    synthetic_dropped: int = 0  # messages, counting the replies that went with them
    deleted_dropped: int = 0
    user_reply_groups: int = 0  # ranked groups of user (prompter) replies: not responses to score

    def note(self, label: str, groups_kept: int) -> str:
        return (f"{label}: {self.trees} OASST trees hold {self.ranked_groups_in_file} ranked groups; "
                f"{groups_kept} kept after dropping {self.synthetic_dropped} synthetic and {self.deleted_dropped} "
                f"deleted or review-failed message(s) with their replies"
                + (f" and {self.user_reply_groups} ranked group(s) of user replies" if self.user_reply_groups else ""))


def parse_oasst_tree(row: Row, location: Location, ctx: RowContext, stats: OasstStats) -> list[RankedGroup]:
    root = row["prompt"] if isinstance(row.get("prompt"), dict) else row
    stats.trees += 1
    stats.ranked_groups_in_file += _count_ranked_groups(root)
    if _dropped(root, stats):
        return []
    groups: list[RankedGroup] = []
    subset = ctx.subset(row)
    # Depth-first with an explicit stack: trees can be deep, and the order (parents first) is deterministic.
    stack: list[tuple[dict, list[Message]]] = [(root, [])]
    while stack:
        message, history = stack.pop()
        conversation = history + [_as_message(message)]
        replies = [reply for reply in _replies(message) if not _dropped(reply, stats)]
        ranked = [reply for reply in replies if reply.get("rank") is not None]
        if len(ranked) >= 2:
            if any(_as_message(reply)["role"] != "assistant" for reply in ranked):
                stats.user_reply_groups += 1
            else:
                texts = [_as_message(reply)["content"] for reply in ranked]
                where = f"'rank' of the replies to message {message.get('message_id', '?')}"
                best_first = order_by_ranks(texts, [reply["rank"] for reply in ranked], where)
                groups += ctx.group(location, conversation, best_first, subset)
        stack.extend((reply, conversation) for reply in reversed(replies))
    return groups


def _as_message(message: dict) -> Message:
    role = message.get("role")
    if role not in _ROLES:
        raise BadRecord(f"message {message.get('message_id', '?')} has role {role!r} (expected prompter or "
                        f"assistant)")
    return {"role": _ROLES[role], "content": check_text(message.get("text"), "'text'")}


def _replies(message: dict) -> list[dict]:
    replies = message.get("replies") or []
    if not isinstance(replies, list) or not all(isinstance(r, dict) for r in replies):
        raise BadRecord(f"message {message.get('message_id', '?')}: 'replies' must be a list of messages, got "
                        f"{json_type(replies)}")
    return replies


def _dropped(message: dict, stats: OasstStats) -> bool:
    if message.get("synthetic"):
        stats.synthetic_dropped += _size(message)
        return True
    if message.get("deleted") or message.get("review_result") is False:
        stats.deleted_dropped += _size(message)
        return True
    return False


def _size(message: dict) -> int:
    return 1 + sum(_size(reply) for reply in _replies(message))


def _count_ranked_groups(message: dict) -> int:
    replies = _replies(message)
    here = sum(reply.get("rank") is not None for reply in replies) >= 2
    return here + sum(_count_ranked_groups(reply) for reply in replies)
