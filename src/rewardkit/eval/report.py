"""`eval-rm --report DIR`: one self-contained HTML page (plots embedded as base64 PNG) plus Markdown with PNG files.

The page is built once as a list of blocks (headings, paragraphs, tables, figures) and rendered to both formats, so
the two always say the same thing. Every plot has a caption in plain language that states what it shows with the
numbers of this run ("the model gives the longer answer the higher reward in 64% of pairs ...").
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.eval import metrics
from rewardkit.eval.scoring import ScoredDataset

MODEL_COLORS = ("#1f5fa8", "#d9730d")
CHOSEN_COLOR, REJECTED_COLOR, BASELINE_COLOR = "#2e8b57", "#c0392b", "#7f7f7f"


# ------------------------------------------------------------------------------------------------ document blocks

@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str  # plain text; **bold** is rendered in both formats


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    text_columns: int = 1  # leading label columns, left-aligned; the rest are figures, right-aligned


@dataclass
class Figure:
    filename: str
    png: bytes
    title: str
    caption: str
    wide: bool = True  # narrow figures sit side by side in the HTML page


Block = Heading | Paragraph | Table | Figure


def fmt(value: Any, digits: int = 3) -> str:
    """A figure for a table cell: fixed digits, an em dash for a missing (undefined) value."""
    if value is None:
        return "—"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def fmt_scale(value: float | None, signed: bool = False) -> str:
    """A figure in the model's reward units (margins, temperatures): 3 significant digits, any magnitude."""
    if value is None:
        return "—"
    return f"{value:+.3g}" if signed else f"{value:.3g}"


def fmt_ci(figures: dict, key: str = "accuracy", ci_key: str = "ci95") -> str:
    lo, hi = figures.get(ci_key) or (None, None)
    if lo is None:
        return fmt(figures.get(key))
    return f"{fmt(figures.get(key))} [{fmt(lo)}, {fmt(hi)}]"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "dataset"


# ------------------------------------------------------------------------------------------------------- plotting

def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.titlesize": 11, "figure.dpi": 100})
    return plt


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return buffer.getvalue()


def _model_figures(entry: dict, model: int) -> dict:
    return entry if model == 0 else entry["model2"]


def plot_accuracy_by_subset(entry: dict, model_names: list[str]) -> bytes:
    """Accuracy with 95% intervals per subset (and overall, on top), the length baseline marked, chance dashed."""
    plt = pyplot()
    labels = ["All"] + list(entry.get("subsets", {}))
    rows = [[_model_figures(entry, m)] + [_model_figures(entry, m)["subsets"][s] for s in labels[1:]]
            for m in range(len(model_names))]
    fig, ax = plt.subplots(figsize=(8.5, 0.9 + 0.42 * len(labels)))
    y = np.arange(len(labels))[::-1].astype(float)
    offsets = [0.0] if len(model_names) == 1 else [0.14, -0.14]
    for m, name in enumerate(model_names):
        acc = np.array([r["accuracy"] if r["accuracy"] is not None else np.nan for r in rows[m]])
        lo = np.array([r["ci95"][0] if r["ci95"][0] is not None else np.nan for r in rows[m]])
        hi = np.array([r["ci95"][1] if r["ci95"][1] is not None else np.nan for r in rows[m]])
        ax.errorbar(acc, y + offsets[m], xerr=[acc - lo, hi - acc], fmt="o", color=MODEL_COLORS[m], capsize=3,
                    markersize=6, label=f"{name}: accuracy, 95% interval")
    baseline = [r["length_baseline"] for r in rows[0]]
    ax.scatter(baseline, y, marker="D", s=34, color=BASELINE_COLOR, zorder=3, label='"longer answer wins"')
    ax.axvline(0.5, color="black", linestyle="--", linewidth=0.8, label="coin flip (0.5)")
    ax.set_yticks(y, [f"{label} (n={r['n']:,})" for label, r in zip(labels, rows[0])])
    ax.get_yticklabels()[0].set_fontweight("bold")
    # zoom on the data (always showing 0.5), in steps of 0.1
    shown = [v for r in rows for f in r for v in (*f["ci95"], f["length_baseline"]) if v is not None] + [0.5]
    ax.set_xlim(max(0.0, np.floor(min(shown) * 10 - 0.5) / 10), min(1.0, np.ceil(max(shown) * 10 + 0.5) / 10))
    ax.set_xlabel("share of pairs where the human-preferred answer gets the higher reward")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2 + len(model_names), frameon=False, fontsize=9)
    fig.tight_layout()
    return png(fig)


