"""The reward head and what it reads: pooling hidden states into one vector per text, and the HF head modules that
turn it into a reward (kept in fp32). Pure functions of tensors and modules; `RewardModel` wires them.

`last_token_index`, `pool_padded`, `mean_of_layers`, `mlp_head` and `reward_from_pooled` are also copied, as source,
into saved folders whose pooling the HF class lacks (`rewardkit.models.remote_code`), so they import nothing beyond
torch.
"""

from __future__ import annotations

import types

import torch
from torch import nn

from rewardkit.errors import RewardkitError

POOLINGS = ("cls", "mean", "response", "last")
MLP_HEAD = "rewardkit_head"  # the attribute of a HF model that holds a `train-rm --frozen --head mlp` head


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended position per row, whatever the padding side."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask).argmax(dim=1)


def pool_padded(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str,
                response_starts: torch.Tensor | None = None) -> torch.Tensor:
    """[B, hidden]: the hidden states [B, T, hidden] pooled per row over its real tokens, whatever the padding side:
    the first ("cls"), the last ("last"), their mean ("mean"), or the mean of those from the row's response start on
    ("response"; `response_starts` [B] counts real tokens, as `Encoded.response_start` does)."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if pooling == "last":
        return hidden[rows, last_token_index(attention_mask)]
    if pooling == "cls":
        return hidden[rows, attention_mask.argmax(dim=1)]  # the first attended position
    mask = attention_mask
    if pooling == "response":
        if response_starts is None:
            raise ValueError("pooling 'response' needs each row's response_starts")
        rank = attention_mask.cumsum(dim=1) - 1  # each position's index among its row's real tokens
        mask = attention_mask * (rank >= response_starts.to(rank.device)[:, None])
    mask = mask.to(hidden.dtype)[..., None]
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def mean_of_layers(hidden_states, layers) -> torch.Tensor:
    """The mean of the hidden states of layers `layers` = (first, last), inclusive: 0 is the embeddings' output, k
    the k-th transformer layer's (the entries of a HF model's `hidden_states`)."""
    first, last = layers
    return torch.stack(tuple(hidden_states[first:last + 1])).mean(dim=0)


def mlp_head(hidden_size: int, width: int) -> nn.Module:
    """A small MLP reward head (`train-rm --frozen --head mlp`): hidden -> width -> GELU -> 1."""
    return nn.Sequential(nn.Linear(hidden_size, width), nn.GELU(), nn.Linear(width, 1))


def reward_from_pooled(model: nn.Module, pooled: torch.Tensor) -> torch.Tensor:
    """Rewards [B] from pooled hidden states [B, hidden], through the HF class's own head modules, or an MLP head
    where one was trained (`model.rewardkit_head`). (Its source is also written into saved folders whose pooling the
    HF class lacks: see `rewardkit.models.remote_code`.)"""
    mlp = getattr(model, "rewardkit_head", None)
    if mlp is not None:
        return mlp(pooled)[:, 0]
    if isinstance(getattr(model, "score", None), nn.Linear):  # a decoder's head reads every position
        return model.score(pooled)[:, 0]
    # the HF encoder heads read the first position of a sequence: give each text's pooled state as a sequence
    pooler = getattr(model, "pooler", None)  # DeBERTa keeps it beside the base model, BERT inside
    pooler = pooler if pooler is not None else getattr(model.base_model, "pooler", None)
    if pooler is None:  # RoBERTa-style head: dense + tanh + projection on the sequence output
        return model.classifier(pooled[:, None, :])[:, 0]
    pooled = pooler(pooled[:, None, :])  # BERT-style: the pooler, dropout, linear classifier
    dropout = getattr(model, "dropout", None)
    return model.classifier(dropout(pooled) if dropout is not None else pooled)[:, 0]


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left padding does not shift them."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def is_decoder_head(model: nn.Module) -> bool:
    """HF decoder classifiers keep a linear `.score` over every position; encoders pool first and use `.classifier`."""
    return isinstance(getattr(model, "score", None), nn.Linear)


def head_modules(model: nn.Module) -> list[nn.Module]:
    """The modules between the backbone's last hidden state and the reward: the decoder's `.score`, or the encoder's
    pooler (BERT keeps it in the base model, DeBERTa beside it) and `.classifier`."""
    names = (MLP_HEAD, "score", "pooler", "classifier")
    found = [getattr(model, name) for name in names if isinstance(getattr(model, name, None), nn.Module)]
    base_pooler = getattr(getattr(model, "base_model", None), "pooler", None)
    if isinstance(base_pooler, nn.Module) and base_pooler is not model:
        found.append(base_pooler)
    return list({id(m): m for m in found}.values())


def final_linear(model: nn.Module) -> nn.Linear:
    """The reward head's last linear map (one output): the decoder's `.score`, BERT's `.classifier`, RoBERTa's
    `.classifier.out_proj`. Its input is the features every HF head ends with, whatever comes before it."""
    for module in head_modules(model):
        last = [m for m in module.modules() if isinstance(m, nn.Linear) and m.out_features == 1]
        if last:
            return last[-1]
    raise RewardkitError(f"{type(model).__name__}: cannot find the reward head's output layer")


def keep_head_in_fp32(model: nn.Module) -> None:
    """Compute the reward head in fp32 whatever the backbone runs in.

    A bf16 head rounds rewards to 8 significant bits, so near rewards tie (and ties count half in accuracy), and
    autocast would run the head in bf16 even with fp32 weights. The head is tiny, so its weights are kept in fp32 and
    its forward casts its input up with autocast off. The forward is wrapped on the instance: the module tree and
    the saved weight names stay those of the HF class.
    """
    for module in head_modules(model):
        module.float()
        if getattr(module, "_rewardkit_fp32", False):
            continue
        # bound to the module (not a closure over it), so that a copy.deepcopy of the model runs its own head
        module.forward = types.MethodType(_fp32_forward, module)
        module._rewardkit_fp32 = True


def _fp32_forward(module: nn.Module, *args, **kwargs):
    """The head module's own forward, on fp32 inputs with autocast off (see `keep_head_in_fp32`)."""
    device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
    args = [a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
    with torch.autocast(device_type=device.type, enabled=False):
        return type(module).forward(module, *args, **kwargs)
