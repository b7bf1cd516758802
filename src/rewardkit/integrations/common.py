"""The one scoring path behind every framework adapter (TRL, verl, OpenRLHF).

`shared_reward(source)` turns a reward source into a `SharedReward`:
- a reward spec (`.yaml`/`.yml`, see `rewardkit.rewards.spec`), or a mapping holding one;
- a reward model: a preset (`minilm-l6`, `smollm2-135m`), a folder saved by rewardkit, or any HF
  sequence-classification folder;
- a `rewardkit serve` URL (`http://HOST:PORT`), scored through its `/score` endpoint;
- an already built `RewardFunction` (library callers and tests).

A named source goes through `rewardkit.rewards.spec.load_reward` (a mapping through `build_reward`), so a response
gets the score `rewardkit score` and `rewardkit rl` would give it, whichever framework asks. Named and mapping sources
are loaded once per process and shared (`shared_reward` caches them), since frameworks import a reward function by
path and call it many times.

Frameworks call reward functions from several threads at once (verl's reward loop runs `compute_score` in an
executor, OpenRLHF runs `reward_func` through `asyncio.to_thread`), and a composite reward keeps state between calls
(its running normalizers, its `last_components`), so `SharedReward.score` holds a lock while it scores.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rewardkit.errors import RewardkitError

# Where a framework that imports a reward function by path (verl, OpenRLHF) finds the reward when none is passed.
REWARD_ENV = "REWARDKIT_REWARD"
# The total's key in per-response dicts (verl's `{"score": r, **components}`); no component may take it.
TOTAL_KEY = "score"


@dataclass
class ScoredBatch:
    """One batch's rewards (`scores`) and every component's raw value (`components`, by component name)."""

    scores: list[float]
    components: dict[str, list[float]]

    def rows(self) -> list[dict[str, float]]:
        """Per response: `{"score": total, component: raw value, ...}` (verl's result convention)."""
        return [{TOTAL_KEY: score, **{name: values[i] for name, values in self.components.items()}}
                for i, score in enumerate(self.scores)]


class SharedReward:
    """A reward function scored under a lock, returning plain floats and each component's values."""

    def __init__(self, reward: Any, source: str):
        self.reward = reward
        self.source = source
        self._lock = threading.Lock()
        names = [c.name for c in getattr(reward, "components", [])]
        if TOTAL_KEY in names:
            raise RewardkitError(f"{source}: a component is named {TOTAL_KEY!r}, the name frameworks log the total "
                                 f"under; give it another name")

    @property
    def needs_reference(self) -> bool:
        return bool(getattr(self.reward, "needs_reference", False))

    @property
    def needs_fields(self) -> tuple[str, ...]:
        """The record fields the reward reads besides prompt, response and reference (code_tests: "tests")."""
        return tuple(getattr(self.reward, "needs_fields", ()) or ())

    def special_tokens(self) -> tuple[str, ...]:
        """The special tokens of every tokenizer the reward's models use, longest first (for splitting a decoded
        prompt + response text as OpenRLHF sends it)."""
        tokens: set[str] = set()
        for reward in [c.reward for c in getattr(self.reward, "components", [])] or [self.reward]:
            tokenizer = getattr(reward, "tokenizer", None)
            tokens.update(t for t in getattr(tokenizer, "all_special_tokens", None) or () if t)
        return tuple(sorted(tokens, key=len, reverse=True))

    def score(self, prompts: Sequence[Any], responses: Sequence[str],
              labels: Sequence[Any] | None = None, fields: Sequence[Mapping] | None = None) -> ScoredBatch:
        """The rewards of the responses; `labels` (a framework's label column, any type) become references only
        when the reward compares to references: a reward that needs none ignores them, whatever they hold.
        `fields` (one mapping per response: its record's other fields) reach the components that read them."""
        references = [as_reference(v) for v in labels] if labels is not None and self.needs_reference else None
        extra = {"fields": [dict(f) for f in fields]} if fields is not None and self.needs_fields else {}
        with self._lock:
            total = self.reward(list(prompts), list(responses), references, **extra)
            components = {name: [float(v) for v in values.tolist()]
                          for name, values in getattr(self.reward, "last_components", {}).items()}
        return ScoredBatch([float(v) for v in total.tolist()], components)


_CACHE: dict[str, SharedReward] = {}
_CACHE_LOCK = threading.Lock()


def shared_reward(source: Any) -> SharedReward:
    """The `SharedReward` for `source` (see the module docstring); a source given by name or as a mapping is loaded
    once per process."""
    from rewardkit.rewards.spec import build_reward, load_reward

    if isinstance(source, SharedReward):
        return source
    if isinstance(source, Mapping):
        spec = json.loads(json.dumps(source, default=_plain))  # a plain dict, also from an OmegaConf mapping
        key, load = json.dumps(spec, sort_keys=True), lambda: build_reward(spec)
    elif isinstance(source, (str, Path)):
        # one entry per file, whichever working directory named it
        key = str(Path(source).resolve()) if Path(source).exists() else str(source)
        load = lambda: load_reward(key)  # noqa: E731
    else:
        from rewardkit.rewards.base import RewardFunction

        if isinstance(source, RewardFunction):
            return SharedReward(source, source.name)
        raise RewardkitError(f"a reward source is a spec file, a model, a rewardkit serve URL or a mapping; "
                             f"got {type(source).__name__}")
    with _CACHE_LOCK:  # held while loading, so that threads asking at once load the model once
        if key not in _CACHE:
            _CACHE[key] = SharedReward(load(), "reward spec" if isinstance(source, Mapping) else key)
        return _CACHE[key]


def _plain(value: Any) -> Any:
    """JSON for the mappings and sequences of a config object (OmegaConf's DictConfig and ListConfig)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not a spec value")


def configured_source(source: Any, framework: str) -> Any:
    """`source` when given, else $REWARDKIT_REWARD; neither is an error that says how to give one."""
    if source is not None and source != "":
        return source
    from_env = os.environ.get(REWARD_ENV)
    if not from_env:
        raise RewardkitError(f"rewardkit's {framework} reward has no reward: set ${REWARD_ENV} to a reward spec, a "
                             f"model folder or a rewardkit serve URL (or pass it, see rewardkit.integrations)")
    return from_env


def message_text(content: Any) -> str:
    """The text of a chat message's content: a string, or a list of parts whose text parts are joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    return "" if content is None else str(content)


def as_prompt(prompt: Any) -> str | list[dict[str, str]]:
    """A rewardkit prompt (text, or a list of {role, content} messages) from what a framework holds: text, or a list
    (or numpy array, as read back from parquet) of message mappings."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Mapping):  # one message
        prompt = [prompt]
    messages = list(prompt)
    if not all(isinstance(m, Mapping) and "role" in m for m in messages):
        raise RewardkitError(f"a prompt is text or a list of {{role, content}} messages, got {prompt!r:.120}")
    return [{"role": str(m["role"]), "content": message_text(m.get("content"))} for m in messages]


def as_response(completion: Any) -> str:
    """A response's text: the text itself, or, for a conversation (TRL's conversational completions), the content
    of its last assistant message (tool calls and tool results before it are the way there, not the answer)."""
    if isinstance(completion, str):
        return completion
    messages = [completion] if isinstance(completion, Mapping) else list(completion)
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role", "assistant") == "assistant":
            return message_text(message.get("content"))
    raise RewardkitError(f"a completion is text or a list of messages with an assistant message, got "
                         f"{completion!r:.120}")


def as_reference(value: Any) -> str | list[str] | None:
    """A reference from a framework's label column: text, several texts (list, tuple or numpy array), or a number
    (verl's math answers), which becomes its text."""
    if hasattr(value, "tolist"):  # numpy arrays and scalars (labels read back from parquet)
        value = value.tolist()
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    raise RewardkitError(f"a reference is text or a list of texts, got {type(value).__name__}: {value!r:.120}")


_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Warn about something that holds for every call (e.g. no prompt given) once per process, not per response."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=3)
