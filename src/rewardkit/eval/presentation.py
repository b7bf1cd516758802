"""How eval-rm shows each kind of feedback: table columns and cells, plots, captions, summary sentences.

`rewardkit.eval.views` points each kind of feedback at its functions here; `eval.report` assembles the page from them.
Plots return PNG bytes (`rewardkit.pages.png`); captions state what a plot shows with this run's numbers.
"""

from __future__ import annotations

import numpy as np

from rewardkit.eval import metrics
from rewardkit.eval.scoring import ScoredDataset
from rewardkit.pages import Block, Figure, Paragraph, fmt, fmt_ci, fmt_scale, percent, png, pyplot, slug

MODEL_COLORS = ("#1f5fa8", "#d9730d")
CHOSEN_COLOR, REJECTED_COLOR, BASELINE_COLOR = "#2e8b57", "#c0392b", "#7f7f7f"


def model_figures(entry: dict, model: int) -> dict:
    """Model 1's figures are the entry itself, model 2's are under "model2"."""
    return entry if model == 0 else entry["model2"]


# ------------------------------------------------------------------------------------------------- table cells

PAIR_COLUMNS = ["n", "accuracy [95% CI]", "longer wins", "debiased acc. (n)", "prefers longer", "length corr.", "ECE",
                "fitted T", "mean margin"]
RANKING_COLUMNS = ["groups", "top-1 acc. [95% CI]", "chance", "longest wins", "mean Kendall τ [95% CI]",
                   "τ of length", "length corr."]
RATING_COLUMNS = ["n", "Pearson", "Spearman [95% CI]", "Spearman of length", "length corr."]
BINARY_COLUMNS = ["n", "accuracy [95% CI]", "F1", "ROC AUC [95% CI]", "AUC of length", "thumbs up"]


def pair_cells(f: dict) -> list[str]:
    return [fmt(f["n"]), fmt_ci(f), fmt(f["length_baseline"]), f"{fmt(f['debiased_accuracy'])} ({f['debiased_n']:,})",
            percent(f["prefers_longer"]), fmt(f["length_correlation"], 2), fmt(f["ece"]), fmt_scale(f["temperature"]),
            fmt_scale(f["mean_margin"], signed=True)]


def ranking_cells(f: dict) -> list[str]:
    return [fmt(f["n"]), fmt_ci(f, "top1_accuracy"), fmt(f["chance_top1"]), fmt(f["length_baseline_top1"]),
            fmt_ci(f, "mean_kendall_tau", "kendall_tau_ci95"), fmt(f["length_baseline_kendall_tau"]),
            fmt(f["length_correlation"], 2)]


def rating_cells(f: dict) -> list[str]:
    return [fmt(f["n"]), fmt(f["pearson"]), fmt_ci(f, "spearman"), fmt(f["length_baseline_spearman"]),
            fmt(f["length_correlation"], 2)]


def binary_cells(f: dict) -> list[str]:
    return [fmt(f["n"]), fmt_ci(f), fmt(f["f1"]), fmt_ci(f, "roc_auc", "roc_auc_ci95"), fmt(f["length_baseline_auc"]),
            percent(f["positive_rate"])]


# ------------------------------------------------------------------------------------------------------- plotting

