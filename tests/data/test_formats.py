"""File formats and every validation error, each with its exact file:line."""

from __future__ import annotations

import json
import re

import pytest

from rewardkit.data import PreferencePair, load_pairs, read_rows
from rewardkit.errors import RewardkitError

ROWS = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"},
    {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Rome", "margin": 2.5},
]
GOOD = json.dumps(ROWS[0])
# datasets takes its columns from the first row; a null margin means no margin.
HF_ROWS = [{**row, "margin": row.get("margin")} for row in ROWS]
EXPECTED = [PreferencePair("What is 2+2?", "4", "5"), PreferencePair("Capital of France?", "Paris", "Rome", 2.5)]


def fails_at(path, line: int, reason: str):
    """pytest.raises for a RewardkitError naming path:line and containing `reason`."""
    return pytest.raises(RewardkitError, match=re.escape(f"{path}:{line}: ") + ".*" + re.escape(reason))


def strip_subset(pairs):
    return [PreferencePair(p.prompt, p.chosen, p.rejected, p.margin) for p in pairs]


# -- formats ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pairs.jsonl", "pairs.jsonl.gz", "pairs.ndjson"])
def test_jsonl(make_file, name):
    pairs = load_pairs(make_file(name, ROWS))
    assert strip_subset(pairs) == EXPECTED
    assert [p.source.line for p in pairs] == [1, 2]
    assert {p.subset for p in pairs} == {"pairs"}


@pytest.mark.parametrize("name", ["pairs.json", "pairs.json.gz"])
def test_json_array_locations_are_element_start_lines(make_file, name):
    path = make_file(name, json.dumps(ROWS, indent=2))
    pairs = load_pairs(path)
    assert strip_subset(pairs) == EXPECTED
    assert [p.source.line for p in pairs] == [2, 7]


def test_json_object_holding_the_records(make_file):
    text = '{"version": "1",\n "data": [\n  {"prompt": "a", "chosen": "b", "rejected": "c"},\n' \
           '  {"prompt": "d", "chosen": "e", "rejected": "f"}\n]}\n'
    pairs = load_pairs(make_file("wrapped.json", text))
    assert [(p.prompt, p.source.line) for p in pairs] == [("a", 3), ("d", 4)]


def test_json_single_record_and_json_lines_under_json_name(make_file):
    assert strip_subset(load_pairs(make_file("one.json", json.dumps(ROWS[0])))) == EXPECTED[:1]
    pairs = load_pairs(make_file("lines.json", "\n" + "".join(json.dumps(r) + "\n" for r in ROWS)))
    assert strip_subset(pairs) == EXPECTED and [p.source.line for p in pairs] == [2, 3]


@pytest.mark.parametrize("name,sep", [("pairs.csv", ","), ("pairs.csv.gz", ","), ("pairs.tsv", "\t")])
def test_csv_and_tsv(make_file, name, sep):
    text = sep.join(["prompt", "chosen", "rejected", "margin"]) + "\n" + \
        sep.join(["What is 2+2?", "4", "5", ""]) + "\n" + sep.join(["Capital of France?", "Paris", "Rome", "2.5"])
    pairs = load_pairs(make_file(name, text))
    assert strip_subset(pairs) == EXPECTED
    assert [p.source.line for p in pairs] == [2, 3]


def test_csv_multiline_quoted_field_keeps_physical_lines(make_file):
    text = 'prompt,chosen,rejected\n"line one\nline two\nline three",yes,no\n\nsecond,a,b\n'
    pairs = load_pairs(make_file("multi.csv", text))
    assert pairs[0].prompt == "line one\nline two\nline three"
    assert [p.source.line for p in pairs] == [2, 6]


def test_folder_is_read_recursively_in_sorted_order(make_file, tmp_path):
    make_file("data/b.jsonl", ROWS[1:])
    make_file("data/sub/a.csv", "prompt,chosen,rejected\nx,y,z\n")
    make_file("data/a.jsonl", ROWS[:1])
    make_file("data/README.md", "not data")
    pairs = load_pairs(tmp_path / "data")
    assert [p.prompt for p in pairs] == ["What is 2+2?", "Capital of France?", "x"]
    assert [p.subset for p in pairs] == ["a", "b", "a"]


def test_list_of_paths(make_file):
    first, second = make_file("one.jsonl", ROWS[:1]), make_file("two.jsonl", ROWS[1:])
    assert strip_subset(load_pairs([first, str(second)])) == EXPECTED


def test_subset_field_wins_over_file_name(make_file):
    pairs = load_pairs(make_file("x.jsonl", [{**ROWS[0], "subset": "math"}, ROWS[1]]))
    assert [p.subset for p in pairs] == ["math", "x"]


def test_hf_dataset_object_dict_and_saved_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_list(HF_ROWS)
    pairs = load_pairs(data)
    assert strip_subset(pairs) == EXPECTED and pairs[1].source.line == 2
    both = load_pairs(datasets.DatasetDict({"train": data, "test": data.select([0])}))
    assert len(both) == 3 and both[2].source.file == "<dataset>[test]"
    data.save_to_disk(str(tmp_path / "saved"))
    saved = load_pairs(tmp_path / "saved")
    assert strip_subset(saved) == EXPECTED and saved[0].subset == "saved"


