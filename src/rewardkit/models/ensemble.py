"""Reward-model ensembles: K members trained from one backbone on different data orders, scored as one reward model.

A saved ensemble is one folder:

    OUT/                     the members' weight average (WARM, Ramé et al. 2024): a standard HF folder, so plain
                             `transformers` and `RewardModel.from_pretrained` load it as one ordinary reward model
    OUT/members/member-K/    each member, a standard rewardkit folder
    OUT/rewardkit.json       {"ensemble": {"members": ["members/member-0", ...]}, ...}

`load_reward_model` (what eval-rm, score, serve and rl load with) reads such a folder as a `RewardEnsemble`: its reward
is the members' mean and `score_with_spread` also gives their disagreement (the std over members), which a
conservative reward can subtract (mean − λ·std, Coste et al. 2023). Any other folder loads as a `RewardModel`.

Members share the backbone, so they share the tokenizer and the text rule: a text is encoded once and every member
scores the same tokens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from rewardkit.data.types import Prompt
from rewardkit.device import Placement
from rewardkit.errors import RewardkitError
from rewardkit.models.presets import resolve_model_path
from rewardkit.models.checkpoint import METADATA_FILE, read_metadata
from rewardkit.models.reward_model import RewardModel
from rewardkit.models.tokenization import Encoded
from rewardkit.runs import write_text_atomically

MEMBERS_DIR = "members"


def member_dir(output_dir: str | Path, index: int) -> Path:
    return Path(output_dir) / MEMBERS_DIR / f"member-{index}"


def average_state_dicts(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts with the same keys and shapes (computed in fp32, returned in each
    tensor's dtype); integer buffers (position ids) must agree and are kept."""
    if not states:
        raise ValueError("no state dicts to average")
    keys = list(states[0])
    for state in states[1:]:
        if list(state) != keys:
            raise ValueError("the state dicts hold different tensors")
    averaged = {}
    for key in keys:
        tensors = [state[key] for state in states]
        if tensors[0].is_floating_point():
            averaged[key] = torch.stack([t.float() for t in tensors]).mean(0).to(tensors[0].dtype)
        else:
            if any(not torch.equal(t, tensors[0]) for t in tensors[1:]):
                raise ValueError(f"{key}: integer tensors differ between members and cannot be averaged")
            averaged[key] = tensors[0].clone()
    return averaged


def mean_and_spread(member_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) over members of [K, N] scores; the std is the population std (0 for one member)."""
    return member_scores.mean(0), member_scores.std(0, unbiased=False)


class RewardEnsemble:
    """K reward models scored as one: the reward is the members' mean. The text rule is member 0's (all agree)."""

    is_ensemble = True

    def __init__(self, members: Sequence[RewardModel], temperature: float = 1.0, reward_stats: dict | None = None):
        if not members:
            raise RewardkitError("an ensemble needs at least one member")
        first = members[0]
        for index, member in enumerate(members[1:], 1):
            if member.tokenizer.get_vocab() != first.tokenizer.get_vocab():
                raise RewardkitError(f"ensemble member {index} has another tokenizer than member 0; members must "
                                     f"share the backbone")
        self.members = list(members)
        self.temperature = float(temperature)
        self.reward_stats = reward_stats  # of the ensemble's (mean) rewards on held-out data, as RewardModel's

    # the text rule and its settings are member 0's (max_length is set on every member)
    @property
    def tokenizer(self) -> Any:
        return self.members[0].tokenizer

    @property
    def max_length(self) -> int:
        return self.members[0].max_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        for member in self.members:
            member.max_length = int(value)

    @property
    def use_chat_template(self) -> bool:
        return self.members[0].use_chat_template

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    def eval(self) -> "RewardEnsemble":
        for member in self.members:
            member.eval()
        return self

    def encode(self, prompt: Prompt, response: str) -> Encoded:
        return self.members[0].encode(prompt, response)

    def encode_many(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[Encoded]:
        return self.members[0].encode_many(prompts, responses)

    # ---------------------------------------------------------------- scoring
    @property
    def has_length_head(self) -> bool:
        return all(member.has_length_head for member in self.members)

    def member_scores_encoded(self, encoded: Sequence[Encoded], batch_size: int = 32,
                              with_length: bool = False) -> torch.Tensor:
        """[K, N] rewards of every member for already-encoded texts; `with_length` (members with length heads):
        [K, 2, N], each member's rewards and its length head's outputs."""
        return torch.stack([member.score_encoded(encoded, batch_size=batch_size, with_length=with_length)
                            for member in self.members])

    def score_encoded(self, encoded: Sequence[Encoded], batch_size: int = 32, progress: bool = False,
                      with_length: bool = False) -> torch.Tensor:
        """The members' mean, as `RewardModel.score_encoded` ([N], or [2, N] `with_length`)."""
        return self.member_scores_encoded(encoded, batch_size, with_length).mean(0)

    def score_with_spread(self, prompts: Sequence[Prompt], responses: Sequence[str],
                          batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std over members) of each (prompt, response)."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not responses:
            return torch.empty(0), torch.empty(0)
        return mean_and_spread(self.member_scores_encoded(self.encode_many(prompts, responses), batch_size))

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str], batch_size: int = 32,
              progress: bool = False) -> torch.Tensor:
        """Mean rewards [B] for (prompt, response) pairs, as `RewardModel.score`."""
        return self.score_with_spread(prompts, responses, batch_size)[0]

    # ---------------------------------------------------------------- saving
    def save_metadata(self, directory: str | Path) -> None:
        """Rewrite `rewardkit.json` of the ensemble folder (e.g. after fitting a calibration temperature)."""
        metadata = read_metadata(directory)
        metadata.update(max_length=self.max_length, temperature=self.temperature)
        if self.reward_stats is not None:
            metadata["reward_stats"] = self.reward_stats
        write_text_atomically(Path(directory, METADATA_FILE), json.dumps(metadata, indent=2) + "\n")


def save_ensemble(directory: str | Path, members: Sequence[str | Path], average: RewardModel) -> None:
    """Write the ensemble folder: `average` (already holding the members' mean weights) as the folder's own model, and
    rewardkit.json listing the members (folders inside `directory`). Its settings (max_length, temperature,
    reward_stats) are the ensemble's: set them on `average` first."""
    directory = Path(directory)
    average.save_pretrained(directory)
    metadata = read_metadata(directory)
    metadata["ensemble"] = {"members": [Path(m).relative_to(directory).as_posix() for m in members]}
    write_text_atomically(Path(directory, METADATA_FILE), json.dumps(metadata, indent=2) + "\n")


def load_reward_model(name_or_path: str, max_length: int | None = None,
                      placement: Placement | None = None) -> RewardModel | RewardEnsemble:
    """A saved ensemble as a `RewardEnsemble`, anything else (preset, folder, hub id) as a `RewardModel`."""
    path = Path(resolve_model_path(name_or_path))
    metadata = read_metadata(path) if path.is_dir() else {}
    members = metadata.get("ensemble", {}).get("members")
    if not members:
        return RewardModel.from_pretrained(name_or_path, max_length=max_length, placement=placement)
    missing = [m for m in members if not (path / m / "config.json").exists()]
    if missing:
        raise RewardkitError(f"{path}: ensemble member folder {missing[0]} is missing")
    loaded = [RewardModel.from_pretrained(str(path / m), max_length=max_length or metadata.get("max_length"),
                                          placement=placement) for m in members]
    return RewardEnsemble(loaded, temperature=metadata.get("temperature", 1.0),
                          reward_stats=metadata.get("reward_stats"))
