"""Evaluation metrics against values computed by hand (and against scipy where scipy has the same metric)."""

import math

import numpy as np
import pytest
import scipy.stats
import torch

from rewardkit.eval import metrics as M


def test_pairwise_accuracy_counts_ties_half_and_accepts_tensors():
    # outcomes: 3>1 win, 1=1 tie, 2<4 loss, 5>0 win → (1 + 0.5 + 0 + 1) / 4
    assert M.pairwise_accuracy([3, 1, 2, 5], [1, 1, 4, 0]) == 0.625
    assert M.pairwise_accuracy(torch.tensor([3.0, 1.0]), np.array([1.0, 1.0])) == 0.75
    assert M.pairwise_accuracy([7.0] * 5, [7.0] * 5) == 0.5
    assert math.isnan(M.pairwise_accuracy([], []))
    with pytest.raises(ValueError):
        M.pairwise_accuracy([1, 2], [1])


def test_mean_margin_and_lengths():
    assert M.mean_margin([3, 1, 2, 5], [1, 1, 4, 0]) == pytest.approx((2 + 0 - 2 + 5) / 4)
    assert M.response_lengths(["abc", "", "héllo"]).tolist() == [3, 0, 5]


def test_length_baseline_counts_equal_lengths_half():
    # longer chosen wins, equal is half, shorter chosen loses twice → 1.5 / 4
    assert M.length_baseline_accuracy([10, 5, 5, 20], [5, 5, 8, 30]) == 0.375


def test_length_debiased_accuracy_uses_only_pairs_where_longer_loses():
    chosen_len, rejected_len = [10, 5, 5, 20], [5, 5, 8, 30]
    # only pairs 2 and 3 have a strictly shorter chosen response; the model loses pair 2 (2<4) and wins pair 3 (5>0)
    assert M.length_debiased_mask(chosen_len, rejected_len).tolist() == [False, False, True, True]
    assert M.length_debiased_accuracy([3, 1, 2, 5], [1, 1, 4, 0], chosen_len, rejected_len) == 0.5
    # a model that rewards length alone is wrong on every one of those pairs; one preferring brevity is always right
    assert M.length_debiased_accuracy(chosen_len, rejected_len, chosen_len, rejected_len) == 0.0
    assert M.length_debiased_accuracy(np.negative(chosen_len), np.negative(rejected_len),
                                      chosen_len, rejected_len) == 1.0
    assert math.isnan(M.length_debiased_accuracy([1.0], [0.0], [5], [3]))


def test_longer_preferred_rate():
    # pairs (chosen len, rejected len): (10,5) model prefers chosen = longer ✓; (5,5) skipped; (5,8) model prefers
    # rejected = longer ✓; (20,30) model prefers chosen = shorter ✗ → 2 / 3
    assert M.longer_preferred_rate([3, 1, 2, 5], [1, 1, 4, 0], [10, 5, 5, 20], [5, 5, 8, 30]) == pytest.approx(2 / 3)
    assert M.longer_preferred_rate([1.0], [1.0], [10], [5]) == 0.5  # a tie in reward counts half


def test_average_ranks_share_ties():
    assert M.average_ranks([10, 20, 10, 30]).tolist() == [1.5, 3.0, 1.5, 4.0]
    values = np.random.default_rng(0).integers(0, 5, size=50)
    np.testing.assert_allclose(M.average_ranks(values), scipy.stats.rankdata(values))


def test_pearson_and_spearman_by_hand_and_vs_scipy():
    # x=[1,2,3], y=[1,2,4]: Σdxdy = 3, Σdx² = 2, Σdy² = 42/9 → r = 3 / sqrt(2·42/9) = 9/sqrt(84)
    assert M.pearson([1, 2, 3], [1, 2, 4]) == pytest.approx(9 / math.sqrt(84))
    # one swapped neighbour among 4: ρ = 1 − 6·Σd²/(n(n²−1)) = 1 − 6·2/60
    assert M.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 6, 40).astype(float), rng.normal(size=40)
    assert M.spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic)
    assert M.pearson(x, y) == pytest.approx(scipy.stats.pearsonr(x, y).statistic)
    assert math.isnan(M.pearson([1, 1, 1], [1, 2, 3]))


