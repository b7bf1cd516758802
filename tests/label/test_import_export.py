"""`rewardkit label import` / `export`, and `train-rm --data labels.sqlite` (the data loaders reading a database)."""

from __future__ import annotations

import json

import pytest

from rewardkit.cli import main
from rewardkit.config import parse_config
from rewardkit.data import load_pairs, load_rankings
from rewardkit.errors import RewardkitError
from rewardkit.label.config import LabelImportConfig
from rewardkit.label.export import export_rows
from rewardkit.label.importing import run_import
from rewardkit.label.store import NewItem, Store
from rewardkit.label.tasks import borda_ranking, pairwise_majority, thumbs_majority
from tests.conftest import reward_tolerance
from tests.label.conftest import PAIRS, write_jsonl


def _import(db, *args):
    return run_import(parse_config(LabelImportConfig, [str(db), *map(str, args)]))


def _annotators(store, *names):
    return [store.annotator_for_token(store.add_annotator(n)).id for n in names]


def test_import_pairs_shows_each_pair_in_a_random_order_and_is_idempotent(tmp_path, pairs_file, capsys):
    db = tmp_path / "labels.sqlite"
    assert main(["label", "import", str(db), str(pairs_file), "--judgments-per-item", "2"]) == 0
    items = Store(db).items()
    assert Store(db).task == "pairs" and len(items) == 6
    assert [sorted(i.responses) for i in items] == [sorted([p["chosen"], p["rejected"]]) for p in PAIRS]
    assert {i.responses[0] for i in items} & {p["rejected"] for p in PAIRS}  # not always chosen first
    assert [i.source for i in items] == [f"{pairs_file}:{n}" for n in range(1, 7)] and items[0].needed == 2
    assert f"Serve them with `rewardkit label serve {db} --annotators NAME ...`" in capsys.readouterr().out
    _import(db, pairs_file)
    assert "added 0 pairs item(s)" in capsys.readouterr().out and len(Store(db).items()) == 6


def test_a_malformed_line_names_file_and_line_and_imports_nothing(tmp_path, pairs_file):
    db = tmp_path / "labels.sqlite"
    _import(db, pairs_file)
    bad = write_jsonl(tmp_path / "more.jsonl", [{"prompt": "p", "chosen": "x", "rejected": "y"},
                                                 {"prompt": "q", "chosen": "x", "rejected": "z"}, '{"prompt": "r",'])
    with pytest.raises(RewardkitError, match=r"more\.jsonl:3: invalid JSON"):
        _import(db, bad)
    assert len(Store(db).items()) == 6
    fresh = tmp_path / "fresh.sqlite"
    assert main(["label", "import", str(fresh), str(bad)]) == 2
    assert not fresh.exists()


def test_rl_samples_group_by_prompt_into_pairs(tmp_path):
    samples = write_jsonl(tmp_path / "step-10.jsonl", [
        {"prompt": "P1", "response": r, "proxy": 0.1, "gold": None, "truncated": False} for r in ("a", "b", "c")]
        + [{"prompt": "P2", "response": "only", "proxy": 0.0, "gold": None, "truncated": False}])
    db = tmp_path / "labels.sqlite"
    _import(db, samples)
    items = Store(db).items()
    assert sorted(sorted(i.responses) for i in items) == [["a", "b"], ["a", "c"], ["b", "c"]]
    assert {i.prompt for i in items} == {"P1"}
    db2 = tmp_path / "one.sqlite"
    _import(db2, samples, "--max-pairs-per-prompt", "1", "--task", "pairs")
    assert len(Store(db2).items()) == 1
    db3 = tmp_path / "rank.sqlite"
    _import(db3, samples, "--task", "rankings")
    assert [sorted(i.responses) for i in Store(db3).items()] == [["a", "b", "c"]]


def test_aggregation_rules():
    assert pairwise_majority(["A", "A", "B"]) == "A"
    assert pairwise_majority(["A", "B"]) == "tie" and pairwise_majority(["tie", "tie", "A"]) == "tie"
    assert thumbs_majority([1, 1, 0]) == 1 and thumbs_majority([1, 0]) is None
    # Borda over 3 responses: [0,1,2] gives 2,1,0; [1,0,2] gives 1,2,0; [1,2,0] gives 0,2,1 -> totals 3,5,1
    assert borda_ranking([[0, 1, 2], [1, 0, 2], [1, 2, 0]], 3) == [1, 0, 2]
    assert borda_ranking([[0, 1], [1, 0]], 2) is None


