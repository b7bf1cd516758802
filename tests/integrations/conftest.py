"""A reward spec mixing a learned and a reference component, the shape every framework test scores with."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serve.conftest import ServerProcess

# The spec of the README's "Use it from TRL, OpenRLHF, verl" section, with its model path filled in by `write_spec`.
README_SPEC = """\
components:
  - {type: reward_model, path: MODEL}
  - {type: rouge, variant: rouge1, weight: 0.5}
"""


def write_spec(folder: Path, model: Path) -> Path:
    path = folder / "rewards.yaml"
    path.write_text(README_SPEC.replace("MODEL", str(model)))
    return path


@pytest.fixture(scope="session")
def spec_path(tmp_path_factory, varied_bert_dir) -> Path:
    return write_spec(tmp_path_factory.mktemp("spec"), varied_bert_dir)


@pytest.fixture(scope="session")
def server(varied_bert_dir, tmp_path_factory):
    """`rewardkit serve` of the spec's model, in its own process on loopback."""
    process = ServerProcess("rewardkit.serve", [str(varied_bert_dir)],
                            log_dir=tmp_path_factory.mktemp("logs")).wait_ready()
    yield process
    process.stop()
