"""The final report of `rewardkit rl`: curves, proxy and gold reward against √KL, held-out before/after figures and
samples, the reward-hacking warnings. HTML (self-contained) and Markdown (with PNG files), built from the same blocks
as the eval report (`rewardkit.pages`)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rewardkit.pages import Figure, Heading, Paragraph, Table, fmt, png, pyplot, write_pages

PROXY_COLOR, GOLD_COLOR, OTHER_COLOR = "#1f5fa8", "#d9730d", "#444444"
LABELS = {"reward/proxy": "proxy", "reward/gold": "gold", "kl/ref": "KL", "response/length": "length",
          "policy/entropy": "entropy"}


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to `window` values (the first points average what exists so far)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(m["step"], m[key]) for m in history if m.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(history: list[dict], evals: list[dict], window: int) -> bytes:
    plt = pyplot()
    panels = [("Reward", ["reward/proxy", "reward/gold"]), ("KL to reference (nats per response)", ["kl/ref"]),
              ("Response length (tokens)", ["response/length"]), ("Entropy (nats per token)", ["policy/entropy"])]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    colors = {"reward/proxy": PROXY_COLOR, "reward/gold": GOLD_COLOR}
    for ax, (title, keys) in zip(axes.flat, panels):
        for key in keys:
            steps, values = _series(history, key)
            if not steps:
                continue
            color = colors.get(key, OTHER_COLOR)
            label = LABELS[key]
            ax.plot(steps, values, color=color, alpha=0.25, linewidth=1)
            ax.plot(steps, moving_average(values, window), color=color, linewidth=2, label=f"{label} (train)")
            eval_key = {"reward/proxy": "eval/proxy", "reward/gold": "eval/gold", "kl/ref": "eval/kl",
                        "response/length": "eval/length"}.get(key)
            eval_steps, eval_values = _series(evals, eval_key) if eval_key else ([], [])
            if eval_steps:
                ax.plot(eval_steps, eval_values, "o--", color=color, markersize=5, linewidth=1,
                        label=f"{label} (held-out)")
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return png(fig)


def plot_reward_vs_sqrt_kl(history: list[dict], evals: list[dict], window: int) -> bytes:
    """Gao et al. (2022) plot their rewards against d = √KL: proxy keeps rising while gold peaks and falls."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, eval_key, color in (("reward/proxy", "eval/proxy", PROXY_COLOR), ("reward/gold", "eval/gold", GOLD_COLOR)):
        rows = [m for m in history if m.get(key) is not None]
        if rows:
            d = [math.sqrt(max(m["kl/ref"], 0.0)) for m in rows]
            ax.scatter(d, [m[key] for m in rows], s=8, alpha=0.25, color=color)
            ax.plot(moving_average(d, window), moving_average([m[key] for m in rows], window), color=color,
                    linewidth=2, label=f"{LABELS[key]} (train, moving average)")
        points = [(math.sqrt(max(e["eval/kl"], 0.0)), e[eval_key]) for e in evals if e.get(eval_key) is not None]
        if points:
            ax.plot(*zip(*points), "o--", color=color, markersize=6, linewidth=1,
                    label=f"{LABELS[key]} (held-out)")
    ax.set_xlabel("√KL(policy ‖ reference)  [√nats]")
    ax.set_ylabel("reward")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return png(fig)


def _sample_paragraphs(before: list[dict], after: list[dict], count: int) -> list[Paragraph]:
    def one(sample: dict) -> str:
        gold = f", gold {sample['gold']:.2f}" if sample.get("gold") is not None else ""
        cut = " — cut off" if sample.get("truncated") else ""
        return f"(proxy {sample['proxy']:.2f}{gold}{cut}) {sample['response']!r}"

    blocks, seen = [], []
    for b, a in zip(before, after):
        if b["prompt"] in seen:  # one sample per prompt: more prompts shown
            continue
        seen.append(b["prompt"])
        if len(seen) > count:
            break
        prompt = b["prompt"] if isinstance(b["prompt"], str) else b["prompt"][-1]["content"]
        blocks += [Paragraph(f"**Prompt:** {prompt!r}"), Paragraph(f"**Before** {one(b)}"),
                   Paragraph(f"**After** {one(a)}")]
    return blocks