def test_length_correlation_is_spearman_of_reward_and_length():
    assert M.length_spearman([0.1, 0.5, 0.2, 3.0], [10, 50, 100, 101]) == pytest.approx(0.8)


def test_ece_and_reliability_diagram_by_hand():
    # margins ln3, ln3, −ln3, 0 → p = .75, .75, .25, .5; symmetrized points:
    #   bin 7 (p=.75): labels 1, 1, 0 → frequency 2/3, gap 1/12, 3 points
    #   bin 2 (p=.25): labels 1, 0, 0 → frequency 1/3, gap 1/12, 3 points
    #   bin 5 (p=.5):  labels 1, 0    → gap 0
    # ECE = (3·1/12 + 3·1/12) / 8 = 1/16
    ln3 = math.log(3)
    chosen, rejected = [ln3, ln3, 0.0, 0.0], [0.0, 0.0, ln3, 0.0]
    diagram = M.reliability_diagram(chosen, rejected, n_bins=10)
    assert diagram.counts.tolist() == [0, 0, 3, 0, 0, 2, 0, 3, 0, 0]
    assert diagram.frequency[7] == pytest.approx(2 / 3) and diagram.frequency[2] == pytest.approx(1 / 3)
    assert diagram.mean_confidence[7] == pytest.approx(0.75)
    assert np.isnan(diagram.frequency[0])
    assert M.expected_calibration_error(chosen, rejected) == pytest.approx(1 / 16)
    # the same figure as the top-label ECE: confidence .75 (3 pairs, correct 2 of 3) and .5 (a tie)
    assert diagram.ece == pytest.approx(3 / 4 * abs(2 / 3 - 0.75))


def test_ece_is_zero_when_confidence_matches_frequency_and_uses_temperature():
    # margins 2, 2, 2, −2 with T = 2/ln3 → p = 3/4 on the three wins and 1/4 on the loss: perfectly calibrated
    chosen, rejected = [2.0, 2.0, 2.0, 0.0], [0.0, 0.0, 0.0, 2.0]
    assert M.expected_calibration_error(chosen, rejected, temperature=2 / math.log(3)) == pytest.approx(0.0, abs=1e-12)
    # at T = 1 the model says σ(2) ≈ .881 but is right 3/4 of the time
    assert M.expected_calibration_error(chosen, rejected, temperature=1.0) == pytest.approx(M.sigmoid([2.0])[0] - 0.75)
    with pytest.raises(ValueError):
        M.expected_calibration_error(chosen, rejected, temperature=0.0)


def test_fit_temperature_recovers_the_calibrating_temperature():
    # three wins and one loss at |margin| 2: NLL is minimal where σ(2/T) = 3/4, i.e. T = 2 / ln 3
    chosen, rejected = [2.0, 2.0, 2.0, 0.0], [0.0, 0.0, 0.0, 2.0]
    temperature = M.fit_temperature(chosen, rejected)
    assert temperature == pytest.approx(2 / math.log(3), rel=1e-6)

    def nll(t):  # the Bradley-Terry loss -log σ((r_c − r_r)/T), by hand
        return sum(math.log1p(math.exp(-(c - r) / t)) for c, r in zip(chosen, rejected)) / len(chosen)

    assert nll(temperature) < nll(temperature * 1.1) and nll(temperature) < nll(temperature / 1.1)


def test_fit_temperature_on_synthetic_bradley_terry_data():
    # scores drawn so that P(chosen preferred) = σ(margin / 3): the fit should find T ≈ 3
    rng = np.random.default_rng(0)
    margins = rng.normal(0, 4, size=20000)
    preferred = rng.random(margins.size) < M.sigmoid(margins / 3.0)
    signed = np.where(preferred, margins, -margins)  # orient each pair so that "chosen" is the preferred one
    assert M.fit_temperature(signed, np.zeros_like(signed)) == pytest.approx(3.0, rel=0.05)


