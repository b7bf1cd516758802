"""The README's "Use it from TRL, OpenRLHF, verl" snippets, and the spec they use with its model filled in, so that
the framework tests run exactly what the README shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.serve.conftest import ServerProcess

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


@pytest.fixture(scope="session")
def server(varied_bert_dir, tmp_path_factory):
    """`rewardkit serve` of the spec's model, in its own process on loopback."""
    process = ServerProcess("rewardkit.serve", [str(varied_bert_dir)],
                            log_dir=tmp_path_factory.mktemp("logs")).wait_ready()
    yield process
    process.stop()
