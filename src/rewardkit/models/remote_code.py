"""Saved folders that plain `transformers` scores as rewardkit does, whatever the pooling.

The HF class reads the reward at one place: an encoder's CLS token through its pooler, a decoder's last token. A model
trained with another pooling (minilm-l6's default `mean`, `response`, an encoder's `last`, a decoder's `mean`) gets a
small `modeling_rewardkit.py` in its folder and an `auto_map` in its config.json, so that

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

loads a subclass of the saved class that pools as rewardkit does. Without `trust_remote_code` transformers still loads
its own class (and reads the CLS/last token, which this model was not trained on); rewardkit itself never runs the file.

The file holds the source of the very functions rewardkit scores with (`pool_padded`, `last_token_index`,
`reward_from_pooled`), copied at save time, so the two cannot drift apart. `response` pooling needs to know where the
response starts: an encoder reads it from the token types (the second segment); a decoder cannot, and its folder gets
no code (plain transformers cannot compute that pooling).

A `train-rm --frozen` model may also read the mean of a range of layers (`rewardkit_feature_layers` in config.json)
and score through an MLP head (`rewardkit_head`: the class builds the module, transformers loads its saved weights);
either gets the file whatever the pooling.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable, Sequence

from torch import nn

MODULE_FILE = "modeling_rewardkit.py"
CONFIG_KEY = "rewardkit_pooling"
LAYERS_KEY = "rewardkit_feature_layers"
HEAD_KEY = "rewardkit_head"

_HEADER = '''"""Written by rewardkit: {arch} reading its reward with rewardkit's pooling ({pooling}).

Load with AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True); the functions below are
rewardkit's own (rewardkit.models.heads), copied when the folder was saved."""

import torch
from torch import nn
from transformers import {arch}
from transformers.modeling_outputs import SequenceClassifierOutput

'''

_CLASS = '''

def response_starts_from_types(token_type_ids, attention_mask):
    """Where an encoder's response starts: its second segment (token type 1), else right after [CLS]."""
    if token_type_ids is None:
        return torch.ones(attention_mask.shape[0], dtype=torch.long, device=attention_mask.device)
    second = (token_type_ids == 1) & (attention_mask == 1)
    has = second.any(dim=1)
    return torch.where(has, second.float().argmax(dim=1), torch.ones_like(has, dtype=torch.long))


class Rewardkit{arch}({arch}):
    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        head = getattr(config, "{head_key}", None)
        if head:  # an MLP head; its weights are in the folder's safetensors
            self.rewardkit_head = mlp_head(config.hidden_size, head["width"])

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {{"token_type_ids": token_type_ids}} if token_type_ids is not None else {{}}
        if isinstance(getattr(self, "score", None), nn.Linear):  # a decoder: positions over real tokens
            extra = {{"position_ids": (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)}}
        layers = getattr(self.config, "{layers_key}", None)
        output = self.base_model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=bool(layers),
                                 **extra)
        hidden = mean_of_layers(output.hidden_states, layers) if layers else output.last_hidden_state
        pooling = self.config.{key}
        starts = response_starts_from_types(token_type_ids, attention_mask) if pooling == "response" else None
        pooled = pool_padded(hidden, attention_mask, pooling, starts)
        return SequenceClassifierOutput(logits=reward_from_pooled(self, pooled)[:, None])
'''


def native_pooling(is_decoder: bool) -> str:
    """The pooling the HF class computes itself."""
    return "last" if is_decoder else "cls"


def plain_transformers_can_pool(pooling: str, is_decoder: bool) -> bool:
    """Whether plain transformers can score a model of this pooling (natively, or through the written file)."""
    return not (is_decoder and pooling == "response")


def write_pooling_code(directory: Path, model: nn.Module, pooling: str, is_decoder: bool,
                       functions: Sequence[Callable], feature_layers: Sequence[int] | None = None,
                       head: dict | None = None) -> bool:
    """After `model.save_pretrained(directory)`: write the file (with the source of `functions`: rewardkit's
    `last_token_index`, `pool_padded`, `mean_of_layers`, `mlp_head` and `reward_from_pooled`) and point config.json's
    auto_map at it when the pooling is not the HF class's own, or the reward reads a range of layers or an MLP head
    (and the pooling can be computed from the inputs); True when it was written."""
    import json

    config_path = directory / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    # a model loaded from such a folder carries the keys in its config: a save with the native pooling drops them
    for key in (CONFIG_KEY, LAYERS_KEY, HEAD_KEY, "auto_map"):
        config.pop(key, None)
    (directory / MODULE_FILE).unlink(missing_ok=True)
    written = (pooling != native_pooling(is_decoder) or bool(feature_layers) or bool(head)) \
        and plain_transformers_can_pool(pooling, is_decoder)
    if written:
        arch = type(model).__name__
        source = _HEADER.format(arch=arch, pooling=pooling) + "\n\n".join(inspect.getsource(f) for f in functions)
        (directory / MODULE_FILE).write_text(source + _CLASS.format(arch=arch, key=CONFIG_KEY, layers_key=LAYERS_KEY,
                                                                    head_key=HEAD_KEY), encoding="utf-8")
        config[CONFIG_KEY] = pooling
        if feature_layers:
            config[LAYERS_KEY] = list(feature_layers)
        if head:
            config[HEAD_KEY] = head
        config["auto_map"] = {"AutoModelForSequenceClassification": f"{MODULE_FILE[:-3]}.Rewardkit{arch}"}
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return written