def test_fit_temperature_degenerate_cases_stay_finite():
    assert M.fit_temperature([1.0, 1.0], [1.0, 1.0]) == 1.0            # all ties: no information
    # always right: T → the lower bound mean|margin| / 1e4
    assert M.fit_temperature([1.0, 2.0], [0.0, 0.0]) == pytest.approx(1.5e-4)
    anti = M.fit_temperature([0.0, 0.0], [1.0, 2.0])                   # always wrong: T → upper bound (p → .5)
    assert math.isfinite(anti) and anti >= 1e4


def test_kendall_tau_b_matches_scipy_with_and_without_ties():
    rng = np.random.default_rng(2)
    for size in (2, 3, 5, 8):
        for _ in range(20):
            x, y = rng.integers(0, 4, size).astype(float), rng.normal(size=size)
            expected = scipy.stats.kendalltau(x, y).statistic
            got = M.kendall_tau_b(x, y)
            assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_ranking_metrics_by_hand():
    assert M.ranking_top1_credit([3, 1, 2]) == 1.0
    assert M.ranking_top1_credit([1, 3, 2]) == 0.0
    assert M.ranking_top1_credit([3, 3, 1]) == 0.5
    assert M.ranking_top1_credit([3, 3, 3]) == pytest.approx(1 / 3)
    # [3, 1, 2] vs best-first order: pairs (0,1) and (0,2) concordant, (1,2) discordant → (2 − 1) / 3
    assert M.ranking_kendall_tau([3, 1, 2]) == pytest.approx(1 / 3)
    assert M.ranking_kendall_tau([3, 2, 1]) == 1.0
    assert M.ranking_kendall_tau([1, 2, 3]) == -1.0
    assert M.ranking_kendall_tau([2, 2, 2]) == 0.0  # no ordering information
    groups = [[3, 1, 2], [1, 3, 2], [5], [2, 2]]
    result = M.summarize_rankings(groups, [[0] * len(g) for g in groups], n_resamples=10)
    assert result["n"] == 3  # the single-response group is skipped
    assert result["top1_accuracy"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert result["mean_kendall_tau"] == pytest.approx((1 / 3 - 1 / 3 + 0) / 3)


def test_ranking_tau_matches_scipy_against_human_order():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=6)
    expected = scipy.stats.kendalltau(scores, -np.arange(6)).statistic
    assert M.ranking_kendall_tau(scores) == pytest.approx(expected)


def test_binary_correctness_and_f1_at_logit_zero():
    scores, labels = [2.0, -1.0, 0.5, -3.0, 0.0], [1, 1, 0, 0, 1]
    # predictions (r > 0): 1, 0, 1, 0, 0 → correct on items 0 and 3
    assert M.binary_correct(scores, labels).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    # TP = 1 (item 0), FP = 1 (item 2), FN = 2 (items 1, 4) → F1 = 2 / (2 + 3)
    assert M.binary_f1(scores, labels) == pytest.approx(0.4)
    # threshold −2: predictions 1, 1, 1, 0, 1 → only item 2 is wrong
    assert M.binary_correct(scores, labels, threshold=-2.0).tolist() == [1.0, 1.0, 0.0, 1.0, 1.0]
    assert M.binary_f1([-1.0, -2.0], [0, 0]) == 0.0


def test_roc_auc_counts_ties_half():
    # positive/negative pairs: .9>.4, .9>.1, .4=.4 (half), .4>.1 → 3.5 / 4
    assert M.roc_auc([0.9, 0.4, 0.4, 0.1], [1, 1, 0, 0]) == pytest.approx(0.875)
    assert M.roc_auc([0.1, 0.2], [1, 0]) == 0.0
    assert math.isnan(M.roc_auc([0.1, 0.2], [1, 1]))


