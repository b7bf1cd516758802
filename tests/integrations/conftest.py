"""The README's "Use it from TRL, OpenRLHF, verl" snippets, and the spec they use with its model filled in, so that
the framework tests run exactly what the README shows."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.serve.conftest import LOOPBACK, free_port

README_SECTION = "## Use it from TRL, OpenRLHF, verl"
README_MODEL = "runs/hh-rm"  # the model the README's spec names; the tests put a tiny one in its place
README_POLICY = "path/to/policy"  # the policy tokenizer the README's snippets name; the tests use SmolLM2's


def readme_block(containing: str) -> str:
    """The one code block of the README's integration section that contains `containing`."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = [code for code in re.findall(r"```\w*\n(.*?)```", section, re.S) if containing in code]
    assert len(blocks) == 1, f"{len(blocks)} README blocks contain {containing!r}"
    return blocks[0]


@pytest.fixture(scope="session")
def spec_path(tmp_path_factory, varied_bert_dir) -> Path:
    """The README's rewards.yaml, scoring with the tiny model, in a folder of its own (the snippets' working
    directory)."""
    path = tmp_path_factory.mktemp("readme") / "rewards.yaml"
    spec = readme_block("components:")
    assert README_MODEL in spec
    path.write_text(spec.replace(README_MODEL, str(varied_bert_dir)))
    return path


@pytest.fixture
def in_readme_dir(spec_path, monkeypatch) -> Path:
    """Run from the folder holding rewards.yaml, as the README's relative paths assume."""
    monkeypatch.chdir(spec_path.parent)
    return spec_path.parent


class InProcessServer:
    """`rewardkit serve`'s app for a model, under uvicorn on a loopback port, in a thread of the test process (a
    server process would spend seconds importing torch again)."""

    def __init__(self, model_dir: Path):
        import uvicorn

        from rewardkit.models import RewardModel
        from rewardkit.serve.app import create_app
        from rewardkit.serve.config import ServeConfig

        port = free_port()
        self.url = f"http://{LOOPBACK}:{port}"
        app = create_app(RewardModel.from_pretrained(str(model_dir)).eval(), ServeConfig(model=str(model_dir)))
        self.server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="session")
def server(varied_bert_dir):
    """`rewardkit serve` of the spec's model on loopback."""
    running = InProcessServer(varied_bert_dir)
    yield running
    running.stop()
