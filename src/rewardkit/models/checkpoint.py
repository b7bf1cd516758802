"""Loading and saving reward models: standard HF folders (safetensors, one label) plus `rewardkit.json`.

Saved folders are standard HF folders that `AutoModelForSequenceClassification` loads with one label; the few
rewardkit settings (max_length, calibration temperature, pooling, the mean and std of its rewards on held-out data)
sit beside them in `rewardkit.json`. An ODIN length head is saved as `length_head.safetensors`, so plain transformers
loads the reward head alone. `Checkpointing` is a mixin of `RewardModel`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
from pathlib import Path
from typing import Self

import torch
from torch import nn

from rewardkit.device import Placement, choose_placement
from rewardkit.errors import RewardkitError
from rewardkit.models.heads import (MLP_HEAD, head_modules, last_token_index, mean_of_layers, mlp_head,
                                    pool_padded, reward_from_pooled)
from rewardkit.models.presets import resolve_model_path
from rewardkit.models.remote_code import write_pooling_code
from rewardkit.runs import write_text_atomically

METADATA_FILE = "rewardkit.json"
LENGTH_HEAD_FILE = "length_head.safetensors"


def read_metadata(directory: str | Path) -> dict:
    """A saved model's `rewardkit.json` ({} for a folder without one, e.g. any HF model)."""
    path = Path(directory, METADATA_FILE)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RewardkitError(f"{path}:{error.lineno}: not valid JSON ({error.msg}); the model's settings are "
                             f"unreadable") from None


def reward_statistics(count: int, total: float, total_squares: float, data: str) -> dict:
    """The mean and population std of `count` rewards from their sum and sum of squares (sums add up across processes
    and datasets), with what they were scored on: a model's `reward_stats`, which `save_metadata` stores and
    `rewardkit serve --normalize fixed` normalizes with."""
    if count < 1:
        raise ValueError("reward statistics need at least one reward")
    mean = total / count
    std = max(total_squares / count - mean * mean, 0.0) ** 0.5
    return {"mean": mean, "std": std, "count": int(count), "data": data}


def _load_head_unrounded(model: nn.Module, folder: Path) -> None:
    """Read the reward head's saved weights again at full precision, after a load in bf16/fp16 rounded them: the
    head computes in fp32, and train-rm validated it with its fp32 weights (see `rewardkit.models.precision`)."""
    from safetensors import safe_open

    heads = {id(p) for module in head_modules(model) for p in module.parameters()}
    wanted = {name: p for name, p in model.named_parameters() if id(p) in heads}
    for file in sorted(folder.glob("*.safetensors")):
        if file.name == LENGTH_HEAD_FILE:
            continue
        with safe_open(str(file), framework="pt") as weights:
            for key in wanted.keys() & set(weights.keys()):
                wanted[key].data = weights.get_tensor(key).to(device=wanted[key].device, dtype=torch.float32)


class _HeldLoadReport(logging.Filter):
    """Holds back transformers' report on the weights a load of `path` initialized: the "LOAD REPORT" table
    (transformers 5) or the "Some weights ... newly initialized" message (transformers 4). Other records pass."""

    def __init__(self, path: str):
        super().__init__()
        self.path, self.records = str(path), []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.path in message and ("LOAD REPORT" in message or "newly initialized" in message):
            self.records.append(record)
            return False
        return True


@contextlib.contextmanager
def _holding_load_report(path: str):
    logger = logging.getLogger("transformers.modeling_utils")
    held = _HeldLoadReport(path)
    logger.addFilter(held)
    try:
        yield held
    except BaseException:
        logger.removeFilter(held)
        for record in held.records:  # a load that failed keeps its whole report
            logger.handle(record)
        raise
    finally:
        logger.removeFilter(held)


def load_with_reward_head(path: str, config, **kwargs) -> nn.Module:
    """`AutoModelForSequenceClassification.from_pretrained`, saying in one line when the reward head is new.

    A backbone without a reward head (a base model, a causal LM) gets a freshly initialized one, which is where every
    reward model starts; transformers reports it as a table of MISSING weights that a new user reads as an error.
    When the head's weights are all that is missing and nothing else went wrong, that report is replaced by one line
    naming the new head modules. Any other report (weights missing outside the head, unexpected or mismatched
    weights) goes out as transformers wrote it, and transformers' other messages are untouched.
    """
    from transformers import AutoModelForSequenceClassification

    with _holding_load_report(path) as held:
        model, info = AutoModelForSequenceClassification.from_pretrained(path, config=config, output_loading_info=True,
                                                                         **kwargs)
    heads = {id(m) for m in head_modules(model)}
    head_names = [name for name, module in model.named_modules() if id(module) in heads]
    missing = set(info.get("missing_keys", ()))
    new_head = sorted({name for name in head_names for key in missing if key.startswith(name + ".")})
    # an MLP head's weights are rewardkit's own: from_pretrained reads them after the load (`attach_mlp_head`)
    unexpected = [key for key in info.get("unexpected_keys", ()) if not key.startswith(MLP_HEAD + ".")]
    clean = not unexpected and not info.get("mismatched_keys")
    head_only = (new_head and clean
                 and all(any(key.startswith(name + ".") for name in new_head) for key in missing))
    if not head_only and not (clean and not missing):
        for record in held.records:
            logging.getLogger("transformers.modeling_utils").handle(record)
    if new_head:
        logging.getLogger(__name__).warning(f"rewardkit: {path} has no reward head; initialized a new one "
                                            f"({', '.join(new_head)}), random until trained")
    return model


