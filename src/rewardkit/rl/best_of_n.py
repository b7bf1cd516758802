"""`rewardkit best-of-n`: sample N responses per prompt from a policy, keep the one a reward prefers, and, given a gold
reward, chart how the gold reward of that pick moves as N grows.

    rewardkit best-of-n --policy smollm2-135m --reward runs/imdb-rm-proxy --prompts prompts.jsonl --n 16 \\
                        --gold runs/imdb-rm-gold --output-dir runs/bon

Best-of-N is the cheapest use of a reward model: no training, only sampling and scoring. Its distance from the policy
has a closed form, KL_bon = log N − (N − 1)/N (Stiennon et al. 2020; Gao et al. 2022), so the best-of-N curve (gold
reward of the proxy's pick against KL_bon) shows where optimizing the proxy stops helping the gold reward, without any
RL. For every n in 1, 2, 4, ..., N the pick among each prompt's first n candidates is scored: the candidates are
independent samples, so the first n of them are a best-of-n draw; the mean over prompts gets a bootstrap 95% interval
(prompts resampled).

Output folder (written atomically: it appears complete or not at all):
- `candidates.jsonl`: one line per prompt: `prompt`, (`reference`), `candidates` (each `response`, `reward`, its
  `components`, `gold` with --gold, `truncated` when cut off at --max-new-tokens), and the pick: `chosen` (its index),
  `response`, `reward` (and `gold`);
- `best_of_n.json`: the curve (each n: KL_bon, the mean proxy and gold reward of the pick and the gold gain over
  n = 1, with intervals), the settings and the placement;
- `best_of_n.png`: the curve.
The table is also printed. Nothing heavy is imported at module level, so `rewardkit --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.config import option
from rewardkit.errors import RewardkitError
from rewardkit.rl.config import PolicySampling


@dataclass
class BestOfNConfig(PolicySampling):
    """Sample N responses per prompt, keep the one a reward prefers; with --gold, chart best-of-N against it."""

    reward: str = option("", "Reward that picks the best candidate: a reward spec YAML, or a reward-model "
                             "folder/preset", metavar="SPEC_OR_MODEL")
    gold: str | None = option(None, "Gold reward (spec YAML or reward model) scored on every candidate, never used to "
                                    "pick: gives the best-of-N curve", metavar="SPEC_OR_MODEL")
    max_prompts: int = option(0, "Use the first this many prompts (0: all)")
    n: int = option(16, "Candidates sampled per prompt (N); the curve is read at n = 1, 2, 4, ... and N")
    temperature: float = option(1.0, "Sampling temperature (must be above 0: greedy decoding gives N equal "
                                     "candidates)")
    batch_size: int = option(32, "Sequences sampled per generate call (whole prompts: at least N)")
    bootstrap_resamples: int = option(1000, "Bootstrap resamples of the prompts for the 95% intervals",
                                      formerly=("bootstrap_samples",))
    output_dir: str = option("runs/best-of-n", "Folder for candidates.jsonl, best_of_n.json and best_of_n.png "
                                               "(replaced if it exists)")
    seed: int = option(0, "Random seed (sampling, bootstrap)")
    num_threads: int = option(0, "torch CPU threads (0: torch's default, one per core)")
    progress: bool = option(True, "Show a progress bar over the prompts")

    def check(self) -> None:
        """Every option best-of-n cannot run with, as a one-line user error (before any model loads)."""
        super().check()
        if self.n < 1:
            raise RewardkitError(f"--n must be at least 1, got {self.n}")
        if self.temperature <= 0:
            raise RewardkitError(f"--temperature must be above 0 (greedy decoding gives {self.n} equal candidates), "
                                 f"got {self.temperature}")
        if self.max_prompts < 0:
            raise RewardkitError(f"--max-prompts must be 0 (all) or more, got {self.max_prompts}")
        if self.bootstrap_resamples < 1:
            raise RewardkitError(f"--bootstrap-resamples must be at least 1, got {self.bootstrap_resamples}")
        output_dir = Path(self.output_dir)
        # the folder is replaced at the end: only ever a previous best-of-n output, never a folder holding anything
        if output_dir.is_dir() and any(output_dir.iterdir()) and not (output_dir / "best_of_n.json").exists():
            raise RewardkitError(f"--output-dir {output_dir} holds files that are not a best-of-n run; it would be "
                                 "replaced: choose another folder")
        if output_dir.exists() and not output_dir.is_dir():
            raise RewardkitError(f"--output-dir {output_dir} is a file")


# ------------------------------------------------------------------------------------------------ the curve (pure)
def curve_sizes(n_max: int) -> list[int]:
    """The n at which the curve is read: 1, 2, 4, ... up to `n_max`, and `n_max` itself."""
    sizes = [2 ** k for k in range(int(math.log2(n_max)) + 1)] if n_max >= 1 else []
    return sizes + [n_max] if sizes and sizes[-1] != n_max else sizes


def kl_bon(n: int) -> float:
    """KL(best-of-n ‖ policy) = log n − (n − 1)/n nats: the analytic distance of best-of-n sampling from the policy
    (exact when the n samples are distinct, an upper bound otherwise)."""
    return math.log(n) - (n - 1) / n


def pick_among_first(proxy: np.ndarray, n: int) -> np.ndarray:
    """Per prompt (row), the index of the highest proxy reward among its first `n` candidates (the earliest on ties)."""
    return np.argmax(np.asarray(proxy)[:, :n], axis=1)


def best_of_n_curve(proxy: np.ndarray, gold: np.ndarray | None, sizes: list[int], n_resamples: int = 1000,
                    seed: int = 0) -> list[dict[str, Any]]:
    """For each n in `sizes`: KL_bon and the mean over prompts of the proxy (and gold) reward of the pick among the
    first n candidates, with percentile-bootstrap 95% intervals over prompts (the same resamples for every n). With
    gold, also `gold_gain`: the mean per-prompt gain of the pick's gold reward over that of the first candidate
    (n = 1), whose paired interval says whether picking helped, which two overlapping intervals cannot.
    `proxy` and `gold` are [prompts, N] arrays."""
    from rewardkit.eval.metrics import bootstrap_ci

    proxy = np.asarray(proxy, dtype=np.float64)
    gold = None if gold is None else np.asarray(gold, dtype=np.float64)
    rows = np.arange(proxy.shape[0])
    points = []
    for n in sizes:
        pick = pick_among_first(proxy, n)
        point: dict[str, Any] = {"n": n, "kl_bon": kl_bon(n)}
        picked = {"proxy": proxy[rows, pick]}
        if gold is not None:
            picked["gold"] = gold[rows, pick]
            picked["gold_gain"] = picked["gold"] - gold[:, 0]
        for name, values in picked.items():
            point[name] = float(values.mean())
            point[f"{name}_ci95"] = list(bootstrap_ci(values, n_resamples=n_resamples, seed=seed))
        points.append(point)
    return points


def format_curve(points: list[dict[str, Any]]) -> str:
    """The curve as a plain-text table, one row per n."""
    columns = [("proxy", "proxy of the pick"), ("gold", "gold of the pick"), ("gold_gain", "gold gain over n=1")]
    columns = [(key, title) for key, title in columns if key in points[0]]
    lines = ["  ".join([f"{'n':>4}", f"{'KL_bon':>6}", *(f"{title + ' [95% CI]':>28}" for _, title in columns)])]
    for p in points:
        lines.append("  ".join([f"{p['n']:>4}", f"{p['kl_bon']:>6.3f}",
                                *(_with_interval(p[key], p[f"{key}_ci95"]) for key, _ in columns)]))
    return "\n".join(lines)


def _with_interval(value: float, interval: list[float]) -> str:
    return f"{value:+.3f} [{interval[0]:+.3f}, {interval[1]:+.3f}]".rjust(28)


def plot_curve(points: list[dict[str, Any]], title: str) -> bytes:
    """Proxy and gold reward of the pick against √KL_bon (Gao et al. plot rewards against √KL), each n marked, with
    its bootstrap interval as a band; proxy and gold in separate panels, their scales being unrelated."""
    from rewardkit.pages import png, pyplot

    plt = pyplot()
    panels = [("proxy", "#1f5fa8", "proxy reward of the pick")]
    if "gold" in points[0]:
        panels.append(("gold", "#d9730d", "gold reward of the pick"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    x = [math.sqrt(p["kl_bon"]) for p in points]
    for ax, (key, color, label) in zip(axes[0], panels):
        ax.fill_between(x, [p[f"{key}_ci95"][0] for p in points], [p[f"{key}_ci95"][1] for p in points],
                        color=color, alpha=0.18, linewidth=0, label="95% interval")
        ax.plot(x, [p[key] for p in points], "o-", color=color, linewidth=2, markersize=5, label=label)
        for xi, p in zip(x, points):
            ax.annotate(f"n={p['n']}", (xi, p[key]), textcoords="offset points", xytext=(0, 7), ha="center",
                        fontsize=8)
        ax.set_xlabel("√KL_bon  [√nats],  KL_bon = log n − (n − 1)/n")
        ax.set_ylabel(label)
        ax.legend(fontsize=8, frameon=False, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return png(fig)


# ------------------------------------------------------------------------------------------------ the command
def run_best_of_n(cfg: BestOfNConfig) -> int:
    cfg.require_inputs()
    cfg.check()
    import torch

    from rewardkit.device import placement_of
    from rewardkit.models.causal_lm import load_causal_lm
    from rewardkit.rewards.spec import load_reward
    from rewardkit.rl.policy import load_prompts, sample_responses
    from rewardkit.rl.rollout import SamplingSettings
    from rewardkit.runs import progress_bar, write_atomically

    placement = placement_of(cfg, "best-of-n")
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    prompts, references = load_prompts(cfg.prompts, cfg.prompt_field, cfg.reference_field)
    if cfg.max_prompts:
        prompts, references = prompts[:cfg.max_prompts], references[:cfg.max_prompts] if references else None
    reward_fn = load_reward(cfg.reward, placement=placement)
    gold_fn = load_reward(cfg.gold, placement=placement) if cfg.gold else None
    model, tokenizer = load_causal_lm(cfg.policy, placement, "policy")
    settings = SamplingSettings(cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p)
    torch.manual_seed(cfg.seed)

    per_call = max(1, cfg.batch_size // cfg.n)  # whole prompts per call, so a spec's batch normalization sees all N
    records, proxy_rows, gold_rows = [], [], []
    bar = progress_bar(cfg.progress, len(prompts), 0, "best-of-n")
    try:
        for start in range(0, len(prompts), per_call):
            batch = prompts[start:start + per_call]
            refs = None if references is None else [r for r in references[start:start + per_call] for _ in range(cfg.n)]
            texts, truncated = sample_responses(model, tokenizer, batch, cfg.n, settings, placement, cfg.chat_template,
                                                cfg.max_prompt_tokens)
            repeated = [p for p in batch for _ in range(cfg.n)]
            finished = [not t for t in truncated]
            proxy = reward_fn(repeated, texts, refs, finished=finished)
            components = {name: values.tolist() for name, values in reward_fn.last_components.items()}
            gold = gold_fn(repeated, texts, refs, finished=finished) if gold_fn is not None else None
            for i, prompt in enumerate(batch):
                rows = range(i * cfg.n, (i + 1) * cfg.n)
                proxy_rows.append([float(proxy[k]) for k in rows])
                if gold is not None:
                    gold_rows.append([float(gold[k]) for k in rows])
                records.append(_record(prompt, None if refs is None else refs[rows[0]], rows, texts, truncated,
                                       proxy, components, gold))
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()

    points = best_of_n_curve(np.array(proxy_rows), np.array(gold_rows) if gold_fn is not None else None,
                             curve_sizes(cfg.n), cfg.bootstrap_resamples, cfg.seed)
    summary = {"prompts": len(prompts), "n": cfg.n, "policy": cfg.policy, "reward": cfg.reward, "gold": cfg.gold,
               "curve": points, "placement": placement.as_dict(), "config": dataclasses.asdict(cfg)}
    title = (f"best-of-n on {len(prompts)} prompts: {cfg.policy} picked by {Path(cfg.reward).name}"
             + (f", judged by {Path(cfg.gold).name}" if cfg.gold else ""))

    def write(folder: Path) -> None:
        with (folder / "candidates.jsonl").open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        (folder / "best_of_n.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
        (folder / "best_of_n.png").write_bytes(plot_curve(points, title))

    output_dir = Path(cfg.output_dir)
    write_atomically(output_dir, write)
    print(format_curve(points))
    print(f"rewardkit best-of-n: {len(prompts)} prompts × {cfg.n} candidates written to {output_dir}", file=sys.stderr)
    return 0


def _record(prompt, reference, rows: range, texts: list[str], truncated: list[bool], proxy, components: dict,
            gold) -> dict[str, Any]:
    """One prompt's line of candidates.jsonl: every candidate with its scores, then the pick."""
    candidates = []
    for k in rows:
        candidate = {"response": texts[k], "reward": float(proxy[k]),
                     "components": {name: values[k] for name, values in components.items()}}
        if gold is not None:
            candidate["gold"] = float(gold[k])
        if truncated[k]:
            candidate["truncated"] = True
        candidates.append(candidate)
    chosen = int(pick_among_first(np.array([[c["reward"] for c in candidates]]), len(candidates))[0])
    record = {"prompt": prompt}
    if reference is not None:
        record["reference"] = reference
    record.update({"candidates": candidates, "chosen": chosen, "response": candidates[chosen]["response"],
                   "reward": candidates[chosen]["reward"]})
    if gold is not None:
        record["gold"] = candidates[chosen]["gold"]
    return record