def plot_reward_distributions(data: ScoredDataset, model_names: list[str]) -> bytes:
    """Histograms of the rewards of chosen and rejected answers, one panel per model."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(model_names), figsize=(5.2 * len(model_names), 3.4), squeeze=False)
    for m, (ax, name) in enumerate(zip(axes[0], model_names)):
        chosen, rejected = data.scores[m]
        bins = np.histogram_bin_edges(np.concatenate([chosen, rejected]), bins=40)
        ax.hist(chosen, bins=bins, color=CHOSEN_COLOR, alpha=0.55, label="chosen (preferred)")
        ax.hist(rejected, bins=bins, color=REJECTED_COLOR, alpha=0.45, label="rejected")
        ax.axvline(chosen.mean(), color=CHOSEN_COLOR, linewidth=1.5)
        ax.axvline(rejected.mean(), color=REJECTED_COLOR, linewidth=1.5, linestyle="--")
        ax.set_xlabel("reward")
        ax.set_ylabel("answers")
        ax.set_title(name)
        ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    return png(fig)


def plot_reliability(data: ScoredDataset, entry: dict, model_names: list[str], temperatures: list[float],
                     n_bins: int) -> bytes:
    """Reliability diagram per model at its current temperature and at the fitted one, with bin counts below."""
    plt = pyplot()
    fig, axes = plt.subplots(2, len(model_names), figsize=(4.6 * len(model_names), 5.2), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    for m, name in enumerate(model_names):
        ax, counts_ax = axes[0][m], axes[1][m]
        chosen, rejected = data.scores[m]
        fitted = _model_figures(entry, m)["temperature"]
        ax.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle=":", label="perfectly calibrated")
        diagram = None
        for temperature, style, label in ((temperatures[m], "-", f"as is (T={temperatures[m]:.2g})"),
                                          (fitted, "--", f"fitted T={fitted:.2g}")):
            d = metrics.reliability_diagram(chosen, rejected, temperature, n_bins)
            diagram = diagram or d
            filled = d.counts > 0
            ax.plot(d.mean_confidence[filled], d.frequency[filled], style, marker="o", markersize=4,
                    color=MODEL_COLORS[m], alpha=1.0 if style == "-" else 0.55,
                    label=f"{label}: ECE {d.ece:.3f}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_ylabel("how often that answer was preferred")
        ax.set_title(name)
        ax.legend(frameon=False, fontsize=8, loc="upper left")
        centers = (diagram.bin_edges[:-1] + diagram.bin_edges[1:]) / 2
        counts_ax.bar(centers, diagram.counts / 2, width=0.9 / n_bins, color=MODEL_COLORS[m], alpha=0.6)
        counts_ax.set_ylabel("pairs")
        counts_ax.set_xlabel("predicted probability σ(Δreward / T)")
    fig.tight_layout()
    return png(fig)


def plot_reward_vs_length(data: ScoredDataset, model_names: list[str]) -> bytes:
    """Scatter of reward against response length (log scale), chosen and rejected coloured, with a binned median."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(model_names), figsize=(9.0 if len(model_names) == 1 else 5.4 * len(model_names),
                                                           3.8), squeeze=False)
    chosen_lengths, rejected_lengths = data.lengths
    lengths = np.maximum(np.concatenate([chosen_lengths, rejected_lengths]), 1)
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, 13)))
    for m, (ax, name) in enumerate(zip(axes[0], model_names)):
        chosen, rejected = data.scores[m]
        size = 10 if lengths.size < 2000 else 4
        ax.scatter(np.maximum(chosen_lengths, 1), chosen, s=size, alpha=0.45, color=CHOSEN_COLOR, label="chosen",
                   linewidths=0)
        ax.scatter(np.maximum(rejected_lengths, 1), rejected, s=size, alpha=0.45, color=REJECTED_COLOR,
                   label="rejected", linewidths=0)
        scores = np.concatenate([chosen, rejected])
        which = np.clip(np.searchsorted(edges, lengths, side="right") - 1, 0, max(len(edges) - 2, 0))
        medians = [(np.median(lengths[which == b]), np.median(scores[which == b]))
                   for b in range(max(len(edges) - 1, 1)) if (which == b).any()]
        if len(medians) > 1:
            ax.plot(*zip(*medians), color="black", linewidth=1.8, label="median reward by length")
        ax.set_xscale("log")
        ax.set_xlabel("response length (characters, log scale)")
        ax.set_ylabel("reward")
        ax.set_title(name)
        ax.legend(frameon=False, fontsize=8, markerscale=2.5)
    fig.tight_layout()
    return png(fig)


