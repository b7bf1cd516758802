"""`eval-rm --report DIR`: one self-contained HTML page (plots embedded as base64 PNG) plus Markdown with PNG files.

The page is a list of `rewardkit.pages` blocks rendered to both formats, so the two always say the same thing. What
differs between kinds of feedback (table columns, figures, summary sentences) comes from `rewardkit.eval.views`; every
plot has a caption in plain language that states what it shows with the numbers of this run ("the model gives the longer
answer the higher reward in 64% of pairs ...").
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from rewardkit.eval.presentation import model_figures
from rewardkit.eval.scoring import ScoredDataset
from rewardkit.eval.views import view_of
from rewardkit.kinds import KINDS, FeedbackKind, kind_named
from rewardkit.pages import Block, Heading, Paragraph, Table, fmt, render_text, write_pages


# --------------------------------------------------------------------------------------------------------- tables

def kind_table(kind: FeedbackKind, first_column: str, rows: list[tuple[str, dict]], model_names: list[str]) -> Table:
    """A table of `kind` figures: one row per (label, entry) and model (a model column only with two models)."""
    two, view = len(model_names) > 1, view_of(kind)
    body = [[label] + ([model] if two else []) + view.cells(model_figures(entry, m))
            for label, entry in rows for m, model in enumerate(model_names)]
    return Table([first_column or kind.title] + (["model"] if two else []) + view.columns, body,
                 text_columns=1 + two)


def subset_table(entry: dict, model_names: list[str]) -> Table | None:
    """Per-subset figures of one dataset, or None when it has no subsets."""
    subsets = list(entry.get("subsets", {}))
    if not subsets:
        return None
    rows = [(subset, {"subsets": {}, **entry["subsets"][subset],
                      **({"model2": entry["model2"]["subsets"][subset]} if "model2" in entry else {})})
            for subset in subsets]
    return kind_table(kind_named(entry["kind"]), "subset", rows, model_names)


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
    for kind in KINDS.values():
        rows = [(name, entry) for name, entry in datasets.items() if kind_named(entry["kind"]) is kind]
        if rows:
            blocks.append(kind_table(kind, "", rows, model_names))
    if len(model_names) > 1:
        blocks += difference_table(results, model_names)
    return blocks


def summary_sentences(results: dict, model_names: list[str]) -> list[Block]:
    """Plain sentences on each dataset whose kind has more to say than its table row, and on length heads."""
    blocks = [block for name, entry in results["datasets"].items()
              for block in view_of(kind_named(entry["kind"])).sentences(name, entry, model_names)]
    return blocks + length_head_sentences(results, model_names)


def length_head_sentences(results: dict, model_names: list[str]) -> list[Block]:
    """For a model with a length head (ODIN): how closely each head follows response length, per dataset."""
    blocks = []
    for name, entry in results["datasets"].items():
        for m, model in enumerate(model_names):
            figures = model_figures(entry, m) if m == 0 or "model2" in entry else {}
            if "length_head_correlation" in figures:
                blocks.append(Paragraph(
                    f"On {name}, {model}'s length head follows response length (Spearman "
                    f"{fmt(figures['length_head_correlation'], 2)}); the reward it serves, from its other head, "
                    f"has a length correlation of {fmt(figures['length_correlation'], 2)}."))
    return blocks


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
        sources = ", ".join(data.sources)
        if len(data.sources) > 3:
            sources = f"{len(data.sources)} files under {os.path.commonpath(data.sources)}"
        blocks.append(Heading(f"{data.name} ({data.kind.name})"))
        if sources:
            blocks.append(Paragraph(f"Read from {sources}."))
        table = subset_table(entry, model_names)
        if table is not None:
            blocks.append(table)
        if "difference" in entry:
            blocks += difference_table(results, model_names, data.name)
        blocks += view_of(data.kind).figures(data, entry, model_names, temperatures, n_bins)
    return blocks


def report_text(results: dict, model_names: list[str]) -> str:
    """The terminal version: the summary tables, then each dataset's subset table, as aligned plain text."""
    blocks = summary_blocks(results, model_names)
    for name, entry in results["datasets"].items():
        table = subset_table(entry, model_names)
        if table is not None:
            blocks += [Heading(f"{name}: by subset"), table]
        if "difference" in entry:
            blocks += difference_table(results, model_names, name)
    return render_text(blocks)


def write_report(directory: str | Path, results: dict, scored: list[ScoredDataset], model_names: list[str],
                 temperatures: list[float], n_bins: int = 10) -> tuple[Path, Path]:
    """The eval-rm report of `results` (the --json object) and the scored datasets it was computed from."""
    blocks = build_blocks(results, scored, model_names, temperatures, n_bins)
    models = "; ".join(f"{m['name']} ({m['path']}" + (f", {m['placement']['device']} {m['placement']['precision']}"
                                                       if m.get("placement") else "") + ")"
                       for m in results["models"])
    subtitle = f"Models: {models}. Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by rewardkit eval-rm."
    return write_pages(directory, "Reward model evaluation: " + " vs ".join(model_names), subtitle, blocks)

