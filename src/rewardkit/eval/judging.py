"""`rewardkit eval-rm --judge SPEC_OR_PRESET DATA...`: evaluate an LLM judge on preference pairs like a reward model.

The judge (`rewardkit.rewards.judge`, mode pairwise) sees each pair twice, the chosen response first as A and then
second. P_A(x, y) is its probability of "A" with x shown as A (or 1/0 from a generated verdict). The pair's
preference for the chosen response is P = 0.5 + (P_A(chosen, rejected) − P_A(rejected, chosen)) / 2, which cancels
position bias; the judge is "right" when P > 0.5 (a tie, P = 0.5, counts half, as an equal reward does).

The pair's two rewards are ±logit(P)/2, so that their margin is logit(P) and σ(margin) = P: every reward-model
figure (accuracy with its bootstrap interval, length bias, debiased accuracy, ECE) is computed by the same code as
for a reward model, per dataset and subset. Position bias is added under "position_bias":

    {"picks_a_chosen_first", "picks_a_rejected_first": share of pairs where P_A > 0.5 in that order,
     "picks_a": their mean (0.5 for a judge without position bias),
     "mean_p_a_chosen_first", "mean_p_a_rejected_first",
     "accuracy_chosen_first", "accuracy_rejected_first": each order's accuracy on its own (ties half),
     "consistent": share of pairs where both orders pick the same response}

SPEC_OR_PRESET is a local model (preset, folder or hub id; judged from its next-token probabilities), or a YAML file
of one judge's fields (`url`, `model`, `template`, `method`, ...; `mode` is pairwise) or a reward spec whose only
component is a judge. The model runs where `--device` and `--precision` say.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardkit.errors import RewardkitError

if TYPE_CHECKING:
    from rewardkit.eval.scoring import ScoredDataset
    from rewardkit.rewards.judge import LLMJudge

POSITION_COLUMNS = ["n", "picks A (chosen first)", "picks A (rejected first)", "picks A", "acc. chosen first",
                    "acc. rejected first", "consistent"]


def load_judge(spec: str, placement: Any) -> LLMJudge:
    """A pairwise judge from a preset/folder/hub id or a YAML file (see the module docstring)."""
    from rewardkit.rewards.judge import PAIRWISE
    from rewardkit.rewards.spec import build_component

    entry: dict[str, Any] = {"type": "judge", "model": spec}
    where = f"--judge {spec}"
    if Path(spec).suffix.lower() in (".yaml", ".yml"):
        from rewardkit.config import load_yaml_mapping

        mapping = load_yaml_mapping(Path(spec))
        if "components" in mapping:
            components = mapping["components"]
            if not (isinstance(components, list) and len(components) == 1 and isinstance(components[0], dict)
                    and components[0].get("type") == "judge"):
                raise RewardkitError(f"{spec}: --judge takes a spec whose only component is a judge")
            mapping = components[0]
        entry = {"type": "judge", **{k: v for k, v in mapping.items() if k not in ("weight", "normalize", "clip")}}
        where = spec
    if entry.setdefault("mode", PAIRWISE) != PAIRWISE:
        raise RewardkitError(f"{where}: eval-rm --judge compares the responses of each pair: the judge's mode must "
                             f"be pairwise, not {entry['mode']!r}")
    return build_component(entry, 1, where, placement).reward


def position_bias(forward, backward) -> dict:
    """The position-bias figures (module docstring) of P_A with the chosen response shown first (`forward`) and
    second (`backward`)."""
    import numpy as np

    f, b = np.asarray(forward, dtype=np.float64), np.asarray(backward, dtype=np.float64)
    n = int(f.size)
    if n == 0:
        return {"n": 0}

    def outcome(right, wrong):  # 1 right, 0 wrong, 0.5 a tie
        return np.where(right, 1.0, np.where(wrong, 0.0, 0.5))

    picks_chosen_f, picks_chosen_b = f > 0.5, b < 0.5
    picks_rejected_f, picks_rejected_b = f < 0.5, b > 0.5
    return {"n": n, "picks_a_chosen_first": float((f > 0.5).mean()), "picks_a_rejected_first": float((b > 0.5).mean()),
            "picks_a": float(((f > 0.5).mean() + (b > 0.5).mean()) / 2),
            "mean_p_a_chosen_first": float(f.mean()), "mean_p_a_rejected_first": float(b.mean()),
            "accuracy_chosen_first": float(outcome(picks_chosen_f, picks_rejected_f).mean()),
            "accuracy_rejected_first": float(outcome(picks_chosen_b, picks_rejected_b).mean()),
            "consistent": float(((picks_chosen_f & picks_chosen_b) | (picks_rejected_f & picks_rejected_b)).mean())}


def judge_dataset(data: Any, judge: LLMJudge, cfg: Any) -> tuple[ScoredDataset, list, list]:
    """Judge every pair of a dataset in both orders: the scored dataset (rewards ±logit(P)/2) and P_A in each order."""
    import numpy as np

    from rewardkit.eval.metrics import response_lengths
    from rewardkit.eval.scoring import ScoredDataset

    from rewardkit.data.types import PreferencePair

    if not all(isinstance(record, PreferencePair) for record in data.records):
        raise RewardkitError(f"{data.name}: eval-rm --judge evaluates preference pairs; this data holds "
                             f"{data.kind.name}")
    records = data.records
    prompts = [r.prompt for r in records]
    chosen, rejected = [r.chosen for r in records], [r.rejected for r in records]
    forward, backward = [], []
    step = max(cfg.batch_size, 1)
    bar = None
    if cfg.progress and sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(total=len(records), desc=f"judging {data.name}", unit="pair", file=sys.stderr)
    for start in range(0, len(records), step):
        _, f, b = judge.preferences(prompts[start:start + step], chosen[start:start + step],
                                    rejected[start:start + step])
        for where, (fo, bo) in enumerate(zip(f, b), start=start):
            if fo.failed or bo.failed:
                location = records[where].source
                raise RewardkitError(f"{location or data.name}: the judge failed on this pair ({fo.reason or bo.reason})"
                                     "; eval-rm counts no neutral verdicts (use on_failure: error, or fix the judge)")
        forward += [o.score for o in f]
        backward += [o.score for o in b]
        if bar is not None:
            bar.update(len(f))
    if bar is not None:
        bar.close()
    forward_a, backward_a = np.asarray(forward, dtype=np.float64), np.asarray(backward, dtype=np.float64)
    preference = np.clip(0.5 + (forward_a - backward_a) / 2, 1e-6, 1 - 1e-6)
    half_logit = np.log(preference / (1 - preference)) / 2
    half_logit[np.abs(preference - 0.5) < 1e-12] = 0.0  # an exact tie stays a tie
    lengths = response_lengths([text for pair in zip(chosen, rejected) for text in pair]).astype(np.float64)
    scored = ScoredDataset(data.name, data.kind, [r.subset for r in records], (lengths[0::2], lengths[1::2]),
                           [(half_logit, -half_logit)], sources=data.sources, disagreement=[None],
                           length_scores=[None])
    return scored, forward, backward


def run_judge_eval(cfg: Any, command: Any) -> int:
    """eval-rm with --judge: every positional path is data. `command` is rewardkit.eval.command, whose data loading
    and figures are used as they are (passed in, so that this module does not import the command that calls it)."""
    from rewardkit.device import placement_of

    dataset_figures, dataset_name, load_dataset = command.dataset_figures, command.dataset_name, command.load_dataset
    pooled_temperature, split_side = command.pooled_temperature, command.split_side

    if not cfg.paths:
        raise RewardkitError("eval-rm --judge needs at least one data path: rewardkit eval-rm --judge JUDGE DATA...")
    for flag in ("save_temperature", "save_reward_stats"):
        if getattr(cfg, flag):
            raise RewardkitError(f"--{flag.replace('_', '-')} writes into a reward model's folder; a judge has none")
    names: set[str] = set()
    datasets = []
    for argument in cfg.paths:
        path, side = split_side(argument)
        name = dataset_name(path, side, names)
        names.add(name)
        datasets.append(load_dataset(path, side, name, cfg))
    placement = placement_of(cfg, "eval-rm")
    start = time.perf_counter()
    judge = load_judge(cfg.judge, placement)
    load_seconds = time.perf_counter() - start
    scored, bias, seconds = [], {}, {}
    for data in datasets:
        start = time.perf_counter()
        part, forward, backward = judge_dataset(data, judge, cfg)
        seconds[data.name] = time.perf_counter() - start
        scored.append(part)
        subsets = {s: [i for i, x in enumerate(part.subsets) if x == s] for s in part.subset_names}
        bias[data.name] = {**position_bias(forward, backward),
                           "subsets": {s: position_bias([forward[i] for i in rows], [backward[i] for i in rows])
                                       for s, rows in subsets.items()}}
    name = f"judge {Path(cfg.judge).name if Path(cfg.judge).suffix else cfg.judge}"
    pairs = sum(len(d.records) for d in datasets)
    info = {"name": name, "path": cfg.judge, "temperature": 1.0, "max_length": None,
            "fitted_temperature": pooled_temperature(scored, 0), "texts_scored": 2 * pairs, "texts_truncated": 0,
            "reward_stats": None, "ensemble": None,
            "placement": judge.placement.as_dict() if judge.placement is not None else None,
            "judge": {"model": judge.model, "url": judge.url, "mode": judge.mode, "method": judge.method,
                      "verdicts": 2 * pairs, "load_seconds": round(load_seconds, 2),
                      "seconds": {k: round(v, 2) for k, v in seconds.items()}}}
    results = {"models": [info], "datasets": {}}
    for data in scored:
        entry = dataset_figures(data, [1.0], cfg)
        entry["position_bias"] = bias[data.name]
        entry["seconds"] = round(seconds[data.name], 2)
        results["datasets"][data.name] = entry

    if cfg.report:
        html_path, markdown_path = write_judge_report(cfg.report, results, scored, [name], cfg.calibration_bins)
        print(f"report: {html_path} and {markdown_path}", file=sys.stderr)
    if cfg.json:
        print(json.dumps(results, indent=2))
    else:
        from rewardkit.eval.report import report_text
        from rewardkit.pages import render_text

        timing = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
        print(report_text(results, [name]))
        print(render_text(position_blocks(results)))
        print(f"{2 * pairs} verdicts ({pairs} pairs, both orders) in {sum(seconds.values()):.0f} s ({timing}); "
              f"judge loaded in {load_seconds:.0f} s")
    return 0


def position_table(results: dict) -> Any:
    from rewardkit.pages import Table, fmt

    rows = []
    for name, entry in results["datasets"].items():
        figures = entry["position_bias"]
        for label, part in [(name, figures), *figures.get("subsets", {}).items()]:
            if part.get("n"):
                rows.append([label if part is figures else f"  {label}", str(part["n"])]
                            + [fmt(part[key]) for key in ("picks_a_chosen_first", "picks_a_rejected_first", "picks_a",
                                                          "accuracy_chosen_first", "accuracy_rejected_first",
                                                          "consistent")])
    return Table(["dataset"] + POSITION_COLUMNS, rows, text_columns=1)


def position_blocks(results: dict) -> list:
    from rewardkit.pages import Heading, Paragraph

    sentences = []
    for name, entry in results["datasets"].items():
        p = entry["position_bias"]
        if p.get("n"):
            sentences.append(f"On {name} the judge picks A in {p['picks_a_chosen_first']:.0%} of pairs when the "
                             f"preferred response is A and in {p['picks_a_rejected_first']:.0%} when it is B (an "
                             f"unbiased judge: the same share of right answers either way); the two orders agree on "
                             f"{p['consistent']:.0%} of pairs. Averaging both orders cancels the position bias in "
                             f"the accuracy above.")
    return [Heading("Position bias"), Paragraph(" ".join(sentences)), position_table(results)]


def write_judge_report(directory: str, results: dict, scored: list, model_names: list[str], n_bins: int):
    """The eval-rm report (the reward-model blocks, then position bias) as HTML and Markdown."""
    from datetime import datetime, timezone

    from rewardkit.eval.report import build_blocks
    from rewardkit.pages import write_pages

    blocks = build_blocks(results, scored, model_names, [1.0], n_bins) + position_blocks(results)
    info = results["models"][0]
    subtitle = (f"Judge: {info['path']} ({info['judge']['method']}, both orders averaged). Generated "
                f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by rewardkit eval-rm --judge.")
    return write_pages(directory, "Judge evaluation: " + model_names[0], subtitle, blocks)
