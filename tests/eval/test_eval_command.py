"""`eval-rm` end to end with tiny random BERT reward models on small slices of real LLMBar, HH and OASST data."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from rewardkit.config import parse_config
from rewardkit.errors import RewardkitError
from rewardkit.eval import metrics
from rewardkit.eval.command import EvalConfig, run_eval, split_arguments, split_side
from tests.conftest import (build_distinct_reward_model, build_tiny_reward_model, figure_tolerance, inference_precision,
                            min_gap, outcome_bounds, rank_correlation_tolerance, reward_tolerance)

FIGURES = {"n", "accuracy", "ci95", "length_baseline", "debiased_accuracy", "debiased_n", "prefers_longer",
           "length_correlation", "ece", "mean_margin", "temperature", "calibrated_ece"}


@pytest.fixture(autouse=True)
def one_torch_thread():
    # The CI machine is shared: two spinning OpenMP threads under contention make tiny models ~15x slower.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def second_model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-bert-rm-2")
    build_tiny_reward_model("bert", seed=1).save_pretrained(path)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = run_eval(parse_config(EvalConfig, [str(a) for a in argv]))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str) -> dict:
    code, out, _ = run(capsys, *argv, "--json", "--bootstrap-resamples", "100", "--no-progress")
    assert code == 0
    return json.loads(out)  # exactly one JSON object: anything else on stdout fails here


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# Comparing eval-rm's figures with the model's own scores. RewardModel.from_pretrained loads a model in the precision
# eval-rm does (--precision auto), but it batches the texts its own way, so each reward may differ from eval-rm's by
# up to `reward_tolerance` (1e-5 in fp32; in bf16 3% of the largest): a figure is compared at what that lets it move
# (`outcome_bounds`, `rank_correlation_tolerance`, `figure_tolerance`), which in fp32 is exactly or as tightly as the
# suite always did. Where that leaves figures loose in bf16, they are also compared exactly with eval-rm's own scoring
# of the data (`eval_rm_scoring`). The tests score with the distinct model, whose rewards differ from text to text
# by more than bf16's tolerance (a tiny random model's CLS reward barely moves with the text).

def eval_rm_scoring(model, data, name: str, cfg: EvalConfig | None = None):
    """eval-rm's own scoring of `data` (the model loaded as eval-rm loads it, the texts in its batches): the scores its
    figures come from, exactly, in any precision (a `ScoredDataset`)."""
    from rewardkit.eval.command import load_dataset, score_dataset
    from rewardkit.eval.scoring import ScoreStats
    from rewardkit.models.ensemble import load_reward_model

    cfg = cfg or EvalConfig(paths=["m", "d"], progress=False)
    return score_dataset(load_dataset(str(data), None, name, cfg), [load_reward_model(str(model))], cfg,
                         [ScoreStats()])


def assert_between(value: float, low: float, high: float) -> None:
    assert low - 1e-12 <= value <= high + 1e-12, (value, low, high)


PAIRS = [{"prompt": f"Question {i}?", "chosen": "yes " * (i % 5 + 1) + f"answer {i}", "rejected": f"no {i}",
          "subset": "odd" if i % 2 else "even"} for i in range(14)]


def test_json_figures_match_direct_scoring(distinct_bert_dir, tmp_path, capsys):
    from rewardkit.models import RewardModel

    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    result = run_json(capsys, distinct_bert_dir, data)
    entry = result["datasets"]["pairs"]
    assert entry["kind"] == "pairs" and FIGURES <= set(entry)
    assert result["models"][0]["placement"]["precision"] == inference_precision()
    rm = RewardModel.from_pretrained(str(distinct_bert_dir))
    prompts = [p["prompt"] for p in PAIRS]
    chosen = rm.score(prompts, [p["chosen"] for p in PAIRS]).double().numpy()
    rejected = rm.score(prompts, [p["rejected"] for p in PAIRS]).double().numpy()
    tol = reward_tolerance(chosen, rejected)
    low, high = outcome_bounds(chosen, rejected, tol)
    assert (low == high).all()  # no margin within 2 * tol in either precision: the accuracies below are exact
    assert entry["n"] == 14
    assert_between(entry["accuracy"], low.mean(), high.mean())
    # each margin moves by up to 2 * tol, and so does their mean (fp32: the 1e-6 this test always used)
    assert entry["mean_margin"] == pytest.approx(float(np.mean(chosen - rejected)), abs=figure_tolerance(2 * tol, 1e-6))
    assert entry["length_baseline"] == 1.0  # every chosen answer here is the longer one
    assert entry["debiased_n"] == 0 and entry["debiased_accuracy"] is None
    assert set(entry["subsets"]) == {"even", "odd"}
    even = [i for i in range(14) if i % 2 == 0]
    assert_between(entry["subsets"]["even"]["accuracy"], low[even].mean(), high[even].mean())
    assert result["models"][0]["path"] == str(distinct_bert_dir)
    assert result["models"][0]["temperature"] == 1.0


@pytest.fixture(scope="module")
def distinct_llama_dir(tmp_path_factory) -> Path:
    """A tiny Llama (SmolLM2 tokenizer, chat template) whose rewards differ by pair by more than bf16's tolerance."""
    path = tmp_path_factory.mktemp("distinct-llama-rm")
    build_distinct_reward_model(seed=1, kind="llama").save_pretrained(path)
    return path


