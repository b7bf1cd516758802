"""Pairwise shapes (HH dialogues, TRL conversations, LLMBar, explicit), column mapping and the skip/identical/empty
policies with what they print and report."""

from __future__ import annotations

import json
import re

import pytest

from rewardkit.data import PreferencePair, load_pairs
from rewardkit.data.fields import BadRecord
from rewardkit.data.pairs import split_conversations, split_dialogues
from rewardkit.errors import RewardkitError


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


# -- HH dialogues -----------------------------------------------------------------------------------------------------
def test_hh_split_at_the_last_shared_assistant_turn():
    history = "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke\n\nAssistant:"
    # Both replies start with "Why", so the common prefix runs past the marker; the prompt still ends at the marker.
    chosen = history + " Why did the chicken cross the road?"
    rejected = history + " Why not.\n\nHuman: rude\n\nAssistant: Sorry."
    assert split_dialogues(chosen, rejected) == (
        history, "Why did the chicken cross the road?", "Why not.\n\nHuman: rude\n\nAssistant: Sorry.")


def test_hh_split_skips_markers_only_one_side_has():
    history = "\n\nHuman: Q\n\nAssistant:"
    chosen = history + " A\n\nHuman: more?\n\nAssistant: B"
    rejected = history + " A\n\nHuman: more?\n\nAssistant: C"
    prompt, good, bad = split_dialogues(chosen, rejected)
    assert prompt == history + " A\n\nHuman: more?\n\nAssistant:" and (good, bad) == ("B", "C")
    # Only one leading space is removed; other whitespace is part of the reply.
    assert split_dialogues(history + "  two", history + "\none")[1:] == (" two", "\none")


def test_hh_without_shared_turn_is_a_bad_record(make_file):
    different_first_turns = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: x\n\nAssistant: y"}
    path = make_file("hh.jsonl", [different_first_turns, {"chosen": "no turns", "rejected": "at all"}])
    with pytest.raises(RewardkitError, match=re.escape(f"{path}:1: chosen and rejected share no")):
        load_pairs(path)


def test_hh_file_loads_text_prompts_and_subset_from_file_name(make_file):
    history = "\n\nHuman: Hi\n\nAssistant:"
    path = make_file("helpful-base.test.jsonl.gz", [{"chosen": history + " Hello", "rejected": history + " Go away"}])
    [pair] = load_pairs(path)
    assert pair == PreferencePair(history, "Hello", "Go away", None, "helpful-base")


# -- TRL conversational -------------------------------------------------------------------------------------------
def test_conversational_implicit_prompt_is_the_shared_prefix(make_file):
    row = {"chosen": [user("Hi"), assistant("Hello"), user("Joke?"), assistant("Knock knock")],
           "rejected": [user("Hi"), assistant("Hello"), user("Joke?"), assistant("No")]}
    [pair] = load_pairs(make_file("conv.jsonl", [row]))
    assert pair.prompt == [user("Hi"), assistant("Hello"), user("Joke?")]
    assert (pair.chosen, pair.rejected) == ("Knock knock", "No")


def test_conversational_explicit_prompt_with_replies_or_repeated_prompt(make_file):
    trl = {"prompt": [user("Hi")], "chosen": [assistant("Hello")], "rejected": [assistant("Bye")]}
    # UltraFeedback-style: a text prompt and whole conversations that repeat it.
    ultra = {"prompt": "Hi", "chosen": [user("Hi"), assistant("Hello")], "rejected": [user("Hi"), assistant("Bye")]}
    extra = {"prompt": "Hi", "chosen": [user("Context"), assistant("Hello")],
             "rejected": [user("Context"), assistant("Bye")]}
    pairs = load_pairs(make_file("conv.jsonl", [trl, ultra, extra]))
    assert [p.prompt for p in pairs] == [[user("Hi")], [user("Hi")], [user("Hi"), user("Context")]]
    assert {(p.chosen, p.rejected) for p in pairs} == {("Hello", "Bye")}
    mixed = {"prompt": [user("Hi")], "chosen": "Hello", "rejected": "Bye"}
    assert load_pairs(make_file("mixed.jsonl", [mixed]))[0].prompt == [user("Hi")]


