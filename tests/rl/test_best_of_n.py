"""`rewardkit best-of-n`: the pure curve functions against hand-computed values, and the command on the toy policy."""

import json
import math

import numpy as np
import pytest

from rewardkit.cli import main
from rewardkit.errors import RewardkitError
from rewardkit.rl.best_of_n import (BestOfNConfig, best_of_n_curve, curve_sizes, format_curve, kl_bon,
                                    pick_among_first, run_best_of_n)
from tests.rl.conftest import film_fraction, toy_policy, toy_tokenizer, yes_fraction

PROXY = np.array([[0.1, 0.5, 0.3, 0.9],
                  [0.7, 0.2, 0.7, 0.1]])
GOLD = np.array([[1.0, 2.0, 3.0, 4.0],
                 [5.0, 6.0, 7.0, 8.0]])


def test_curve_sizes_are_powers_of_two_and_n():
    assert curve_sizes(16) == [1, 2, 4, 8, 16]
    assert curve_sizes(6) == [1, 2, 4, 6]
    assert curve_sizes(1) == [1]


def test_kl_bon_is_log_n_minus_n_minus_1_over_n():
    assert kl_bon(1) == 0.0
    assert kl_bon(2) == pytest.approx(0.693147 - 0.5, abs=1e-6)     # log 2 − 1/2
    assert kl_bon(4) == pytest.approx(1.386294 - 0.75, abs=1e-6)    # log 4 − 3/4
    assert kl_bon(16) == pytest.approx(2.772589 - 0.9375, abs=1e-6)  # log 16 − 15/16


def test_pick_among_first_n_takes_the_earliest_of_tied_maxima():
    assert pick_among_first(PROXY, 1).tolist() == [0, 0]
    assert pick_among_first(PROXY, 2).tolist() == [1, 0]  # 0.5 > 0.1; 0.7 > 0.2
    assert pick_among_first(PROXY, 3).tolist() == [1, 0]  # 0.5 > 0.3; 0.7 ties 0.7: the first
    assert pick_among_first(PROXY, 4).tolist() == [3, 0]  # 0.9


def test_curve_means_the_pick_over_prompts_with_bootstrap_intervals():
    points = best_of_n_curve(PROXY, GOLD, [1, 2, 4], n_resamples=1000, seed=0)
    assert [p["n"] for p in points] == [1, 2, 4]
    assert [p["kl_bon"] for p in points] == [kl_bon(1), kl_bon(2), kl_bon(4)]
    # picks: n=1 → (0, 0), n=2 → (1, 0), n=4 → (3, 0)
    assert [p["proxy"] for p in points] == pytest.approx([(0.1 + 0.7) / 2, (0.5 + 0.7) / 2, (0.9 + 0.7) / 2])
    assert [p["gold"] for p in points] == pytest.approx([(1 + 5) / 2, (2 + 5) / 2, (4 + 5) / 2])
    # two prompts: a resample's mean is one of {a, (a+b)/2, b}, each end drawn with probability 1/4 > 2.5%, so the
    # 95% percentile interval runs from the smaller picked value to the larger
    assert [p["gold_ci95"] for p in points] == [[1.0, 5.0], [2.0, 5.0], [4.0, 5.0]]
    assert points[0]["proxy_ci95"] == pytest.approx([0.1, 0.7])
    # gain over the first candidate, per prompt: n=2 → (2 − 1, 5 − 5) = (1, 0); n=4 → (4 − 1, 0) = (3, 0)
    assert [p["gold_gain"] for p in points] == pytest.approx([0.0, 0.5, 1.5])
    assert [p["gold_gain_ci95"] for p in points] == [[0.0, 0.0], [0.0, 1.0], [0.0, 3.0]]
    assert "gold" not in best_of_n_curve(PROXY, None, [1])[0]


def test_format_curve_prints_one_row_per_n():
    points = best_of_n_curve(PROXY, GOLD, [1, 4], n_resamples=200)
    lines = format_curve(points).splitlines()
    assert len(lines) == 3 and "gold of the pick" in lines[0] and "gold gain over n=1" in lines[0]
    assert lines[2].split() == ["4", "0.636", "+0.800", "[+0.700,", "+0.900]", "+4.500", "[+4.000,", "+5.000]",
                                "+1.500", "[+0.000,", "+3.000]"]