def test_hf_hub_spec_calls_load_dataset(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name, split=None):
        calls.append((name, split))
        return datasets.Dataset.from_list(HF_ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    pairs = load_pairs("hf:someone/prefs:test")
    assert calls == [("someone/prefs", "test")]
    assert strip_subset(pairs) == EXPECTED and str(pairs[0].source) == "hf:someone/prefs:test:1"

    def offline(name, split=None):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RewardkitError, match="cannot load hf:x: no network"):
        load_pairs("hf:x")


def test_read_rows_gives_raw_rows_with_locations(make_file):
    path = make_file("rows.csv", "prompt,response\nhi,there\n")
    assert [(loc.line, row) for loc, row in read_rows(path)] == [(2, {"prompt": "hi", "response": "there"})]


# -- file-level errors: one line ------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(RewardkitError, match="^file not found: .*nope.jsonl$"):
        load_pairs(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("name,content", [("e.jsonl", ""), ("e.jsonl", "\n  \n"), ("e.json", "[]"),
                                          ("e.csv", "prompt,chosen,rejected\n"), ("e.jsonl.gz", ""),
                                          ("e.csv", "")])
def test_empty_file(make_file, name, content):
    with pytest.raises(RewardkitError, match="empty|no records") as error:
        load_pairs(make_file(name, content))
    assert "\n" not in str(error.value)


def test_unknown_format_and_empty_folder(make_file, tmp_path):
    with pytest.raises(RewardkitError, match="unknown data format: .*notes.txt"):
        load_pairs(make_file("notes.txt", "hello"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RewardkitError, match="no feedback files in folder"):
        load_pairs(tmp_path / "empty")


def test_not_gzip_although_named_gz(tmp_path):
    path = tmp_path / "plain.jsonl.gz"
    path.write_text(GOOD)
    with pytest.raises(RewardkitError, match="named .gz but is not gzip data"):
        load_pairs(path)


def test_unknown_columns_name_the_expected_shapes(make_file):
    path = make_file("odd.jsonl", [{"question": "q", "answer": "a"}])
    with fails_at(path, 1, "cannot tell what feedback this is from its columns (answer, question)"):
        load_pairs(path)


def test_wrong_kind_points_to_the_right_loader(make_file):
    path = make_file("ratings.jsonl", [{"prompt": "p", "response": "r", "score": 3}])
    with fails_at(path, 1, "holds ratings (prompt/response/score), not pairs; load it as ratings (train-rm "
                           "--feedback ratings, or load_ratings)"):
        load_pairs(path)


# -- record-level errors with their line numbers ----------------------------------------------------------------------


@pytest.mark.parametrize("bad_line,reason", [
    ('{"prompt": "p", "chosen": "c"', "invalid JSON"),
    ('["a list"]', "expected a JSON object, got a list"),
    ('{"prompt": "p", "chosen": "c"}', "missing field 'rejected'"),
    ('{"prompt": "p", "chosen": null, "rejected": "r"}', "missing field 'chosen'"),
    ('{"prompt": "  \\n ", "chosen": "c", "rejected": "r"}', "empty text in 'prompt'"),
    ('{"prompt": "p", "chosen": 3, "rejected": "r"}', "'chosen' must be text, got a number"),
    ('{"prompt": 7, "chosen": "c", "rejected": "r"}', "'prompt' must be text, got a number"),
    ('{"prompt": "p", "chosen": "c", "rejected": "r", "margin": "big"}', "'margin' must be a number, got 'big'"),
    ('{"prompt": "p", "chosen": "c", "rejected": "r", "margin": NaN}', "'margin' must be a finite number"),
    ('{"prompt": "p", "chosen": "c", "rejected": "r", "margin": Infinity}', "'margin' must be a finite number"),
    ('{"prompt": "p", "chosen": "c", "rejected": "r", "margin": true}', "'margin' must be a number, got a boolean"),
    pytest.param('{"prompt": "p", "chosen": "c", "rejected": "r", "margin": 1' + "0" * 400 + '}',
                 "'margin' must be a finite number, got an integer too large for a float", id="integer-over-float"),
    pytest.param('{"prompt": "p", "chosen": "c", "rejected": "r", "margin": 1' + "0" * 5000 + '}',
                 "invalid JSON: Exceeds", id="integer-over-digit-limit"),
    pytest.param('{"prompt": "p", "chosen": ' + "[" * 100000 + '}', "invalid JSON: maximum recursion depth",
                 id="nesting-past-the-stack"),
    ('{"prompt": "p", "chosen": "c", "rejected": "r", "subset": 5}', "'subset' must be text"),
    ('{"prompt": "p", "chosen": "\\udc80", "rejected": "r"}', "lone surrogate"),
])
@pytest.mark.parametrize("name", ["bad.jsonl", "bad.jsonl.gz"])
def test_jsonl_bad_record_names_its_line(make_file, name, bad_line, reason):
    path = make_file(name, f"{GOOD}\n\n{GOOD}\n{bad_line}\n{GOOD}\n")
    with fails_at(path, 4, reason):
        load_pairs(path)


@pytest.mark.parametrize("name", ["bad.jsonl", "bad.jsonl.gz"])
def test_undecodable_bytes_name_their_line(make_file, name):
    data = (GOOD + "\n" + GOOD + "\n").encode() + b'{"prompt": "caf\xe9", "chosen": "c", "rejected": "r"}\n'
    path = make_file(name, data + (GOOD + "\n").encode())
    with fails_at(path, 3, "undecodable bytes (not UTF-8): byte 0xe9 at column 16"):
        load_pairs(path)


def test_json_array_bad_element_names_the_line_it_starts_on(make_file):
    text = '[\n  {"prompt": "a", "chosen": "b", "rejected": "c"},\n  {"prompt": "a",\n   "chosen": "b"},\n' \
           '  {"prompt": "d", "chosen": "e", "rejected": "f"}\n]'
    path = make_file("bad.json", text)
    with fails_at(path, 3, "missing field 'rejected'"):
        load_pairs(path)
    assert [p.source.line for p in load_pairs(path, on_bad_record="skip")] == [2, 5]


def test_json_array_undecodable_bytes(make_file):
    data = b'[\n {"prompt": "a", "chosen": "b", "rejected": "c"},\n {"prompt": "a",\n  "chosen": "\xff",' \
           b' "rejected": "c"}\n]'
    path = make_file("bad.json.gz", data)
    with fails_at(path, 4, "undecodable bytes"):
        load_pairs(path)


def test_broken_json_array_is_fatal_even_when_skipping(make_file):
    text = '[\n  {"prompt": "a", "chosen": "b", "rejected": "c"},\n  {"prompt": "a" "chosen": "b"}\n]'
    path = make_file("broken.json", text)
    with fails_at(path, 3, "invalid JSON: Expecting ',' delimiter (the rest of the file cannot be read)"):
        load_pairs(path, on_bad_record="skip")
    for name, after in (("two_arrays.json", '[{"prompt": "d", "chosen": "e", "rejected": "f"}]'), ("junk.json", "x")):
        more = make_file(name, '[\n {"prompt": "a", "chosen": "b", "rejected": "c"}\n]\n' + after)
        with fails_at(more, 4, "invalid JSON: more data after the array"):  # never the first array alone
            load_pairs(more)
    unclosed = make_file("unclosed.json", '[\n {"prompt": "a", "chosen": "b", "rejected": "c"}\n')
    with fails_at(unclosed, 2, "invalid JSON: the file ends before the array is closed"):
        load_pairs(unclosed)


@pytest.mark.parametrize("name", ["bad.csv", "bad.csv.gz"])
def test_csv_errors_name_physical_lines(make_file, name):
    header = "prompt,chosen,rejected,margin\n"
    multiline = '"a prompt\nover\nthree lines",c,r,1\n'
    cases = [
        ("x,y\n", 5, "row has 2 fields, the header has 4"),
        ('"p",,r,1\n', 5, "'chosen'"),  # empty cell: an empty response (kept by default, fails when asked)
        ("p,c,r,NaN\n", 5, "'margin' must be a finite number"),
        ("p,c,r,lots\n", 5, "'margin' must be a number, got 'lots'"),
        (",c,r,1\n", 5, "empty text in 'prompt'"),
        ('p,"c"x,r,1\n', 5, "malformed CSV row"),
        ('p,"never closed,r,1\nmore\n', 5, "unclosed quote"),
    ]
    for bad_row, line, reason in cases:
        path = make_file(name, header + multiline + bad_row + "p2,c2,r2,\n")
        with fails_at(path, line, reason):
            load_pairs(path, on_empty_response="fail")


def test_csv_undecodable_bytes_in_a_multiline_field(make_file):
    data = b'prompt,chosen,rejected\np,c,r\n"first\nsecond \xff",c,r\np,c,r\n'
    path = make_file("bytes.csv", data)
    with fails_at(path, 4, "undecodable bytes (not UTF-8): byte 0xff"):
        load_pairs(path)


def test_csv_lists_are_json_cells(make_file):
    from rewardkit.data import load_rankings

    path = make_file("ranks.csv", 'prompt,responses,ranks\np,"[""b"", ""a""]","[2, 1]"\nq,not json,[1]\n')
    with fails_at(path, 3, "'responses' must be a JSON list in this CSV cell"):
        load_rankings(path)
    assert load_rankings(path, on_bad_record="skip")[0].responses == ["a", "b"]


def test_command_line_column_mapping():
    from rewardkit.data.fields import parse_column_mapping

    assert parse_column_mapping(["prompt=", "response=text"]) == {"prompt": None, "response": "text"}
    assert parse_column_mapping([]) is None
    with pytest.raises(RewardkitError, match="FIELD=COLUMN"):
        parse_column_mapping(["chosen="])
