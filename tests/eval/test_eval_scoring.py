"""The streaming scorer: chunked, length-ordered scoring gives the same rewards, in input order, as RewardModel.score."""

import numpy as np
import pytest

from rewardkit.eval.scoring import ScoredDataset, ScoreStats, score_texts
from tests.conftest import build_tiny_reward_model


@pytest.fixture(scope="module")
def tiny_rm():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield build_tiny_reward_model("bert")
    torch.set_num_threads(threads)


def test_chunked_scores_match_direct_scoring_in_input_order(tiny_rm):
    prompts = [f"question {i} " + "context " * (i * 29 % 200) for i in range(11)]
    responses = ["answer " * (i * 5 % 13 + 1) for i in range(11)]
    stats = ScoreStats()
    scores = score_texts(tiny_rm, prompts, responses, batch_size=4, progress=False, stats=stats, chunk_size=3)
    expected = tiny_rm.score(prompts, responses, batch_size=4).double().numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    assert scores.dtype == np.float64
    assert stats.n_texts == 11
    # max_length 128: the prompts with well over 120 words of context must have been cut
    assert stats.n_truncated == sum(tiny_rm.encode(p, r).truncated for p, r in zip(prompts, responses)) > 0


def test_score_texts_rejects_mismatched_inputs(tiny_rm):
    with pytest.raises(ValueError):
        score_texts(tiny_rm, ["a", "b"], ["x"], progress=False)


def test_subset_names_need_two_subsets():
    one = ScoredDataset("d", "binary", ["a", "a"], np.zeros(2))
    assert one.subset_names == []
    two = ScoredDataset("d", "binary", ["b", None, "a", "b"], np.zeros(4))
    assert two.subset_names == ["b", "a"]