@pytest.fixture(scope="module")
def toy_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bon-inputs")
    tokenizer = toy_tokenizer()
    toy_policy(tokenizer, seed=0).save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    (root / "proxy.yaml").write_text("components:\n  - {type: custom, function: 'tests.rl.conftest:yes_fraction'}\n")
    (root / "gold.yaml").write_text("components:\n  - {type: custom, function: 'tests.rl.conftest:film_fraction'}\n")
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in
                                                ["the movie", "a film", "the plot", "very good", "not bad"]))
    return root


def test_command_writes_candidates_curve_and_plot(toy_inputs, tmp_path, capsys):
    out = tmp_path / "bon"
    assert main(["best-of-n", "--policy", str(toy_inputs / "policy"), "--reward", str(toy_inputs / "proxy.yaml"),
                 "--gold", str(toy_inputs / "gold.yaml"), "--prompts", str(toy_inputs / "prompts.jsonl"),
                 "--n", "4", "--max-prompts", "4", "--max-new-tokens", "6", "--batch-size", "8", "--num-threads", "1",
                 "--output-dir", str(out), "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in records] == ["the movie", "a film", "the plot", "very good"]
    proxy, gold = [], []
    for r in records:
        texts = [c["response"] for c in r["candidates"]]
        assert len(texts) == 4
        # every candidate carries the scores of its own text
        assert [c["reward"] for c in r["candidates"]] == pytest.approx(yes_fraction(None, texts).tolist())
        assert [c["components"]["custom"] for c in r["candidates"]] == pytest.approx(yes_fraction(None, texts).tolist())
        assert [c["gold"] for c in r["candidates"]] == pytest.approx(film_fraction(None, texts).tolist())
        best = max(c["reward"] for c in r["candidates"])
        assert r["chosen"] == [c["reward"] for c in r["candidates"]].index(best)
        chosen = r["candidates"][r["chosen"]]
        assert (r["response"], r["reward"], r["gold"]) == (texts[r["chosen"]], best, chosen["gold"])
        proxy.append([c["reward"] for c in r["candidates"]])
        gold.append([c["gold"] for c in r["candidates"]])
    summary = json.loads((out / "best_of_n.json").read_text())
    assert summary["prompts"] == 4 and summary["n"] == 4 and summary["placement"]["device"] == "cpu"
    curve = summary["curve"]
    assert [p["n"] for p in curve] == [1, 2, 4]
    for point in curve:  # the gold reward of the pick among the first n, recomputed here by hand
        picks = [row[:point["n"]].index(max(row[:point["n"]])) for row in proxy]
        assert point["gold"] == pytest.approx(sum(g[k] for g, k in zip(gold, picks)) / 4)
        assert point["kl_bon"] == pytest.approx(math.log(point["n"]) - (point["n"] - 1) / point["n"])
        assert point["gold_gain"] == pytest.approx(point["gold"] - sum(g[0] for g in gold) / 4)
    assert (out / "best_of_n.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 4 and table[0].split()[:2] == ["n", "KL_bon"]


def test_command_errors_are_user_errors(toy_inputs, tmp_path):
    base = dict(policy=str(toy_inputs / "policy"), reward=str(toy_inputs / "proxy.yaml"),
                prompts=str(toy_inputs / "prompts.jsonl"), output_dir=str(tmp_path / "out"), progress=False)
    with pytest.raises(RewardkitError, match="--temperature must be above 0"):
        run_best_of_n(BestOfNConfig(**{**base, "temperature": 0.0}))
    with pytest.raises(RewardkitError, match="--n must be at least 1"):
        run_best_of_n(BestOfNConfig(**{**base, "n": 0}))
    with pytest.raises(RewardkitError, match="--reward is required"):
        run_best_of_n(BestOfNConfig(**{**base, "reward": ""}))
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "model.safetensors").write_text("not ours")
    with pytest.raises(RewardkitError, match="holds files that are not a best-of-n run"):
        run_best_of_n(BestOfNConfig(**{**base, "output_dir": str(keep)}))
    assert (keep / "model.safetensors").exists()