def plot_ranking_summary(entry: dict, model_names: list[str]) -> bytes:
    """Top-1 accuracy and mean Kendall τ per model next to the length baseline and chance."""
    plt = pyplot()
    fig, (top_ax, tau_ax) = plt.subplots(1, 2, figsize=(9, 2.2 + 0.35 * len(model_names)))
    for ax, key, ci_key, baseline_key, chance, title in (
            (top_ax, "top1_accuracy", "ci95", "length_baseline_top1", entry["chance_top1"],
             "top-1 accuracy (best answer gets the highest reward)"),
            (tau_ax, "mean_kendall_tau", "kendall_tau_ci95", "length_baseline_kendall_tau", 0.0,
             "mean Kendall τ with the human ranking")):
        labels, values, errors, colors = [], [], [], []
        for m, name in enumerate(model_names):
            figures = _model_figures(entry, m)
            value, (lo, hi) = figures[key], figures[ci_key]
            labels.append(name)
            values.append(value if value is not None else np.nan)
            errors.append([value - lo, hi - value] if lo is not None else [0, 0])
            colors.append(MODEL_COLORS[m])
        labels.append('"longest wins"')
        values.append(entry[baseline_key] if entry[baseline_key] is not None else np.nan)
        errors.append([0, 0])
        colors.append(BASELINE_COLOR)
        y = np.arange(len(labels))[::-1]
        ax.barh(y, values, color=colors, height=0.6)
        models = slice(0, len(model_names))  # the baseline is a fixed rule: no interval
        ax.errorbar(np.array(values)[models], y[models], xerr=np.array(errors)[models].T, fmt="none",
                    ecolor="black", capsize=3)
        ax.axvline(chance, color="black", linestyle="--", linewidth=0.8)
        ax.set_yticks(y, labels)
        ax.set_title(title, fontsize=10)
    top_ax.set_xlim(0, 1)
    tau_ax.set_xlim(-1, 1)
    fig.tight_layout()
    return png(fig)


def plot_roc(data: ScoredDataset, model_names: list[str]) -> bytes:
    """ROC curves of each model and of length alone on thumbs up/down data."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    labels = data.targets
    curves = [(name, data.scores[m], MODEL_COLORS[m], "-") for m, name in enumerate(model_names)]
    curves.append(("length alone", data.lengths, BASELINE_COLOR, "--"))
    for name, scores, color, style in curves:
        order = np.argsort(-np.asarray(scores), kind="stable")
        positives = np.cumsum(labels[order] == 1) / max((labels == 1).sum(), 1)
        negatives = np.cumsum(labels[order] == 0) / max((labels == 0).sum(), 1)
        auc = metrics.roc_auc(scores, labels)
        ax.plot(np.r_[0, negatives], np.r_[0, positives], style, color=color, label=f"{name} (AUC {fmt(auc)})")
    ax.plot([0, 1], [0, 1], ":", color="black", linewidth=0.8)
    ax.set_xlabel("share of thumbs-down above the cut")
    ax.set_ylabel("share of thumbs-up above the cut")
    ax.set_aspect("equal")
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    return png(fig)


def plot_ratings(data: ScoredDataset, model_names: list[str]) -> bytes:
    """Reward against the human rating, one panel per model."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(model_names), figsize=(4.8 * len(model_names), 3.6), squeeze=False)
    jitter = np.random.default_rng(0).uniform(-0.08, 0.08, data.targets.size)  # separates Likert columns
    for m, (ax, name) in enumerate(zip(axes[0], model_names)):
        ax.scatter(data.targets + jitter, data.scores[m], s=8, alpha=0.5, color=MODEL_COLORS[m], linewidths=0)
        ax.set_xlabel("human rating")
        ax.set_ylabel("reward")
        ax.set_title(name)
    fig.tight_layout()
    return png(fig)


