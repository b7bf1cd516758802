"""`rewardkit label import`: candidate responses -> items to judge, in a queue order, added to the database at once.

Where candidates come from:
- feedback files in any format `train-rm` reads (`rewardkit.data.loaders`); their labels are dropped, their texts
  kept: a pair's two responses, a ranking's responses, a rated or judged response;
- `rl` sample files (`samples/step-N.jsonl` rows `{prompt, response, ...}`), or any rows with prompt and response
  but no label: responses to the same prompt form a group;
- a policy sampled `samples_per_prompt` times for each prompt (`--policy`, `--prompts`).
Groups then become items of the task: pairwise takes two responses of a group (every pair, or at most
`max_pairs_per_prompt` drawn at random), ranking the whole group, rating and thumbs each response alone. Responses
are shown in a random (seeded) order, so the position on screen says nothing about where a response came from.

Everything is read and checked before the database is touched, and the items are added in one transaction: a bad
record stops the import (`file:line`) with nothing imported.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from rewardkit.data import loaders
from rewardkit.data.fields import BadRecord, messages, parse_column_mapping
from rewardkit.data.report import LoadReport
from rewardkit.data.types import Prompt
from rewardkit.errors import RewardkitError
from rewardkit.kinds import kind_of
from rewardkit.label.config import LabelImportConfig
from rewardkit.label.selection import resolve_strategy, selection_order
from rewardkit.label.store import NewItem, Store
from rewardkit.label.tasks import task_named

# Without --task, items are of the kind the input holds; `rl` samples (several responses to a prompt) become pairs.
DEFAULT_TASK = {"samples": "pairs"}
_LABEL_FIELDS = {"score", "label", "chosen", "rejected", "responses", "output_1"}


@dataclass
class Group:
    """Responses to one prompt, as read (kind: pairs, rankings, ratings, binary or samples)."""

    prompt: Prompt
    responses: list[str]
    subset: str | None
    source: str
    kind: str


# ------------------------------------------------------------------------------------------------ reading inputs
def is_samples_file(path: str) -> bool:
    """Rows with a prompt and a response but no feedback: `rl` samples, or any responses waiting for judgments."""
    first = next(loaders.read_rows(path, on_bad_record="skip"), None)
    return first is not None and "prompt" in first[1] and "response" in first[1] and not (
        _LABEL_FIELDS & set(first[1]))


def read_samples(path: str, on_bad_record: str) -> list[Group]:
    """Sample rows grouped by prompt (first-seen order); each group's source is its first row."""
    report = LoadReport(on_bad_record)
    groups: dict[str, Group] = {}
    for location, row in loaders.read_rows(path, report=report):
        try:
            prompt, response = row.get("prompt"), row.get("response")
            if isinstance(prompt, list) and prompt:
                prompt = messages(prompt, "prompt")
            elif not isinstance(prompt, str) or not prompt.strip():
                raise BadRecord("'prompt' must be non-empty text or a list of messages")
            if not isinstance(response, str):
                raise BadRecord(f"'response' must be text, got {type(response).__name__}")
        except BadRecord as problem:
            report.bad_record(location, str(problem))
            continue
        key = json.dumps(prompt, sort_keys=True)
        if key not in groups:
            groups[key] = Group(prompt, [], None, str(location), "samples")
        groups[key].responses.append(response)
    report.print_summary()
    return list(groups.values())


def groups_from_records(records: Iterable) -> list[Group]:
    """Records of several responses (pairs, rankings) stay one group each; records of one response (ratings, binary)
    are grouped by prompt."""
    groups: list[Group] = []
    by_prompt: dict[tuple[str, str], Group] = {}
    for record in records:
        source = str(record.source) if record.source is not None else "?"
        kind = kind_of(record)
        responses, _ = kind.texts(record)
        if task_named(kind.name).max_responses != 1:
            groups.append(Group(record.prompt, responses, record.subset, source, kind.name))
            continue
        key = (kind.name, json.dumps(record.prompt, sort_keys=True))
        if key not in by_prompt:
            by_prompt[key] = Group(record.prompt, [], record.subset, source, kind.name)
            groups.append(by_prompt[key])
        by_prompt[key].responses += responses
    return groups


