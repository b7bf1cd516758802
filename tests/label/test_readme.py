"""The README's "Collecting feedback" commands, run as written (from a folder holding the files they name): the plain
round first (import, serve, export, train-rm), then the model-ranked queue of the next round."""

from __future__ import annotations

import json
import re
import shlex

import httpx

from rewardkit.cli import main
from rewardkit.config import parse_config
from rewardkit.label.config import LabelConfig
from rewardkit.label.store import Store
from tests.conftest import REPO_ROOT
from tests.label.server import LabelServer


def readme_blocks() -> list[list[list[str]]]:
    """The commands of each bash block of the section, one list of argv per block."""
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index("## Collecting feedback")
    section = text[start:text.index("\n## ", start + 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    return [[shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.startswith("rewardkit ")]
            for block in blocks]


def number(text: str) -> int:
    return int(text.split()[1])


def test_readme_commands(tmp_path, monkeypatch, varied_bert_dir):
    monkeypatch.chdir(tmp_path)
    plain, ranked = readme_blocks()
    assert [c[:3] for c in plain] == [["rewardkit", "label", "import"], ["rewardkit", "label", "serve"],
                                      ["rewardkit", "label", "export"], ["rewardkit", "train-rm", "--data"]]
    assert [c[:3] for c in ranked] == [["rewardkit", "label", "import"], ["rewardkit", "label", "serve"],
                                       ["rewardkit", "train-rm", "--data"], ["rewardkit", "label", "export"]]
    train_args = ["--model", str(varied_bert_dir), "--no-progress", "--no-tensorboard", "--save-every", "0"]

    # the plain round: a file of pairs, two annotators judging in the served app through their printed links
    (tmp_path / "pairs.jsonl").write_text("".join(
        json.dumps({"prompt": f"Review {i}", "chosen": f"response {2 * i}", "rejected": f"response {2 * i + 1}"})
        + "\n" for i in range(12)))
    assert main(plain[0][1:]) == 0
    store = Store("labels.sqlite")
    assert len(store.items()) == 12 and {i.needed for i in store.items()} == {2}
    served = plain[1][3:]
    assert served[0] == "labels.sqlite" and parse_config(LabelConfig, served).annotators == ["alice", "bob"]
    server = LabelServer(tmp_path / served[0], tmp_path, *served[1:]).wait_ready()
    try:
        links = dict(re.findall(r"annotator (\w+): (\S+)", server.log()))
        assert sorted(links) == ["alice", "bob"]
        for name, link in links.items():  # both prefer the lower-numbered response, except bob on Review 0 to 2
            token = link.split("?token=")[1]
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as client:
                while (item := client.get("/api/next").json()["item"]) is not None:
                    lower = "A" if number(item["responses"][0]) < number(item["responses"][1]) else "B"
                    flipped = name == "bob" and item["prompt"] in ("Review 0", "Review 1", "Review 2")
                    value = {"A": "B", "B": "A"}[lower] if flipped else lower
                    assert client.post("/api/judgments", json={"item_id": item["id"], "value": value,
                                                               "strength": 2}).status_code == 201
    finally:
        server.stop()
    assert main(plain[2][1:]) == 0
    rows = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    ties = (tmp_path / "labels.ties.jsonl").read_text().splitlines()
    assert len(rows) == 9 and len(ties) == 3  # alice and bob split on Review 0 to 2
    assert {(r["votes"]["chosen"], r["votes"]["rejected"], r["strength"]) for r in rows} == {(2, 0, 2.0)}
    assert all(number(r["chosen"]) < number(r["rejected"]) for r in rows)
    assert main(plain[3][1:] + train_args) == 0
    summary = json.loads((tmp_path / "runs" / "rm-round1" / "train_summary.json").read_text())
    assert summary["train_examples"] + summary["val_examples"] == 9

    # the next round: rl samples queued by the round-1 model's margins, 20% of them random
    samples = tmp_path / "runs" / "rl" / "samples" / "step-50.jsonl"
    samples.parent.mkdir(parents=True)
    samples.write_text("".join(json.dumps({"prompt": f"Movie {i // 2}", "response": f"response {i}", "proxy": 0.0})
                               + "\n" for i in range(24)))
    assert main(ranked[0][1:]) == 0
    new = [item for item in store.items() if item.prompt.startswith("Movie")]
    assert len(new) == 12 and {i.needed for i in new} == {2}  # 12 prompts x 1 pair
    assert sorted(i.selected_by for i in new).count("random") == 2  # round(0.2 * 12) random, the rest active
    assert parse_config(LabelConfig, ranked[1][3:]).db == "labels.sqlite"
    for name in ("alice", "bob"):
        who = store.annotator_for_token(store.reissue_token(name)).id
        while (item := store.next_item(who, 60)) is not None:
            store.record(who, item.id, "A" if number(item.responses[0]) < number(item.responses[1]) else "B")
    assert main(ranked[2][1:] + train_args) == 0
    summary = json.loads((tmp_path / "runs" / "rm-round2" / "train_summary.json").read_text())
    assert summary["train_examples"] + summary["val_examples"] == 9 + 12
    assert main(ranked[3][1:]) == 0
    every = (tmp_path / "labels.jsonl").read_text().splitlines()
    assert len(every) == 2 * 12 + 2 * 12  # --mode all: every judgment of both rounds (none of them a tie)