def test_decoder_model_with_chat_template(distinct_llama_dir, tmp_path, capsys):
    from rewardkit.models import RewardModel

    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS[:6])
    entry = run_json(capsys, distinct_llama_dir, data)["datasets"]["pairs"]
    rm = RewardModel.from_pretrained(str(distinct_llama_dir))
    prompts = [p["prompt"] for p in PAIRS[:6]]
    chosen = rm.score(prompts, [p["chosen"] for p in PAIRS[:6]])
    rejected = rm.score(prompts, [p["rejected"] for p in PAIRS[:6]])
    # eval-rm packs each pair's two responses behind their prompt; these are padded batches of one side each
    low, high = outcome_bounds(chosen, rejected, reward_tolerance(chosen, rejected))
    assert (low == high).all()  # every margin wider than 2 * tol: the accuracy is exact in either precision
    assert_between(entry["accuracy"], low.mean(), high.mean())


def test_real_llmbar_and_hh_slices_per_dataset_and_subset(distinct_bert_dir, shared_data, capsys):
    from rewardkit.eval.command import load_dataset
    from rewardkit.models import RewardModel

    result = run_json(capsys, distinct_bert_dir, shared_data / "llmbar", shared_data / "hh-rlhf", "--limit", "40")
    assert set(result["datasets"]) == {"llmbar", "hh-rlhf"}
    rm = RewardModel.from_pretrained(str(distinct_bert_dir))
    for name, entry in result["datasets"].items():
        assert FIGURES <= set(entry) and entry["n"] == 40
        # the same 40 records (the seeded --limit sample), scored directly
        cfg = EvalConfig(paths=["m", "d"], limit=40, progress=False)
        records = load_dataset(str(shared_data / name), None, name, cfg).records
        chosen = rm.score([r.prompt for r in records], [r.chosen for r in records])
        rejected = rm.score([r.prompt for r in records], [r.rejected for r in records])
        # at the reward tolerance: the accuracy between its bounds, and so the interval's ends (they grow with the
        # credits); exact where no margin is within 2 * tol (fp32)
        low, high = outcome_bounds(chosen, rejected, reward_tolerance(chosen, rejected))
        assert_between(entry["accuracy"], low.mean(), high.mean())
        for end, lowest, highest in zip(entry["ci95"], *(metrics.bootstrap_ci(credits, n_resamples=100, seed=0)
                                                         for credits in (low, high))):
            assert_between(end, lowest, highest)
        # real answers are alike: in bf16 some margins are within 2 * tol, so these figures are also compared with
        # those of eval-rm's own scores of the same records, exactly
        outcomes = metrics.pair_outcomes(*eval_rm_scoring(distinct_bert_dir, shared_data / name, name, cfg).scores[0])
        assert entry["accuracy"] == pytest.approx(float(outcomes.mean()))
        assert entry["ci95"] == pytest.approx(list(metrics.bootstrap_ci(outcomes, n_resamples=100, seed=0)))
        assert sum(s["n"] for s in entry["subsets"].values()) == 40
        for figures in entry["subsets"].values():
            assert FIGURES <= set(figures)
    assert set(result["datasets"]["hh-rlhf"]["subsets"]) == {"harmless-base", "helpful-base"}
    assert all(name.startswith(("LLMBar_", "Processed_", "CaseStudy_"))
               for name in result["datasets"]["llmbar"]["subsets"])
    assert result["models"][0]["texts_scored"] == 4 * 40