@pytest.mark.parametrize("chosen,rejected,reason", [
    ([user("a"), assistant("b")], [user("x"), assistant("y")], "share no messages"),
    ([user("a"), user("b")], [user("a"), assistant("c")], "must end with an assistant message"),
    ([user("a"), assistant("b")], [user("a"), assistant("b"), user("c"), assistant("d")], "has 3 messages after"),
    ([], [user("a"), assistant("b")], "empty conversation"),
])
def test_conversational_errors(chosen, rejected, reason):
    with pytest.raises(BadRecord, match=reason):
        split_conversations(None, chosen, rejected)


@pytest.mark.parametrize("row,reason", [
    ({"chosen": [user("a"), assistant("b")], "rejected": "text"},
     "'chosen' and 'rejected' must both be texts or both be conversations"),
    ({"chosen": [user("a"), {"role": "assistant"}], "rejected": [user("a"), assistant("c")]},
     "'chosen' message 2 lacks content"),
    ({"chosen": [user("a"), assistant(["parts"])], "rejected": [user("a"), assistant("c")]},
     "'chosen' message 2 content must be text, got a list"),
    ({"chosen": [user("a"), "hi"], "rejected": [user("a"), assistant("c")]}, "'chosen' message 2 must be an object"),
])
def test_conversational_bad_records_name_their_line(make_file, row, reason):
    good = {"chosen": [user("a"), assistant("b")], "rejected": [user("a"), assistant("c")]}
    path = make_file("conv.jsonl", [good, row])
    with pytest.raises(RewardkitError, match=re.escape(f"{path}:2: {reason}")):
        load_pairs(path)


# -- LLMBar -----------------------------------------------------------------------------------------------------------
def test_llmbar_folder_label_picks_the_better_output(make_file, tmp_path):
    rows = [{"input": "Say hi", "output_1": "hi", "output_2": "bye", "label": 1},
            {"input": "Say bye", "output_1": "hi", "output_2": "bye", "label": 2}]
    make_file("llmbar/Natural/dataset.json", json.dumps(rows, indent=2))
    make_file("llmbar/Adversarial/dataset.json", json.dumps(rows[:1]))
    pairs = load_pairs(tmp_path / "llmbar")
    assert [(p.prompt, p.chosen, p.rejected, p.subset) for p in pairs] == [
        ("Say hi", "hi", "bye", "Adversarial"), ("Say hi", "hi", "bye", "Natural"), ("Say bye", "bye", "hi", "Natural")]
    assert load_pairs(tmp_path / "llmbar" / "Natural")[0].subset == "Natural"


@pytest.mark.parametrize("label", [3, 0, "first", None, True])
def test_llmbar_bad_label(make_file, label):
    rows = [{"input": "q", "output_1": "a", "output_2": "b", "label": 1},
            {"input": "q", "output_1": "a", "output_2": "b", "label": label}]
    path = make_file("x/dataset.json", json.dumps(rows, indent=1))
    with pytest.raises(RewardkitError, match=re.escape(f"{path}:8: 'label' must be 1 or 2")):
        load_pairs(path)


# -- column mapping -------------------------------------------------------------------------------------------------
def test_column_mapping(make_file):
    path = make_file("qa.csv", "question,good,bad,weight,topic\nq,yes,no,2,math\n")
    [pair] = load_pairs(path, columns={"prompt": "question", "chosen": "good", "rejected": "bad", "margin": "weight",
                                       "subset": "topic"})
    assert pair == PreferencePair("q", "yes", "no", 2.0, "math")


def test_column_mapping_errors_name_the_users_column(make_file):
    path = make_file("qa.jsonl", [{"question": "q", "good": "yes", "bad": "no"}, {"question": "q", "good": "yes"}])
    with pytest.raises(RewardkitError, match=re.escape(f"{path}:2: missing field 'bad' (rejected)")):
        load_pairs(path, columns={"prompt": "question", "chosen": "good", "rejected": "bad"})
    # A mapped prompt column that is absent is reported as missing (not taken for HH dialogues without a prompt).
    with pytest.raises(RewardkitError, match=re.escape(f"{path}:1: missing field 'query' (prompt)")):
        load_pairs(path, columns={"prompt": "query", "chosen": "good", "rejected": "bad"})
    with pytest.raises(RewardkitError, match="unknown field 'answer' in the column mapping"):
        load_pairs(path, columns={"answer": "good"})
    with pytest.raises(RewardkitError, match="only 'prompt' may be mapped to None"):
        load_pairs(path, columns={"chosen": None})


