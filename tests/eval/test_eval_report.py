"""The report from synthetic scores of every kind of feedback, one and two models (no model needed)."""

import re

import numpy as np
import pytest

from rewardkit.eval.command import EvalConfig, dataset_figures
from rewardkit.eval.report import report_text, write_report
from rewardkit.eval.scoring import ScoredDataset
from rewardkit.kinds import KINDS


def synthetic_datasets(n_models: int) -> list[ScoredDataset]:
    rng = np.random.default_rng(0)
    n = 120
    chosen_len, rejected_len = rng.integers(20, 2000, n).astype(float), rng.integers(20, 2000, n).astype(float)
    pairs = [(np.log(chosen_len) + rng.normal(0.5, 1, n), np.log(rejected_len) + rng.normal(0, 1, n))
             for _ in range(n_models)]
    groups = [rng.normal(size=int(k)) for k in rng.integers(2, 5, 30)]
    group_lengths = [rng.integers(10, 900, g.size).astype(float) for g in groups]
    labels = (rng.random(60) < 0.5).astype(float)
    ratings = rng.integers(1, 6, 60).astype(float)
    return [
        ScoredDataset("chat", KINDS["pairs"], [["easy", "hard"][i % 2] for i in range(n)],
                      (chosen_len, rejected_len), pairs, sources=["chat.jsonl"]),
        ScoredDataset("ranked", KINDS["rankings"], [None] * 30, group_lengths,
                      [[g + rng.normal(0, 1, g.size) for g in groups] for _ in range(n_models)]),
        ScoredDataset("thumbs", KINDS["binary"], [None] * 60, rng.integers(10, 900, 60).astype(float),
                      [labels + rng.normal(0, 1, 60) for _ in range(n_models)], targets=labels),
        ScoredDataset("likert", KINDS["ratings"], [None] * 60, rng.integers(10, 900, 60).astype(float),
                      [ratings + rng.normal(0, 2, 60) for _ in range(n_models)], targets=ratings),
    ]


@pytest.mark.parametrize("n_models", [1, 2])
def test_report_of_every_kind(tmp_path, n_models):
    scored = synthetic_datasets(n_models)
    names = ["rm-a", "rm-b"][:n_models]
    temperatures = [1.0] * n_models
    cfg = EvalConfig(paths=["m", "d"], bootstrap_resamples=100)
    results = {"models": [{"name": name, "path": f"/models/{name}"} for name in names],
               "datasets": {d.name: dataset_figures(d, temperatures, cfg) for d in scored}}
    html_path, markdown_path = write_report(tmp_path, results, scored, names, temperatures)
    expected = {"chat-accuracy.png", "chat-rewards.png", "chat-reliability.png", "chat-length.png",
                "ranked-ranking.png", "thumbs-roc.png", "likert-ratings.png"}
    assert {p.name for p in tmp_path.glob("*.png")} == expected
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == len(expected)
    markdown = markdown_path.read_text()
    chat = results["datasets"]["chat"]
    # captions state this run's figures in words
    assert f"{100 * chat['prefers_longer']:.0f}% of pairs of different length" in markdown
    assert f"{chat['debiased_n']:,} pairs where the preferred answer is the shorter one" in markdown
    assert f"{results['datasets']['thumbs']['roc_auc']:.3f} for rm-a" in markdown
    assert ("excludes 0" in markdown) == (n_models == 2)
    text = report_text(results, names)
    for heading in ("pairwise data", "ranked groups", "ratings", "thumbs up/down", "chat: by subset"):
        assert heading in text
    subset_rows = [line for line in text.splitlines() if line.startswith("easy") and " accuracy " not in line]
    assert len(subset_rows) == n_models  # one per model; the difference table's row names its metric
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", subset_rows[0])


def test_reliability_caption_explains_a_runaway_temperature_instead_of_reporting_it_bare():
    from rewardkit.eval.presentation import reliability_caption

    def entry(accuracy):
        return {"accuracy": accuracy, "ece": 0.1, "temperature": 5e3 if accuracy < 0.5 else 2.0,
                "calibrated_ece": 0.03}

    assert "point the wrong way" in reliability_caption(entry(0.46), ["rm"], [1.0])
    caption = reliability_caption(entry(0.7), ["rm"], [1.0])
    assert "over-confident" in caption and "point the wrong way" not in caption


def test_names_from_data_stay_text_in_every_output(tmp_path):
    """Dataset, subset and model names come from files and folders: in report.md they are escaped text on one line,
    a "$" draws as itself (no mathtext to crash on), and datasets whose names slug alike keep their own plots."""
    rng = np.random.default_rng(1)
    n = 40
    lengths = (rng.integers(20, 900, n).astype(float), rng.integers(20, 900, n).astype(float))
    subsets = ["<img src=x onerror=alert(1)>", "line\nbreak", "$\\notacommand$", "a|b"] * (n // 4)
    scored = [ScoredDataset(name, KINDS["pairs"], subsets, lengths, [(rng.normal(size=n), rng.normal(size=n))])
              for name in ("a b", "a-b")]
    cfg = EvalConfig(paths=["m", "d"], bootstrap_resamples=50)
    results = {"models": [{"name": "rm$x$", "path": "/m"}],
               "datasets": {d.name: dataset_figures(d, [1.0], cfg) for d in scored}}
    _, markdown_path = write_report(tmp_path, results, scored, ["rm$x$"], [1.0])
    markdown = markdown_path.read_text()
    assert "<img" not in markdown and "&lt;img src=x onerror=alert(1)&gt;" in markdown
    assert "| line break |" in markdown and "a\\|b" in markdown
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(images) == len(set(images)) == 8 and {p.name for p in tmp_path.glob("*.png")} == set(images)