def plot_accuracy_by_subset(entry: dict, model_names: list[str]) -> bytes:
    """Accuracy with 95% intervals per subset (and overall, on top), the length baseline marked, chance dashed."""
    plt = pyplot()
    labels = ["All"] + list(entry.get("subsets", {}))
    rows = [[model_figures(entry, m)] + [model_figures(entry, m)["subsets"][s] for s in labels[1:]]
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
        fitted = model_figures(entry, m)["temperature"]
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
        ax.set_ylim(0, 1)  # no equal aspect: it would shrink this panel against the counts' shared x axis below
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
            figures = model_figures(entry, m)
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
        negatives, positives = metrics.roc_curve(scores, labels)
        auc = metrics.roc_auc(scores, labels)
        ax.plot(negatives, positives, style, color=color, label=f"{name} (AUC {fmt(auc)})")
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
        figures = model_figures(entry, m)
        parts.append(f"{name}: mean margin {fmt_scale(figures['mean_margin'], signed=True)}, the chosen answer gets the higher reward in "
                     f"{percent(figures['accuracy'])} of pairs")
    return ("Rewards given to the human-preferred (chosen, green) and the other (rejected, red) answers; the vertical "
            "lines mark their means. The further apart the two histograms, the better the model separates good from "
            "bad answers; heavy overlap means many pairs are decided by small reward differences. "
            + "; ".join(parts) + ".")


def reliability_caption(entry: dict, model_names: list[str], temperatures: list[float]) -> str:
    parts = []
    for m, name in enumerate(model_names):
        figures = model_figures(entry, m)
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
        figures = model_figures(entry, m)
        parts.append(f"{name} gives the longer answer the higher reward in {percent(figures['prefers_longer'])} of "
                     f"pairs of different length (Spearman correlation of reward with length "
                     f"{fmt(figures['length_correlation'], 2)}); on the {figures['debiased_n']:,} pairs where the "
                     f"preferred answer is the shorter one its accuracy is {fmt(figures['debiased_accuracy'])}")
    return (f"Each point is one answer: its length in characters and its reward; the black line is the median reward "
            f"of answers of similar length. People preferred the longer answer in {percent(entry['length_baseline'])} "
            f"of these pairs. " + "; ".join(parts) + ". A model that merely rewards length would prefer the longer "
            "answer nearly always and score near 0 on the shorter-is-better pairs.")



# ----------------------------------------------------------------------------------------- each kind's figures

def pair_figures(data: ScoredDataset, entry: dict, model_names: list[str], temperatures: list[float],
                 n_bins: int) -> list[Figure]:
    base = slug(data.name)
    one = len(model_names) == 1  # one panel per model: a single model's two small plots share a row
    return [
        Figure(f"{base}-accuracy.png", plot_accuracy_by_subset(entry, model_names), "Accuracy by subset",
               accuracy_caption(entry, model_names)),
        Figure(f"{base}-rewards.png", plot_reward_distributions(data, model_names),
               "Rewards of chosen and rejected answers", distribution_caption(entry, model_names), wide=not one),
        Figure(f"{base}-reliability.png", plot_reliability(data, entry, model_names, temperatures, n_bins),
               "Calibration (reliability diagram)", reliability_caption(entry, model_names, temperatures),
               wide=not one),
        Figure(f"{base}-length.png", plot_reward_vs_length(data, model_names), "Reward against response length",
               length_caption(entry, model_names)),
    ]


def ranking_figures(data: ScoredDataset, entry: dict, model_names: list[str], temperatures: list[float],
                    n_bins: int) -> list[Figure]:
    return [Figure(
        f"{slug(data.name)}-ranking.png", plot_ranking_summary(entry, model_names), "Ranking agreement",
        f"For each group of answers people ranked, top-1 accuracy is the share of groups where the best answer "
        f"gets the highest reward (random picking gets {fmt(entry['chance_top1'])}, dashed), and Kendall τ "
        f"measures agreement with the whole ranking (1 = same order, 0 = unrelated, −1 = reversed). The grey "
        f"bar ranks answers by length alone. {model_names[0]}: top-1 {fmt_ci(entry, 'top1_accuracy')}, "
        f"mean τ {fmt(entry['mean_kendall_tau'])} over {entry['n']:,} groups.")]


def rating_figures(data: ScoredDataset, entry: dict, model_names: list[str], temperatures: list[float],
                   n_bins: int) -> list[Figure]:
    return [Figure(
        f"{slug(data.name)}-ratings.png", plot_ratings(data, model_names), "Reward against rating",
        f"Each point is one rated answer. Spearman correlation {fmt(entry['spearman'])} (1 = rewards order the "
        f"answers exactly as the ratings do); length alone reaches {fmt(entry['length_baseline_spearman'])}.")]


def binary_figures(data: ScoredDataset, entry: dict, model_names: list[str], temperatures: list[float],
                   n_bins: int) -> list[Figure]:
    return [Figure(
        f"{slug(data.name)}-roc.png", plot_roc(data, model_names), "ROC curve",
        f"Sorting answers by reward and cutting anywhere: the curve shows how many thumbs-up answers land "
        f"above the cut against how many thumbs-down ones do. The area under it (AUC) is the chance that a "
        f"random thumbs-up answer outranks a random thumbs-down one: {fmt(entry['roc_auc'])} for "
        f"{model_names[0]}, {fmt(entry['length_baseline_auc'])} for length alone, 0.5 for chance. Accuracy "
        f"and F1 in the table use the cut reward > {entry['threshold']:g} (σ(reward) > 0.5).")]


# ---------------------------------------------------------------------------------------------- summary sentences

def pair_sentences(name: str, entry: dict, model_names: list[str]) -> list[Block]:
    """A few plain sentences on one pairwise dataset: accuracy against the length baseline, then the length bias."""
    per_model = [(model, model_figures(entry, m)) for m, model in enumerate(model_names)]
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
    text += "".join(
        f" {model if len(model_names) > 1 else 'The ensemble'}'s members disagree more on the pairs it gets wrong "
        f"than on those it gets right in {percent(f['disagreement_auc'])} of comparisons (50% would mean disagreement "
        f"tells nothing); it is {fmt(f['accuracy_agreed'])} accurate on the half of the pairs where they agree most "
        f"and {fmt(f['accuracy_disagreed'])} on the half where they agree least."
        for model, f in per_model if "disagreement_auc" in f)
    return [Paragraph(text)]