def test_roc_curve_steps_once_per_distinct_score_and_its_area_is_the_auc():
    # scores .9 (pos), .4 (pos, neg), .1 (neg): points after .9, after both .4s, after .1
    fpr, tpr = M.roc_curve([0.9, 0.4, 0.4, 0.1], [1, 1, 0, 0])
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0] and tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    for labels in ([1, 1, 0, 0], [0, 0, 1, 1]):  # all scores tied: the diagonal, whatever the order of the labels
        fpr, tpr = M.roc_curve([5, 5, 5, 5], labels)
        assert fpr.tolist() == [0.0, 1.0] and tpr.tolist() == [0.0, 1.0]
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 5, 200), rng.integers(0, 2, 200)
    fpr, tpr = M.roc_curve(scores, labels)
    assert np.trapezoid(tpr, fpr) == pytest.approx(M.roc_auc(scores, labels))


def test_pairwise_concordance_by_hand():
    # gold 3 > 2 > 1 = 1: five decided pairs (the two gold 1s are not one). Scores: a=.9 b=.5 c=.5 d=.7
    # a>b right, a>c right, a>d right, b>c tie (half), b>d wrong; c, d undecided → (3 + 0.5) / 5
    assert M.pairwise_concordance([0.9, 0.5, 0.5, 0.7], [3, 2, 1, 1]) == pytest.approx(0.7)
    assert M.pairwise_concordance([1, 2, 3], [3, 2, 1]) == 0.0
    assert math.isnan(M.pairwise_concordance([1, 2], [5, 5]))
    scores, labels = [0.9, 0.4, 0.4, 0.1, 0.3], [1, 1, 0, 0, 1]  # 0/1 gold: the ROC AUC
    assert M.pairwise_concordance(scores, labels) == pytest.approx(M.roc_auc(scores, labels))


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(4).random(300) < 0.7
    first = M.bootstrap_ci(values, seed=5)
    assert first == M.bootstrap_ci(values, seed=5)
    assert first != M.bootstrap_ci(values, seed=6)
    assert first[0] < values.mean() < first[1]
    # roughly ±1.96·sqrt(p(1−p)/n) around the mean
    half_width = 1.96 * math.sqrt(0.7 * 0.3 / 300)
    assert first[1] - first[0] == pytest.approx(2 * half_width, rel=0.2)
    assert M.bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    assert all(math.isnan(v) for v in M.bootstrap_ci([]))


def test_bootstrap_ci_covers_the_true_accuracy_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    true_accuracy, repetitions = 0.7, 400
    covered = 0
    for repetition in range(repetitions):
        outcomes = (rng.random(300) < true_accuracy).astype(float)
        lo, hi = M.bootstrap_ci(outcomes, n_resamples=500, seed=repetition)
        covered += lo <= true_accuracy <= hi
    # binomial standard error of the coverage over 400 repetitions is about 0.011
    assert 0.92 <= covered / repetitions <= 0.975


def test_paired_mean_difference():
    a, b = [1, 1, 0, 1], [1, 0, 0, 1]
    assert M.paired_mean_difference(a, b).difference == 0.25
    same = M.paired_mean_difference(a, a)
    assert same.difference == 0 and same.ci95 == (0.0, 0.0) and not same.excludes_zero
    better = M.paired_mean_difference([1.0] * 50, [0.0] * 50)
    assert better.ci95 == (1.0, 1.0) and better.excludes_zero
    # correlated models: paired interval is much tighter than the spread of either model's own accuracy interval
    rng = np.random.default_rng(8)
    base = (rng.random(500) < 0.7).astype(float)
    other = base.copy()
    other[rng.choice(500, 10, replace=False)] = 1 - other[rng.choice(500, 10, replace=False)]
    paired = M.paired_mean_difference(base, other)
    lo, hi = M.bootstrap_ci(base)
    assert paired.ci95[1] - paired.ci95[0] < (hi - lo) / 2


