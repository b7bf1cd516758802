"""The README's "Collecting feedback" commands, run as written (from a folder holding the files they name)."""

from __future__ import annotations

import json
import re
import shlex

from rewardkit.cli import main
from rewardkit.config import parse_config
from rewardkit.label.config import LabelConfig
from rewardkit.label.store import Store
from tests.conftest import REPO_ROOT


def readme_commands() -> list[list[str]]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## Collecting feedback"):]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1).replace("\\\n", " ")
    return [shlex.split(line) for line in block.splitlines() if line.startswith("rewardkit ")]


def test_readme_commands(tmp_path, monkeypatch, varied_bert_dir):
    monkeypatch.chdir(tmp_path)
    samples = tmp_path / "runs" / "rl" / "samples" / "step-50.jsonl"
    samples.parent.mkdir(parents=True)
    samples.write_text("".join(json.dumps({"prompt": f"Review {i // 2}", "response": f"response {i}", "proxy": 0.0})
                               + "\n" for i in range(24)))
    (tmp_path / "runs" / "imdb-rm-proxy").symlink_to(varied_bert_dir)
    commands = readme_commands()
    assert [c[:3] for c in commands] == [["rewardkit", "label", "import"], ["rewardkit", "label", "labels.sqlite"],
                                         ["rewardkit", "train-rm", "--data"], ["rewardkit", "label", "export"]]
    assert main(commands[0][1:]) == 0
    store = Store("labels.sqlite")
    items = store.items()
    assert len(items) == 12 and items[0].needed == 2  # 12 prompts x 1 pair
    assert sorted(i.selected_by for i in items).count("random") == 2  # round(0.2 * 12) random, the rest active
    assert parse_config(LabelConfig, commands[1][2:]).annotators == ["alice", "bob"]  # served in test_server.py
    def number(text):
        return int(text.split()[1])

    for name in ("alice", "bob"):  # both prefer the lower-numbered response, except bob on Review 0 to 2 (ties)
        who = store.annotator_for_token(store.add_annotator(name)).id
        while (item := store.next_item(who, 60)) is not None:
            lower = "A" if number(item.responses[0]) < number(item.responses[1]) else "B"
            flipped = name == "bob" and item.prompt in ("Review 0", "Review 1", "Review 2")
            store.record(who, item.id, {"A": "B", "B": "A"}[lower] if flipped else lower)
    assert main(commands[2][1:] + ["--model", str(varied_bert_dir), "--no-progress", "--no-tensorboard",
                                   "--save-every", "0"]) == 0
    summary = json.loads((tmp_path / "runs" / "rm-round1" / "train_summary.json").read_text())
    exported = main(commands[3][1:])
    rows = (tmp_path / "labels.jsonl").read_text().splitlines()
    assert exported == 0 and len(rows) == 24  # --mode all: every judgment, none a tie
    assert summary["train_examples"] + summary["val_examples"] == 9  # the 3 items alice and bob split on are ties