def ranking_means(groups) -> tuple[float, float]:
    """Mean top-1 credit and mean Kendall tau over the groups of 2 or more rewards (listed best first)."""
    kept = [g for g in groups if len(g) >= 2]
    return (float(np.mean([metrics.ranking_top1_credit(g) for g in kept])),
            float(np.mean([metrics.ranking_kendall_tau(g) for g in kept])))


def test_rankings_ratings_and_binary_data(distinct_bert_dir, shared_data, tmp_path, capsys):
    ratings = write_jsonl(tmp_path / "likert.jsonl", [
        {"prompt": f"p{i}", "response": "word " * i, "score": i % 5 + 1} for i in range(1, 13)])
    thumbs = write_jsonl(tmp_path / "thumbs.jsonl", [
        {"prompt": f"p{i}", "response": "reply " * i, "label": i % 2} for i in range(1, 13)])
    oasst = shared_data / "oasst_sample" / "en_100_tree.jsonl"
    result = run_json(capsys, distinct_bert_dir, oasst, ratings, thumbs, "--limit", "25")
    ranked, rated, binary = (result["datasets"][name] for name in ("en_100_tree", "likert", "thumbs"))
    assert ranked["kind"] == "rankings" and ranked["n"] == 25
    # the same figures from the model's own scores
    from rewardkit.eval.command import load_dataset
    from rewardkit.models import RewardModel

    rm = RewardModel.from_pretrained(str(distinct_bert_dir))
    cfg = EvalConfig(paths=["m", "d"], limit=25, progress=False)
    groups = load_dataset(str(oasst), None, "oasst", cfg).records
    scored = [rm.score([g.prompt] * len(g.responses), list(g.responses)) for g in groups]
    expected_ranking = ranking_means(scored)
    # a group's top-1 credit (0 to 1) and tau (-1 to 1) are settled unless two of its rewards are within 2 * tol
    # (none in fp32: exact there); the others move the means by at most their range over the groups
    tol = reward_tolerance(*scored)
    unsettled = sum(min_gap(g) <= 2 * tol for g in scored if len(g) > 1)
    assert ranked["top1_accuracy"] == pytest.approx(expected_ranking[0], abs=unsettled / len(groups))
    assert ranked["mean_kendall_tau"] == pytest.approx(expected_ranking[1], abs=2 * unsettled / len(groups))
    assert ranked["chance_top1"] == pytest.approx(float(np.mean([1 / len(g.responses) for g in groups])))
    rows = [json.loads(line) for line in ratings.read_text().splitlines()]
    rated_scores = rm.score([r["prompt"] for r in rows], [r["response"] for r in rows])
    assert rated["kind"] == "ratings" and rated["n"] == 12
    # the ranks of rewards within 2 * tol of another may change (none in fp32: exact there)
    moved = rank_correlation_tolerance(rated_scores, reward_tolerance(rated_scores))
    assert rated["spearman"] == pytest.approx(metrics.spearman(rated_scores, [r["score"] for r in rows]), rel=1e-6,
                                              abs=moved)
    # in bf16 many of those orders are unsettled (answers alike, "word " repeated): the figures are also compared with
    # those of eval-rm's own scores of the same records, exactly
    same_ranking = ranking_means(eval_rm_scoring(distinct_bert_dir, oasst, "oasst", cfg).scores[0])
    assert ranked["top1_accuracy"] == pytest.approx(same_ranking[0])
    assert ranked["mean_kendall_tau"] == pytest.approx(same_ranking[1])
    same_rated = eval_rm_scoring(distinct_bert_dir, ratings, "likert")
    assert rated["spearman"] == pytest.approx(metrics.spearman(same_rated.scores[0], same_rated.targets))
    # lengths grow with i and ratings cycle 2,3,4,5,1,...: the length baseline is computed, not copied
    expected = metrics.spearman([len("word " * i) for i in range(1, 13)], [i % 5 + 1 for i in range(1, 13)])
    assert rated["length_baseline_spearman"] == pytest.approx(expected)
    assert binary["kind"] == "binary" and binary["n"] == 12 and binary["positive_rate"] == 0.5
    assert {"accuracy", "f1", "roc_auc", "length_baseline_auc"} <= set(binary)
    assert result["models"][0]["fitted_temperature"] is None  # no pairwise data to fit on


