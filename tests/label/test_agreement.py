"""Agreement statistics against published, hand-checkable examples."""

from __future__ import annotations

import math

import pytest

from rewardkit.label.agreement import agreement_report, cohen_kappa, fleiss_kappa, krippendorff_alpha
from rewardkit.label.store import Judgment

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, None = missing.
OBSERVERS = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]
UNITS = [[o[u] for o in OBSERVERS if o[u] is not None] for u in range(12)]


def test_krippendorff_alpha_matches_the_published_example():
    assert krippendorff_alpha(UNITS, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(UNITS, "interval") == pytest.approx(0.849, abs=5e-4)


def test_krippendorff_alpha_by_hand_on_a_tiny_case():
    # units (a, a), (a, b): pooled values a a a b (n = 4). Observed: unit 2 has 2 ordered disagreeing pairs, /(2-1)
    # -> D_o = 2 / 4. Expected: ordered pairs of different values 2 * 3 * 1 = 6 over n(n-1) = 12 -> D_e = 0.5.
    # alpha = 1 - 0.5 / 0.5 = 0.
    assert krippendorff_alpha([["a", "a"], ["a", "b"]]) == pytest.approx(0.0)
    assert krippendorff_alpha([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    # a single value on a unit carries nothing; one value everywhere leaves nothing to agree on
    assert krippendorff_alpha([["a", "a"], ["b", "b"], ["a"]]) == pytest.approx(1.0)
    assert math.isnan(krippendorff_alpha([["a", "a"], ["a", "a"]]))


def test_cohen_kappa_matches_the_textbook_example():
    # 50 items: both yes 20, A yes B no 5, A no B yes 10, both no 15 -> p_o = 0.7, p_e = 0.5*0.6+0.5*0.4 = 0.5
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["A", "B", "A"], ["A", "B", "A"]) == pytest.approx(1.0)


def test_fleiss_kappa_matches_the_textbook_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories -> kappa 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=5e-5)
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 1], [2, 1]])


def _j(item, who, value):
    return Judgment(0, item, who, value, None, None, 0.0, 0.0)


def test_report_on_pairwise_and_ranking_judgments():
    pairwise = [_j(1, "ann", "A"), _j(1, "bob", "A"), _j(2, "ann", "B"), _j(2, "bob", "A"), _j(3, "ann", "B")]
    report = agreement_report("pairs", pairwise)
    # units (A, A), (B, A); item 3 judged once is left out. Pooled A A B A: D_o = 2/4, D_e = 6/12 -> alpha 0.
    assert report["units"] == 2 and report["krippendorff_alpha"] == pytest.approx(0.0)
    # Cohen on the 2 shared items: p_o = 1/2; ann A,B bob A,A -> p_e = (1*2 + 1*0) / 4 = 1/2 -> kappa 0
    assert report["cohen_kappa"]["ann / bob"] == (2, pytest.approx(0.0))
    # Fleiss: P_i = 1 and 0 -> P = 0.5; shares A 3/4, B 1/4 -> P_e = 10/16; kappa = (0.5 - 0.625) / 0.375 = -1/3
    assert report["fleiss_kappa"] == pytest.approx(-1 / 3)
    # a ranking is one unit per pair of responses: both put 0 above 1 and 0 above 2; they differ on (1, 2)
    ranking = agreement_report("rankings", [_j(1, "ann", [0, 1, 2]), _j(1, "bob", [0, 2, 1])])
    # pairs (0,1): T,T  (0,2): T,T  (1,2): T,F -> pooled 5 T, 1 F; D_o = 2/6; D_e = 2*5*1/30 -> alpha = 1 - 1 = 0
    assert ranking["units"] == 3 and ranking["krippendorff_alpha"] == pytest.approx(0.0)
