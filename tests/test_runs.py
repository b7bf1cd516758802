"""Run plumbing: atomic folder writes, checkpoint listing and pruning (--keep-checkpoints), the offline environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rewardkit.errors import RewardkitError
from rewardkit.runs import (check_keep_checkpoints, checkpoint_dir, checkpoint_dirs, json_ready,
                            offline_environment, prune_checkpoints, truncate_jsonl, write_atomically)


def make_checkpoints(output_dir: Path, *steps: int) -> None:
    for step in steps:
        write_atomically(checkpoint_dir(output_dir, step),
                         lambda folder: (folder / "trainer_state.json").write_text("{}"))


def steps_left(output_dir: Path) -> list[int]:
    return [int(p.name.split("-")[1]) for p in checkpoint_dirs(output_dir)]


def test_checkpoints_are_listed_by_step_number_and_only_when_complete(tmp_path):
    make_checkpoints(tmp_path, 10, 9, 100)
    (tmp_path / "checkpoints" / "step-200").mkdir()  # no trainer_state.json: not a checkpoint
    for copy in ("step-2.bak", "step-300-keep-me"):  # a user's copies are neither resumed from nor pruned
        (tmp_path / "checkpoints" / copy).mkdir()
        (tmp_path / "checkpoints" / copy / "trainer_state.json").write_text("{}")
    assert steps_left(tmp_path) == [9, 10, 100]
    prune_checkpoints(tmp_path, 1)
    assert steps_left(tmp_path) == [100] and (tmp_path / "checkpoints" / "step-300-keep-me").exists()


def test_truncate_jsonl_keeps_the_rows_up_to_the_checkpoint_step(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1, "loss": 1}\n{"step": 2, "loss": 0.5}\n{"step": 3, "loss": 0.4}\n')
    truncate_jsonl(log, 2)
    assert log.read_text() == '{"step": 1, "loss": 1}\n{"step": 2, "loss": 0.5}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # no temporary file left


@pytest.mark.parametrize("keep, during_run, after_run", [
    (2, [3, 4], [3, 4]),
    (1, [4], [4]),
    (0, [4], []),  # the newest survives until the final model is saved: a crashed run resumes from it
    (9, [1, 2, 3, 4], [1, 2, 3, 4]),
])
def test_pruning_keeps_the_newest_and_zero_keeps_none_once_the_run_finished(tmp_path, keep, during_run, after_run):
    make_checkpoints(tmp_path, 1, 2, 3, 4)
    prune_checkpoints(tmp_path, keep)
    assert steps_left(tmp_path) == during_run
    prune_checkpoints(tmp_path, keep, run_finished=True)
    assert steps_left(tmp_path) == after_run
    assert (tmp_path / "checkpoints").exists() == bool(after_run)


def test_negative_keep_is_a_user_error():
    check_keep_checkpoints(0)
    with pytest.raises(RewardkitError, match="--keep-checkpoints must be 0 or more"):
        check_keep_checkpoints(-1)


def test_write_atomically_replaces_the_target_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out"
    write_atomically(target, lambda d: (d / "a").write_text("old"))
    write_atomically(target, lambda d: (d / "b").write_text("new"), lambda d: (d / "c").write_text("too"))
    assert sorted(p.name for p in target.iterdir()) == ["b", "c"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_failed_write_keeps_the_old_target_and_removes_its_temporary_folder(tmp_path):
    target = tmp_path / "out"
    write_atomically(target, lambda d: (d / "a").write_text("old"))

    def fail(folder: Path):
        (folder / "half").write_text("half")
        raise ValueError("disk on fire")

    with pytest.raises(ValueError):
        write_atomically(target, fail)
    assert [p.name for p in target.iterdir()] == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_keep_existing_tolerates_losing_the_race_to_another_process(tmp_path):
    target = tmp_path / "cache"

    def another_process_wins(folder: Path):
        (folder / "mine").write_text("mine")
        write_atomically(target, lambda d: (d / "theirs").write_text("theirs"))  # lands first

    write_atomically(target, another_process_wins, keep_existing=True)
    assert [p.name for p in target.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_offline_environment_sets_defaults_and_respects_the_user(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    offline_environment()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TOKENIZERS_PARALLELISM"] == "true"


def test_json_ready_replaces_nan_and_numpy_types():
    import numpy as np

    assert json_ready({"a": float("nan"), "b": [np.float32(0.5), np.int64(3), float("inf")], "c": "x"}) == {
        "a": None, "b": [0.5, 3, None], "c": "x"}
