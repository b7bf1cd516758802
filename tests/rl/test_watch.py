import random

from rewardkit.rl.watch import RewardHackingWatch, window_shift


def test_window_shift_by_hand():
    # before [1, 3] mean 2 var 2; after [4, 6] mean 5 var 2 -> change 3, se sqrt(2/2 + 2/2) = sqrt 2
    change, se = window_shift([9.0, 1.0, 3.0, 4.0, 6.0], 2)
    assert change == 3.0 and abs(se - 2 ** 0.5) < 1e-12


def test_warns_once_when_gold_falls_while_proxy_rises():
    rng = random.Random(0)
    watch = RewardHackingWatch(window=5)
    warned_at = []
    for step in range(1, 41):
        proxy = step * 0.1 + rng.gauss(0, 0.05)
        gold = (1.0 if step <= 20 else 1.0 - (step - 20) * 0.1) + rng.gauss(0, 0.05)
        if any("gold reward falls" in w for w in watch.update(step, proxy, 20.0, gold)):
            warned_at.append(step)
    assert len(warned_at) == 1 and 21 <= warned_at[0] <= 30
    assert watch.warnings[0]["kind"] == "gold_falls"


def test_no_warning_when_both_rise_or_on_noise():
    rng = random.Random(1)
    watch = RewardHackingWatch(window=5)
    for step in range(1, 61):
        assert not watch.update(step, step * 0.1 + rng.gauss(0, 0.1), 20 + rng.gauss(0, 2), step * 0.05)
    noise = RewardHackingWatch(window=5)
    for step in range(1, 61):
        assert not noise.update(step, rng.gauss(0, 1), 20.0, rng.gauss(0, 1))


def test_length_drift_both_ways():
    watch = RewardHackingWatch(window=3, length_drift=2.0)
    messages = [watch.update(step, 0.0, length) for step, length in enumerate([10, 10, 10, 15, 18, 22, 25, 30], 1)]
    flagged = [i for i, m in enumerate(messages, 1) if m]
    assert flagged == [7]  # last three (18, 22, 25) mean 21.7 > 2 x 10, only from step 7 on (and only once)
    shrink = RewardHackingWatch(window=2, length_drift=2.0)
    assert any(shrink.update(s, 0.0, n) for s, n in enumerate([20, 20, 8, 8], 1))


def test_a_restored_watch_warns_exactly_as_the_original():
    watch = RewardHackingWatch(window=2, length_drift=2.0)
    for step, length in enumerate([10, 10, 12], 1):
        assert not watch.update(step, 0.0, length, 1.0)
    clone = RewardHackingWatch(window=2, length_drift=2.0)
    clone.load_state_dict(watch.state_dict())
    # the restored history holds the first window (mean 10): 30 after 12 drifts x2.1, which a fresh watch cannot tell
    assert not RewardHackingWatch(window=2, length_drift=2.0).update(4, 0.0, 30, 1.0)
    for restored in (watch, clone):
        assert [bool(restored.update(4, 0.0, 30, 1.0)), bool(restored.update(5, 0.0, 30, 1.0))] == [True, False]
    assert clone.warnings == watch.warnings and [w["step"] for w in clone.warnings] == [4]
