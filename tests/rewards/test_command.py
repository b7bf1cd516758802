"""`rewardkit score` end to end on a tiny model: MODEL form, spec form, --dense, pairwise input, errors."""

import json

import pytest

from rewardkit.config import parse_config
from rewardkit.errors import RewardkitError
from rewardkit.models import RewardModel
from rewardkit.rewards.command import ScoreConfig, run_score
from tests.conftest import reward_tolerance

RECORDS = [
    {"prompt": "Name a pet.", "response": "A cat is a fine pet.", "reference": "A cat.", "id": "a"},
    {"prompt": [{"role": "user", "content": "Say hi"}], "response": "Hi there!\nHow are you?", "reference": "Hello!"},
]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def score(argv):
    cfg = parse_config(ScoreConfig, argv + ["--no-progress"])
    assert run_score(cfg) == 0


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_score_model_writes_one_score_per_record(tiny_bert_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    score([str(tiny_bert_dir), "--input", str(data)])  # default output: stdout
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    expected = RewardModel.from_pretrained(str(tiny_bert_dir)).score([r["prompt"] for r in RECORDS],
                                                                     [r["response"] for r in RECORDS])
    # both sides load the model at --precision auto: compared at that precision's reward tolerance
    tol = reward_tolerance(expected)
    assert [line["total"] for line in lines] == pytest.approx(expected.tolist(), abs=tol)
    assert [line["components"]["reward_model"] for line in lines] == pytest.approx(expected.tolist(), abs=tol)
    assert lines[0]["id"] == "a" and lines[1]["source"] == f"{data}:2"
    assert "responses/s" in captured.err


def test_score_spec_dense_writes_components_and_token_rewards(tiny_bert_dir, tmp_path):
    spec = tmp_path / "reward.yaml"
    spec.write_text(f"""components:
  - {{type: reward_model, path: {tiny_bert_dir}, weight: 1.0}}
  - {{type: rouge, variant: rougeL, weight: 0.5}}
  - {{type: length, target: 10, tolerance: 5, unit: chars, weight: 0.2}}
""")
    data = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    out = tmp_path / "out.jsonl"
    score(["--reward", str(spec), "--input", str(data), "--output", str(out), "--dense"])
    lines = read_jsonl(out)
    assert len(lines) == 2
    for line in lines:
        components = line["components"]
        assert set(components) == {"reward_model", "rouge", "length"}
        total = components["reward_model"] + 0.5 * components["rouge"] + 0.2 * components["length"]
        assert line["total"] == pytest.approx(total, abs=1e-5)
        assert len(line["tokens"]) == len(line["token_rewards"]) > 1
        assert sum(line["token_rewards"]) == pytest.approx(line["total"], abs=1e-4)
        assert sum(line["token_components"]["rouge"]) == pytest.approx(0.5 * components["rouge"], abs=1e-5)
    # sparse scoring of the same file gives the same totals
    sparse_out = tmp_path / "sparse.jsonl"
    score(["--reward", str(spec), "--input", str(data), "--output", str(sparse_out)])
    assert [r["total"] for r in read_jsonl(sparse_out)] == pytest.approx([r["total"] for r in lines], abs=1e-4)


def test_score_pairwise_and_hh_records(tmp_path):
    spec = tmp_path / "reward.yaml"
    spec.write_text("components: [{type: length, target: 5, unit: chars}]\n")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "q", "chosen": "short", "rejected": "much longer answer"}])
    hh = write_jsonl(tmp_path / "hh.jsonl", [
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away now"}])
    out = tmp_path / "out.jsonl"
    score(["--reward", str(spec), "--input", str(pairs), "--output", str(out)])
    (first,) = read_jsonl(out)
    assert first["chosen"]["total"] == 0.0 and first["rejected"]["total"] == pytest.approx(-13 / 5)
    assert first["margin"] == pytest.approx(13 / 5)
    score(["--reward", str(spec), "--input", str(hh), "--output", str(out)])
    (second,) = read_jsonl(out)
    assert second["chosen"]["total"] == 0.0  # "hello": the HH prompt was split off
    assert second["rejected"]["total"] == pytest.approx(-(len("go away now") - 5) / 5)


@pytest.mark.parametrize("record, message", [
    ({"prompt": "q"}, "in.jsonl:2: field 'response' must be non-empty text, got missing"),
    ({"prompt": "q", "response": ""}, "in.jsonl:2: field 'response' must be non-empty text"),
    ({"prompt": "q", "response": "a", "finished": "maybe"}, "in.jsonl:2: field 'finished' must be true or false"),
    ({"prompt": "q", "response": "a", "finished": 1}, "in.jsonl:2: field 'finished' must be true or false"),
])
def test_bad_records_name_file_and_line(tmp_path, record, message):
    spec = tmp_path / "reward.yaml"
    spec.write_text("components: [{type: length, target: 5}]\n")
    data = write_jsonl(tmp_path / "in.jsonl", [RECORDS[0], record])
    with pytest.raises(RewardkitError, match=message):
        score(["--reward", str(spec), "--input", str(data)])


def test_records_of_no_known_shape_fail_with_the_pair_loaders_message(tmp_path):
    spec = tmp_path / "reward.yaml"
    spec.write_text("components: [{type: length, target: 5}]\n")
    data = write_jsonl(tmp_path / "in.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(RewardkitError, match="in.jsonl"):
        score(["--reward", str(spec), "--input", str(data)])


def test_model_or_spec_exactly_one(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    with pytest.raises(RewardkitError, match="exactly one"):
        score(["--input", str(data)])


def test_dense_without_a_tokenizer_source(tmp_path):
    spec = tmp_path / "reward.yaml"
    spec.write_text("components: [{type: length, target: 5}]\n")
    data = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    with pytest.raises(RewardkitError, match="--tokenizer"):
        score(["--reward", str(spec), "--input", str(data), "--dense"])
    out = tmp_path / "out.jsonl"
    score(["--reward", str(spec), "--input", str(data), "--dense", "--tokenizer", "minilm-l6", "--output", str(out)])
    assert all(sum(r["token_rewards"]) == pytest.approx(r["total"]) for r in read_jsonl(out))


def test_a_missing_reference_names_its_record_before_anything_is_written(tmp_path):
    spec = tmp_path / "reward.yaml"
    spec.write_text("components: [{type: rouge}]\n")
    records = [{"prompt": "q", "response": f"answer {i}", "reference": "answer"} for i in range(3)]
    data = write_jsonl(tmp_path / "in.jsonl", [*records, {"prompt": "q", "response": "answer 3"}])
    out = tmp_path / "out.jsonl"
    out.write_text("kept\n")
    with pytest.raises(RewardkitError, match=r"in.jsonl:4: rouge needs a reference, and this record has none"):
        score(["--reward", str(spec), "--input", str(data), "--output", str(out), "--batch-size", "2"])
    assert out.read_text() == "kept\n" and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    csv = tmp_path / "in.csv"
    csv.write_text("prompt,response,reference\nq,answer,answer\nq,answer,\n")  # an empty cell is no reference
    with pytest.raises(RewardkitError, match=r"in.csv:3: rouge needs a reference"):
        score(["--reward", str(spec), "--input", str(csv)])
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    with pytest.raises(RewardkitError, match=r"pairs.jsonl:1: rouge needs a reference, which pairwise records"):
        score(["--reward", str(spec), "--input", str(pairs)])


def test_an_error_mid_scoring_leaves_no_half_written_output(tmp_path, monkeypatch):
    import rewardkit.rewards.command as command

    spec = tmp_path / "reward.yaml"
    spec.write_text("components: [{type: length, target: 5}]\n")
    data = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "response": f"answer {i}"} for i in range(4)])
    real, calls = command.score_batch, []

    def second_batch_fails(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RewardkitError("a remote reward went away")
        return real(*args)

    monkeypatch.setattr(command, "score_batch", second_batch_fails)
    out = tmp_path / "out.jsonl"
    with pytest.raises(RewardkitError, match="went away"):
        score(["--reward", str(spec), "--input", str(data), "--output", str(out), "--batch-size", "2"])
    assert sorted(tmp_path.iterdir()) == sorted([spec, data])  # neither out.jsonl nor its temporary file


def test_finished_flags_on_every_record_or_none_and_read_from_csv_text(tmp_path):
    spec = tmp_path / "reward.yaml"
    spec.write_text('components: [{type: no_eos, eos_text: "</s>"}]\n')
    mixed = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "response": "cut", "finished": False},
                                                {"prompt": "q", "response": "also cut"}])
    with pytest.raises(RewardkitError, match=r"in.jsonl:2: field 'finished' is missing, but .*in.jsonl:1 has it"):
        score(["--reward", str(spec), "--input", str(mixed)])
    csv = tmp_path / "in.csv"
    csv.write_text("prompt,response,finished\nq,cut off,false\nq,done,true\n")
    out = tmp_path / "out.jsonl"
    score(["--reward", str(spec), "--input", str(csv), "--output", str(out)])
    assert [r["total"] for r in read_jsonl(out)] == [-1.0, 0.0]


def test_pairwise_records_are_all_scored_even_with_identical_responses(tmp_path):
    spec = tmp_path / "reward.yaml"
    spec.write_text("components: [{type: length, target: 5, unit: chars}]\n")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "q", "chosen": "same", "rejected": "same"},
                                                   {"prompt": "q", "chosen": "short", "rejected": "longer one"}])
    out = tmp_path / "out.jsonl"
    score(["--reward", str(spec), "--input", str(pairs), "--output", str(out)])
    lines = read_jsonl(out)
    assert [line["source"] for line in lines] == [f"{pairs}:1", f"{pairs}:2"] and lines[0]["margin"] == 0.0


def test_dense_scoring_of_a_response_without_tokens_names_it(tmp_path):
    spec = tmp_path / "reward.yaml"
    spec.write_text("components: [{type: length, target: 5}]\n")
    data = write_jsonl(tmp_path / "in.jsonl", [RECORDS[0], {"prompt": "q", "response": "\u200b"}])
    with pytest.raises(RewardkitError, match=r"in.jsonl:2: a response has no tokens"):
        score(["--reward", str(spec), "--input", str(data), "--dense", "--tokenizer", "minilm-l6"])