# -- policies, what they print and report --------------------------------------------------------------------------
def mixed_file(make_file):
    good = {"prompt": "p", "chosen": "c", "rejected": "r"}
    lines = [json.dumps(good), "{not json", json.dumps({"prompt": "p", "chosen": "c"}), json.dumps(good),
             json.dumps({**good, "rejected": "c"}), json.dumps({**good, "margin": "x"}),
             json.dumps({**good, "chosen": " "}),
             json.dumps({**good, "score": float("nan")})]
    return make_file("mixed.jsonl", "\n".join(lines) + "\n")


def test_skip_mode_reports_counts_lines_and_reasons(make_file, capsys):
    path = mixed_file(make_file)
    with pytest.raises(RewardkitError, match=re.escape(f"{path}:2: invalid JSON")):
        load_pairs(path)
    pairs = load_pairs(path, on_bad_record="skip")
    assert [p.source.line for p in pairs] == [1, 4, 7, 8]
    report = pairs.report
    assert [(p.location.line, p.reason) for p in report.bad] == [
        (2, "invalid JSON: Expecting property name enclosed in double quotes (column 2)"),
        (3, "missing field 'rejected'"), (6, "'margin' must be a number, got 'x'")]
    assert [p.location.line for p in report.identical] == [5]
    assert [(p.location.line, p.reason) for p in report.empty_response] == [(7, "empty response in 'chosen'")]
    assert [p.location.line for p in report.skipped] == [2, 3, 5, 6]
    err = capsys.readouterr().err
    assert f"skipped 3 bad record(s) (on_bad_record='skip'): {path}:2: invalid JSON" in err
    assert f"{path}:3: missing field 'rejected'; {path}:6: 'margin' must be a number" in err
    assert f"skipped 1 record(s) whose responses are identical (on_identical='skip'): {path}:5" in err
    assert f"kept 1 record(s) with an empty response (on_empty_response='keep'): {path}:7" in err


def test_identical_and_empty_policies(make_file):
    path = mixed_file(make_file)
    with pytest.raises(RewardkitError, match=re.escape(f"{path}:5: chosen is identical to rejected")):
        load_pairs(path, on_bad_record="skip", on_identical="fail")
    with pytest.raises(RewardkitError, match=re.escape(f"{path}:7: empty response in 'chosen'")):
        load_pairs(path, on_bad_record="skip", on_empty_response="fail")
    pairs = load_pairs(path, on_bad_record="skip", on_empty_response="skip")
    assert [p.source.line for p in pairs] == [1, 4, 8]
    assert [p.location.line for p in pairs.report.skipped] == [2, 3, 5, 6, 7]
    kept = load_pairs(path, on_bad_record="skip", on_identical="keep")  # what `score` reads: every record scored
    assert [p.source.line for p in kept] == [1, 4, 5, 7, 8] and [p.location.line for p in kept.report.identical] == [5]
    assert [p.location.line for p in kept.report.skipped] == [2, 3, 6]
    assert any("kept 1 record(s) whose responses are identical (on_identical='keep')" in line
               for line in kept.report.summary_lines())


def test_printed_listing_is_capped_but_the_report_keeps_all(make_file, capsys):
    rows = [{"prompt": "p", "chosen": "same", "rejected": "same"}] * 25 + [{"prompt": "p", "chosen": "a",
                                                                             "rejected": "b"}]
    pairs = load_pairs(make_file("dups.jsonl", rows))
    assert len(pairs) == 1 and len(pairs.report.identical) == 25
    assert "skipped 25 record(s)" in capsys.readouterr().err.replace("\n", " ") and "and 15 more" in \
        "; ".join(pairs.report.summary_lines())


def test_all_records_skipped_is_an_error(make_file):
    path = make_file("dups.jsonl", [{"prompt": "p", "chosen": "same", "rejected": "same"}])
    with pytest.raises(RewardkitError, match="no records loaded from .*all 1 record"):
        load_pairs(path)


def test_bad_policy_value():
    with pytest.raises(RewardkitError, match="on_bad_record must be one of 'fail', 'skip', got 'ignore'"):
        load_pairs("whatever.jsonl", on_bad_record="ignore")
