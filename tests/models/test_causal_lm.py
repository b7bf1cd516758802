"""models/causal_lm.py: the one loader of a causal LM to run (likelihood, judge, best-of-n, label import)."""

from __future__ import annotations

import pytest

from rewardkit.device import choose_placement
from rewardkit.errors import RewardkitError
from rewardkit.models.causal_lm import load_causal_lm
from tests.rl.conftest import toy_policy, toy_tokenizer


def test_a_folder_loads_in_eval_mode_in_the_placements_precision_with_a_pad_token(tmp_path):
    tokenizer = toy_tokenizer()
    toy_policy(tokenizer).save_pretrained(tmp_path)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path)
    model, loaded = load_causal_lm(str(tmp_path), choose_placement("cpu", "bf16"))
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {__import__("torch").bfloat16}
    assert loaded.pad_token == loaded.eos_token == "<eos>"  # none saved: EOS pads


def test_a_model_that_cannot_be_loaded_is_one_line_naming_what_it_was_for(tmp_path):
    with pytest.raises(RewardkitError, match="cannot load policy '.*nothing-here'"):
        load_causal_lm(str(tmp_path / "nothing-here"), choose_placement("cpu", "fp32"), "policy")
    with pytest.raises(RewardkitError, match="cannot load the causal language model"):
        load_causal_lm(str(tmp_path / "nothing-here"), choose_placement("cpu", "fp32"))
