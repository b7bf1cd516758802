"""Loading a causal language model to run (not to train): what the `likelihood` and `judge` rewards, best-of-n and
label import's sampling all load. (rl's trainable policy and its reference are `rewardkit.rl.command.load_models`.)"""

from __future__ import annotations

from typing import Any

from rewardkit.errors import RewardkitError


def load_causal_lm(name: str, placement, what: str = "the causal language model") -> tuple[Any, Any]:
    """(model, tokenizer) of a causal LM (a preset such as smollm2-135m, a folder or a hub id): eval mode, weights in
    the placement's precision, on its device; the pad token is EOS where the tokenizer has none. A model that cannot
    be loaded is one line naming `what` it was to be."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewardkit.models.presets import resolve_model_path

    path = resolve_model_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=placement.weights_dtype)
    except (OSError, ValueError) as exc:
        raise RewardkitError(f"cannot load {what} {name!r}: {str(exc).splitlines()[0]}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval().to(placement.torch_device), tokenizer