# ------------------------------------------------------------------------------------------------------- captions

def _versus(value: float | None, baseline: float | None) -> str:
    """"12.3 points above" / "4.0 points below" / "level with", comparing two accuracies."""
    if value is None or baseline is None:
        return "not comparable with"
    if value > baseline + 0.0005:
        return f"{100 * (value - baseline):.1f} points above"
    if value < baseline - 0.0005:
        return f"{100 * (baseline - value):.1f} points below"
    return "level with"


def accuracy_caption(entry: dict, model_names: list[str]) -> str:
    subsets = entry.get("subsets", {})
    text = (f"Each dot is the share of pairs where the model gave the human-preferred answer the higher reward, "
            f"with its 95% bootstrap interval; the grey diamond is what \"pick the longer answer\" gets on the same "
            f"pairs and the dashed line is a coin flip. Overall, {model_names[0]} scores {fmt_ci(entry)}, "
            f"{_versus(entry['accuracy'], entry['length_baseline'])} the length baseline "
            f"({fmt(entry['length_baseline'])}).")
    if subsets:
        beats = sum(1 for s in subsets.values() if s["accuracy"] is not None and s["length_baseline"] is not None
                    and s["accuracy"] > s["length_baseline"])
        above = sum(1 for s in subsets.values() if s["ci95"][0] is not None and s["ci95"][0] > 0.5)
        below = sum(1 for s in subsets.values() if s["ci95"][1] is not None and s["ci95"][1] < 0.5)
        text += (f" It beats the length baseline on {beats} of {len(subsets)} subsets; its interval lies above "
                 f"chance on {above} and below chance on {below}.")
    if "difference" in entry:
        diff = entry["difference"]["accuracy"]
        verdict = ("the interval excludes zero, so the difference is unlikely to be noise" if diff["excludes_zero"]
                   else "the interval includes zero, so this data cannot tell them apart")
        text += (f" {model_names[0]} minus {model_names[1]}: {diff['difference']:+.3f} "
                 f"[{fmt(diff['ci95'][0])}, {fmt(diff['ci95'][1])}] (paired bootstrap); {verdict}.")
    return text


def distribution_caption(entry: dict, model_names: list[str]) -> str:
    parts = []
    for m, name in enumerate(model_names):
        figures = _model_figures(entry, m)
        parts.append(f"{name}: mean margin {fmt_scale(figures['mean_margin'], signed=True)}, the chosen answer gets the higher reward in "
                     f"{percent(figures['accuracy'])} of pairs")
    return ("Rewards given to the human-preferred (chosen, green) and the other (rejected, red) answers; the vertical "
            "lines mark their means. The further apart the two histograms, the better the model separates good from "
            "bad answers; heavy overlap means many pairs are decided by small reward differences. "
            + "; ".join(parts) + ".")


def reliability_caption(entry: dict, model_names: list[str], temperatures: list[float]) -> str:
    parts = []
    for m, name in enumerate(model_names):
        figures = _model_figures(entry, m)
        verdict = ("well calibrated" if figures["ece"] is not None and figures["ece"] < 0.03
                   else "over-confident" if figures["temperature"] > temperatures[m] else "under-confident")
        if figures["accuracy"] is not None and figures["accuracy"] <= 0.5:
            # the NLL-optimal positive temperature then runs off to its bound: say why instead of showing a bare T
            parts.append(f"{name}'s reward differences point the wrong way as often as the right one here (accuracy "
                         f"{fmt(figures['accuracy'])}), so no temperature makes them informative: the fitted "
                         f"T={figures['temperature']:.3g} just flattens every probability to about 0.5 (ECE "
                         f"{fmt(figures['ece'])} as is, {fmt(figures['calibrated_ece'])} flattened)")
            continue
        parts.append(f"{name} is {verdict} as is (ECE {fmt(figures['ece'])} at T={temperatures[m]:.3g}); dividing "
                     f"reward differences by the fitted T={figures['temperature']:.3g} brings the ECE to "
                     f"{fmt(figures['calibrated_ece'])} on these pairs")
    return ("Reading σ(reward difference / T) as the probability that one answer is preferred: each point groups "
            "answers with a similar predicted probability and shows how often that answer was actually preferred. "
            "Points on the dotted diagonal mean the probabilities can be taken at face value; points flatter than the "
            "diagonal mean over-confidence, steeper means under-confidence. Each pair is counted in both orders, so "
            "the plot is symmetric about the centre; the bars below show how many pairs fall in each bin. "
            + "; ".join(parts) + ". (Use --save-temperature to store the fitted temperature with the model.)")