def test_two_models_give_per_model_figures_and_paired_difference(tiny_bert_dir, second_model_dir, tmp_path,
                                                                 capsys):
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    result = run_json(capsys, tiny_bert_dir, second_model_dir, data)
    assert [m["path"] for m in result["models"]] == [str(tiny_bert_dir), str(second_model_dir)]
    entry = result["datasets"]["pairs"]
    assert FIGURES <= set(entry["model2"])
    diff = entry["difference"]["accuracy"]
    assert diff["difference"] == pytest.approx(entry["accuracy"] - entry["model2"]["accuracy"])
    lo, hi = diff["ci95"]
    assert lo <= diff["difference"] <= hi
    assert diff["excludes_zero"] == (lo > 0 or hi < 0)
    assert set(entry["difference"]["subsets"]) == {"even", "odd"}


def test_report_is_self_contained_html_plus_markdown_with_pngs(tiny_bert_dir, shared_data, tmp_path, capsys):
    report = tmp_path / "report"
    code, out, err = run(capsys, tiny_bert_dir, shared_data / "llmbar",
                         shared_data / "oasst_sample" / "en_100_tree.jsonl", "--limit", "30", "--report", report,
                         "--bootstrap-resamples", "100", "--no-progress")
    assert code == 0
    assert "accuracy [95% CI]" in out and "llmbar: by subset" in out  # the human tables
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert {"llmbar-accuracy.png", "llmbar-rewards.png", "llmbar-reliability.png", "llmbar-length.png",
            "en_100_tree-ranking.png"} <= set(pngs)
    page = (report / "report.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == len(pngs)
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for data in embedded)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch: works offline as one file
    markdown = (report / "report.md").read_text()
    assert sorted(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)) == pngs
    assert "longer answer" in markdown and "| subset |" in markdown


def test_save_temperature_writes_the_fitted_temperature_with_the_model(tiny_bert_dir, tmp_path, capsys):
    from rewardkit.models import RewardModel

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    first = run_json(capsys, model, data, "--save-temperature", "--max-length", "64")
    fitted = first["models"][0]["fitted_temperature"]
    # the temperature fitted on the rewards eval-rm gave these pairs (at --max-length 64, as the run read them)
    cfg = EvalConfig(paths=["m", "d"], progress=False, max_length=64)
    assert fitted == pytest.approx(metrics.fit_temperature(*eval_rm_scoring(model, data, "pairs", cfg).scores[0]),
                                   rel=1e-6)
    saved = json.loads((model / "rewardkit.json").read_text())
    assert saved["temperature"] == pytest.approx(fitted)
    assert saved["max_length"] == 128  # the run's --max-length is not written into the model
    assert RewardModel.from_pretrained(str(model)).temperature == pytest.approx(fitted)
    # the next evaluation reads the model as calibrated: its ECE is the calibrated one, its fit stays put
    second = run_json(capsys, model, data, "--max-length", "64")["datasets"]["pairs"]
    assert second["ece"] == pytest.approx(first["datasets"]["pairs"]["calibrated_ece"], abs=1e-6)


def test_save_reward_stats_writes_the_mean_and_std_of_every_reward_scored(distinct_bert_dir, tmp_path, capsys):
    from rewardkit.models import RewardModel

    model = tmp_path / "model"
    shutil.copytree(distinct_bert_dir, model)
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    reported = run_json(capsys, model, data, "--save-reward-stats")["models"][0]
    rm = RewardModel.from_pretrained(str(model))
    rewards = np.concatenate([rm.score([p["prompt"] for p in PAIRS], [p[side] for p in PAIRS]).double().numpy()
                              for side in ("chosen", "rejected")])
    saved = json.loads((model / "rewardkit.json").read_text())["reward_stats"]
    assert saved == reported["reward_stats"] and reported["saved_reward_stats"] is True
    assert saved["count"] == 28 and saved["data"] == "pairs"
    # each reward moves by up to tol between eval-rm's batches and these, and so do their mean and population std
    # (fp32: the 1e-6 this test always used); the rewards spread by far more than tol, so the std is no accident
    tol = reward_tolerance(rewards)
    assert rewards.std() > 4 * tol
    assert saved["mean"] == pytest.approx(rewards.mean(), abs=figure_tolerance(tol, 1e-6))
    # the population std, as the server divides by
    assert saved["std"] == pytest.approx(rewards.std(), abs=figure_tolerance(tol, 1e-6))
    assert rm.reward_stats == saved and rm.temperature == 1.0  # the temperature is left as it was


