"""Build a `CompositeReward` from a declarative spec (YAML file or mapping), through ONE factory: `type:` → class.

    mode: sparse            # sparse | dense (how token_rewards hands the reward to the RL loop)
    shaping: token          # dense only: token (every prefix) | step (prefixes ending at step_separator)
    step_separator: "\\n"
    clip: [-5, 5]           # optional clip of the total
    components:
      - {type: reward_model, path: runs/hh-rm, weight: 1.0, normalize: running}
      - {type: rouge, variant: rougeL, weight: 0.5}
      - {type: length, target: 120, tolerance: 40, unit: chars, weight: 0.2}

Every component takes `weight` (default 1), `normalize` (none | running | rank | rank_centered), `clip: [lo, hi]`,
an optional `name` (default: its type, numbered when repeated) and the keyword arguments of its class (the class
docstrings in rules.py, reference.py, learned.py, custom.py, math_answer.py, code.py, likelihood.py, http.py
and judge.py document them). Errors name the file, the line, the component's 1-based index and type:
`spec.yaml:7: component 2 (rouge): unknown field 'varient'`.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from rewardkit.config import coerce, load_yaml_mapping
from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import RewardFunction, finite_float
from rewardkit.rewards.code import CodeTests
from rewardkit.rewards.composite import NORMALIZATIONS, Component, CompositeReward
from rewardkit.rewards.custom import CustomReward
from rewardkit.rewards.http import HttpReward
from rewardkit.rewards.judge import LLMJudge
from rewardkit.rewards.learned import LearnedReward, RemoteReward
from rewardkit.rewards.likelihood import Likelihood
from rewardkit.rewards.math_answer import MathAnswer
from rewardkit.rewards.reference import Bleu, Chrf, EmbeddingSimilarity, Rouge, TokenSimilarity
from rewardkit.rewards.rules import (Keywords, NoEOSPenalty, OverlongPenalty, RegexMatch, RepetitionPenalty,
                                     TargetLength)

if TYPE_CHECKING:
    from rewardkit.device import Placement

COMPONENT_TYPES: dict[str, type[RewardFunction]] = {
    "reward_model": LearnedReward,
    "remote": RemoteReward,
    "length": TargetLength,
    "regex": RegexMatch,
    "repetition": RepetitionPenalty,
    "keywords": Keywords,
    "no_eos": NoEOSPenalty,
    "overlong": OverlongPenalty,
    "bleu": Bleu,
    "chrf": Chrf,
    "rouge": Rouge,
    "embedding_similarity": EmbeddingSimilarity,
    "token_similarity": TokenSimilarity,
    "custom": CustomReward,
    "math": MathAnswer,
    "code_tests": CodeTests,
    "likelihood": Likelihood,
    "http": HttpReward,
    "judge": LLMJudge,
}
COMMON_FIELDS = ("type", "name", "weight", "normalize", "clip")
TOP_LEVEL_FIELDS = ("components", "mode", "shaping", "step_separator", "clip")


def component_fields(cls: type) -> dict[str, inspect.Parameter]:
    """The spec fields of a component type: its constructor's ordinary parameters (keyword-only ones are for code)."""
    params = inspect.signature(cls.__init__).parameters
    return {name: p for name, p in params.items()
            if name != "self" and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD}


