"""`rewardkit score`: score responses with a reward model or a reward spec, sparse or dense.

    rewardkit score MODEL --input FILE [--output OUT.jsonl]
    rewardkit score --reward SPEC.yaml --input FILE.jsonl --output OUT.jsonl [--dense]

Input records are `{prompt, response[, reference][, finished][, id]}` (prompt: text or chat messages; reference: text
or list of texts), with any other field a component reads (`tests` for code_tests), or pairwise `{prompt, chosen,
rejected}` / HH `{chosen, rejected}`, whose two responses are both scored. Output: one JSON line per record, in input
order:
    {"source": "in.jsonl:3", "total": 1.2, "components": {"reward_model": 0.9, "rouge": 0.41, ...}}
(with "reasons": {component: why} for the components that say why a response lost points: math, code_tests, and a
calling component's neutral score after a failed call)
(with an ensemble reward model also "disagreement": {"reward_model": std over its members})
pairwise: {"source": ..., "chosen": {"total", "components"}, "rejected": {...}, "margin": chosen − rejected}.
With --dense (or `mode: dense` in the spec) each scored response also has "tokens", "token_rewards" (summing to
"total") and "token_components" (each component's weighted term, shaped on its own).

Nothing heavy is imported at module level (torch, transformers): `rewardkit --help` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Iterator

from rewardkit.config import coerce, option
from rewardkit.device import DeviceOptions
from rewardkit.errors import RewardkitError
from rewardkit.runs import open_atomically


@dataclass
class ScoreConfig(DeviceOptions):
    """Score responses with a reward model or a reward spec (sparse or dense)."""

    input: str = option(help="records to score: JSONL/JSON/CSV(.gz) with prompt, response[, reference][, finished], "
                             "or pairwise prompt, chosen, rejected (both responses are scored)", metavar="FILE")
    model: str | None = option(None, "reward model (preset such as minilm-l6, rewardkit or HF sequence-classification "
                                     "folder), or a rewardkit serve URL; the same as a spec with one reward_model (or "
                                     "remote) component",
                               positional=True, metavar="MODEL")
    reward: str | None = option(None, "reward spec YAML: components with weights, normalization, clipping, mode",
                                metavar="SPEC.yaml")
    output: str | None = option(None, "output JSONL, one line per input record (default: stdout)", metavar="OUT.jsonl")
    dense: bool = option(False, "also write per-token rewards (potential-based shaping; they sum to the total)")
    tokenizer: str | None = option(None, "tokenizer that defines the tokens for --dense (default: the first reward "
                                         "model's)")
    batch_size: int = option(256, "responses per scoring call (rank normalization ranks within this batch; running "
                                  "normalization updates its statistics batch by batch, in input order)")
    max_length: int | None = option(None, "max tokens for MODEL (default: its saved setting or 512)")
    progress: bool = option(True, "show a progress bar on stderr")


@dataclass
class _Item:
    """One input record: one response, or a chosen/rejected pair."""

    source: str
    prompt: Any
    responses: list[str]          # [response] or [chosen, rejected]
    reference: Any = None
    finished: bool | None = None
    record_id: Any = None
    fields: dict = field(default_factory=dict)  # the record's other fields (code_tests reads "tests")


def _text(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        kind = "missing" if value is None else f"{type(value).__name__} {value!r}"[:60]
        raise RewardkitError(f"{where}: field {key!r} must be non-empty text, got {kind}")
    return value


def _prompt(row: dict, where: str) -> Any:
    prompt = row.get("prompt", "")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                        and isinstance(m.get("content"), str) for m in prompt):
        return prompt
    raise RewardkitError(f"{where}: field 'prompt' must be text or a list of {{role, content}} messages")


def _reference(row: dict, where: str) -> Any:
    ref = row.get("reference")
    if ref is None or ref == "":  # an empty CSV cell: no reference (a reference-based reward then says so)
        return None
    if isinstance(ref, str) or (isinstance(ref, list) and ref and all(isinstance(r, str) for r in ref)):
        return ref
    raise RewardkitError(f"{where}: field 'reference' must be text or a list of texts")


def _finished(row: dict, where: str) -> bool | None:
    finished = row.get("finished")
    if finished is None or finished == "":  # absent, or an empty CSV cell
        return None
    if isinstance(finished, (int, float)) and not isinstance(finished, bool):
        raise RewardkitError(f"{where}: field 'finished' must be true or false, got {finished!r}")
    return coerce(finished, bool, f"{where}: field 'finished'")  # CSV cells are text: "true", "false", ...


def _response_item(location, row: Any) -> _Item:
    where = str(location)
    if not isinstance(row, dict):
        raise RewardkitError(f"{where}: expected an object with prompt and response fields")
    return _Item(where, _prompt(row, where), [_text(row, "response", where)], reference=_reference(row, where),
                 finished=_finished(row, where), record_id=row.get("id"),
                 fields={k: v for k, v in row.items() if k not in _RECORD_KEYS and v not in (None, "")})


_RECORD_KEYS = ("prompt", "response", "reference", "finished", "id")


def check_items(items: list[_Item], reward) -> None:
    """What the reward needs from every record, checked before anything is scored: a reference for a reference-based
    component, and `finished` on every record or on none (a record without it cannot be told apart from one that
    ended, so a batch mixing them would score it as a finished one)."""
    if reward.needs_reference:
        names = ", ".join(c.name for c in reward.components if c.reward.needs_reference)
        for item in items:
            if len(item.responses) > 1:
                raise RewardkitError(f"{item.source}: {names} needs a reference, which pairwise records do not carry; "
                                     "give records with prompt, response and reference fields")
            if item.reference is None:
                raise RewardkitError(f"{item.source}: {names} needs a reference, and this record has none")
    for name in reward.needs_fields:
        wanted = ", ".join(c.name for c in reward.components if name in c.reward.needs_fields)
        for item in items:
            if len(item.responses) > 1:
                raise RewardkitError(f"{item.source}: {wanted} needs each record's {name!r} field, which pairwise "
                                     f"records do not carry; give records with prompt, response and {name} fields")
            if name not in item.fields:
                raise RewardkitError(f"{item.source}: {wanted} needs the record's {name!r} field, and this record "
                                     "has none")
    if reward.needs_fields:
        for item in items:
            try:
                reward.check_fields(item.fields)
            except RewardkitError as exc:
                raise RewardkitError(f"{item.source}: {exc}") from None
    given = [item for item in items if item.finished is not None]
    if given and len(given) < len(items):
        missing = next(item for item in items if item.finished is None)
        raise RewardkitError(f"{missing.source}: field 'finished' is missing, but {given[0].source} has it: give it "
                             "on every record or on none")


def read_items(path: str) -> list[_Item]:
    """The records of `path`, read with rewardkit.data (errors name file:line): response records through
    `read_rows`; anything else as pairs through `load_pairs` (explicit, HH, TRL conversational, LLMBar)."""
    from rewardkit.data.loaders import load_pairs, read_rows

    rows = read_rows(path)
    first = next(rows, None)
    if first is None:
        raise RewardkitError(f"{path}: no records")
    if isinstance(first[1], dict) and "response" in first[1]:
        return [_response_item(location, row) for location, row in chain([first], rows)]
    # every record is scored, so none is skipped: not identical responses, and not an empty one either (which has no
    # tokens to score densely: an error naming it)
    pairs = load_pairs(path, on_identical="keep", on_empty_response="fail")
    return [_Item(str(p.source), p.prompt, [p.chosen, p.rejected]) for p in pairs]


def _batches(items: Iterator[_Item], size: int) -> Iterator[list[_Item]]:
    batch: list[_Item] = []
    for item in items:
        batch.append(item)
        if sum(len(i.responses) for i in batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def build_score_reward(cfg: ScoreConfig):
    """The composite reward the command scores with: the spec, or one reward_model component for MODEL. Model
    components left at device and precision auto run where --device and --precision say."""
    from rewardkit.device import placement_of
    from rewardkit.rewards.spec import build_reward, load_reward

    if bool(cfg.model) == bool(cfg.reward):
        raise RewardkitError("give either a MODEL or --reward SPEC.yaml (exactly one)")
    placement = placement_of(cfg, "score")
    if cfg.reward:
        return build_reward(cfg.reward, placement=placement)
    return load_reward(cfg.model, max_length=cfg.max_length, placement=placement)


def _dense_tokenizer(cfg: ScoreConfig, reward) -> Any:
    from rewardkit.rewards.learned import LearnedReward
    from rewardkit.rewards.rules import load_tokenizer

    if cfg.tokenizer:
        return load_tokenizer(cfg.tokenizer)
    for component in reward.components:
        if isinstance(component.reward, LearnedReward):
            return component.reward.tokenizer
    raise RewardkitError("--dense needs --tokenizer to define the tokens (the spec has no reward_model to take one from)")


def score_batch(reward, items: list[_Item], tokenizer=None) -> list[dict]:
    """Output records for one batch of items (all their responses scored in one call per component); an error about
    one response names its record."""
    from rewardkit.rewards.base import ResponseError

    prompts = [i.prompt for i in items for _ in i.responses]
    responses = [r for i in items for r in i.responses]
    references = None
    if any(i.reference is not None for i in items):
        references = [i.reference for i in items for _ in i.responses]
    # check_items saw to it that every item has `finished` or none has
    finished = [i.finished for i in items for _ in i.responses] if items and items[0].finished is not None else None
    fields = [i.fields for i in items for _ in i.responses] if reward.needs_fields else None
    sources = [i.source for i in items for _ in i.responses]
    try:
        return _score_batch(reward, items, tokenizer, prompts, responses, references, finished, fields, sources)
    except ResponseError as exc:  # name the record the response came from
        raise RewardkitError(f"{sources[exc.index]}: {exc}") from None


def _score_batch(reward, items, tokenizer, prompts, responses, references, finished, fields, sources) -> list[dict]:
    scored: list[dict] = []
    if tokenizer is None:
        totals = reward(prompts, responses, references, finished=finished, fields=fields)
    else:
        from rewardkit.rewards.dense import offset_token_ends

        encodings = [offset_token_ends(r, tokenizer) for r in responses]
        if encodings and encodings[0] is None:
            raise RewardkitError("--dense needs a fast tokenizer (one with offset mappings) to place rewards on tokens")
        token_ids = [ids for ids, _ in encodings]
        for source, ids in zip(sources, token_ids):
            if not ids:
                raise RewardkitError(f"{source}: a response has no tokens (the tokenizer drops all of its text), so "
                                     "no token can carry its reward")
        token_rewards = reward.per_token(prompts, responses, references, token_ends=[ends for _, ends in encodings],
                                         finished=finished, fields=fields)
        totals = reward.last_total
        per_component = reward.last_token_contributions
    # an ensemble's disagreement (std over its members) per response, for each reward_model component that is one
    spreads = {c.name: c.reward.last_spread for c in reward.components
               if tokenizer is None and getattr(c.reward, "last_spread", None) is not None}
    # why a response lost points, from the components that say (math, code_tests, a calling component failing)
    reasons = {c.name: c.reward.last_reasons for c in reward.components
               if len(getattr(c.reward, "last_reasons", None) or ()) == len(responses)}
    for k in range(len(responses)):
        entry = {"total": float(totals[k]),
                 "components": {name: float(values[k]) for name, values in reward.last_components.items()}}
        if spreads:
            entry["disagreement"] = {name: float(values[k]) for name, values in spreads.items()}
        why = {name: values[k] for name, values in reasons.items() if values[k] is not None}
        if why:
            entry["reasons"] = why
        if tokenizer is not None:
            entry["tokens"] = tokenizer.convert_ids_to_tokens(token_ids[k])
            entry["token_rewards"] = token_rewards[k].tolist()
            entry["token_components"] = {name: values[k].tolist() for name, values in per_component.items()}
        scored.append(entry)
    out, k = [], 0
    for item in items:
        record: dict[str, Any] = {"source": item.source}
        if item.record_id is not None:
            record["id"] = item.record_id
        if len(item.responses) == 1:
            record.update(scored[k])
        else:
            record["chosen"], record["rejected"] = scored[k], scored[k + 1]
            record["margin"] = scored[k]["total"] - scored[k + 1]["total"]
        k += len(item.responses)
        out.append(record)
    return out


def run_score(cfg: ScoreConfig) -> int:
    from tqdm.auto import tqdm

    from rewardkit.rewards.calls import CallingReward

    if cfg.batch_size < 1:
        raise RewardkitError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    reward = build_score_reward(cfg)
    tokenizer = _dense_tokenizer(cfg, reward) if cfg.dense or reward.mode == "dense" else None
    items = read_items(cfg.input)  # read everything first: a bad record fails before any scoring
    check_items(items, reward)
    n_responses = sum(len(i.responses) for i in items)
    calling = [c for c in reward.components if isinstance(c.reward, CallingReward)]
    start = time.perf_counter()
    # an error mid-way leaves no half-written --output behind
    with open_atomically(Path(cfg.output)) if cfg.output else contextlib.nullcontext(sys.stdout) as sink, \
            tqdm(total=n_responses, unit="resp", desc="scoring", disable=not cfg.progress, file=sys.stderr) as bar, \
            tqdm(total=n_responses * len(calling), unit="call", desc="calls", file=sys.stderr,
                 disable=not (cfg.progress and calling)) as calls:
        for component in calling:  # progress within a batch, as each call (or cache hit) comes back
            component.reward.runner.progress = calls.update
        try:
            for batch in _batches(iter(items), cfg.batch_size):
                for record in score_batch(reward, batch, tokenizer):
                    sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                bar.update(sum(len(i.responses) for i in batch))
                if calling:
                    bar.set_postfix_str(", ".join(f"{c.name} p50 {c.reward.stats.percentile(0.5):.2f} s"
                                                  for c in calling))
        finally:
            for component in calling:
                component.reward.runner.progress = None
    seconds = time.perf_counter() - start
    print(f"scored {n_responses} responses from {len(items)} records in {seconds:.1f} s "
          f"({n_responses / max(seconds, 1e-9):.1f} responses/s)", file=sys.stderr)
    for component in calling:  # calls, cache hits, retries, failures (and their neutral scores), latency
        print(component.reward.describe_stats(component.name), file=sys.stderr)
    return 0
