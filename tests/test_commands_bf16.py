"""Every command accepts `--device cpu --precision bf16`, says so in one line, and records it in its outputs.

(`rl` is covered in tests/rl/test_distributed.py.) These run the real CLI on tiny models; bf16 on a CPU without bf16
matrix units is slow but correct, which is all they check.
"""

from __future__ import annotations

import json

import httpx

from tests.models.test_trainer import run_cli, write_pairs
from tests.serve.conftest import ServerProcess

BF16 = ["--device", "cpu", "--precision", "bf16"]
ANNOUNCED = "device cpu, precision bf16 (as asked)"
PLACEMENT = {"device": "cpu", "precision": "bf16", "reason": "as asked"}


def test_train_rm_in_bf16(tmp_path, tiny_bert_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=32)
    result = run_cli("train-rm", "--model", str(tiny_bert_dir), "--data", str(data), "--output-dir", str(tmp_path / "o"),
                     "--max-length", "64", "--batch-size", "8", "--max-steps", "2", "--save-every", "0",
                     "--no-progress", "--no-tensorboard", *BF16)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"rewardkit train-rm: {ANNOUNCED}" in result.stderr
    assert json.loads((tmp_path / "o" / "train_summary.json").read_text())["placement"] == PLACEMENT


def test_eval_rm_in_bf16(tmp_path, tiny_bert_dir):
    data = write_pairs(tmp_path / "pairs.jsonl", n=16)
    result = run_cli("eval-rm", str(tiny_bert_dir), str(data), "--json", "--no-progress", "--bootstrap-resamples", "50",
                     "--report", str(tmp_path / "report"), *BF16)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"rewardkit eval-rm: {ANNOUNCED}" in result.stderr
    assert json.loads(result.stdout)["models"][0]["placement"] == PLACEMENT
    assert "cpu bf16" in (tmp_path / "report" / "report.md").read_text()


def test_score_in_bf16_with_a_spec_whose_model_follows_the_command(tmp_path, tiny_bert_dir):
    records = tmp_path / "in.jsonl"
    records.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f"answer {i}"}) + "\n" for i in range(4)))
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"components:\n  - {{type: reward_model, path: {tiny_bert_dir}}}\n")
    result = run_cli("score", "--reward", str(spec), "--input", str(records), "--output", str(tmp_path / "out.jsonl"),
                     "--no-progress", *BF16)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"rewardkit score: {ANNOUNCED}" in result.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 4


def test_reward_model_component_left_at_auto_runs_where_the_command_says(tiny_bert_dir):
    import torch

    from rewardkit.device import choose_placement
    from rewardkit.rewards.spec import build_reward

    spec = {"components": [{"type": "reward_model", "path": str(tiny_bert_dir)}]}
    bf16 = build_reward(spec, placement=choose_placement("cpu", "bf16")).components[0].reward.model
    assert bf16.model.bert.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    pinned = {"components": [{"type": "reward_model", "path": str(tiny_bert_dir), "precision": "fp32"}]}
    fp32 = build_reward(pinned, placement=choose_placement("cpu", "bf16")).components[0].reward.model
    assert fp32.model.bert.embeddings.word_embeddings.weight.dtype == torch.float32


def test_serve_in_bf16_reports_its_placement_on_health(tiny_bert_dir, tmp_path):
    server = ServerProcess("rewardkit.cli", ["serve", str(tiny_bert_dir), *BF16], log_dir=tmp_path)
    try:
        server.wait_ready()
        health = httpx.get(server.url + "/health", timeout=10).json()
        assert health["placement"] == PLACEMENT
        scored = httpx.post(server.url + "/score", json={"items": [{"prompt": "Hi", "response": "Hello!"}]},
                            timeout=30).json()
        assert len(scored["scores"]) == 1
    finally:
        server.stop()
    assert f"rewardkit serve: {ANNOUNCED}" in server.log()