def test_export_majority_all_and_ties_then_train_rm_reads_the_database(tmp_path, pairs_file):
    db = tmp_path / "labels.sqlite"
    _import(db, pairs_file, "--judgments-per-item", "3")
    store = Store(db)
    ann, bob, cat = _annotators(store, "ann", "bob", "cat")
    items = store.items()
    votes = {items[0].id: ("A", "A", "B"), items[1].id: ("B", "B", "B"), items[2].id: ("A", "B", "tie")}
    for item_id, (a, b, c) in votes.items():
        for who, value in zip((ann, bob, cat), (a, b, c)):
            store.next_item(who, 60)
            store.record(who, item_id, value, strength=2 if value != "tie" else None)
    out = tmp_path / "out" / "labels.jsonl"
    assert main(["label", "export", str(db), str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["item_id"], r["chosen"], r["annotators"], r["votes"]) for r in rows] == [
        (items[0].id, items[0].responses[0], ["ann", "bob", "cat"], {"chosen": 2, "rejected": 1, "tie": 0}),
        (items[1].id, items[1].responses[1], ["ann", "bob", "cat"], {"chosen": 3, "rejected": 0, "tie": 0})]
    ties = [json.loads(line) for line in (tmp_path / "out" / "labels.ties.jsonl").read_text().splitlines()]
    # each vote as the index in tied_responses of the response preferred (A was shown first), or "tie"
    assert ties == [{"prompt": items[2].prompt, "subset": "pairs", "tied_responses": items[2].responses,
                     "item_id": items[2].id, "judgments": {"ann": 0, "bob": 1, "cat": "tie"}}]
    with pytest.raises(RewardkitError, match="labels.ties.jsonl:1"):  # a tie is never read back as a preference
        load_pairs(str(tmp_path / "out" / "labels.ties.jsonl"))
    every, every_ties = export_rows(store, "all")
    assert len(every) == 8 and len(every_ties) == 1  # 9 judgments, one of them a tie
    assert [r["annotator"] for _, r in every[:3]] == ["ann", "bob", "cat"]

    pairs = load_pairs(str(db))
    assert [(p.prompt, p.chosen, p.rejected, str(p.source)) for p in pairs] == [
        (r["prompt"], r["chosen"], r["rejected"], f"{db}:{r['item_id']}") for r in rows]
    assert load_pairs(str(out)) == pairs  # the exported file trains the same as the database


def test_pairwise_votes_and_strength_are_named_by_meaning_not_by_screen_side(tmp_path):
    """B shown second wins 2 to 1 with a tie: the row counts votes for its chosen and rejected response, and its
    strength is the mean of the winners' strengths (the loser's strength does not count)."""
    store = Store(tmp_path / "labels.sqlite", create=True)
    store.add_items("pairs", [NewItem("Which?", ["shown as A", "shown as B"])], 4)
    ann, bob, cat, dan = _annotators(store, "ann", "bob", "cat", "dan")
    for who, value, strength in ((ann, "B", 3), (bob, "B", 1), (cat, "A", 3), (dan, "tie", None)):
        store.next_item(who, 60)
        store.record(who, 1, value, strength=strength)
    (row,) = [row for _, row in export_rows(store)[0]]
    assert (row["chosen"], row["rejected"], row["votes"], row["strength"]) == (
        "shown as B", "shown as A", {"chosen": 2, "rejected": 1, "tie": 1}, 2.0)
    every = [row for _, row in export_rows(store, "all")[0]]
    assert [(r["annotator"], r["chosen"], r.get("strength")) for r in every] == [
        ("ann", "shown as B", 3), ("bob", "shown as B", 1), ("cat", "shown as A", 3)]


def test_rankings_round_trip(tmp_path):
    data = write_jsonl(tmp_path / "rank.jsonl", [{"prompt": "Sort", "responses": ["x", "y", "z"]}])
    db = tmp_path / "labels.sqlite"
    _import(db, data)
    store = Store(db)
    (ann,) = _annotators(store, "ann")
    item = store.next_item(ann, 60)
    store.record(ann, item.id, [2, 0, 1])
    (group,) = load_rankings(str(db))
    assert group.responses == [item.responses[2], item.responses[0], item.responses[1]]


def test_inputs_of_two_tasks_need_a_choice(tmp_path, pairs_file):
    thumbs = write_jsonl(tmp_path / "thumbs.jsonl", [{"prompt": "p", "response": "r", "label": 1}])
    with pytest.raises(RewardkitError, match="binary and pairs items; choose one with --task"):
        _import(tmp_path / "l.sqlite", pairs_file, thumbs)
    _import(tmp_path / "l.sqlite", pairs_file, thumbs, "--task", "binary")
    assert len(Store(tmp_path / "l.sqlite").items()) == 13  # 6 pairs x 2 responses + 1