def test_bootstrap_statistic_ci_draws_the_same_resamples_as_bootstrap_ci():
    values = np.random.default_rng(10).normal(size=120)
    assert M.bootstrap_statistic_ci(lambda idx: values[idx].mean(), values.size, seed=3) == pytest.approx(
        M.bootstrap_ci(values, seed=3))
    # resamples where the statistic is undefined are left out, not propagated as NaN
    lo, hi = M.bootstrap_statistic_ci(lambda idx: float("nan") if idx[0] == 0 else 1.0, 5, seed=0)
    assert (lo, hi) == (1.0, 1.0)


def test_paired_statistic_difference():
    scores_a, scores_b, ratings = np.array([1., 2., 3., 4.]), np.array([1., 3., 2., 4.]), np.array([1., 2., 3., 4.])
    result = M.paired_statistic_difference(lambda idx: M.spearman(scores_a[idx], ratings[idx]),
                                           lambda idx: M.spearman(scores_b[idx], ratings[idx]), 4)
    assert result.difference == pytest.approx(1.0 - 0.8)
    assert result.ci95[0] <= result.difference <= result.ci95[1]


def test_summarize_rankings_by_hand():
    groups = [[3.0, 1.0, 2.0], [1.0, 3.0, 2.0], [9.0]]
    lengths = [[10, 30, 20], [50, 40, 30], [5]]
    figures = M.summarize_rankings(groups, lengths, n_resamples=200)
    assert figures["n"] == 2 and figures["n_responses"] == 6
    assert figures["top1_accuracy"] == 0.5
    assert figures["chance_top1"] == pytest.approx(1 / 3)
    # by length: group 1 picks index 1 (30 chars) ✗, group 2 picks index 0 (50 chars) ✓
    assert figures["length_baseline_top1"] == 0.5
    # τ per group: 1/3 and −1/3 (hand-computed in test_ranking_metrics_by_hand)
    assert figures["mean_kendall_tau"] == pytest.approx(0.0)
    # lengths by group: [10,30,20] → τ = (−1 −1 +1)/3 = −1/3; [50,40,30] → 1
    assert figures["length_baseline_kendall_tau"] == pytest.approx((-1 / 3 + 1) / 2)
    assert figures["length_correlation"] == pytest.approx(M.spearman([3, 1, 2, 1, 3, 2], [10, 30, 20, 50, 40, 30]))
    # top-1 credits [1, 0]: a resample of the two groups has mean 0 or 1 with probability 1/4 each, so the 2.5th and
    # 97.5th percentiles of 200 resampled means are 0 and 1
    assert figures["ci95"] == [0.0, 1.0]


def test_compare_rankings():
    diff = M.compare_rankings([[3.0, 1.0, 2.0], [1.0, 3.0, 2.0]], [[1.0, 2.0, 3.0], [1.0, 3.0, 2.0]])
    assert diff["top1_accuracy"]["difference"] == 0.5       # (1 − 0 + 0 − 0) / 2
    assert diff["mean_kendall_tau"]["difference"] == pytest.approx((1 / 3 - (-1)) / 2)


def test_summarize_ratings_by_hand():
    figures = M.summarize_ratings([1, 3, 2, 4], [1, 2, 3, 4], [40, 10, 20, 30], n_resamples=200)
    assert figures["n"] == 4
    assert figures["spearman"] == pytest.approx(0.8)
    assert figures["pearson"] == pytest.approx(0.8)  # ranks equal values here
    # lengths ranks [4,1,2,3] vs ratings [1,2,3,4]: Σd² = 9+1+1+1 = 12 → 1 − 72/60
    assert figures["length_baseline_spearman"] == pytest.approx(-0.2)
    assert M.compare_ratings([1, 2, 3, 4], [1, 3, 2, 4], [1, 2, 3, 4])["spearman"]["difference"] == pytest.approx(0.2)