def read_inputs(paths: list[str], columns: list[str], on_bad_record: str) -> list[Group]:
    mapping = parse_column_mapping(columns)
    groups: list[Group] = []
    for path in paths:
        if not mapping and is_samples_file(path):
            groups += read_samples(path, on_bad_record)
        else:
            groups += groups_from_records(loaders.load_records(path, "auto", columns=mapping,
                                                               on_bad_record=on_bad_record))
    return groups


def generate_groups(cfg: LabelImportConfig) -> list[Group]:
    """`samples_per_prompt` responses sampled from `cfg.policy` for each prompt of `cfg.prompts`."""
    import torch

    from rewardkit.device import placement_of
    from rewardkit.models.causal_lm import load_causal_lm
    from rewardkit.rl.policy import load_prompts, sample_responses
    from rewardkit.rl.rollout import SamplingSettings

    if not cfg.prompts:
        raise RewardkitError("--policy needs --prompts: the prompts to sample responses for")
    if cfg.samples_per_prompt < 1:
        raise RewardkitError(f"--samples-per-prompt must be at least 1, got {cfg.samples_per_prompt}")
    prompts, _ = load_prompts(cfg.prompts, reference_field=None)
    placement = placement_of(cfg, "label import")
    policy, tokenizer = load_causal_lm(cfg.policy, placement, "policy")
    torch.manual_seed(cfg.seed)
    settings = SamplingSettings(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p)
    groups = []
    for index, prompt in enumerate(prompts):
        texts, _ = sample_responses(policy, tokenizer, [prompt], cfg.samples_per_prompt, settings, placement,
                                    cfg.chat_template, cfg.max_prompt_tokens)
        groups.append(Group(prompt, texts, None, f"{cfg.prompts}:{index + 1}", "samples"))
    return groups


# ------------------------------------------------------------------------------------------------ groups -> items
def items_for_task(groups: list[Group], task: str, max_pairs_per_prompt: int, rng: random.Random
                   ) -> tuple[list[NewItem], list[str]]:
    """The items of `task` that `groups` make, and one note per kind of group that made none (with where).

    The task's number of responses per item decides: one makes an item of each response, a fixed number (pairs) one
    of every combination of that many distinct responses (at most `max_pairs_per_prompt`, drawn at random), any
    number (rankings) one of the whole group."""
    labelling = task_named(task)
    size = labelling.max_responses
    items: list[NewItem] = []
    too_small, identical = [], []
    for group in groups:
        if size == 1:
            items += [NewItem(group.prompt, [r], group.subset, group.source) for r in group.responses]
            continue
        distinct = list(dict.fromkeys(group.responses))
        if len(distinct) < labelling.min_responses:
            (identical if len(group.responses) >= labelling.min_responses else too_small).append(group.source)
            continue
        if size is None:
            if len(distinct) < len(group.responses):
                identical.append(group.source)  # a ranking of repeated texts would have to tie them
                continue
            items.append(NewItem(group.prompt, rng.sample(distinct, len(distinct)), group.subset, group.source))
            continue
        chosen = list(combinations(distinct, size))
        if max_pairs_per_prompt and len(chosen) > max_pairs_per_prompt:
            chosen = rng.sample(chosen, max_pairs_per_prompt)
        for responses in chosen:
            items.append(NewItem(group.prompt, rng.sample(list(responses), size), group.subset, group.source))
    notes = []
    if too_small:
        notes.append(f"{len(too_small)} prompt(s) with a single response make no {task} item: {_listing(too_small)}")
    if identical:
        notes.append(f"{len(identical)} group(s) of identical responses skipped: {_listing(identical)}")
    return items, notes


def _listing(sources: list[str], shown: int = 5) -> str:
    return ", ".join(sources[:shown]) + (f" and {len(sources) - shown} more" if len(sources) > shown else "")


