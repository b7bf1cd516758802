"""train-rm's data options: --mixture, --balance-length (by the model's tokens), --max-pairs-per-prompt, the split by
prompt, the unchanged default split, chunked encoding, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from rewardkit.cli import main
from rewardkit.config import parse_config
from rewardkit.data import load_pairs, train_val_split
from rewardkit.kinds import kind_named
from rewardkit.models.config import HH_FILES, TrainRMConfig
from rewardkit.models.trainer import RewardModelTrainer


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def records_of(cfg: TrainRMConfig) -> tuple[list, list, list[str]]:
    """What train-rm's data loading gives for `cfg` (train and validation records, and its log lines), without
    loading a model."""
    logged: list[str] = []
    trainer = RewardModelTrainer.__new__(RewardModelTrainer)
    trainer.cfg, trainer.kind = cfg, kind_named(cfg.feedback)
    trainer.run = SimpleNamespace(say=logged.append)
    train, val = trainer._load_records()
    return train, val, logged


def as_keys(records) -> list[tuple]:
    return [(r.prompt, r.chosen, r.rejected, str(r.source)) for r in records]


def test_default_split_of_hh_is_unchanged(shared_data):
    data = [str(shared_data / Path(path).relative_to("../shared/data")) for path in HH_FILES]
    train, val, logged = records_of(TrainRMConfig(data=data))
    before_train, before_val = train_val_split(load_pairs(data), 0.1, seed=0)  # what train-rm did before the options
    assert as_keys(train) == as_keys(before_train) and as_keys(val) == as_keys(before_val)
    assert (len(train), len(val)) == (4198, 466) and logged == []


def test_options_fill_the_config_from_flags_and_yaml(tmp_path):
    flags = parse_config(TrainRMConfig, ["--data", "a.jsonl", "b.jsonl", "--mixture", "1", "n=300",
                                         "--balance-length", "--max-pairs-per-prompt", "5"])
    config = tmp_path / "train.yaml"
    config.write_text("data: [a.jsonl, b.jsonl]\nmixture: [1, n=300]\nbalance_length: true\n"
                      "max-pairs-per-prompt: 5\n")
    from_yaml = parse_config(TrainRMConfig, ["--config", str(config)])
    for cfg in (flags, from_yaml):
        assert (cfg.mixture, cfg.balance_length, cfg.max_pairs_per_prompt) == (["1", "n=300"], True, 5)


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["train-rm", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--mixture WEIGHT", "--balance-length", "--max-pairs-per-prompt", "--val-fraction"):
        assert flag in text
    assert "a count n=N" in text and "tokens of the model's tokenizer" in text


@pytest.mark.parametrize("args, message", [
    (["--mixture", "1"], "--mixture has 1 weight(s) for 2 --data source(s)"),
    (["--mixture", "1", "lots"], "'lots' is neither a weight"),
    (["--mixture", "1", "0"], "a weight must be a finite number above 0"),
    (["--max-pairs-per-prompt", "-1"], "--max-pairs-per-prompt must be at least 0"),
    (["--balance-length", "--feedback", "ratings"], "--balance-length balances pairs"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, message):
    a = write_jsonl(tmp_path / "a.jsonl", [{"prompt": f"q{i}", "chosen": "yes", "rejected": "no"} for i in range(5)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": f"r{i}", "chosen": "yes", "rejected": "no"} for i in range(5)])
    if "ratings" in args:
        a = write_jsonl(tmp_path / "a.jsonl", [{"prompt": f"q{i}", "response": "x", "score": i} for i in range(5)])
        b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": f"r{i}", "response": "y", "score": i} for i in range(5)])
    code = main(["train-rm", "--data", str(a), str(b), "--output-dir", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], err


def test_balance_counts_model_tokens_not_characters(tmp_path, tiny_bert_dir):
    # 'a a a a' is 4 tokens and 7 characters, 'elephant' 1 token and 8 characters: by tokens the chosen is longer
    # (6 such pairs), by characters shorter. 'b' against 'c c c' is shorter either way (2 pairs). By tokens: 2
    # shorter, 6 longer -> 2 + 2 kept; by characters all 8 would be "shorter" and none kept.
    rows = [{"prompt": f"long {i}", "chosen": "a a a a", "rejected": "elephant"} for i in range(6)] + \
        [{"prompt": f"short {i}", "chosen": "b", "rejected": "c c c"} for i in range(2)]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    train, val, logged = records_of(TrainRMConfig(model=str(tiny_bert_dir), data=[str(data)], val_fraction=0.0,
                                                  balance_length=True))
    assert val == []
    assert sum(r.prompt.startswith("long") for r in train) == 2
    assert sum(r.prompt.startswith("short") for r in train) == 2
    assert logged == [f"train-rm: training: {data}: balanced by length (response tokens, --balance-length): 2 pairs "
                      f"with the chosen response shorter, 6 longer, 0 equal; dropped 4 chosen-longer pairs at random "
                      f"(seed 0), kept 4"]


def test_sources_mixed_capped_and_split_by_prompt(tmp_path, tiny_bert_dir):
    # alpaca-like: 20 instructions x 12 answers (prompt repeated); hh-like: 60 distinct prompts.
    alpaca = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"prompt": f"instruction {p}", "chosen": f"answer {p}.{j} " * 3, "rejected": f"other {p}.{j}"}
        for p in range(20) for j in range(12)])
    hh = write_jsonl(tmp_path / "hh.jsonl", [{"prompt": f"question {i}", "chosen": "good", "rejected": "bad"}
                                              for i in range(60)])
    cfg = TrainRMConfig(model=str(tiny_bert_dir), data=[str(hh), str(alpaca)], mixture=["1", "0.5"],
                        max_pairs_per_prompt=4, val_fraction=0.1, seed=0)
    train, val, logged = records_of(cfg)
    assert not {r.prompt for r in train} & {r.prompt for r in val}
    before_train, before_val = train_val_split(load_pairs([str(hh), str(alpaca)]), 0.1, seed=0)
    # the cap keeps 4 of 12 answers per instruction on each side; the mixture then takes half of those
    for side, before, records in (("training", before_train, train), ("validation", before_val, val)):
        instructions = {r.prompt for r in before if r.prompt.startswith("instruction")}
        questions = [r for r in before if r.prompt.startswith("question")]
        assert sum(r.prompt.startswith("instruction") for r in records) == round(0.5 * 4 * len(instructions))
        assert as_keys(r for r in records if r.prompt.startswith("question")) == as_keys(questions)
        assert max(sum(r.prompt == p for r in records) for p in instructions) <= 4
    assert [line.split(":")[1].strip() for line in logged] == ["training", "training", "validation", "validation"]
    assert "mixture (weights of --mixture, seed 0)" in logged[1] and f"{alpaca} x0.5: " in logged[1]


def test_encoding_in_chunks_gives_the_same_ids_and_encodes_a_repeat_once(tmp_path, tiny_bert_dir, monkeypatch):
    from rewardkit.models import RewardModel, trainer as trainer_module
    from rewardkit.data import PreferencePair

    trainer = RewardModelTrainer.__new__(RewardModelTrainer)
    trainer.kind = kind_named("pairs")
    trainer.reward_model = RewardModel.from_pretrained(str(tiny_bert_dir), max_length=16)
    records = [PreferencePair(f"prompt {i % 3}", f"yes {i} " * (i % 7), f"no {i}") for i in range(11)]
    records.append(records[4])  # repeated, as --mixture 2 does
    monkeypatch.setattr(trainer_module, "ENCODE_CHUNK", 4)
    examples = trainer._encode(records)
    whole = trainer.reward_model.encode_many([r.prompt for r in records for _ in range(2)],
                                             [t for r in records for t in (r.chosen, r.rejected)])
    assert [t.input_ids for e in examples for t in e.encoded] == [t.input_ids for t in whole]
    assert [t.token_type_ids for e in examples for t in e.encoded] == [t.token_type_ids for t in whole]
    assert examples[-1] is examples[4]