def test_data_at_validation_uses_the_trainers_split(tiny_bert_dir, tmp_path, capsys):
    from rewardkit.data import load_records, train_val_split

    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    train, validation = train_val_split(load_records(data), 0.3, seed=2)
    result = run_json(capsys, tiny_bert_dir, f"{data}@validation", f"{data}@train", data, "--val-fraction", "0.3",
                      "--seed", "2")
    datasets = result["datasets"]
    assert datasets["pairs (validation)"]["n"] == len(validation) < len(PAIRS)
    assert datasets["pairs (train)"]["n"] == len(train) == len(PAIRS) - len(validation)
    assert datasets["pairs"]["n"] == len(PAIRS)


@pytest.mark.parametrize("split_feedback", ["pairs", "rankings"])
def test_rankings_at_validation_hold_the_prompts_train_rm_held_out(tmp_path, split_feedback):
    from rewardkit.data import load_records, train_val_split
    from rewardkit.eval.command import side_of_split

    # groups of 2 to 6 responses imply 1 to 15 pairs: splitting groups or their pairs fills the count differently
    rows = [{"prompt": f"question {i}", "responses": [f"answer {i}.{j}" for j in range(2 + i % 5)]} for i in range(40)]
    data = str(write_jsonl(tmp_path / "ranked.jsonl", rows))
    trained_as = load_records(data, kind=split_feedback)  # what train-rm --feedback split_feedback read
    held_out = {r.prompt for r in train_val_split(trained_as, 0.2, seed=1)[1]}
    cfg = EvalConfig(paths=["m", data], val_fraction=0.2, seed=1, split_feedback=split_feedback)
    groups = load_records(data)
    validation = side_of_split(data, groups, "validation", cfg)
    train = side_of_split(data, groups, "train", cfg)
    assert {g.prompt for g in validation} == held_out and not held_out & {g.prompt for g in train}
    assert len(validation) + len(train) == len(groups)
    if split_feedback == "pairs":  # splitting the groups themselves would have held out other prompts
        assert {r.prompt for r in train_val_split(groups, 0.2, seed=1)[1]} != held_out


def test_split_side_suffix(tmp_path):
    assert split_side("data/hh@validation") == ("data/hh", "validation")
    assert split_side("data/hh@val") == ("data/hh", "validation")
    assert split_side("data/hh@train") == ("data/hh", "train")
    assert split_side("data/hh@test") == ("data/hh@test", None)
    odd = tmp_path / "odd@train"  # an existing path is taken as it is
    odd.write_text("")
    assert split_side(str(odd)) == (str(odd), None)


def test_arguments_tell_models_from_data(tiny_bert_dir, shared_data):
    data = str(shared_data / "llmbar")
    assert split_arguments([str(tiny_bert_dir), data]) == ([str(tiny_bert_dir)], [data])
    assert split_arguments([str(tiny_bert_dir), str(tiny_bert_dir), data]) == ([str(tiny_bert_dir)] * 2, [data])
    assert split_arguments(["minilm-l6", "smollm2-135m", data]) == (["minilm-l6", "smollm2-135m"], [data])
    with pytest.raises(RewardkitError, match="at least one data path"):
        split_arguments([str(tiny_bert_dir)])
    with pytest.raises(RewardkitError, match="is a model"):
        split_arguments([str(tiny_bert_dir), str(tiny_bert_dir)])


def test_a_model_giving_nan_rewards_is_an_error_not_a_figure(tmp_path, capsys):
    import torch

    model = build_tiny_reward_model("bert")
    with torch.no_grad():
        model.model.classifier.bias.fill_(float("nan"))
    model.save_pretrained(tmp_path / "broken")
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    with pytest.raises(RewardkitError, match=f"model 1 gave {2 * len(PAIRS)} non-finite reward\\(s\\) on pairs, "
                                             f"the first for .*pairs.jsonl:1"):
        run(capsys, tmp_path / "broken", data, "--no-progress")