def test_summarize_binary_by_hand():
    scores, labels, lengths = [2.0, -1.0, 0.5, -3.0, 0.0], [1, 1, 0, 0, 1], [5, 4, 3, 2, 1]
    figures = M.summarize_binary(scores, labels, lengths, n_resamples=200)
    assert figures["n"] == 5 and figures["positive_rate"] == pytest.approx(0.6)
    assert figures["accuracy"] == pytest.approx(0.4) and figures["f1"] == pytest.approx(0.4)
    # positives 2, −1, 0 vs negatives .5, −3: 2>.5, 2>−3, −1>−3, 0>−3 → 4 of 6
    assert figures["roc_auc"] == pytest.approx(4 / 6)
    # lengths: positives 5, 4, 1 vs negatives 3, 2 → 5>3, 5>2, 4>3, 4>2 → 4 of 6
    assert figures["length_baseline_auc"] == pytest.approx(4 / 6)
    diff = M.compare_binary(scores, [1.0, 1.0, -1.0, -1.0, 1.0], labels)
    assert diff["accuracy"]["difference"] == pytest.approx(0.4 - 1.0)
    assert diff["roc_auc"]["difference"] == pytest.approx(4 / 6 - 1.0)


def test_summarize_pairs_matches_the_individual_metrics():
    rng = np.random.default_rng(9)
    chosen, rejected = rng.normal(1, 1, 200), rng.normal(0, 1, 200)
    chosen_len, rejected_len = rng.integers(1, 500, 200), rng.integers(1, 500, 200)
    figures = M.summarize_pairs(chosen, rejected, chosen_len, rejected_len, temperature=2.0)
    assert figures["n"] == 200
    assert figures["accuracy"] == M.pairwise_accuracy(chosen, rejected)
    assert figures["ci95"] == list(M.bootstrap_ci(M.pair_outcomes(chosen, rejected)))
    assert figures["length_baseline"] == M.length_baseline_accuracy(chosen_len, rejected_len)
    assert figures["debiased_accuracy"] == M.length_debiased_accuracy(chosen, rejected, chosen_len, rejected_len)
    assert figures["debiased_n"] == int((chosen_len < rejected_len).sum())
    assert figures["ece"] == M.expected_calibration_error(chosen, rejected, temperature=2.0)
    assert figures["temperature"] == M.fit_temperature(chosen, rejected)
    assert figures["calibrated_ece"] <= figures["ece"] + 0.02
    assert figures["mean_margin"] == pytest.approx(M.mean_margin(chosen, rejected))
    assert figures["prefers_longer"] == M.longer_preferred_rate(chosen, rejected, chosen_len, rejected_len)
    diff = M.compare_pairs(chosen, rejected, rejected, chosen)  # the same model with chosen/rejected swapped
    assert diff["accuracy"]["difference"] == pytest.approx(2 * figures["accuracy"] - 1)
    assert diff["accuracy"]["excludes_zero"] is True
    assert figures["length_correlation"] == pytest.approx(
        M.spearman(np.r_[chosen, rejected], np.r_[chosen_len, rejected_len]))


def test_disagreement_figures_by_hand():
    # four pairs: disagreement 0.1, 0.4, 0.3, 0.2 and outcomes right, wrong, wrong, right
    figures = M.disagreement_figures([0.1, 0.4, 0.3, 0.2], [1.0, 0.0, 0.0, 1.0])
    assert figures["mean_disagreement"] == pytest.approx(0.25)
    # both wrong pairs (0.4, 0.3) disagree more than both right ones (0.1, 0.2): AUC 1
    assert figures["disagreement_auc"] == 1.0
    # the least-disagreed half is pairs 0 and 3 (both right), the most-disagreed half pairs 2 and 1 (both wrong)
    assert figures["accuracy_agreed"] == 1.0 and figures["accuracy_disagreed"] == 0.0
    # a tie is left out of the AUC; wrong 0.2 against right 0.5 and 0.1: one of two comparisons has it higher
    mixed = M.disagreement_figures([0.5, 0.2, 0.1, 0.9], [1.0, 0.0, 1.0, 0.5])
    assert mixed["disagreement_auc"] == 0.5
    # by disagreement: 0.1 (right), 0.2 (wrong) | 0.5 (right), 0.9 (tie): halves 0.5 and (1 + 0.5) / 2
    assert mixed["accuracy_agreed"] == 0.5 and mixed["accuracy_disagreed"] == 0.75
