"""eval-rm's view of each kind of feedback: score layouts, targets, calibration pairs."""

import numpy as np

from rewardkit.data.types import BinaryFeedback, PreferencePair, RankedGroup, RatedResponse
from rewardkit.eval.views import VIEWS, view_of
from rewardkit.kinds import KINDS

PAIR = PreferencePair("p", "good", "bad", margin=2.0)
GROUPS = [RankedGroup("q", ["best", "mid", "worst"]), RankedGroup("r", ["first", "second"])]
RATINGS = [RatedResponse("p", f"answer {i}", score) for i, score in enumerate([1.0, 2.0, 3.0, 4.0])]
THUMBS = [BinaryFeedback("p", "yes", 1), BinaryFeedback("p", "no", 0)]


def test_every_kind_has_a_view():
    assert [view_of(kind) for kind in KINDS.values()] == [VIEWS[name] for name in KINDS]


def test_flat_scores_are_laid_out_per_kind():
    # pairs are scored as [chosen 1, rejected 1, chosen 2, rejected 2]
    chosen, rejected = VIEWS["pairs"].layout(np.array([1.0, 2.0, 3.0, 4.0]), [PAIR, PAIR])
    assert chosen.tolist() == [1.0, 3.0] and rejected.tolist() == [2.0, 4.0]
    groups = VIEWS["rankings"].layout(np.arange(5.0), GROUPS)
    assert [g.tolist() for g in groups] == [[0.0, 1.0, 2.0], [3.0, 4.0]]
    assert VIEWS["ratings"].layout(np.arange(4.0), RATINGS).tolist() == [0.0, 1.0, 2.0, 3.0]
    assert sorted(VIEWS["pairs"].all_values((chosen, rejected)).tolist()) == [1.0, 2.0, 3.0, 4.0]
    assert VIEWS["rankings"].all_values(groups).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert VIEWS["ratings"].targets(RATINGS).tolist() == [1.0, 2.0, 3.0, 4.0]
    assert VIEWS["binary"].targets(THUMBS).tolist() == [1.0, 0.0]
    assert VIEWS["pairs"].targets([PAIR]) is None
    assert VIEWS["pairs"].calibration_scores((1, 2)) == (1, 2) and VIEWS["ratings"].calibration_scores(3) is None
