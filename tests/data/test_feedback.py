"""Rankings (incl. OASST trees), ratings, binary feedback, and the converters to pairs."""

from __future__ import annotations

import re

import pytest

from rewardkit.data import (BinaryFeedback, PreferencePair, RankedGroup, RatedResponse, load_binary, load_pairs,
                            load_rankings, load_ratings, load_records, rankings_to_pairs, ratings_to_pairs)
from rewardkit.data.types import Location
from rewardkit.errors import RewardkitError


def fails_at(path, line, reason):
    return pytest.raises(RewardkitError, match=re.escape(f"{path}:{line}: ") + ".*" + re.escape(reason))


# -- rankings ---------------------------------------------------------------------------------------------------------
def test_rankings_best_first_and_explicit_ranks(make_file):
    path = make_file("ranks.jsonl", [{"prompt": "p", "responses": ["best", "mid", "worst"]},
                                     {"prompt": "q", "responses": ["b", "c", "a"], "ranks": [2, 3, 1]},
                                     {"prompt": "r", "responses": ["x", "y"], "ranks": [0.5, -1]}])
    groups = load_rankings(path)
    assert [g.responses for g in groups] == [["best", "mid", "worst"], ["a", "b", "c"], ["y", "x"]]
    assert [g.source.line for g in groups] == [1, 2, 3] and groups[0].subset == "ranks"


@pytest.mark.parametrize("row,reason", [
    ({"prompt": "p", "responses": ["a", "b"], "ranks": [1, 1]}, "'ranks' has a tie: responses 1 and 2 share rank 1"),
    ({"prompt": "p", "responses": ["a", "b"], "ranks": [1, "first"]}, "'ranks' item 2 must be a number, got 'first'"),
    ({"prompt": "p", "responses": ["a", "b"], "ranks": [1, None]}, "'ranks' item 2 must be a number, got null"),
    ({"prompt": "p", "responses": ["a", "b"], "ranks": [1, True]}, "'ranks' item 2 must be a number, got a boolean"),
    ({"prompt": "p", "responses": ["a", "b"], "ranks": [1]}, "'ranks' has 1 ranks for 2 responses"),
    ({"prompt": "p", "responses": ["a"]}, "a ranking needs at least 2 responses, got 1"),
    ({"prompt": "p", "responses": "a"}, "'responses' must be a list, got text"),
    ({"prompt": "p", "responses": ["a", 3]}, "'responses' item 2 must be text, got a number"),
])
def test_ranking_bad_records(make_file, row, reason):
    path = make_file("ranks.jsonl", [{"prompt": "p", "responses": ["a", "b"]}, row])
    with fails_at(path, 2, reason):
        load_rankings(path)


def test_ranking_with_a_repeated_response_follows_on_identical(make_file):
    path = make_file("ranks.jsonl", [{"prompt": "p", "responses": ["a", "b"]},
                                     {"prompt": "p", "responses": ["a", "a"]}])
    assert len(load_rankings(path)) == 1
    with fails_at(path, 2, "the ranking holds the same response twice"):
        load_rankings(path, on_identical="fail")


# -- OASST trees ------------------------------------------------------------------------------------------------------
def message(text, role, rank=None, replies=(), **flags):
    return {"message_id": text, "text": text, "role": role, "rank": rank, "replies": list(replies),
            "synthetic": False, "deleted": False, "review_result": True, **flags}


def oasst_tree():
    follow_up = message("thanks, and b?", "prompter", rank=0, replies=[
        message("b is 2", "assistant", rank=1), message("b is two", "assistant", rank=0),
        message("bot b", "assistant", rank=2, synthetic=True, replies=[message("under bot", "prompter")])])
    return {"message_tree_id": "t1", "prompt": message("what is a?", "prompter", replies=[
        message("a is 1", "assistant", rank=0, replies=[follow_up, message("ok", "prompter", rank=1)]),
        message("a is one", "assistant", rank=2),
        message("removed", "assistant", rank=1, deleted=True),
        message("unranked", "assistant"),
    ])}


def test_oasst_tree_gives_ranked_groups_with_the_conversation_path(make_file, capsys):
    synthetic_tree = {"prompt": message("bot prompt", "prompter", synthetic=True, replies=[
        message("bot reply 1", "assistant", rank=0), message("bot reply 2", "assistant", rank=1)])}
    path = make_file("tree.jsonl", [oasst_tree(), synthetic_tree])
    groups = load_rankings(path)
    assert groups == [
        RankedGroup([{"role": "user", "content": "what is a?"}], ["a is 1", "a is one"], "tree"),
        RankedGroup([{"role": "user", "content": "what is a?"}, {"role": "assistant", "content": "a is 1"},
                     {"role": "user", "content": "thanks, and b?"}], ["b is two", "b is 2"], "tree"),
    ]
    texts = {text for g in groups for text in g.responses} | {m["content"] for g in groups for m in g.prompt}
    assert not texts & {"bot b", "under bot", "bot prompt", "bot reply 1", "removed"}
    note = capsys.readouterr().err
    # 4 groups in the file: root replies, the follow-up's replies, the user replies ("thanks", "ok"), the bot tree.
    assert "2 OASST trees hold 4 ranked groups; 2 kept after dropping 5 synthetic and 1 deleted" in note
    assert "and 1 ranked group(s) of user replies" in note
    # The message export (root message per line) reads the same.
    assert load_rankings(make_file("tree.jsonl", [oasst_tree()["prompt"]])) == groups


def test_oasst_through_load_pairs_gives_implied_pairs(make_file):
    pairs = load_pairs(make_file("tree.jsonl", [oasst_tree()]))
    assert [(p.chosen, p.rejected) for p in pairs] == [("a is 1", "a is one"), ("b is two", "b is 2")]