def length_caption(entry: dict, model_names: list[str]) -> str:
    parts = []
    for m, name in enumerate(model_names):
        figures = _model_figures(entry, m)
        parts.append(f"{name} gives the longer answer the higher reward in {percent(figures['prefers_longer'])} of "
                     f"pairs of different length (Spearman correlation of reward with length "
                     f"{fmt(figures['length_correlation'], 2)}); on the {figures['debiased_n']:,} pairs where the "
                     f"preferred answer is the shorter one its accuracy is {fmt(figures['debiased_accuracy'])}")
    return (f"Each point is one answer: its length in characters and its reward; the black line is the median reward "
            f"of answers of similar length. People preferred the longer answer in {percent(entry['length_baseline'])} "
            f"of these pairs. " + "; ".join(parts) + ". A model that merely rewards length would prefer the longer "
            "answer nearly always and score near 0 on the shorter-is-better pairs.")


# --------------------------------------------------------------------------------------------------------- tables

# Per kind of feedback: the table's title, its columns, and the cells of one row from a figures block.
KIND_COLUMNS = {
    "pairwise": ("pairwise data", ["n", "accuracy [95% CI]", "longer wins", "debiased acc. (n)", "prefers longer",
                                   "length corr.", "ECE", "fitted T", "mean margin"]),
    "rankings": ("ranked groups", ["groups", "top-1 acc. [95% CI]", "chance", "longest wins",
                                   "mean Kendall τ [95% CI]", "τ of length", "length corr."]),
    "ratings": ("ratings", ["n", "Pearson", "Spearman [95% CI]", "Spearman of length", "length corr."]),
    "binary": ("thumbs up/down", ["n", "accuracy [95% CI]", "F1", "ROC AUC [95% CI]", "AUC of length",
                                  "thumbs up"]),
}


def kind_cells(kind: str, f: dict) -> list[str]:
    if kind == "pairwise":
        return [fmt(f["n"]), fmt_ci(f), fmt(f["length_baseline"]),
                f"{fmt(f['debiased_accuracy'])} ({f['debiased_n']:,})", percent(f["prefers_longer"]),
                fmt(f["length_correlation"], 2), fmt(f["ece"]), fmt_scale(f["temperature"]),
                fmt_scale(f["mean_margin"], signed=True)]
    if kind == "rankings":
        return [fmt(f["n"]), fmt_ci(f, "top1_accuracy"), fmt(f["chance_top1"]), fmt(f["length_baseline_top1"]),
                fmt_ci(f, "mean_kendall_tau", "kendall_tau_ci95"), fmt(f["length_baseline_kendall_tau"]),
                fmt(f["length_correlation"], 2)]
    if kind == "ratings":
        return [fmt(f["n"]), fmt(f["pearson"]), fmt_ci(f, "spearman"), fmt(f["length_baseline_spearman"]),
                fmt(f["length_correlation"], 2)]
    return [fmt(f["n"]), fmt_ci(f), fmt(f["f1"]), fmt_ci(f, "roc_auc", "roc_auc_ci95"),
            fmt(f["length_baseline_auc"]), percent(f["positive_rate"])]


def kind_table(kind: str, first_column: str, rows: list[tuple[str, dict]], model_names: list[str]) -> Table:
    """A table of `kind` figures: one row per (label, entry) and model (a model column only with two models)."""
    two = len(model_names) > 1
    title, columns = KIND_COLUMNS[kind]
    body = [[label] + ([model] if two else []) + kind_cells(kind, _model_figures(entry, m))
            for label, entry in rows for m, model in enumerate(model_names)]
    return Table([first_column or title] + (["model"] if two else []) + columns, body, text_columns=1 + two)


def subset_table(entry: dict, model_names: list[str]) -> Table | None:
    """Per-subset figures of one dataset, or None when it has no subsets."""
    subsets = list(entry.get("subsets", {}))
    if not subsets:
        return None
    rows = [(subset, {"subsets": {}, **entry["subsets"][subset],
                      **({"model2": entry["model2"]["subsets"][subset]} if "model2" in entry else {})})
            for subset in subsets]
    return kind_table(entry["kind"], "subset", rows, model_names)


