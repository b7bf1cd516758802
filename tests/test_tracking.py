"""`Run`: the resume rule, log rewinding, checkpoint cadence and pruning that train-rm and rl share; `MetricsLog`."""

from __future__ import annotations

import json

import pytest

from rewardkit.errors import RewardkitError
from rewardkit.runs import checkpoint_dirs
from rewardkit.tracking import MetricsLog, Run


def _run(folder, resume=False, is_main=True, save_every=2, keep=1, logs=("metrics.jsonl",)) -> Run:
    return Run("test", folder, resume=resume, is_main=is_main, save_every=save_every, keep_checkpoints=keep,
               tensorboard=False, logs=logs)


def _checkpoint(run: Run, step: int):
    return run.save_checkpoint(step, lambda folder: (folder / "trainer_state.json").write_text("{}"))


def test_a_fresh_folder_starts_fresh_and_a_used_one_is_refused_without_resume(tmp_path, capsys):
    assert _run(tmp_path / "new").checkpoint_to_resume() is None
    used = tmp_path / "used"
    used.mkdir()
    (used / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(RewardkitError, match=f"{used} already holds a run; pass --resume"):
        _run(used).checkpoint_to_resume()
    # --resume without a checkpoint: a fresh start, said once
    assert _run(used, resume=True).checkpoint_to_resume() is None
    assert capsys.readouterr().err.count("--resume given but no checkpoint") == 1


def test_resume_takes_the_newest_checkpoint_and_the_logs_rewind_to_it(tmp_path):
    first = _run(tmp_path, keep=2, logs=("metrics.jsonl", "eval.jsonl"))
    first.start(total_steps=6, done_steps=0, progress=False)
    for step in range(1, 5):
        first.log.write(step, {"loss": float(step)})
        if first.checkpoint_due(step):
            _checkpoint(first, step)
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (2, 3, 4)))
    first.close()
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-2", "step-4"]

    second = _run(tmp_path, resume=True, logs=("metrics.jsonl", "eval.jsonl"))
    newest = second.checkpoint_to_resume()
    assert newest.name == "step-4"
    second.start(total_steps=6, done_steps=2, progress=False)  # as if resuming from step 2
    second.close()
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert [json.loads(line)["step"] for line in (tmp_path / "eval.jsonl").read_text().splitlines()] == [2]


def test_checkpoints_are_due_every_save_every_steps_and_pruned_to_keep(tmp_path):
    run = _run(tmp_path, save_every=3, keep=1)
    assert [s for s in range(1, 10) if run.checkpoint_due(s)] == [3, 6, 9]
    assert not any(_run(tmp_path, save_every=0).checkpoint_due(s) for s in range(1, 10))
    for step in (3, 6, 9):
        _checkpoint(run, step)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-9"]
    _run(tmp_path, keep=0).finished()  # keep 0: none once the run has finished
    assert checkpoint_dirs(tmp_path) == []


def test_only_the_main_process_writes_or_prints(tmp_path, capsys):
    other = _run(tmp_path, is_main=False)
    other.start(total_steps=2, done_steps=0, progress=False)
    other.log.write(1, {"loss": 1.0})
    other.say("from another process")
    path = _checkpoint(other, 2)
    other.close()
    assert path.name == "step-2" and not path.exists() and not (tmp_path / "metrics.jsonl").exists()
    assert capsys.readouterr().err == ""


def test_metrics_log_prefixes_names_drops_none_and_writes_nan_as_null(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False)
    log.write(3, {"loss": float("nan"), "accuracy": 0.5, "skipped": None}, prefix="train")
    log.close()
    row = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert row["step"] == 3 and row["train/loss"] is None and row["train/accuracy"] == 0.5
    assert "train/skipped" not in row