def test_import_orders_the_queue_by_a_reward_models_margin_with_random_items_mixed_in(tmp_path, pairs_file,
                                                                                      distinct_bert_dir):
    import numpy as np

    from rewardkit.label.selection import margin_priority, selection_order
    from rewardkit.models import RewardModel

    db = tmp_path / "labels.sqlite"
    _import(db, pairs_file, "--order", "margin", "--reward-model", distinct_bert_dir, "--random-fraction", "0.34",
            "--seed", "5")
    items = Store(db).items()
    model = RewardModel.from_pretrained(str(distinct_bert_dir))
    # the same items in file order (the queue holds them reordered; their response order is the import's)
    by_source = sorted(items, key=lambda i: int(i.source.rsplit(":", 1)[1]))
    scores = [np.array([model.score([i.prompt] * 2, i.responses).numpy()]) for i in by_source]
    priorities = margin_priority(scores)
    # The import scored the items in its own batches, which round otherwise in bf16: each reward within the
    # tolerance, so each margin within twice it (in fp32, 1e-5 of the largest reward). Its stored priorities are
    # those margins; the queue is the selection order of the priorities it stored (random draws depend on the seed
    # only).
    active = [i.selected_by == "active" for i in by_source]
    stored = [i.priority if chosen else p for i, chosen, p in zip(by_source, active, priorities)]
    assert stored == pytest.approx(list(priorities), abs=2 * reward_tolerance(*scores))
    expected = selection_order(stored, 6, 0.34, seed=5)
    assert [(by_source[i].id, how) for i, how in expected] == [(i.id, i.selected_by) for i in items]
    assert [i.selected_by for i in items].count("random") == 2
    store = Store(db)
    (ann,) = _annotators(store, "ann")
    while (item := store.next_item(ann, 60)) is not None:
        store.record(ann, item.id, "A")
    held_out, _ = export_rows(store, selected_by="random")
    assert [item_id for item_id, _ in held_out] == [i.id for i in items if i.selected_by == "random"]
    actives = [i for i in items if i.selected_by == "active"]
    assert [i.priority for i in actives] == sorted((i.priority for i in actives), reverse=True)
    with pytest.raises(RewardkitError, match="needs --reward-model"):
        _import(db, pairs_file, "--order", "margin")


def test_an_ensemble_folder_orders_the_queue_by_its_members_disagreement(tmp_path):
    import numpy as np

    from rewardkit.label.selection import disagreement_priority, selection_order
    from rewardkit.models import RewardModel
    from rewardkit.models.ensemble import load_reward_model, member_dir
    from tests.conftest import build_distinct_reward_model, reward_tolerance, save_varied_ensemble

    # distinct members: their rewards, and so their disagreement, move with the text by more than bf16's tolerance
    ensemble = save_varied_ensemble(tmp_path / "ensemble-rm", [build_distinct_reward_model(s) for s in (1, 2, 3)])
    answers = ["Yes.", "No, never.", "Blue like the sky", "Paris is lovely", "1 2 3", "It depends on the weather!",
               "Maybe later", "A cat."]
    pairs = write_jsonl(tmp_path / "varied.jsonl", [{"prompt": f"Question {i}?", "chosen": answers[i],
                                                      "rejected": answers[(3 * i + 1) % 8]} for i in range(6)])
    db = tmp_path / "labels.sqlite"
    _import(db, pairs, "--order", "disagreement", "--reward-model", ensemble)
    items = Store(db).items()
    by_source = sorted(items, key=lambda i: int(i.source.rsplit(":", 1)[1]))
    prompts = [i.prompt for i in by_source for _ in i.responses]
    responses = [r for i in by_source for r in i.responses]
    # the import scores every item's responses in one batch, one row per member: the same batch through the Python
    # API, in the same precision (auto), gives the same scores exactly
    loaded = load_reward_model(str(ensemble))
    batch = loaded.member_scores_encoded(loaded.encode_many(prompts, responses)).numpy()
    # each member loaded and scored on its own, item by item, agrees at auto's reward tolerance; the members' rows
    # differ by more than twice that, so a mix-up of members would show
    members = [RewardModel.from_pretrained(str(member_dir(ensemble, k))) for k in range(3)]
    own = np.stack([np.concatenate([m.score([i.prompt] * 2, i.responses).numpy() for i in by_source])
                    for m in members])
    tol = reward_tolerance(own)
    assert own == pytest.approx(batch, abs=tol)
    assert all(np.abs(own[a] - own[b]).max() > 2 * tol for a, b in ((0, 1), (0, 2), (1, 2)))
    # the order, from the import's own scores (a priority moves by up to 2 * tol between batchings, more than the
    # gaps between these): exact
    priorities = disagreement_priority([batch[:, 2 * k:2 * k + 2] for k in range(len(by_source))])
    assert np.diff(np.sort(priorities)).min() > 1e-5  # the members disagree by different amounts: one order
    expected = selection_order(priorities, 6)
    assert [(by_source[i].id, how) for i, how in expected] == [(i.id, i.selected_by) for i in items]
    assert [i.priority for i in items] == pytest.approx(sorted(priorities, reverse=True), abs=1e-5)


def test_import_samples_a_policy(tmp_path):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rewardkit.models.presets import resolve_tokenizer_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer_path("smollm2-135m"))
    torch.manual_seed(0)
    policy = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                          num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                                          pad_token_id=tokenizer.pad_token_id))
    policy.save_pretrained(tmp_path / "policy")
    tokenizer.save_pretrained(tmp_path / "policy")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Tell me a joke.\nName a colour.\n")
    db = tmp_path / "labels.sqlite"
    _import(db, "--policy", tmp_path / "policy", "--prompts", prompts, "--samples-per-prompt", "3",
            "--max-new-tokens", "6", "--task", "rankings")
    items = Store(db).items()
    assert [i.prompt for i in items] == ["Tell me a joke.", "Name a colour."]
    assert [i.source for i in items] == [f"{prompts}:1", f"{prompts}:2"]
    assert all(len(i.responses) == 3 and all(r.strip() for r in i.responses) for i in items)
