"""Reward-model ensembles: weight averaging, mean and disagreement, and the train → save → load → score round trip."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from rewardkit.errors import RewardkitError
from rewardkit.models.config import TrainRMConfig
from rewardkit.models.ensemble import (RewardEnsemble, average_state_dicts, load_reward_model, mean_and_spread,
                                       member_dir)
from rewardkit.models.reward_model import RewardModel
from rewardkit.models.command import train_reward_model
from tests.conftest import inference_precision, outcome_bounds, reward_tolerance
from tests.models.test_trainer import write_pairs


def test_weight_averaging_is_the_mean_of_the_state_dicts():
    a = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([0.5], dtype=torch.bfloat16),
         "ids": torch.tensor([0, 1, 2])}
    b = {"w": torch.tensor([[3.0, 2.0], [1.0, 0.0]]), "b": torch.tensor([1.5], dtype=torch.bfloat16),
         "ids": torch.tensor([0, 1, 2])}
    c = {"w": torch.tensor([[2.0, 5.0], [2.0, 2.0]]), "b": torch.tensor([1.0], dtype=torch.bfloat16),
         "ids": torch.tensor([0, 1, 2])}
    averaged = average_state_dicts([a, b, c])
    assert torch.equal(averaged["w"], torch.tensor([[2.0, 3.0], [2.0, 2.0]]))  # (1+3+2)/3, (2+2+5)/3, ...
    assert averaged["b"].dtype == torch.bfloat16 and averaged["b"].item() == 1.0
    assert torch.equal(averaged["ids"], torch.tensor([0, 1, 2]))  # integer buffers are kept, not averaged
    with pytest.raises(ValueError, match="ids: integer tensors differ"):
        average_state_dicts([a, {**b, "ids": torch.tensor([2, 1, 0])}])
    with pytest.raises(ValueError, match="different tensors"):
        average_state_dicts([a, {"w": b["w"]}])


def test_mean_and_spread_over_members():
    mean, std = mean_and_spread(torch.tensor([[1.0, 0.0], [3.0, 0.0], [5.0, 3.0]]))
    assert mean.tolist() == [3.0, 1.0]
    # population std: sqrt(((1-3)² + 0 + (5-3)²) / 3) = sqrt(8/3); sqrt((1 + 1 + 4) / 3) = sqrt(2)
    assert std.tolist() == pytest.approx([(8 / 3) ** 0.5, 2 ** 0.5])


@pytest.fixture(scope="module")
def trained_ensemble(tmp_path_factory, distinct_bert_dir):
    # from the distinct model: its rewards (about 1, not 0.01) keep the pairs' margins far above fp32's reward
    # tolerance and most above bf16's, so that comparing its scores across batchings still tells pairs apart
    root = tmp_path_factory.mktemp("ensemble")
    data = write_pairs(root / "pairs.jsonl", n=48)
    cfg = TrainRMConfig(model=str(distinct_bert_dir), data=[str(data)], output_dir=str(root / "rm"), max_length=64,
                        batch_size=8, learning_rate=1e-3, max_steps=4, save_every=0, progress=False,
                        tensorboard=False, num_threads=1, ensemble=2)
    assert train_reward_model(cfg) == 0
    return root / "rm", data


def test_train_rm_ensemble_saves_members_and_their_weight_average(trained_ensemble):
    out, _ = trained_ensemble
    members = [member_dir(out, k) for k in range(2)]
    first, second = (load_file(m / "model.safetensors") for m in members)
    assert any(not torch.equal(first[k], second[k]) for k in first)  # other data orders, other weights
    average = load_file(out / "model.safetensors")
    for key in first:
        assert torch.allclose(average[key], (first[key] + second[key]) / 2, atol=1e-6), key
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["ensemble"] == 2 and len(summary["member_val_accuracies"]) == 2
    assert summary["member_val_accuracies"] == [json.loads((m / "train_summary.json").read_text())["val_accuracy"]
                                                for m in members]
    metadata = json.loads((out / "rewardkit.json").read_text())
    assert metadata["ensemble"] == {"members": ["members/member-0", "members/member-1"]}
    # the folder's reward statistics are the ensemble's (what serve --normalize fixed uses)
    assert metadata["reward_stats"]["count"] == 2 * summary["val_examples"]
    assert load_reward_model(str(out)).reward_stats == metadata["reward_stats"]


def test_an_ensemble_trains_without_validation_data(tmp_path, tiny_bert_dir, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl", n=16)
    cfg = TrainRMConfig(model=str(tiny_bert_dir), data=[str(data)], output_dir=str(tmp_path / "rm"), max_length=64,
                        batch_size=8, max_steps=1, val_fraction=0.0, save_every=0, progress=False,
                        tensorboard=False, num_threads=1, ensemble=2)
    assert train_reward_model(cfg) == 0
    assert "validation accuracy: none (no validation data) (16 trained" in capsys.readouterr().out
    summary = json.loads((tmp_path / "rm" / "train_summary.json").read_text())
    assert summary["val_accuracy"] is None and summary["member_val_accuracies"] == [None, None]
    assert "reward_stats" not in json.loads((tmp_path / "rm" / "rewardkit.json").read_text())  # nothing to measure on
    assert isinstance(load_reward_model(str(tmp_path / "rm")), RewardEnsemble)


def test_an_ensemble_folder_scores_as_the_mean_of_its_members_with_their_std(trained_ensemble):
    out, _ = trained_ensemble
    ensemble = load_reward_model(str(out))
    assert isinstance(ensemble, RewardEnsemble) and len(ensemble.members) == 2
    prompts, responses = ["question: the cat?", "question: a river?"], ["the cat thanks", "a river blue"]
    mean, std = ensemble.score_with_spread(prompts, responses)
    one, two = (RewardModel.from_pretrained(str(member_dir(out, k))).score(prompts, responses) for k in range(2))
    assert torch.allclose(mean, (one + two) / 2, atol=1e-6)
    assert torch.allclose(std, (one - two).abs() / 2, atol=1e-6)  # the population std of two values
    assert torch.allclose(ensemble.score(prompts, responses), mean)
    # the folder's own weights are one ordinary model (the weight average), and a plain folder loads as one model
    assert isinstance(RewardModel.from_pretrained(str(out)), RewardModel)
    assert isinstance(load_reward_model(str(member_dir(out, 0))), RewardModel)


def test_a_saved_temperature_keeps_the_ensemble(trained_ensemble, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(trained_ensemble[0], out)
    ensemble = load_reward_model(str(out))
    ensemble.temperature = 2.5
    ensemble.save_metadata(out)
    reloaded = load_reward_model(str(out))
    assert isinstance(reloaded, RewardEnsemble) and reloaded.temperature == 2.5
    shutil.rmtree(member_dir(out, 1))
    with pytest.raises(RewardkitError, match="member folder members/member-1 is missing"):
        load_reward_model(str(out))


def test_eval_rm_scores_an_ensemble_by_its_mean_and_reports_whether_disagreement_flags_errors(trained_ensemble,
                                                                                               tmp_path, capsys):
    from rewardkit.config import parse_config
    from rewardkit.eval import metrics
    from rewardkit.eval.command import EvalConfig, load_dataset, run_eval, score_dataset
    from rewardkit.eval.scoring import ScoreStats

    out, data = trained_ensemble
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    # every third pair swapped, so that the ensemble makes mistakes for its disagreement to flag
    rows = [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} if i % 3 == 0 else r for i, r in enumerate(rows)]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = [str(out), str(mixed), "--json", "--no-progress", "--bootstrap-resamples", "50"]
    cfg = parse_config(EvalConfig, argv)
    assert run_eval(cfg) == 0
    result = json.loads(capsys.readouterr().out)
    entry = result["datasets"]["mixed"]
    assert result["models"][0]["ensemble"] == 2
    assert result["models"][0]["placement"]["precision"] == inference_precision()
    # each member loaded and scored on its own, in the precision eval-rm loads it in (auto), other batches
    prompts = [r["prompt"] for r in rows]
    members = [RewardModel.from_pretrained(str(member_dir(out, k))) for k in range(2)]
    chosen = torch.stack([m.score(prompts, [r["chosen"] for r in rows]) for m in members]).double()
    rejected = torch.stack([m.score(prompts, [r["rejected"] for r in rows]) for m in members]).double()
    tol = reward_tolerance(chosen, rejected)
    # a member's reward moves by up to tol between the two batchings, so a mean margin by up to 2 * tol: only pairs
    # closer than that may count differently (here none in fp32, where the bounds are this accuracy exactly)
    low, high = outcome_bounds(chosen.mean(0), rejected.mean(0), tol)
    assert low.mean() - 1e-12 <= entry["accuracy"] <= high.mean() + 1e-12
    # eval-rm's own scoring of the same data (score_dataset: its batches, its precision) gives the scores its figures
    # come from exactly; they lie within the reward tolerance of the members' own (a std over members moves by no
    # more than the margins: 2 * tol). The disagreement figures rank pairs by disagreement, an order that two
    # batchings need not share, so they are compared with the figures of eval-rm's own scores
    same = score_dataset(load_dataset(str(mixed), None, "mixed", cfg), [load_reward_model(str(out))], cfg,
                         [ScoreStats()])
    (same_chosen, same_rejected), same_disagreement = same.scores[0], same.disagreement[0]
    assert same_chosen == pytest.approx(chosen.mean(0).numpy(), abs=tol)
    assert same_rejected == pytest.approx(rejected.mean(0).numpy(), abs=tol)
    assert same_disagreement == pytest.approx((chosen - rejected).std(0, unbiased=False).numpy(), abs=2 * tol)
    assert entry["accuracy"] == pytest.approx(metrics.pairwise_accuracy(same_chosen, same_rejected))
    expected = metrics.disagreement_figures(same_disagreement, metrics.pair_outcomes(same_chosen, same_rejected))
    assert entry["disagreement_auc"] is not None  # the ensemble got some pairs wrong and some right
    for key, value in expected.items():
        assert entry[key] == pytest.approx(value, abs=1e-6), key


def test_a_conservative_reward_subtracts_the_members_disagreement(trained_ensemble, tiny_bert_dir):
    from rewardkit.rewards.learned import LearnedReward

    out, _ = trained_ensemble
    prompts, responses = ["question: the cat?", "question: a sky?"], ["the cat thanks", "a sky red"]
    mean, std = load_reward_model(str(out)).score_with_spread(prompts, responses)
    plain = LearnedReward(str(out))
    # the component loads the folder as load_reward_model does (auto) and scores the same batch: exact in any precision
    assert torch.allclose(plain(prompts, responses), mean, atol=1e-6)
    assert torch.allclose(plain.last_spread, std)
    conservative = LearnedReward(str(out), conservative=2.0)
    assert torch.allclose(conservative(prompts, responses), mean - 2.0 * std, atol=1e-6)
    with pytest.raises(RewardkitError, match="conservative needs an ensemble"):
        LearnedReward(str(tiny_bert_dir), conservative=1.0)


def test_score_reports_the_disagreement_of_every_response(trained_ensemble, tmp_path, capsys):
    from rewardkit.config import parse_config
    from rewardkit.rewards.command import ScoreConfig, run_score

    out, _ = trained_ensemble
    records = [{"prompt": "question: the cat?", "chosen": "the cat thanks", "rejected": "the cat red"},
               {"prompt": "question: a sky?", "chosen": "a sky thanks", "rejected": "a sky red"}]
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert run_score(parse_config(ScoreConfig, [str(out), "--input", str(data), "--no-progress"])) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    # score loads the folder as load_reward_model does (auto) and scores the records' four responses in one call: the
    # same batch through the Python API gives the same mean and std exactly, in any precision
    prompts = [r["prompt"] for r in records for _ in range(2)]
    responses = [r[side] for r in records for side in ("chosen", "rejected")]
    mean, std = load_reward_model(str(out)).score_with_spread(prompts, responses)
    assert first["chosen"]["total"] == pytest.approx(float(mean[0]), abs=1e-6)
    assert first["chosen"]["disagreement"] == {"reward_model": pytest.approx(float(std[0]), abs=1e-6)}
    assert second["rejected"]["disagreement"] == {"reward_model": pytest.approx(float(std[3]), abs=1e-6)}
