"""Reading and validating the fields of one row: the column mapping, text, numbers, conversations.

Every problem with a row raises BadRecord with a message naming the field as the user's file spells it; the loader
adds the row's location and applies the on_bad_record policy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from rewardkit.data.readers import Row, Source, json_type
from rewardkit.data.report import LoadReport
from rewardkit.data.types import BinaryFeedback, Location, Message, PreferencePair, Prompt, RankedGroup, RatedResponse
from rewardkit.errors import RewardkitError

# The fields rewardkit knows; a column mapping renames them ({"prompt": "question"}); mapping "prompt" to None means
# the data has no prompt (e.g. sentiment-labelled texts) and every record gets the empty prompt.
ROLES = ("prompt", "chosen", "rejected", "margin", "subset", "response", "score", "label", "responses", "ranks")
# Other usual names tried when a field is neither mapped nor present under its own name (TRL's unpaired format).
ALIASES = {"response": ("completion",)}

class BadRecord(Exception):
    """A problem with one record; the message names the field, the loader adds the location."""


def parse_column_mapping(items: list[str]) -> dict[str, str | None] | None:
    """Command-line renames `FIELD=COLUMN` as a mapping; `prompt=` (nothing after =) means there is no prompt column."""
    mapping: dict[str, str | None] = {}
    for item in items:
        field, sep, column = item.partition("=")
        if not sep or not field or (not column and field != "prompt"):
            raise RewardkitError(f"--columns expects FIELD=COLUMN (or prompt= for no prompt column), got {item!r}")
        mapping[field] = column or None
    return check_columns(mapping) if mapping else None


def check_columns(columns: Mapping[str, str | None] | None) -> dict[str, str | None]:
    columns = dict(columns or {})
    for role, name in columns.items():
        if role not in ROLES:
            raise RewardkitError(f"unknown field {role!r} in the column mapping (known: {', '.join(ROLES)})")
        if name is None and role != "prompt":
            raise RewardkitError(f"only 'prompt' may be mapped to None (no such column), not {role!r}")
        if name is not None and not isinstance(name, str):
            raise RewardkitError(f"the column mapping must give column names as text, got {name!r} for {role!r}")
    return columns


class RowContext:
    """Reads fields of the rows of one source and turns them into records under the load's policies."""

    def __init__(self, source: Source, columns: dict[str, str | None], keys: set[str], report: LoadReport):
        self.source, self.report = source, report
        self.mapped = set(columns)
        self.names: dict[str, str | None] = {}
        for role in ROLES:
            if role in columns:
                self.names[role] = columns[role]
            else:
                alternatives = [alias for alias in ALIASES.get(role, ()) if alias in keys and role not in keys]
                self.names[role] = alternatives[0] if alternatives else role

    def has(self, keys: set[str], *roles: str) -> bool:
        """Whether the data has all `roles`: their columns are among `keys`, or the user mapped them (a mapped column
        that is missing is then reported as missing, not taken for another shape)."""
        return all(r in self.mapped or self.names[r] in keys for r in roles)

    def field(self, role: str) -> str:
        name = self.names[role]
        return f"'{name}'" if name == role else f"'{name}' ({role})"

    # -- raw values -------------------------------------------------------------------------------------------------
    def get(self, row: Row, role: str, required: bool = True) -> Any:
        value = row.get(self.names[role])
        if value == "" and not required and self.source.is_tabular:
            value = None  # an empty cell leaves an optional field out
        if value is None and required:
            raise BadRecord(f"missing field {self.field(role)}")
        return value

    def text(self, row: Row, role: str) -> str:
        return check_text(self.get(row, role), self.field(role))

    def prompt(self, row: Row) -> Prompt:
        if self.names["prompt"] is None:
            return ""
        value = self.get(row, "prompt")
        if isinstance(value, list):
            conversation = messages(value, self.field("prompt"))
            if not conversation:
                raise BadRecord(f"empty conversation in {self.field('prompt')}")
            return conversation
        prompt = check_text(value, self.field("prompt"))
        if is_blank(prompt):
            raise BadRecord(f"empty text in {self.field('prompt')}")
        return prompt

    def number(self, row: Row, role: str, required: bool = True) -> float | None:
        value = self.get(row, role, required)
        return None if value is None else check_number(value, self.field(role))

    def list(self, row: Row, role: str, required: bool = True) -> list | None:
        value = self.get(row, role, required)
        if isinstance(value, str) and self.source.is_tabular:  # a list in a CSV cell is written as JSON
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):  # not JSON, or an integer or nesting past Python's limits
                raise BadRecord(f"{self.field(role)} must be a JSON list in this CSV cell") from None
        if value is not None and not isinstance(value, (list, tuple)):
            raise BadRecord(f"{self.field(role)} must be a list, got {json_type(value)}")
        return None if value is None else list(value)

    def subset(self, row: Row) -> str | None:
        value = self.get(row, "subset", required=False)
        if value is None:
            return self.source.subset
        if not isinstance(value, str):
            raise BadRecord(f"{self.field('subset')} must be text, got {json_type(value)}")
        return value or self.source.subset

    # -- records under the load's policies ------------------------------------------------------------------------
    def pair(self, location: Location, prompt: Prompt, chosen: str, rejected: str, margin: float | None,
             subset: str | None) -> list[PreferencePair]:
        if chosen == rejected and not self.report.keep_identical(location):
            return []
        if not self._keep_if_empty(location, {self.field("chosen"): chosen, self.field("rejected"): rejected}):
            return []
        return [PreferencePair(prompt, chosen, rejected, margin, subset, location)]

    def group(self, location: Location, prompt: Prompt, responses: list[str],
              subset: str | None) -> list[RankedGroup]:
        if len(responses) < 2:
            raise BadRecord(f"a ranking needs at least 2 responses, got {len(responses)}")
        if len(set(responses)) < len(responses) and \
                not self.report.keep_identical(location, "the ranking holds the same response twice"):
            return []
        named = {f"response {i + 1} of the ranking": text for i, text in enumerate(responses)}
        if not self._keep_if_empty(location, named):
            return []
        return [RankedGroup(prompt, responses, subset, location)]

    def rated(self, location: Location, prompt: Prompt, response: str, score: float,
              subset: str | None) -> list[RatedResponse]:
        if not self._keep_if_empty(location, {self.field("response"): response}):
            return []
        return [RatedResponse(prompt, response, score, subset, location)]

    def binary(self, location: Location, prompt: Prompt, response: str, label: int,
               subset: str | None) -> list[BinaryFeedback]:
        if not self._keep_if_empty(location, {self.field("response"): response}):
            return []
        return [BinaryFeedback(prompt, response, label, subset, location)]

    def _keep_if_empty(self, location: Location, responses: dict[str, str]) -> bool:
        empty = [name for name, text in responses.items() if is_blank(text)]
        if not empty:
            return True
        return self.report.keep_empty_response(location, f"empty response in {' and '.join(empty)}")