def test_oasst_tie_and_bad_role(make_file):
    tied = {"prompt": message("q", "prompter", replies=[message("x", "assistant", rank=0),
                                                          message("y", "assistant", rank=0)])}
    path = make_file("tree.jsonl", [oasst_tree(), tied])
    with fails_at(path, 2, "'rank' of the replies to message q has a tie"):
        load_rankings(path)
    odd = {"prompt": message("q", "moderator")}
    path = make_file("tree.jsonl", [oasst_tree(), odd])
    with fails_at(path, 2, "has role 'moderator'"):
        load_rankings(path)


# -- ratings ----------------------------------------------------------------------------------------------------------
def test_ratings_from_csv_and_jsonl(make_file):
    csv_ratings = load_ratings(make_file("r.csv", "prompt,response,score\np,good,4.5\np,bad,1\n"))
    assert csv_ratings == [RatedResponse("p", "good", 4.5, "r"), RatedResponse("p", "bad", 1.0, "r")]
    # TRL-style "completion" column is read as the response.
    jsonl = load_ratings(make_file("r.jsonl", [{"prompt": "p", "completion": "c", "score": -2}]))
    assert jsonl == [RatedResponse("p", "c", -2.0, "r")]


@pytest.mark.parametrize("score,reason", [("NaN", "'score' must be a finite number"),
                                          ("inf", "'score' must be a finite number"),
                                          ("high", "'score' must be a number, got 'high'"),
                                          ("", "'score' must be a number, got ''")])
def test_rating_bad_scores(make_file, score, reason):
    path = make_file("r.csv", f"prompt,response,score\np,a,1\np,b,{score}\n")
    with fails_at(path, 3, reason):
        load_ratings(path)


def test_rating_null_score_is_missing(make_file):
    path = make_file("r.jsonl", [{"prompt": "p", "response": "a", "score": 1}, {"prompt": "p", "response": "a",
                                                                                   "score": None}])
    with fails_at(path, 2, "missing field 'score'"):
        load_ratings(path)


# -- binary -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("label,expected", [(1, 1), (0, 0), (True, 1), (False, 0), ("true", 1), ("False", 0),
                                            ("up", 1), ("down", 0), ("good", 1), ("bad", 0), ("positive", 1),
                                            ("NEGATIVE", 0), ("1", 1), (0.0, 0)])
def test_binary_labels(make_file, label, expected):
    [record] = load_binary(make_file("b.jsonl", [{"prompt": "p", "response": "r", "label": label}]))
    assert record == BinaryFeedback("p", "r", expected, "b")


@pytest.mark.parametrize("label", [2, -1, "maybe", 0.5, None])
def test_binary_bad_labels(make_file, label):
    path = make_file("b.jsonl", [{"prompt": "p", "response": "r", "label": 1},
                                 {"prompt": "p", "response": "r", "label": label}])
    with fails_at(path, 2, "'label'"):
        load_binary(path)


def test_binary_without_prompt_column(make_file):
    path = make_file("texts.csv", "label,text,is_valid\nnegative,dull film,False\npositive,\"great\nfilm\",True\n")
    records = load_binary(path, columns={"prompt": None, "response": "text"})
    assert records == [BinaryFeedback("", "dull film", 0, "texts"), BinaryFeedback("", "great\nfilm", 1, "texts")]
    assert [r.source.line for r in records] == [2, 3]


def test_load_records_auto_mixes_kinds(make_file, tmp_path):
    make_file("mix/a.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}])
    make_file("mix/b.jsonl", [{"prompt": "p", "response": "r", "score": 2}])
    make_file("mix/c.jsonl", [{"prompt": "p", "response": "r", "label": "up"}])
    records = load_records(tmp_path / "mix")
    assert [type(r).__name__ for r in records] == ["PreferencePair", "RatedResponse", "BinaryFeedback"]
    with pytest.raises(RewardkitError, match="kind must be one of"):
        load_records(tmp_path / "mix", kind="thumbs")


# -- converters -------------------------------------------------------------------------------------------------------
def test_rankings_to_pairs():
    where = Location("f", 3)
    pairs = rankings_to_pairs([RankedGroup("p", ["a", "b", "c"], "s", where)])
    assert pairs == [PreferencePair("p", "a", "b", None, "s"), PreferencePair("p", "a", "c", None, "s"),
                     PreferencePair("p", "b", "c", None, "s")]
    assert all(p.source == where for p in pairs)


def test_ratings_to_pairs_groups_by_prompt_and_averages_repeats():
    ratings = [RatedResponse("p", "a", 5, "s"), RatedResponse("q", "x", 1, "s"), RatedResponse("p", "b", 3, "s"),
               RatedResponse("p", "a", 3, "s"), RatedResponse("p", "c", 4, "t"), RatedResponse("q", "y", 1, "s")]
    # p: a averages 4, b 3, c 4 -> (a, b) and (c, b); a and c tie; q's two responses tie.
    assert ratings_to_pairs(ratings) == [PreferencePair("p", "a", "b", None, "s"),
                                         PreferencePair("p", "c", "b", None, None)]
    assert ratings_to_pairs(ratings, with_margin=True)[0].margin == 1.0
    assert ratings_to_pairs(ratings, min_gap=1.5) == []
    conversation = [{"role": "user", "content": "hi"}]
    assert len(ratings_to_pairs([RatedResponse(conversation, "a", 2), RatedResponse(list(conversation), "b", 1),
                                 RatedResponse("hi", "c", 0)])) == 1