def score_items(items: list[NewItem], model_names: list[str], cfg: LabelImportConfig) -> list:
    """[models, responses] rewards per item, from each reward model; an ensemble folder (`train-rm --ensemble`)
    gives one row per member, so that its members' disagreement can order the queue."""
    import numpy as np

    from rewardkit.device import placement_of
    from rewardkit.models.ensemble import RewardEnsemble, load_reward_model

    placement = placement_of(cfg, "label import")
    prompts = [item.prompt for item in items for _ in item.responses]
    responses = [response for item in items for response in item.responses]
    per_model = []
    for name in model_names:
        model = load_reward_model(name, placement=placement).eval()
        if isinstance(model, RewardEnsemble):
            per_model.extend(model.member_scores_encoded(model.encode_many(prompts, responses)).numpy())
        else:
            per_model.append(model.score(prompts, responses).numpy())
    scores, start = [], 0
    for item in items:
        end = start + len(item.responses)
        scores.append(np.stack([flat[start:end] for flat in per_model]))
        start = end
    return scores


def ordered(items: list[NewItem], cfg: LabelImportConfig) -> list[NewItem]:
    """The items in queue order, each marked with how it got its place (and its priority when active)."""
    strategy = resolve_strategy(cfg.order)
    if strategy is not None and not cfg.reward_model:
        raise RewardkitError(f"--order {cfg.order} needs --reward-model: the model(s) whose uncertainty orders the "
                             f"queue")
    if strategy is None and cfg.reward_model:
        raise RewardkitError(f"--reward-model is used only by an active --order (margin, disagreement, bald or a "
                             f"function), not --order {cfg.order}")
    priorities = None
    if strategy is not None:
        priorities = [float(p) for p in strategy(score_items(items, cfg.reward_model, cfg))]
        if len(priorities) != len(items):
            raise RewardkitError(f"--order {cfg.order} returned {len(priorities)} priorities for {len(items)} items")
    fraction = 1.0 if cfg.order == "random" else cfg.random_fraction
    queue = selection_order(priorities, len(items), fraction, cfg.seed)
    return [NewItem(items[i].prompt, items[i].responses, items[i].subset, items[i].source, how,
                    priorities[i] if priorities is not None and how == "active" else None) for i, how in queue]


def run_import(cfg: LabelImportConfig) -> int:
    if cfg.policy is None and not cfg.inputs:
        raise RewardkitError("nothing to import: give input files, or --policy with --prompts")
    if not 2 <= cfg.scale <= 9:
        raise RewardkitError(f"--scale must be from 2 to 9 (one key per value), got {cfg.scale}")
    groups = read_inputs(cfg.inputs, cfg.columns, cfg.on_bad_record) if cfg.inputs else []
    if cfg.policy is not None:
        groups += generate_groups(cfg)
    existing_task = Store(cfg.db).task if Path(cfg.db).exists() else None
    task = cfg.task or existing_task
    if task is None:
        kinds = sorted({DEFAULT_TASK.get(g.kind, g.kind) for g in groups})
        if len(kinds) > 1:
            raise RewardkitError(f"the inputs make {' and '.join(kinds)} items; choose one with --task")
        task = kinds[0] if kinds else "pairs"
    rng = random.Random(cfg.seed)
    items, notes = items_for_task(groups, task, cfg.max_pairs_per_prompt, rng)
    for note in notes:
        print(f"rewardkit label import: {note}")
    if not items:
        raise RewardkitError(f"no {task} items in the input")
    items = ordered(items, cfg)
    added, present = Store(cfg.db, create=True).add_items(task, items, cfg.judgments_per_item, cfg.scale)
    how = {"file": "in input order", "random": "in random order"}.get(cfg.order, f"ordered by {cfg.order}")
    mixed = f" ({sum(i.selected_by == 'random' for i in items)} random)" if cfg.random_fraction and cfg.order not in (
        "file", "random") else ""
    print(f"rewardkit label import: added {added} {task} item(s) to {cfg.db} {how}{mixed}"
          + (f"; {present} were there already" if present else "")
          + f". Serve them with `rewardkit label serve {cfg.db} --annotators NAME ...`")
    return 0