# ---------------------------------------------------------------------------------------------------------------------
# Value checks
# ---------------------------------------------------------------------------------------------------------------------
def check_text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise BadRecord(f"{field} must be text, got {json_type(value)}")
    return value


def is_blank(text: str) -> bool:
    """Empty or whitespace only (isspace stops at the first other character; strip would copy the text)."""
    return not text or text.isspace()


def check_number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadRecord(f"{field} must be a number, got {json_type(value)}")
    try:
        number = float(value)
    except ValueError:
        raise BadRecord(f"{field} must be a number, got {value!r}") from None
    except OverflowError:  # an integer beyond float's range
        raise BadRecord(f"{field} must be a finite number, got an integer too large for a float") from None
    if not math.isfinite(number):
        raise BadRecord(f"{field} must be a finite number, got {value!r}")
    return number


def messages(value: list, field: str) -> list[Message]:
    """A conversation as a list of {"role", "content"} text messages (other keys dropped)."""
    conversation = []
    for index, message in enumerate(value):
        where = f"{field} message {index + 1}"
        if not isinstance(message, dict):
            raise BadRecord(f"{where} must be an object with 'role' and 'content', got {json_type(message)}")
        if "role" not in message or "content" not in message:
            raise BadRecord(f"{where} lacks {'role' if 'role' not in message else 'content'}")
        role = check_text(message["role"], f"{where} role")
        content = check_text(message["content"], f"{where} content")
        conversation.append({"role": role, "content": content})
    return conversation
