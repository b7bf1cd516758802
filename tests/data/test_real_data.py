"""The loaders on the real human-feedback data in ../shared/data (read in place; skipped when absent)."""

from __future__ import annotations

import collections
import gzip
import json

from rewardkit.data import load_binary, load_pairs, load_rankings, rankings_to_pairs, train_val_split


def test_hh_rlhf(shared_data, capsys):
    folder = shared_data / "hh-rlhf"
    pairs = load_pairs(folder)
    assert len(pairs) == 4664  # 2354 + 2312 rows, 2 identical pairs skipped
    assert collections.Counter(p.subset for p in pairs) == {"helpful-base": 2352, "harmless-base": 2312}
    identical = [str(p.location) for p in pairs.report.identical]
    assert identical == [f"{folder}/helpful-base.test.jsonl.gz:722", f"{folder}/helpful-base.test.jsonl.gz:2169"]
    printed = capsys.readouterr().err
    assert all(location in printed for location in identical)
    assert not pairs.report.bad and len(pairs.report.empty_response) == 8  # empty final replies, kept
    assert all(isinstance(p.prompt, str) and p.prompt.endswith("\n\nAssistant:") for p in pairs)
    assert all(p.prompt.startswith("\n\nHuman: ") for p in pairs)
    # The split is exact: prompt + " " + reply rebuilds each dialogue (HH puts one space after "Assistant:").
    with gzip.open(folder / "harmless-base.test.jsonl.gz", "rt", encoding="utf-8") as file:
        raw = [json.loads(line) for line in file]
    harmless = [p for p in pairs if p.subset == "harmless-base"]
    assert all(r["chosen"] == p.prompt + " " + p.chosen and r["rejected"] == p.prompt + " " + p.rejected
               for r, p in zip(raw, harmless))
    assert [p.source.line for p in harmless] == list(range(1, 2313))
    train, val = train_val_split(pairs, val_fraction=0.1, seed=0)
    assert len(val) in range(460, 473) and not {p.prompt for p in train} & {p.prompt for p in val}


def test_llmbar(shared_data):
    pairs = load_pairs(shared_data / "llmbar")
    assert len(pairs) == 1199  # 1200 rows; Processed_LLMEval_2 holds one pair with identical outputs
    counts = collections.Counter(p.subset for p in pairs)
    assert len(counts) == 13
    assert counts["LLMBar_Natural"] == 100 and counts["LLMBar_Adversarial_Neighbor"] == 134
    assert counts["Processed_LLMEval_2"] == 199
    assert [str(p.location) for p in pairs.report.identical] == [
        f"{shared_data / 'llmbar'}/Processed_LLMEval_2/dataset.json:344"]


def test_oasst_trees_drop_synthetic_messages(shared_data):
    path = shared_data / "oasst_sample" / "en_100_tree.jsonl"
    groups = load_rankings(path)
    # 212 ranked groups in the file; the 5 in the 5 fully synthetic trees (chip20b) go with them.
    assert len(groups) == 207
    assert sum(len(rankings_to_pairs([g])) for g in groups) == 732
    assert all(len(g.responses) >= 2 and g.prompt[-1]["role"] == "user" for g in groups)

    synthetic = set()

    def collect(message, inherited=False):
        flagged = inherited or message["synthetic"]
        if flagged:
            synthetic.add(message["text"])
        for reply in message["replies"]:
            collect(reply, flagged)

    for line in path.open():
        collect(json.loads(line)["prompt"])
    assert len(synthetic) == 22
    seen = {text for g in groups for text in g.responses} | {m["content"] for g in groups for m in g.prompt}
    assert not seen & synthetic
    assert load_rankings(shared_data / "oasst_sample" / "en_100_message.jsonl")[0].responses == groups[0].responses


def test_imdb_texts_as_binary_feedback(shared_data):
    records = load_binary(shared_data / "imdb_sample" / "texts.csv", columns={"prompt": None, "response": "text"})
    assert len(records) == 1000
    assert collections.Counter(r.label for r in records) == {0: 524, 1: 476}  # negative / positive