def _clip_bounds(value: Any, where: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise RewardkitError(f"{where}: clip must be [lo, hi], got {value!r}")
    lo, hi = (finite_float(v, f"{where}: clip bound") for v in value)
    if lo > hi:
        raise RewardkitError(f"{where}: clip lower bound {lo} is above the upper bound {hi}")
    return lo, hi


def _component_lines(path: Path) -> list[int]:
    """1-based line of each item under `components:` in a YAML file (empty when it cannot be read that way)."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == "components" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def build_component(entry: Any, index: int, where: str, placement: Placement | None = None) -> Component:
    """One component from its spec mapping; `index` is 1-based, `where` names the file (and line).

    A component that runs a model (it takes `device` and `precision`) and leaves them unset, or at auto, runs where
    `placement` (the command's own choice) says."""
    if not isinstance(entry, dict):
        raise RewardkitError(f"{where}: component {index} must be a mapping with a 'type', got {entry!r}")
    kind = entry.get("type")
    if kind is None:
        raise RewardkitError(f"{where}: component {index}: missing field 'type' (one of {', '.join(COMPONENT_TYPES)})")
    label = f"{where}: component {index} ({kind})"
    cls = COMPONENT_TYPES.get(str(kind))
    if cls is None:
        raise RewardkitError(f"{label}: unknown type {kind!r} (known: {', '.join(COMPONENT_TYPES)})")
    fields = component_fields(cls)
    hints = typing.get_type_hints(cls.__init__)
    kwargs = {}
    for key, value in entry.items():
        if key in COMMON_FIELDS:
            continue
        if key not in fields:
            raise RewardkitError(f"{label}: unknown field {key!r} (fields: {', '.join([*fields, *COMMON_FIELDS[1:]])})")
        kwargs[key] = coerce(value, hints.get(key, Any), f"{label}: field {key!r}")
        if isinstance(kwargs[key], float):  # a nan target or an inf penalty would only fail once scoring
            finite_float(kwargs[key], f"{label}: field {key!r}")
    if placement is not None and "placement" in inspect.signature(cls.__init__).parameters:
        kwargs["placement"] = placement  # the command's, for what the spec leaves at auto (`component_placement`)
    missing = [name for name, p in fields.items() if p.default is inspect.Parameter.empty and name not in kwargs]
    if missing:
        raise RewardkitError(f"{label}: missing field {missing[0]!r}")
    weight = finite_float(entry.get("weight", 1.0), f"{label}: weight")
    normalize = entry.get("normalize") or "none"
    if normalize not in NORMALIZATIONS:
        raise RewardkitError(f"{label}: normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
    clip = _clip_bounds(entry.get("clip"), label)
    try:
        reward = cls(**kwargs)
    except RewardkitError as exc:
        raise RewardkitError(f"{label}: {exc}")
    if cls is RemoteReward:  # it waits on a server: a composite runs it alongside its other components
        reward.calls_out = True
    return Component(reward, name=str(entry.get("name") or kind), weight=weight, normalize=normalize, clip=clip)


def build_reward(spec: dict | str | Path, source: str | None = None,
                 placement: Placement | None = None) -> CompositeReward:
    """The composite reward described by `spec` (a mapping, or the path of a YAML file); model components left at
    device and precision auto run where `placement` says."""
    lines: list[int] = []
    if not isinstance(spec, dict):
        path = Path(spec)
        source = source or str(path)
        spec = load_yaml_mapping(path)
        lines = _component_lines(path)
    source = source or "reward spec"
    for key in spec:
        if key not in TOP_LEVEL_FIELDS:
            raise RewardkitError(f"{source}: unknown field {key!r} (fields: {', '.join(TOP_LEVEL_FIELDS)})")
    entries = spec.get("components")
    if not isinstance(entries, list) or not entries:
        raise RewardkitError(f"{source}: 'components' must be a non-empty list of components")
    components = []
    for index, entry in enumerate(entries, start=1):
        where = f"{source}:{lines[index - 1]}" if len(lines) >= index else source
        components.append(build_component(entry, index, where, placement))
    seen: dict[str, int] = {}
    for component in components:  # repeated types get numbered names: length, length_2, ...
        seen[component.name] = seen.get(component.name, 0) + 1
        if seen[component.name] > 1:
            component.name = f"{component.name}_{seen[component.name]}"
    separator = spec.get("step_separator", "\n")
    if not isinstance(separator, str) or not separator:
        raise RewardkitError(f"{source}: step_separator must be a non-empty string")
    try:
        return CompositeReward(components, clip=_clip_bounds(spec.get("clip"), source),
                               mode=str(spec.get("mode", "sparse")), shaping=str(spec.get("shaping", "token")),
                               step_separator=separator)
    except RewardkitError as exc:
        raise RewardkitError(f"{source}: {exc}")


def load_reward(spec_or_model: str, max_length: int | None = None,
                placement: Placement | None = None) -> CompositeReward:
    """A reward from a spec file (.yaml/.yml), a `rewardkit serve` URL (http:// or https://) or a reward model
    (preset, folder or hub id), the latter two as a composite with one `remote` or `reward_model` component, so
    callers (score, rl, the framework integrations) accept any of them."""
    if Path(spec_or_model).suffix.lower() in (".yaml", ".yml"):
        return build_reward(spec_or_model, placement=placement)
    if spec_or_model.startswith(("http://", "https://")):
        return build_reward({"components": [{"type": "remote", "url": spec_or_model}]},
                            source=f"server {spec_or_model}")
    component: dict[str, Any] = {"type": "reward_model", "path": spec_or_model}
    if max_length:
        component["max_length"] = max_length
    return build_reward({"components": [component]}, source=f"model {spec_or_model}", placement=placement)