def difference_table(results: dict, model_names: list[str], dataset: str | None = None) -> list[Block]:
    """Model 1 minus model 2: per dataset (dataset=None, for the summary) or per subset of one dataset."""
    if dataset is None:
        items = [(name, entry["difference"]) for name, entry in results["datasets"].items()]
    else:
        items = list(results["datasets"][dataset]["difference"].get("subsets", {}).items())
    rows = []
    for label, diffs in items:
        for metric, diff in diffs.items():
            if metric == "subsets":
                continue
            value = "—" if diff["difference"] is None else f"{diff['difference']:+.3f}"
            rows.append([label, metric.replace("_", " "), value, f"[{fmt(diff['ci95'][0])}, {fmt(diff['ci95'][1])}]",
                         "yes" if diff["excludes_zero"] else "no"])
    if not rows:
        return []
    return [Paragraph(f"**{model_names[0]} minus {model_names[1]}** on the same records (paired bootstrap 95% "
                      f"interval; \"excludes 0\" means the difference is unlikely to be chance)."),
            Table(["data" if dataset is None else "subset", "metric", "difference", "95% CI", "excludes 0"], rows,
                  text_columns=2)]


def summary_blocks(results: dict, model_names: list[str]) -> list[Block]:
    """One table per kind of data with every dataset's headline figures, then the model differences."""
    datasets = results["datasets"]
    blocks: list[Block] = []
    for kind in KIND_COLUMNS:
        rows = [(name, entry) for name, entry in datasets.items() if entry["kind"] == kind]
        if rows:
            blocks.append(kind_table(kind, "", rows, model_names))
    if len(model_names) > 1:
        blocks += difference_table(results, model_names)
    return blocks


def summary_sentences(results: dict, model_names: list[str]) -> list[Block]:
    """A few plain sentences per pairwise dataset: accuracy against the length baseline, then the length bias."""
    paragraphs = []
    for name, entry in results["datasets"].items():
        if entry["kind"] != "pairwise":
            continue
        per_model = [(model, _model_figures(entry, m)) for m, model in enumerate(model_names)]
        accuracy = "; ".join(
            f"{model + ' ' if len(model_names) > 1 else ''}accuracy {fmt_ci(f)}, "
            f"{_versus(f['accuracy'], f['length_baseline'])} \"longer answer wins\" ({fmt(f['length_baseline'])})"
            for model, f in per_model)
        text = f"**{name}** ({entry['n']:,} pairs): {accuracy}."
        if "difference" in entry:
            diff = entry["difference"]["accuracy"]
            text += (f" The difference {diff['difference']:+.3f} [{fmt(diff['ci95'][0])}, {fmt(diff['ci95'][1])}] "
                     f"{'excludes 0' if diff['excludes_zero'] else 'includes 0: no clear winner on this data'}.")
        text += " " + "; ".join(
            f"{model if len(model_names) > 1 else 'The model'} gives the longer answer the higher reward in "
            f"{percent(f['prefers_longer'])} of pairs and is {fmt(f['debiased_accuracy'])} accurate on the "
            f"{f['debiased_n']:,} pairs where people preferred the shorter answer" for model, f in per_model) + "."
        paragraphs.append(Paragraph(text))
    return paragraphs


# ------------------------------------------------------------------------------------------------------ the page

