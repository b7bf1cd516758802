"""`rewardkit eval-rm MODEL [MODEL2] DATA...`: evaluate one or two reward models on feedback data.

Each DATA argument is one dataset (a file, a folder such as LLMBar's or hh-rlhf/, or hf:NAME[:SPLIT]); its kind —
pairwise, rankings, ratings or thumbs up/down — is what the loader finds in it, and its subsets are the files or
folders it contains (or the records' `subset` field). The second positional argument is read as a second model when
it is a model folder (it has a config.json) or a preset name; otherwise it is data. Two models are scored on the same
records and compared with paired bootstrap intervals. DATA@validation (or @train) keeps one side of the seeded split
train-rm makes, so `eval-rm runs/hh-rm ../shared/data/llmbar ../shared/data/hh-rlhf@validation` scores LLMBar whole
and only the pairs the model was not trained on.

`--json` prints one object (NaN figures, e.g. a correlation of constant values, are null):

    {"models": [{"name", "path", "temperature" (as loaded), "max_length", "fitted_temperature" (on all pairwise data,
                 what --save-temperature stores), "texts_scored", "texts_truncated", "reward_stats" ({"mean", "std",
                 "count", "data"} of every reward it gave here, what --save-reward-stats stores), "ensemble" (its member
                 count, or null)}, ...],
     "datasets": {NAME: {"kind": "pairs" | "rankings" | "ratings" | "binary", "sources": [files],
                         ...the first model's figures for that kind (see rewardkit.eval.metrics.summarize_*)...,
                         "subsets": {SUBSET: {...the same figures...}},
                         "model2": {...the second model's figures, with its own "subsets"...},
                         "difference": {METRIC: {"difference", "ci95", "excludes_zero"}, "subsets": {...}}}}}

Pairwise figures: n, accuracy, ci95 [lo, hi], length_baseline, debiased_accuracy, debiased_n, prefers_longer,
length_correlation, ece, mean_margin, temperature (fitted on these pairs), calibrated_ece; for an ensemble also
mean_disagreement, disagreement_auc, accuracy_agreed, accuracy_disagreed (see metrics.disagreement_figures). A model
with a length head (train-rm --length-head) adds, for every kind, length_head_correlation: the Spearman correlation of
that head's outputs with response length, beside the served reward's length_correlation. "model2" and "difference"
appear only with two models.

No torch or transformers at import time: `rewardkit --help` imports this module.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rewardkit.config import option
from rewardkit.device import DeviceOptions
from rewardkit.errors import RewardkitError
from rewardkit.kinds import FeedbackKind, kind_of

if TYPE_CHECKING:
    from rewardkit.eval.scoring import ScoredDataset


@dataclass
class EvalConfig(DeviceOptions):
    """Evaluate one or two reward models: accuracy with intervals, length bias, calibration, reports."""

    paths: list[str] = option(help="MODEL [MODEL2] DATA...: the model (a folder or preset name), optionally a second "
                                   "model to compare with (recognized by its config.json, or a preset name), then one "
                                   "or more DATA files or folders, each evaluated as its own dataset. DATA@validation "
                                   "(or @train) keeps only that side of the split train-rm makes of the same data with "
                                   "the same --val-fraction and --seed, e.g. the held-out pairs of the training data",
                              positional=True, metavar="PATH")
    json: bool = option(False, "print exactly one JSON object with every figure on stdout (progress stays on stderr)")
    report: str | None = option(None, "write report.html (self-contained, plots embedded), report.md and its PNG "
                                      "plots to this folder", metavar="DIR")
    batch_size: int = option(32, "texts scored per forward pass")
    max_length: int | None = option(None, "token limit per (prompt, response); longer texts lose their oldest "
                                          "context first (default: the model's saved max_length, else 512)")
    save_temperature: bool = option(False, "store the temperature fitted on all pairwise data with each model "
                                           "(in its rewardkit.json) so later scores can be calibrated")
    save_reward_stats: bool = option(False, "store the mean and std of each model's rewards over every text scored "
                                            "here (in its rewardkit.json), for `rewardkit serve --normalize fixed`; "
                                            "evaluate held-out data, e.g. DATA@validation")
    limit: int | None = option(None, "evaluate a seeded random sample of at most N records per dataset (quick looks)",
                               metavar="N")
    val_fraction: float = option(0.1, "share of records on the validation side for DATA@validation (as in train-rm)")
    seed: int = option(0, "seed of the DATA@validation split (as in train-rm), of --limit sampling and of bootstrap "
                          "resampling")
    split_feedback: str = option("pairs", "for DATA@validation of ranking data, the --feedback train-rm read it with: "
                                          "pairs (its default) split the pairs each ranking implies, rankings the "
                                          "rankings; either way the sides hold the prompts train-rm's sides held",
                                 choices=("pairs", "rankings"))
    bootstrap_resamples: int = option(1000, "bootstrap resamples for the 95 percent intervals")
    calibration_bins: int = option(10, "equal-width probability bins for ECE and the reliability diagram")
    binary_threshold: float = option(0.0, "thumbs-up data: predict thumbs up when reward > this (0 is σ(reward) > "
                                          "0.5, right for models trained with binary cross-entropy)")
    on_bad_record: str = option("fail", "what to do with a malformed record: stop with its file:line, or skip it "
                                        "and say how many were skipped", choices=("fail", "skip"))
    progress: bool = option(True, "show a progress bar on stderr while scoring (only when stderr is a terminal)")
    judge: str | None = option(None, "evaluate an LLM judge instead of a reward model: a causal LM (preset such as "
                                     "smollm2-135m, folder, hub id) or a YAML file of a judge's fields (url, model, "
                                     "template, method); every PATH is then data. Each pair is judged in both orders "
                                     "and averaged; the report adds position bias (rewardkit.eval.judging)",
                               metavar="SPEC_OR_PRESET")


SPLIT_SIDES = {"train": "train", "validation": "validation", "val": "validation"}


@dataclass
class Dataset:
    name: str
    kind: FeedbackKind
    records: list
    sources: list[str]


# ------------------------------------------------------------------------------------------------------- arguments

def looks_like_model(path: str) -> bool:
    """A model folder (config.json inside) or a preset name; anything else is read as data."""
    from rewardkit.models.presets import PRESETS

    candidate = Path(path)
    if candidate.is_dir():
        return (candidate / "config.json").exists()
    return not candidate.exists() and path in PRESETS


def split_arguments(paths: list[str]) -> tuple[list[str], list[str]]:
    """(models, data) from the positional arguments MODEL [MODEL2] DATA..."""
    if len(paths) < 2:
        raise RewardkitError("eval-rm needs a model and at least one data path: rewardkit eval-rm MODEL [MODEL2] "
                             "DATA...")
    if looks_like_model(paths[1]):
        if len(paths) < 3:
            raise RewardkitError(f"{paths[1]} is a model; give at least one data path after it")
        return paths[:2], paths[2:]
    return paths[:1], paths[1:]


def split_side(argument: str) -> tuple[str, str | None]:
    """("PATH", "validation") for "PATH@validation" (or @val, @train); (argument, None) without such a suffix."""
    path, at, side = argument.rpartition("@")
    if not at or side not in SPLIT_SIDES or Path(argument).exists():
        return argument, None
    return path, SPLIT_SIDES[side]


def dataset_name(path: str, side: str | None, taken: set[str]) -> str:
    """A short readable name: the folder's name, or the file name without format and split suffixes, plus the side
    of the split; the path itself when two would share a name."""
    from rewardkit.data.readers import subset_from_path

    if path.startswith("hf:"):
        name = path[3:]
    else:
        candidate = Path(path)
        name = candidate.resolve().name if candidate.is_dir() else subset_from_path(candidate)
    label = (lambda base: f"{base} ({side})" if side else base)  # noqa: E731
    return label(name) if label(name) not in taken else label(path)


# ------------------------------------------------------------------------------------------------------------ data

def load_dataset(path: str, side: str | None, name: str, cfg: EvalConfig) -> Dataset:
    from rewardkit.data import load_records

    records = load_records(path, on_bad_record=cfg.on_bad_record)
    if records and side is not None:
        records = side_of_split(path, records, side, cfg)
    if not records:
        raise RewardkitError(f"{path}: no records to evaluate")
    kinds = {kind_of(r).name for r in records}
    if len(kinds) > 1:
        raise RewardkitError(f"{path}: mixes kinds of feedback ({', '.join(sorted(kinds))}); evaluate them as "
                             f"separate DATA arguments")
    kind = kind_of(records[0])
    if cfg.limit is not None and len(records) > cfg.limit:
        import numpy as np

        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(records), cfg.limit, replace=False))
        records = [records[i] for i in keep]
    sources = sorted({str(r.source.file) for r in records if r.source is not None})
    return Dataset(name, kind, records, sources)


def side_of_split(path: str, records: list, side: str, cfg: EvalConfig) -> list:
    """The records whose prompts train-rm put on `side` of its split of `path`. train-rm splits records as it reads
    them, and it reads a ranking as the pairs it implies unless given --feedback rankings. A split fills a count of
    records, so splitting the rankings themselves would put other prompts on each side: the split is made on what
    train-rm read, and the records are taken by prompt."""
    from rewardkit.data import load_records, train_val_split
    from rewardkit.data.split import split_group_key

    basis = records
    if cfg.split_feedback in kind_of(records[0]).train_rm_reads_as:
        basis = load_records(path, kind=cfg.split_feedback, on_bad_record=cfg.on_bad_record)
    train, validation = train_val_split(basis, cfg.val_fraction, cfg.seed)
    prompts = {split_group_key(r) for r in (validation if side == "validation" else train)}
    return [r for r in records if split_group_key(r) in prompts]


# --------------------------------------------------------------------------------------------------------- scoring

def score_dataset(data: Dataset, models: list, cfg: EvalConfig, stats: list) -> ScoredDataset:
    """Score every response of a dataset with every model; keep only floats, lengths and labels."""
    import numpy as np

    from rewardkit.eval.metrics import response_lengths
    from rewardkit.eval.scoring import ScoredDataset, score_texts
    from rewardkit.eval.views import view_of

    records, kind = data.records, data.kind
    view = view_of(kind)
    wanted = [kind.texts(record) for record in records]
    prompts = [record.prompt for record, (texts, _) in zip(records, wanted) for _ in texts]
    responses = [text for texts, _ in wanted for text in texts]
    lengths = response_lengths(responses)
    all_scores, disagreement, length_scores = [], [], []
    for m, rm in enumerate(models):
        with_length = getattr(rm, "has_length_head", False)
        scores = score_texts(rm, prompts, responses, batch_size=cfg.batch_size, progress=cfg.progress,
                             description=f"{data.name} · model {m + 1}", stats=stats[m], members=True,
                             with_length=with_length)
        if with_length:  # [(members,) 2, texts]: the reward, then the length head's outputs
            scores, length_rewards = np.moveaxis(scores, -2, 0)
            if length_rewards.ndim == 2:  # an ensemble's: the members' mean, as its reward
                length_rewards = length_rewards.mean(axis=0)
            length_scores.append(view.layout(length_rewards, records))
        else:
            length_scores.append(None)
        _refuse_non_finite(scores, records, wanted, data.name, m)
        if scores.ndim == 2:  # an ensemble's members: its reward is their mean
            disagreement.append(view.disagreement(scores, records))
            scores = scores.mean(axis=0)
        else:
            disagreement.append(None)
        all_scores.append(scores)
    return ScoredDataset(data.name, kind, [r.subset for r in records], view.layout(lengths, records),
                         [view.layout(scores, records) for scores in all_scores], targets=view.targets(records),
                         sources=data.sources, disagreement=disagreement, length_scores=length_scores)


def _refuse_non_finite(scores, records: list, wanted: list, dataset: str, model_index: int) -> None:
    """Stop on NaN or infinite rewards: every metric would count them differently (a lost pair, the highest score,
    a crash), and they mean the model is broken, not that it is wrong."""
    import numpy as np

    bad = ~np.isfinite(scores).all(axis=0) if scores.ndim == 2 else ~np.isfinite(scores)
    if bad.any():
        owners = [record for record, (texts, _) in zip(records, wanted) for _ in texts]
        first = owners[int(np.argmax(bad))].source
        raise RewardkitError(f"model {model_index + 1} gave {int(bad.sum())} non-finite reward(s) on {dataset}"
                             + (f", the first for {first}" if first is not None else "")
                             + "; its weights may hold NaN or inf")


# --------------------------------------------------------------------------------------------------------- figures

def _select(data: ScoredDataset, rows) -> ScoredDataset:
    """The same dataset restricted to the records at `rows` (for per-subset figures)."""
    from rewardkit.eval.scoring import ScoredDataset

    def take(value):
        if isinstance(value, tuple):
            return tuple(take(v) for v in value)
        if isinstance(value, list):
            return [value[i] for i in rows]
        return value[rows]

    return ScoredDataset(data.name, data.kind, [data.subsets[i] for i in rows], take(data.lengths),
                         [take(s) for s in data.scores],
                         targets=None if data.targets is None else data.targets[rows], sources=data.sources,
                         disagreement=[None if d is None else d[rows] for d in data.disagreement],
                         length_scores=[None if s is None else take(s) for s in data.length_scores])


def dataset_figures(data: ScoredDataset, temperatures: list[float], cfg: EvalConfig) -> dict:
    """The JSON block of one dataset: model 1's figures, per-subset figures, and with two models `model2` (the same
    shape) and `difference` (paired, per subset too)."""
    from rewardkit.eval.views import view_of

    view = view_of(data.kind)
    subsets = {name: [i for i, s in enumerate(data.subsets) if s == name] for name in data.subset_names}
    parts = {name: _select(data, rows) for name, rows in subsets.items()}

    def summary(part: ScoredDataset, model: int) -> dict:
        figures = view.summarize(part, model, temperatures[model], cfg)
        length_scores = part.length_scores[model] if part.length_scores else None
        if length_scores is not None:  # ODIN: the length head should follow length, the reward should not
            from rewardkit.eval.metrics import length_spearman

            figures["length_head_correlation"] = length_spearman(view.all_values(length_scores),
                                                                   view.all_values(part.lengths))
        return figures

    def block(model: int) -> dict:
        figures = summary(data, model)
        if parts:
            figures["subsets"] = {name: summary(part, model) for name, part in parts.items()}
        return figures

    entry = {"kind": data.kind.name, "sources": data.sources, **block(0)}
    if len(data.scores) == 2:
        entry["model2"] = block(1)
        entry["difference"] = view.compare(data, cfg)
        if parts:
            entry["difference"]["subsets"] = {name: view.compare(part, cfg) for name, part in parts.items()}
    return entry


def pooled_reward_stats(scored: list[ScoredDataset], model: int) -> dict:
    """Mean and std of every reward `model` gave on every dataset (what --save-reward-stats stores)."""
    import numpy as np

    from rewardkit.eval.views import view_of
    from rewardkit.models.checkpoint import reward_statistics

    rewards = np.concatenate([view_of(data.kind).all_values(data.scores[model]) for data in scored]).astype(np.float64)
    return reward_statistics(len(rewards), float(rewards.sum()), float((rewards ** 2).sum()),
                             data=", ".join(data.name for data in scored))


def pooled_temperature(scored: list[ScoredDataset], model: int) -> float | None:
    """The temperature fitted on every pairwise dataset together (what --save-temperature stores)."""
    import numpy as np

    from rewardkit.eval.metrics import fit_temperature
    from rewardkit.eval.views import view_of

    pairs = [view_of(data.kind).calibration_scores(data.scores[model]) for data in scored]
    pairs = [pair for pair in pairs if pair is not None]
    if not pairs:
        return None
    return fit_temperature(np.concatenate([c for c, _ in pairs]), np.concatenate([r for _, r in pairs]))


# ------------------------------------------------------------------------------------------------------------- run

def run_eval(cfg: EvalConfig) -> int:
    if cfg.judge:
        from rewardkit.eval.judging import run_judge_eval

        return run_judge_eval(cfg, sys.modules[__name__])
    model_paths, data_paths = split_arguments(cfg.paths)
    if cfg.batch_size < 1:
        raise RewardkitError("--batch-size must be at least 1")
    if cfg.limit is not None and cfg.limit < 1:
        raise RewardkitError("--limit must be at least 1")
    for flag in ("save_temperature", "save_reward_stats"):
        for path in model_paths if getattr(cfg, flag) else []:
            if not (Path(path) / "config.json").exists():
                raise RewardkitError(f"--{flag.replace('_', '-')} writes into the model folder, but {path} is not a "
                                     f"local model folder")

    names: set[str] = set()
    datasets = []
    for argument in data_paths:
        path, side = split_side(argument)
        name = dataset_name(path, side, names)
        names.add(name)
        datasets.append(load_dataset(path, side, name, cfg))

    from rewardkit.device import placement_of
    from rewardkit.eval.scoring import ScoreStats
    from rewardkit.models.ensemble import load_reward_model

    placement = placement_of(cfg, "eval-rm")
    models = [load_reward_model(path, placement=placement) for path in model_paths]
    saved_max_lengths = [rm.max_length for rm in models]  # --max-length is for this run, not for saving
    for rm in models:
        rm.max_length = cfg.max_length or rm.max_length
    model_names = display_names(model_paths)
    temperatures = [rm.temperature for rm in models]
    stats = [ScoreStats() for _ in models]
    scored = [score_dataset(data, models, cfg, stats) for data in datasets]

    results = {
        "models": [{"name": name, "path": path, "temperature": rm.temperature, "max_length": rm.max_length,
                    "fitted_temperature": pooled_temperature(scored, m), "texts_scored": stats[m].n_texts,
                    "texts_truncated": stats[m].n_truncated, "reward_stats": pooled_reward_stats(scored, m),
                    "placement": placement.as_dict(),
                    "ensemble": len(rm.members) if getattr(rm, "is_ensemble", False) else None}
                   for m, (name, path, rm) in enumerate(zip(model_names, model_paths, models))],
        "datasets": {data.name: dataset_figures(data, temperatures, cfg) for data in scored},
    }
    for info in results["models"]:
        if info["texts_truncated"]:
            print(f"note: {info['texts_truncated']:,} of {info['texts_scored']:,} texts were longer than "
                  f"{info['max_length']} tokens for {info['name']}; their oldest context was cut, the response kept",
                  file=sys.stderr)

    saving = cfg.save_temperature or cfg.save_reward_stats
    for rm, path, info, max_length in zip(models, model_paths, results["models"], saved_max_lengths) if saving else ():
        rm.max_length = max_length  # --max-length is for this run, not for saving
        if cfg.save_temperature:
            if info["fitted_temperature"] is None:
                raise RewardkitError("--save-temperature needs pairwise data to fit a temperature on")
            rm.temperature = info["fitted_temperature"]
            info["saved_temperature"] = True
            print(f"saved temperature {rm.temperature:.4g} to {Path(path) / 'rewardkit.json'}", file=sys.stderr)
        if cfg.save_reward_stats:
            rm.reward_stats = info["reward_stats"]
            info["saved_reward_stats"] = True
            print(f"saved reward mean {rm.reward_stats['mean']:.4g} and std {rm.reward_stats['std']:.4g} to "
                  f"{Path(path) / 'rewardkit.json'}", file=sys.stderr)
        rm.save_metadata(path)

    if cfg.report:
        from rewardkit.eval.report import write_report

        html_path, markdown_path = write_report(cfg.report, results, scored, model_names, temperatures,
                                                n_bins=cfg.calibration_bins)
        print(f"report: {html_path} and {markdown_path}", file=sys.stderr)

    if cfg.json:
        print(json.dumps(results, indent=2))
    else:
        from rewardkit.eval.report import report_text

        print(report_text(results, model_names))
    return 0


def display_names(paths: list[str]) -> list[str]:
    """Short names for the models (folder names), disambiguated when two are the same."""
    names = [Path(p.rstrip("/\\")).name or p for p in paths]
    if len(set(names)) < len(names):
        names = [f"{name} ({i + 1})" for i, name in enumerate(names)]
    return names