def attach_mlp_head(model: nn.Module, width: int) -> nn.Module:
    """Give a HF model an MLP reward head (`mlp_head`, fp32) as its `rewardkit_head`, which `reward_from_pooled` then
    reads instead of the HF class's head; saved with the model's weights, and loaded by the folder's
    modeling_rewardkit.py in plain transformers (trust_remote_code=True)."""
    head = mlp_head(model.config.hidden_size, int(width)).to(device=next(model.parameters()).device,
                                                              dtype=torch.float32)
    setattr(model, MLP_HEAD, head)
    return head


def _disable_dropout(config) -> None:
    for name, value in list(vars(config).items()):
        if "dropout" in name and isinstance(value, float):
            setattr(config, name, 0.0)


class Checkpointing:
    """`from_pretrained`, `save_pretrained` and `save_metadata` of a `RewardModel`."""

    # ---------------------------------------------------------------- loading and saving
    @classmethod
    def from_pretrained(cls, name_or_path: str, max_length: int | None = None, dropout: bool = True,
                        placement: Placement | None = None, train: bool = False, pooling: str | None = None,
                        **model_kwargs) -> Self:
        """Load a preset, a local folder (rewardkit or any HF model) or a hub id, with a one-output head.

        A backbone without a trained head gets a freshly initialised one, announced in one line (see
        `load_with_reward_head`). Only safetensors weights are read.
        `pooling` says which tokens the reward reads; None: the saved model's, else the HF class's own (an encoder's
        CLS, a decoder's last token), which is what plain transformers computes.
        `placement` says where the model runs; None resolves `--device auto --precision auto` by the rule every
        command uses (`rewardkit.device.choose_placement`), so the Python API scores a text as `score`, `serve` and
        `eval-rm` do on the same machine (bf16 where the hardware makes it the faster choice). For inference
        (`train=False`) the weights are loaded directly in its precision, on its device; for training they stay fp32
        (master weights) and the trainer places them. Either way the reward head computes in fp32 (see
        `keep_head_in_fp32`). The model keeps its `placement`.
        """
        from transformers import AutoConfig, AutoTokenizer

        path = resolve_model_path(name_or_path)
        local = Path(path)
        if local.exists() and not (local / "config.json").exists():
            raise RewardkitError(f"{path}: not a model folder (no config.json)")
        if not local.exists() and (os.sep in name_or_path.rstrip(os.sep) and name_or_path.count("/") != 1
                                   or name_or_path.startswith((".", "/"))):
            raise RewardkitError(f"{name_or_path}: no such model folder")
        metadata = read_metadata(local)
        try:
            config = AutoConfig.from_pretrained(path, num_labels=1)
            if not dropout:
                _disable_dropout(config)
            placement = placement if placement is not None else choose_placement()
            dtype = torch.float32 if train else placement.weights_dtype
            model = load_with_reward_head(path, config, dtype=dtype, use_safetensors=True, **model_kwargs)
            if metadata.get("head", {}).get("type") == "mlp":
                attach_mlp_head(model, metadata["head"]["width"])
            if (dtype != torch.float32 or metadata.get("head")) and local.is_dir():
                _load_head_unrounded(model, local)
            tokenizer = AutoTokenizer.from_pretrained(path)
        except OSError as exc:
            raise RewardkitError(f"cannot load model {name_or_path!r}: {str(exc).splitlines()[0]}")
        if not train:  # a trainer places the model itself (one device per process)
            model.to(placement.torch_device)
        loaded = cls(model, tokenizer,
                     max_length=max_length or metadata.get("max_length", 512),
                     temperature=metadata.get("temperature", 1.0),
                     use_chat_template=metadata.get("use_chat_template"),
                     pooling=pooling or metadata.get("pooling"),
                     feature_layers=metadata.get("feature_layers"))
        loaded.reward_stats = metadata.get("reward_stats")
        loaded.placement = placement
        if metadata.get("length_head"):
            from safetensors.torch import load_model

            loaded.add_length_head()
            load_model(loaded.length_head, str(local / LENGTH_HEAD_FILE), strict=True,
                       device=str(next(model.parameters()).device))
        return loaded

    def save_pretrained(self, directory: str | Path) -> None:
        """Write a standard HF folder (safetensors, one label) plus `rewardkit.json`.

        With LoRA adapters still attached, a merged copy is written (the adapters stay on this model, so training can
        go on): plain `transformers` loads the folder as an ordinary model and scores as this one does.
        """
        directory = Path(directory)
        self.model.config.num_labels = 1
        self.model.config.id2label = {0: "reward"}
        self.model.config.label2id = {"reward": 0}
        model = copy.deepcopy(self._lora).merge_and_unload() if self._lora is not None else self.model
        model.save_pretrained(directory, safe_serialization=True)
        write_pooling_code(directory, model, self.pooling, self.is_decoder,
                           (last_token_index, pool_padded, mean_of_layers, mlp_head, reward_from_pooled),
                           feature_layers=self.feature_layers, head=self.head_spec)
        self.tokenizer.save_pretrained(directory)
        if self.length_head is not None:
            from safetensors.torch import save_model

            save_model(self.length_head, str(directory / LENGTH_HEAD_FILE))
        self.save_metadata(directory)

    def save_metadata(self, directory: str | Path) -> None:
        """Write only `rewardkit.json` (e.g. after fitting a calibration temperature)."""
        metadata = {"max_length": self.max_length, "temperature": self.temperature,
                    "use_chat_template": self.use_chat_template, "pooling": self.pooling,
                    "length_head": self.length_head is not None}
        if self.feature_layers:
            metadata["feature_layers"] = list(self.feature_layers)
        if self.head_spec:
            metadata["head"] = self.head_spec
        if self.reward_stats is not None:
            metadata["reward_stats"] = self.reward_stats
        write_text_atomically(Path(directory, METADATA_FILE), json.dumps(metadata, indent=2) + "\n")