def test_user_errors_are_one_line(tiny_bert_dir, tmp_path, capsys):
    with pytest.raises(RewardkitError, match="file not found"):
        run(capsys, tiny_bert_dir, tmp_path / "missing.jsonl")
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    with pytest.raises(RewardkitError, match="not a local model folder"):
        run(capsys, "minilm-l6", data, "--save-temperature")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(PAIRS[0]) + "\n" + '{"prompt": "p", "chosen": "a"}\n')
    with pytest.raises(RewardkitError, match=r"bad\.jsonl:2"):
        run(capsys, tiny_bert_dir, bad)


def test_a_length_head_model_reports_both_heads_length_correlation(tmp_path, capsys):
    import torch

    from rewardkit.models import RewardModel

    # the mean-pooled tiny BERT as before, its head scaled up (the distinct model): rewards of about 1, not 0.01, stay
    # further apart than fp32's reward tolerance (at least 1e-5), so that their ranks are settled there
    rm = build_distinct_reward_model(seed=0)
    rm.add_length_head()
    with torch.no_grad():
        rm.length_head.weight.normal_()
    rm.save_pretrained(tmp_path / "odin")
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    entry = run_json(capsys, tmp_path / "odin", data)["datasets"]["pairs"]
    loaded = RewardModel.from_pretrained(str(tmp_path / "odin"))
    prompts = [p["prompt"] for p in PAIRS] * 2
    responses = [p["chosen"] for p in PAIRS] + [p["rejected"] for p in PAIRS]
    both = loaded.score_encoded(loaded.encode_many(prompts, responses), with_length=True).numpy()
    lengths = metrics.response_lengths(responses)
    even = [i for i in range(14) if i % 2 == 0] + [14 + i for i in range(14) if i % 2 == 0]

    def near(values, lengths):
        """A length correlation of a head's outputs, at what their reward tolerance lets it move (0 in fp32, where no
        two outputs are that close: exact there)."""
        return pytest.approx(metrics.length_spearman(values, lengths), rel=1e-6,
                             abs=rank_correlation_tolerance(values, reward_tolerance(values)))

    assert entry["length_correlation"] == near(both[0], lengths)
    assert entry["length_head_correlation"] == near(both[1], lengths)
    assert entry["subsets"]["even"]["length_head_correlation"] == near(both[1][even], lengths[even])
    assert entry["length_head_correlation"] != pytest.approx(entry["length_correlation"])
    # and exactly as from eval-rm's own scores of the data (in bf16 some ranks are unsettled)
    same = eval_rm_scoring(tmp_path / "odin", data, "pairs")
    same_lengths = np.concatenate(same.lengths)
    assert entry["length_correlation"] == pytest.approx(
        metrics.length_spearman(np.concatenate(same.scores[0]), same_lengths))
    assert entry["length_head_correlation"] == pytest.approx(
        metrics.length_spearman(np.concatenate(same.length_scores[0]), same_lengths))
    code, out, _ = run(capsys, tmp_path / "odin", data, "--report", tmp_path / "report", "--no-progress",
                       "--bootstrap-resamples", "100")
    assert code == 0 and "length head follows response length" in (tmp_path / "report" / "report.md").read_text()
    # an ensemble of such models reports its members' mean length head
    from rewardkit.models.ensemble import load_reward_model, member_dir, save_ensemble

    second = build_distinct_reward_model(seed=1)
    second.add_length_head()
    for index, member in enumerate((rm, second)):
        member.save_pretrained(member_dir(tmp_path / "ensemble", index))
    save_ensemble(tmp_path / "ensemble", [member_dir(tmp_path / "ensemble", i) for i in range(2)], rm)
    ensemble = load_reward_model(str(tmp_path / "ensemble"))
    assert ensemble.has_length_head
    mean = ensemble.score_encoded(ensemble.encode_many(prompts, responses), with_length=True).numpy()
    entry = run_json(capsys, tmp_path / "ensemble", data)["datasets"]["pairs"]
    assert entry["length_head_correlation"] == near(mean[1], lengths)
    same = eval_rm_scoring(tmp_path / "ensemble", data, "pairs")
    assert entry["length_head_correlation"] == pytest.approx(
        metrics.length_spearman(np.concatenate(same.length_scores[0]), np.concatenate(same.lengths)))