def build_blocks(results: dict, scored: list[ScoredDataset], model_names: list[str], temperatures: list[float],
                 n_bins: int = 10) -> list[Block]:
    blocks: list[Block] = [Heading("Summary")]
    blocks += summary_sentences(results, model_names)
    blocks += summary_blocks(results, model_names)
    blocks.append(Paragraph(
        "How to read these figures: **accuracy** is the share of pairs where the human-preferred answer gets the higher "
        "reward (ties count half), with a 95% bootstrap interval. **Longer wins** is the accuracy of always picking the "
        "longer answer; a useful reward model must beat it. **Debiased accuracy** is the accuracy on the pairs where "
        "the preferred answer is the shorter one (n pairs). **Prefers longer** is how often the model gives the longer "
        "answer the higher reward. **ECE** (expected calibration error, 0 is best) says how far σ(reward difference) "
        "is from the observed preference rate; **fitted T** is the temperature that calibrates it."))
    for data in scored:
        entry = results["datasets"][data.name]
        base = slug(data.name)
        sources = ", ".join(data.sources)
        if len(data.sources) > 3:
            sources = f"{len(data.sources)} files under {os.path.commonpath(data.sources)}"
        blocks.append(Heading(f"{data.name} ({data.kind})"))
        if sources:
            blocks.append(Paragraph(f"Read from {sources}."))
        table = subset_table(entry, model_names)
        if table is not None:
            blocks.append(table)
        if "difference" in entry:
            blocks += difference_table(results, model_names, data.name)
        if data.kind == "pairwise":
            blocks.append(Figure(f"{base}-accuracy.png", plot_accuracy_by_subset(entry, model_names),
                                 "Accuracy by subset", accuracy_caption(entry, model_names)))
            one = len(model_names) == 1  # one panel per model: a single model's two small plots share a row
            blocks.append(Figure(f"{base}-rewards.png", plot_reward_distributions(data, model_names),
                                 "Rewards of chosen and rejected answers", distribution_caption(entry, model_names),
                                 wide=not one))
            blocks.append(Figure(f"{base}-reliability.png",
                                 plot_reliability(data, entry, model_names, temperatures, n_bins),
                                 "Calibration (reliability diagram)",
                                 reliability_caption(entry, model_names, temperatures), wide=not one))
            blocks.append(Figure(f"{base}-length.png", plot_reward_vs_length(data, model_names),
                                 "Reward against response length", length_caption(entry, model_names)))
        elif data.kind == "rankings":
            blocks.append(Figure(
                f"{base}-ranking.png", plot_ranking_summary(entry, model_names), "Ranking agreement",
                f"For each group of answers people ranked, top-1 accuracy is the share of groups where the best answer "
                f"gets the highest reward (random picking gets {fmt(entry['chance_top1'])}, dashed), and Kendall τ "
                f"measures agreement with the whole ranking (1 = same order, 0 = unrelated, −1 = reversed). The grey "
                f"bar ranks answers by length alone. {model_names[0]}: top-1 {fmt_ci(entry, 'top1_accuracy')}, "
                f"mean τ {fmt(entry['mean_kendall_tau'])} over {entry['n']:,} groups."))
        elif data.kind == "binary":
            blocks.append(Figure(
                f"{base}-roc.png", plot_roc(data, model_names), "ROC curve",
                f"Sorting answers by reward and cutting anywhere: the curve shows how many thumbs-up answers land "
                f"above the cut against how many thumbs-down ones do. The area under it (AUC) is the chance that a "
                f"random thumbs-up answer outranks a random thumbs-down one: {fmt(entry['roc_auc'])} for "
                f"{model_names[0]}, {fmt(entry['length_baseline_auc'])} for length alone, 0.5 for chance. Accuracy "
                f"and F1 in the table use the cut reward > {entry['threshold']:g} (σ(reward) > 0.5)."))
        elif data.kind == "ratings":
            blocks.append(Figure(
                f"{base}-ratings.png", plot_ratings(data, model_names), "Reward against rating",
                f"Each point is one rated answer. Spearman correlation {fmt(entry['spearman'])} (1 = rewards order the "
                f"answers exactly as the ratings do); length alone reaches {fmt(entry['length_baseline_spearman'])}."))
    return blocks


def _inline_html(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text, quote=False))


def render_markdown(title: str, subtitle: str, blocks: list[Block]) -> str:
    lines = [f"# {title}", "", subtitle, ""]
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            escape = lambda cell: cell.replace("|", "\\|")  # noqa: E731
            lines.append("| " + " | ".join(map(escape, block.header)) + " |")
            lines.append("|" + "|".join(["---"] * block.text_columns
                                        + ["---:"] * (len(block.header) - block.text_columns)) + "|")
            lines += ["| " + " | ".join(map(escape, row)) + " |" for row in block.rows]
            lines.append("")
        elif isinstance(block, Figure):
            lines += [f"### {block.title}", "", f"![{block.title}]({block.filename})", "", f"*{block.caption}*", ""]
    return "\n".join(lines)