def build_blocks(summary: dict[str, Any], history: list[dict], evals: list[dict], before: list[dict],
                 after: list[dict], warnings: list[dict], window: int, n_samples: int = 8) -> list:
    blocks: list = [Heading("Summary")]
    rows = []
    if evals:
        first, last = evals[0], evals[-1]
        for label, key in (("proxy reward", "eval/proxy"), ("gold reward", "eval/gold"), ("KL to reference", "eval/kl"),
                           ("response length", "eval/length")):
            if first.get(key) is None:
                continue
            sem = key + "_sem"
            before_text = fmt(first[key]) + (f" ± {fmt(first[sem])}" if first.get(sem) is not None else "")
            after_text = fmt(last[key]) + (f" ± {fmt(last[sem])}" if last.get(sem) is not None else "")
            rows.append([label, before_text, after_text, f"{last[key] - first[key]:+.3f}"])
        blocks.append(Paragraph(
            f"Held-out evaluation on {summary['eval_prompts']} prompts × {summary['eval_samples_per_prompt']} samples "
            f"with a fixed sampling seed, at step {first['step']} and step {last['step']} (± one standard error)."))
        blocks.append(Table(["metric", "before", "after", "change"], rows))
    settings = [[k, str(v)] for k, v in summary["settings"].items()]
    placement = summary.get("placement")
    where = (f" on {placement['device']} in {placement['precision']} ({summary.get('processes', 1)} process"
             f"{'es' if summary.get('processes', 1) > 1 else ''})" if placement else "")
    blocks.append(Paragraph(
        f"{summary['steps']} steps of **{summary['algorithm']}**{where} in {summary['wall_minutes']:.1f} minutes "
        f"({summary['seconds_per_step']:.1f} s per step, {summary['samples_per_step']} samples per step)."))
    blocks.append(Table(["setting", "value"], settings, text_columns=2))

    blocks.append(Heading("Reward-hacking watch"))
    if warnings:
        blocks.append(Table(["step", "warning"], [[str(w["step"]), w["message"]] for w in warnings], text_columns=2))
    else:
        blocks.append(Paragraph("No warning: the gold reward did not fall while the proxy rose, and the response "
                                "length stayed within the allowed drift." if any("reward/gold" in m for m in history)
                                else "No warning (no gold reward was given, so only length drift was watched)."))
    blocks.append(Figure("curves.png", plot_curves(history, evals, window), "Training curves",
                         f"Thin lines: every step; thick: moving average over {window} steps; dashed markers: the "
                         "held-out evaluations."))
    blocks.append(Figure("reward_vs_sqrt_kl.png", plot_reward_vs_sqrt_kl(history, evals, window),
                         "Proxy and gold reward against √KL",
                         "Following Gao et al. (2022): optimizing a proxy buys reward at the price of distance from "
                         "the reference; when the gold curve bends down while the proxy keeps rising, further "
                         "optimization is overfitting the proxy.", wide=False))
    if before and after:
        blocks.append(Heading("Samples on held-out prompts, before and after"))
        blocks += _sample_paragraphs(before, after, n_samples)
    return blocks


def write_report(directory: str | Path, summary: dict, history: list[dict], evals: list[dict], before: list[dict],
                 after: list[dict], warnings: list[dict], window: int) -> tuple[Path, Path]:
    """Write DIR/report.html, DIR/report.md and the PNG files; return the HTML and Markdown paths."""
    blocks = build_blocks(summary, history, evals, before, after, warnings, window)
    title = f"RL run: {summary['algorithm']} on {summary['policy']}"
    subtitle = (f"Proxy reward: {summary['reward']}; gold reward: {summary.get('gold_reward') or 'none'}. "
                f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by rewardkit rl.")
    return write_pages(directory, title, subtitle, blocks)
