"""Packed training batches: every token of a batch in one row, no padding anywhere.

A padded batch spends its matmuls, norms and activations on padding as well (in length-grouped pair batches ~14% of
the tokens, because a pair's chosen and rejected differ in length), and its attention on the padding of every row
(~18% on HH pairs with MiniLM). A packed batch puts the texts end to end in one sequence [1, N] with explicit
positions, so everything token-wise runs on real tokens only; attention runs row by row on views of that sequence
(`packed_attention`, which transformers calls through its attention-function registry), each row exactly its length.

Rows are texts for encoders. For decoders a row is a group of texts that share a prompt (a pair's chosen and
rejected, a ranking's responses): the common prefix once, then each text's remaining tokens, each attending to the
prefix and to itself only, with positions continuing after the prefix. Causal attention makes this exact: the prefix's
hidden states are the same in every text of the group, so the prompt is encoded once, forward and backward.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Sequence

import torch
import torch.nn.functional as F

from rewardkit.device import host_side

ATTENTION_NAME = "rewardkit_packed"
LAYOUT_KWARG = "rewardkit_packing"


def shared_prefix_length(ids: Sequence[Sequence[int]]) -> int:
    """Leading tokens that all sequences have in common, leaving each at least its last (pooled) token."""
    first = ids[0]
    limit = min(len(i) for i in ids) - 1
    length = 0
    while length < limit and all(other[length] == first[length] for other in ids[1:]):
        length += 1
    return length


def matmul_params_per_token(model) -> int:
    """Weights of the linear layers every token goes through (not a pooler or the scalar head): a token costs
    6x this many FLOPs in training (2x in a forward pass)."""
    from torch import nn

    return sum(m.weight.numel() for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and "pooler" not in name
               and name.rsplit(".", 1)[-1] not in ("score", "classifier"))


def attention_weight(model) -> float:
    """Cost of one attended (query, key) pair relative to one token's matmuls, by PaLM's FLOP count:
    12 x layers x hidden per pair against 6 x matmul parameters per token."""
    config = model.config
    return 2 * config.num_hidden_layers * config.hidden_size / max(matmul_params_per_token(model), 1)


def shared_prefix_pays(lengths: Sequence[int], k: int, weight: float) -> bool:
    """Whether one row (the k-token prefix once, then each text's remainder) costs less than a row per text: it
    saves the prefix's repeats but attends over the whole row, which loses for many long responses to one prompt."""
    row = k + sum(n - k for n in lengths)
    return k > 0 and row + weight * row * row < sum(lengths) + weight * sum(n * n for n in lengths)


def _shares_prefix(group: Sequence[Sequence[int]], causal: bool, weight: float) -> int:
    """The prefix length a group is packed with (0: a row per text)."""
    if not causal or len(group) < 2:
        return 0
    k = shared_prefix_length(group)
    return k if shared_prefix_pays([len(i) for i in group], k, weight) else 0


def row_width(group: Sequence[Sequence[int]], causal: bool, weight: float = 0.0) -> int:
    """Width of the widest attention row a group takes in a packed batch."""
    k = _shares_prefix(group, causal, weight)
    return k + sum(len(i) - k for i in group) if k else max(len(i) for i in group)


@host_side  # a batch's token ids and layout are built on the CPU; the forward moves them to the model
def pack(groups: Sequence[Sequence[Sequence[int]]], causal: bool, weight: float = 0.0,
         token_types: Sequence[Sequence[Sequence[int]]] | None = None, pooling: str | None = None,
         pool_starts: Sequence[Sequence[int]] | None = None) -> dict[str, torch.Tensor]:
    """The packed batch for `groups` of token-id lists (texts in flat order), as tensors for the model's forward.

    `row_lengths` splits the sequence into attention rows. For a decoder, `segments` labels each token with its
    place in its row (0: the shared prefix, i: the row's i-th text), from which `row_layout` builds the rows' masks.
    `pool_index` and `pool_owner` say which packed positions each text's reward reads (`pool_owner` holds the text's
    flat index; see `pool_packed`): by `pooling`, its last token ("last", a decoder's default), its first one ("cls",
    an encoder's), all of its tokens, a shared prefix included ("mean"), or its tokens from `pool_starts` (one index
    per text, parallel to `groups`) on ("response"). A decoder group shares its prefix when that
    pays (`shared_prefix_pays` with the model's `attention_weight`), else it becomes one row per text.
    """
    pooling = pooling or ("last" if causal else "cls")
    rows: list[tuple[list[int], list[int], list[int]]] = []  # (token ids, positions, segments) per row
    types: list[int] = []
    pool_index: list[int] = []
    pool_owner: list[int] = []
    packed = 0  # tokens in the rows so far

    if pooling == "response" and pool_starts is None:
        raise ValueError("pooling 'response' needs pool_starts")

    def pool(positions: Sequence[int], g: int, i: int) -> None:
        """Record the packed positions that the pooling of group g's i-th text reads (its positions given in
        order)."""
        if pooling == "mean":
            chosen = list(positions)
        elif pooling == "response":
            chosen = list(positions)[pool_starts[g][i]:]
        else:
            chosen = [positions[-1] if pooling == "last" else positions[0]]
        owner = pool_owner[-1] + 1 if pool_owner else 0
        pool_index.extend(chosen)
        pool_owner.extend([owner] * len(chosen))

    for g, group in enumerate(groups):
        k = _shares_prefix(group, causal, weight)
        if k:  # one row: the prefix (segment 0), then each text's remainder (segment i), positions from k on
            ids, positions, segments = list(group[0][:k]), list(range(k)), [0] * k
            for i, text in enumerate(group):
                start = len(ids)
                ids += text[k:]
                positions += range(k, len(text))
                segments += [i + 1] * (len(text) - k)
                pool([*range(packed, packed + k), *range(packed + start, packed + len(ids))], g, i)
            rows.append((ids, positions, segments))
            packed += len(ids)
            continue
        for i, text in enumerate(group):
            rows.append((list(text), list(range(len(text))), [1] * len(text)))
            pool(range(packed, packed + len(text)), g, i)
            packed += len(text)
            if token_types is not None:
                types += token_types[g][i]
    batch = {"input_ids": torch.tensor([t for ids, _, _ in rows for t in ids])[None],
             "position_ids": torch.tensor([p for _, positions, _ in rows for p in positions])[None],
             "row_lengths": torch.tensor([len(ids) for ids, _, _ in rows]), "pool_index": torch.tensor(pool_index),
             "pool_owner": torch.tensor(pool_owner)}
    if causal:
        batch["segments"] = torch.tensor([s for _, _, row in rows for s in row])
    if token_types is not None:
        batch["token_type_ids"] = torch.tensor(types)[None]
    return batch


def pool_packed(hidden: torch.Tensor, pool_index: torch.Tensor, pool_owner: torch.Tensor) -> torch.Tensor:
    """[texts, hidden]: per text, the mean of the packed hidden states [N, hidden] at its `pool_index` positions
    (one position for "cls" and "last" pooling, so the mean is that state)."""
    texts = int(pool_owner[-1]) + 1
    # summed in fp32: index_add_ accumulates in its output's dtype, and a bf16 sum of a few hundred states rounds at
    # every addition (a 289-token mean was off by 12% of its norm; a padded batch's `sum` accumulates in fp32)
    counts = torch.zeros(texts, device=hidden.device).index_add_(
        0, pool_owner, torch.ones_like(pool_owner, dtype=torch.float32))
    summed = torch.zeros(texts, hidden.shape[-1], device=hidden.device).index_add_(
        0, pool_owner, hidden[pool_index].float())
    return (summed / counts[:, None]).to(hidden.dtype)


def tree_mask(segments: torch.Tensor) -> torch.Tensor:
    """Attention mask [1, 1, query, key] of a decoder row with a shared prefix: causal, over the prefix (segment 0)
    and the query's own segment."""
    width = segments.shape[0]
    keys, queries = segments[None, :], segments[:, None]
    allowed = torch.ones(width, width, dtype=torch.bool, device=segments.device).tril()
    return (allowed & ((keys == 0) | (keys == queries)))[None, None]


def row_layout(row_lengths: torch.Tensor, segments: torch.Tensor | None,
               device: torch.device | str = "cpu") -> tuple[list[int], list, bool]:
    """What `packed_attention` needs, built once per forward from the batch's CPU tensors: the rows' lengths; per row
    its mask on `device`, None for a row of one text; and whether such rows attend causally (a decoder's: it has
    `segments`) or in full (an encoder's)."""
    lengths = row_lengths.tolist()
    if segments is None:
        return lengths, [None] * len(lengths), False
    # which rows share a prefix is read on the CPU: no device sync per row
    return lengths, [tree_mask(row.to(device)) if int(row[0]) == 0 else None for row in segments.split(lengths)], True


def _time_attention(dtype: torch.dtype, device: str, heads: int, kv_heads: int, dim: int, length: int,
                    backward: bool, repeats: int = 5) -> float:
    """Seconds per SDPA call (forward, and backward when training) on random [1, heads, length, dim] inputs in
    `dtype`, the best of `repeats` after two warm-up calls (the first allocates)."""
    import time

    shapes = [(1, heads, length, dim), (1, kv_heads, length, dim), (1, kv_heads, length, dim)]
    inputs = [torch.randn(shape, device=device, dtype=dtype, requires_grad=backward) for shape in shapes]
    best = float("inf")
    for attempt in range(repeats + 2):
        started = time.perf_counter()
        with torch.enable_grad() if backward else torch.no_grad():
            out = F.scaled_dot_product_attention(*inputs, enable_gqa=kv_heads != heads)
            if backward:
                out.sum().backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if attempt >= 2:
            best = min(best, time.perf_counter() - started)
    return best


@functools.lru_cache(maxsize=64)
def attention_dtype(dtype: torch.dtype, device: str, heads: int, kv_heads: int, dim: int, length: int,
                    backward: bool) -> torch.dtype:
    """The faster of `dtype` and fp32 for attention on inputs in `dtype` (bf16/fp16), for each shape (rows bucketed to
    a power of two), measured once per machine and kept (`measured_once`): CPU attention kernels are not always
    faster in bf16 (on an AMX Xeon, MiniLM's 32-wide heads ran SDPA's backward slower in bf16 than in fp32, and
    upcasting q, k, v took a bf16 training step from 14.1 to 18.6 pairs/s), while a GPU's flash kernel is. Kept, not
    re-timed in each process: two timings can choose differently, and a run resumed from a checkpoint must compute as
    the uninterrupted run did."""
    if dtype == torch.float32:
        return dtype
    from rewardkit.device import measured_once

    args = (device, heads, kv_heads, dim, length, backward)
    where = torch.cuda.get_device_name(device) if device.startswith("cuda") else device
    key = f"{where} {str(dtype).removeprefix('torch.')} heads {heads}/{kv_heads} dim {dim} length {length}" \
          f"{' backward' if backward else ''}"
    faster = measured_once("attention_dtype", key, lambda: "low" if _time_attention(dtype, *args) <=
                           _time_attention(torch.float32, *args) else "fp32")
    return dtype if faster == "low" else torch.float32


def packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """Attention for a packed sequence [1, heads, N, dim]: SDPA on each row's view, no padding. Registered with
    transformers as ATTENTION_NAME; the layout (`row_layout`) arrives as the LAYOUT_KWARG keyword. In bf16/fp16 it
    runs in the faster of that precision and fp32 on this machine (`attention_dtype`)."""
    lengths, masks, causal = kwargs[LAYOUT_KWARG]
    grouped = key.shape[1] != query.shape[1]  # grouped-query attention: each key/value head serves several heads
    compute = attention_dtype(query.dtype, str(query.device), query.shape[1], key.shape[1], query.shape[-1],
                              1 << max(max(lengths) - 1, 1).bit_length(), torch.is_grad_enabled())
    # each row's output as [1, length, heads, dim], joined along the sequence: the result is contiguous in the layout
    # transformers reshapes it to, where joining [1, heads, length, dim] rows needed another copy (fwd+bwd of 32 HH
    # rows with MiniLM's 12 heads: 490 instead of 670 ms on a 2-core AMD EPYC)
    outputs = [F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scaling,
                                              is_causal=causal and mask is None, enable_gqa=grouped).transpose(1, 2)
               for q, k, v, mask in zip(*(t.to(compute).split(lengths, 2) for t in (query, key, value)), masks)]
    return torch.cat(outputs, 1).to(query.dtype), None  # [1, N, heads, dim]


@contextlib.contextmanager
def packed_attention_for(config):
    """Route the model's attention through `packed_attention` for one forward pass."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, packed_attention)
    previous = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        config._attn_implementation = previous