def render_text(results: dict, model_names: list[str]) -> str:
    """The terminal version: the summary tables, then each dataset's subset table, as aligned plain text."""
    blocks = summary_blocks(results, model_names)
    for name, entry in results["datasets"].items():
        table = subset_table(entry, model_names)
        if table is not None:
            blocks += [Heading(f"{name}: by subset"), table]
        if "difference" in entry:
            blocks += difference_table(results, model_names, name)
    lines = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["", block.text]
        elif isinstance(block, Paragraph):
            lines += ["", block.text.replace("**", "")]
        elif isinstance(block, Table):
            widths = [max(len(cell) for cell in column) for column in zip(block.header, *block.rows)]
            for row in [block.header] + block.rows:
                cells = [c.ljust(w) if i < block.text_columns else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))]
                lines.append("  ".join(cells).rstrip())
            lines.append("")
    return "\n".join(lines).strip("\n") + "\n"


STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; margin: 0;
       background: #f6f7f9; line-height: 1.5; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 26px; margin: 8px 0 4px; }
.subtitle { color: #555; margin: 0 0 18px; font-size: 14px; }
h2 { font-size: 20px; border-bottom: 2px solid #e3e6ea; padding-bottom: 4px; margin-top: 36px; }
h3 { font-size: 16px; margin: 24px 0 6px; }
p { margin: 8px 0 12px; max-width: 1000px; }
table { border-collapse: collapse; margin: 10px 0 18px; font-size: 13px; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e3e6ea; text-align: right; white-space: nowrap; }
th { background: #eef1f5; font-weight: 600; }
th.l, td.l { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
.table-wrap { overflow-x: auto; }
figure { margin: 14px 0 26px; }
figure img { max-width: 100%; border: 1px solid #e3e6ea; border-radius: 4px; }
figcaption { color: #333; font-size: 14px; max-width: 1000px; margin-top: 6px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 28px; align-items: start; }
.pair figure { margin-top: 14px; }
"""


def render_html(title: str, subtitle: str, blocks: list[Block]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="subtitle">{_inline_html(subtitle)}</p>']
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Table):
            def cell(tag: str, i: int, text: str) -> str:
                return f'<{tag}{" class=l" if i < block.text_columns else ""}>{html.escape(text)}</{tag}>'

            head = "".join(cell("th", i, h) for i, h in enumerate(block.header))
            rows = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>"
                           for row in block.rows)
            body.append(f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
                        f"</table></div>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png).decode("ascii")
            figure = (f"<figure><h3>{html.escape(block.title)}</h3>"
                      f'<img src="data:image/png;base64,{data}" alt="{html.escape(block.title)}">'
                      f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>")
            if block.wide:
                body.append(figure)
            elif body and body[-1].startswith('<div class="pair">') and body[-1].count("<figure>") < 2:
                body[-1] = body[-1][:-len("</div>")] + figure + "</div>"
            else:
                body.append(f'<div class="pair">{figure}</div>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f"<body><main>{''.join(body)}</main></body></html>\n")


def write_pages(directory: str | Path, title: str, subtitle: str, blocks: list[Block]) -> tuple[Path, Path]:
    """Write DIR/report.html (self-contained), DIR/report.md and the PNG files it references; return both paths.

    Shared by every rewardkit report (eval-rm, rl): build the blocks, then call this.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for block in blocks:
        if isinstance(block, Figure):
            (directory / block.filename).write_bytes(block.png)
    html_path, markdown_path = directory / "report.html", directory / "report.md"
    html_path.write_text(render_html(title, subtitle, blocks), encoding="utf-8")
    markdown_path.write_text(render_markdown(title, subtitle, blocks), encoding="utf-8")
    return html_path, markdown_path


def write_report(directory: str | Path, results: dict, scored: list[ScoredDataset], model_names: list[str],
                 temperatures: list[float], n_bins: int = 10) -> tuple[Path, Path]:
    """The eval-rm report of `results` (the --json object) and the scored datasets it was computed from."""
    blocks = build_blocks(results, scored, model_names, temperatures, n_bins)
    models = "; ".join(f"{m['name']} ({m['path']}" + (f", {m['placement']['device']} {m['placement']['precision']}"
                                                       if m.get("placement") else "") + ")"
                       for m in results["models"])
    subtitle = f"Models: {models}. Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by rewardkit eval-rm."
    return write_pages(directory, "Reward model evaluation: " + " vs ".join(model_names), subtitle, blocks)
