"""What a GPU run trips on, checked on a CPU (see tests/device_discipline.py): a train-rm step and its validation,
eval-rm's scoring, score, and an rl step create no tensor without a device and move none to the CPU, except where the
code says it works on the host on purpose."""

from __future__ import annotations

from tests.device_discipline import DeviceDiscipline
from tests.models.test_trainer import small_config, write_pairs


def test_a_train_rm_step_and_its_validation_keep_tensors_on_the_device(tmp_path, tiny_bert_dir):
    from rewardkit.models.trainer import RewardModelTrainer

    data = write_pairs(tmp_path / "pairs.jsonl", n=40)
    trainer = RewardModelTrainer(small_config(tmp_path, tiny_bert_dir, data, length_decorrelation=0.1))
    trainer.reward_model.train()
    with DeviceDiscipline() as check:
        trainer.accumulate_gradients(list(range(8)))
        trainer.validate()
    assert check.found == [], "\n".join(check.found)


def test_eval_rm_and_score_keep_tensors_on_the_device(tmp_path, tiny_llama_dir, capsys):
    import json

    from rewardkit.config import parse_config
    from rewardkit.eval.command import EvalConfig, run_eval
    from rewardkit.rewards.command import ScoreConfig, run_score

    data = write_pairs(tmp_path / "pairs.jsonl", n=12)
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f"answer {i}"}) + "\n" for i in range(6)))
    eval_cfg = parse_config(EvalConfig, [str(tiny_llama_dir), str(data), "--json", "--no-progress",
                                         "--bootstrap-resamples", "20"])
    score_cfg = ScoreConfig(input=str(records), model=str(tiny_llama_dir), output=str(tmp_path / "scored.jsonl"),
                            progress=False)
    with DeviceDiscipline() as check:
        assert run_eval(eval_cfg) == 0
        assert run_score(score_cfg) == 0
    assert check.found == [], "\n".join(check.found)


def test_an_rl_step_keeps_tensors_on_the_device():
    from tests.rl.test_trainer import PROMPTS, make_trainer

    for algorithm in ("ppo", "grpo"):
        trainer = make_trainer(algorithm)
        prompts = PROMPTS if trainer.cfg.samples_per_prompt == 1 else PROMPTS[::2]
        with DeviceDiscipline() as check:
            trainer.step(prompts)
        assert check.found == [], f"{algorithm}: " + "\n".join(check.found)
