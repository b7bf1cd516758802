"""The reward model: a Hugging Face sequence-classification model with one output, plus the one tokenization rule.

Training, evaluation, scoring, serving and RL all encode texts through `RewardModel.encode_many` (`encode` for one),
so a text is scored the same way everywhere:
- Decoders (models whose classification head is `.score`, e.g. Llama, GPT-2, Qwen) read the prompt rendered by the
  chat template when the tokenizer has one (else plain concatenation), and the reward is read at the last real token,
  found from the attention mask, so left or right padding and pad == eos give the same score.
- Encoders (BERT-like, head `.classifier`) read `[CLS] prompt [SEP] response [SEP]` and score the pooled CLS token,
  exactly as the HF class does.
- `pooling` can read the reward elsewhere: "cls" (the first token), "mean" (the average of every real token: what
  sentence-embedding backbones such as minilm-l6 were trained to produce), "response" (the average of the response's
  tokens only, which still see the prompt through attention: two answers to one long prompt are not averaged into
  near-equal vectors by the prompt they share) or "last" (the last real token). Only the
  backbone's own choice (an encoder's "cls", a decoder's "last") is what plain transformers computes; another is
  written to `rewardkit.json`, which every rewardkit command reads.
- An optional length head (ODIN, Chen et al. 2024; `add_length_head`) reads the same features as the reward head and
  is trained to carry the length signal; the reward is the other head's. It is saved beside the model
  (`length_head.safetensors`), so plain transformers loads the reward head alone.
- Truncation keeps the response: the oldest prompt tokens go first; only if the response alone is too long is its
  beginning cut. The end of the response is never cut and no pair is dropped.
Training batches (`collate_groups`) are packed when the backbone allows it: no padding, and a decoder encodes the
prompt that a pair's (or a ranking's) texts share once (see `rewardkit.models.packing`).
Precision follows `rewardkit.device`: weights in fp32 for training (under autocast) or in bf16/fp16 for inference, and
the reward head always computes in fp32 (`keep_head_in_fp32`), so that rewards do not tie at bf16's resolution.
Saved folders are standard HF folders (safetensors) that `AutoModelForSequenceClassification` loads with one label;
the few rewardkit settings (max_length, calibration temperature, the mean and std of its rewards on held-out data)
sit beside them in `rewardkit.json`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import os
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from rewardkit.data.types import Prompt, conversation_from_text, prompt_as_text
from rewardkit.device import Placement, choose_placement, host_side, on_host
from rewardkit.errors import RewardkitError
from rewardkit.models import packing
from rewardkit.models.presets import resolve_model_path
from rewardkit.models.remote_code import write_pooling_code
from rewardkit.runs import write_text_atomically

METADATA_FILE = "rewardkit.json"
LENGTH_HEAD_FILE = "length_head.safetensors"
POOLINGS = ("cls", "mean", "response", "last")
MLP_HEAD = "rewardkit_head"  # the attribute of a HF model that holds a `train-rm --frozen --head mlp` head


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


@dataclass(slots=True)
class Encoded:
    """Token ids of one (prompt, response); `response_start` indexes the first response token in `input_ids`."""

    input_ids: list[int]
    token_type_ids: list[int] | None
    response_start: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class _SpecialTokens:
    """Where a tokenizer puts its special tokens around one or two segments, with their token types."""

    head: list[int]
    middle: list[int]
    tail: list[int]
    types: tuple[int, int, int, int, int]  # head, first segment, middle, second segment, tail

    @classmethod
    def of(cls, tokenizer, pair: bool) -> "_SpecialTokens":
        # v5 tokenizers no longer expose build_inputs_with_special_tokens: read the template off one call instead.
        a, b = (tokenizer(w, add_special_tokens=False)["input_ids"] for w in ("x", "y"))
        enc = tokenizer("x", "y") if pair else tokenizer("x")
        ids = enc["input_ids"]
        types = enc.get("token_type_ids") or [0] * len(ids)
        if len(a) != 1 or len(b) != 1 or a[0] not in ids or (pair and b[0] not in ids):
            raise RewardkitError("cannot read the tokenizer's special-token template")
        ia = ids.index(a[0])
        ib = ids.index(b[0], ia + 1) if pair else ia
        return cls(ids[:ia], ids[ia + 1:ib] if pair else [], ids[ib + 1:],
                   (types[0] if ia else 0, types[ia], types[ia], types[ib], types[-1]))

    @property
    def count(self) -> int:
        return len(self.head) + len(self.middle) + len(self.tail)


def _truncate_left(prompt_ids: list[int], response_ids: list[int], budget: int) -> tuple[list[int], list[int], bool]:
    """Cut the oldest tokens first: prompt from its start, then (only if needed) the response from its start."""
    excess = len(prompt_ids) + len(response_ids) - budget
    if excess <= 0:
        return prompt_ids, response_ids, False
    cut_prompt = min(excess, len(prompt_ids))
    prompt_ids = prompt_ids[cut_prompt:]
    response_ids = response_ids[excess - cut_prompt:]
    return prompt_ids, response_ids, True


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended position per row, whatever the padding side."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask).argmax(dim=1)


# How far a text's pooled state may move, relative to its norm, between a packed and a padded batch with weights in
# bf16/fp16: rounding alone moved it by up to 0.6% (minilm-l6) and 2.1% (smollm2-135m, 30 layers) on HH pairs, while
# four texts packed into one attention row (the bug the check exists for) moved them by 50-87% (minilm-l6, bf16).
PACKED_LOW_PRECISION_DRIFT = 0.05


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


def trained_pooling(folder: Path) -> str | None:
    """The pooling a sentence-transformers backbone was trained with (its `1_Pooling/config.json`: minilm-l6's is
    mean), when it is one of POOLINGS; None for other folders, which then read their reward the HF class's way."""
    path = folder / "1_Pooling" / "config.json"
    if not path.is_file():
        return None
    try:
        modes = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    for mode, pooling in (("pooling_mode_mean_tokens", "mean"), ("pooling_mode_cls_token", "cls"),
                          ("pooling_mode_lasttoken", "last")):
        if modes.get(mode):
            return pooling
    return None


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


class RewardModel(nn.Module):
    """A scalar-output sequence classifier plus its tokenizer and the rule that turns (prompt, response) into tokens."""

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 512, temperature: float = 1.0,
                 use_chat_template: bool | None = None, pooling: str | None = None,
                 feature_layers: tuple[int, int] | None = None):
        super().__init__()
        keep_head_in_fp32(model)
        # (first, last): the reward reads the mean of these layers' hidden states, pooled (None: the last layer's)
        self.feature_layers = tuple(feature_layers) if feature_layers else None
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.temperature = float(temperature)
        # {"mean", "std", "count", "data"} of its rewards on held-out data (see `reward_statistics`), or None
        self.reward_stats: dict | None = None
        self.is_decoder = is_decoder_head(model)
        self.pooling = pooling or ("last" if self.is_decoder else "cls")
        if self.pooling not in POOLINGS:
            raise RewardkitError(f"pooling {self.pooling!r}: choose one of {', '.join(POOLINGS)}")
        if self.is_decoder and self.pooling == "cls":
            raise RewardkitError("pooling 'cls' reads the first token, which a decoder computes before seeing any "
                                 "text; use 'last' or 'mean'")
        self.length_head: nn.Linear | None = None  # ODIN's length head (see add_length_head)
        self._head_features: torch.Tensor | None = None  # the reward head's last input, for the length head
        if tokenizer.pad_token_id is None:
            # Decoder tokenizers often have no pad token; any id works because padding is masked out.
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        model.config.pad_token_id = tokenizer.pad_token_id
        if use_chat_template is None:
            use_chat_template = self.is_decoder and bool(getattr(tokenizer, "chat_template", None))
        self.use_chat_template = use_chat_template
        self._packing_ok: bool | None = None  # whether packed training batches give the padded rewards (checked once)
        object.__setattr__(self, "_lora", None)  # the peft wrapper while LoRA adapters are attached (see add_lora)
        self._checkpointing = False  # gradient checkpointing on (see enable_gradient_checkpointing)
        self.placement: Placement | None = None  # where from_pretrained put it (None: built directly)
        self._single = _SpecialTokens.of(tokenizer, pair=False)
        self._pair = None if self.is_decoder else _SpecialTokens.of(tokenizer, pair=True)
        # Appending eos tells a decoder the response is complete, but when eos doubles as the pad token, HF's own
        # classifier would skip it as padding, so plain transformers would score a different token. Leave it off then.
        eos = tokenizer.eos_token_id
        self._append_eos = (self.is_decoder and not use_chat_template and eos is not None
                            and eos != tokenizer.pad_token_id and eos not in self._single.tail)

    # ---------------------------------------------------------------- loading and saving
    @classmethod
    def from_pretrained(cls, name_or_path: str, max_length: int | None = None, dropout: bool = True,
                        placement: Placement | None = None, train: bool = False, pooling: str | None = None,
                        **model_kwargs) -> "RewardModel":
        """Load a preset, a local folder (rewardkit or any HF model) or a hub id, with a one-output head.

        A backbone without a trained head gets a freshly initialised one, announced in one line (see
        `load_with_reward_head`). Only safetensors weights are read.
        `pooling` says which tokens the reward reads; None: the saved model's, else the one a sentence-transformers
        backbone was trained with (`trained_pooling`), else the HF class's own (an encoder's CLS, a decoder's last
        token).
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
                     pooling=pooling or metadata.get("pooling") or trained_pooling(local),
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

    @property
    def head_spec(self) -> dict | None:
        """{"type": "mlp", "width": W} for an MLP head (`attach_mlp_head`), None for the HF class's own head."""
        mlp = getattr(self.model, MLP_HEAD, None)
        return None if mlp is None else {"type": "mlp", "width": mlp[0].out_features}

    # ---------------------------------------------------------------- the length head
    def add_length_head(self) -> None:
        """Attach ODIN's length head: a linear map from the features the reward head's last layer reads to a scalar.

        HF heads differ before that layer (BERT: pooler, dropout; RoBERTa: dense, tanh), so the features are caught
        on their way into it (a forward pre-hook) rather than recomputed. The head runs in fp32, as the reward head.

        Unlike ODIN, the length head reads the features without training them (it sees them detached): the gradient
        of its correlation with length grows as 1/std of its outputs, which a fresh head makes tiny, and through the
        shared backbone it swamped the preference loss (a tiny model then learnt a one-word preference to 0.38
        validation accuracy instead of 1.0). So the length head is a linear probe of length whose output the
        preference loss adds to the reward: it explains the labels that length explains, and the reward head, kept
        uncorrelated with length, need not."""
        if self.length_head is not None:
            return
        final = final_linear(self.model)
        head = nn.Linear(final.in_features, 1, device=final.weight.device, dtype=torch.float32)
        nn.init.normal_(head.weight, std=getattr(self.model.config, "initializer_range", 0.02))
        nn.init.zeros_(head.bias)
        self.length_head = head

        def keep_features(module, args):
            self._head_features = args[0]

        final.register_forward_pre_hook(keep_features)

    @property
    def has_length_head(self) -> bool:
        """Whether `score_encoded(..., with_length=True)` gives the length head's outputs too (as an ensemble's)."""
        return self.length_head is not None

    def head_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(reward head's last weight, length head's weight), for ODIN's orthogonality term."""
        if self.length_head is None:
            raise RewardkitError("this model has no length head")
        return final_linear(self.model).weight, self.length_head.weight

    def _length_rewards(self) -> torch.Tensor:
        features = self._head_features
        self._head_features = None
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.length_head(features.detach().float().reshape(-1, features.shape[-1]))[:, 0]

    # ---------------------------------------------------------------- LoRA and memory
    def add_lora(self, r: int, alpha: float, dropout: float = 0.0, target_modules: str = "all-linear") -> None:
        """Train low-rank adapters on the transformer layers' linear maps, and the whole reward head.

        Adapters go only inside the transformer layers (never on the head or the pooler): the head is trained in
        full, since a fresh head has nothing for an adapter to adapt. `target_modules` is "all-linear" or
        comma-separated layer names (e.g. q_proj,v_proj or query,value). `merge_lora` folds them into the weights.
        """
        try:
            import peft
        except ImportError:
            raise RewardkitError("--lora-r needs peft: pip install 'rewardkit[peft]'")
        if r < 1:
            raise RewardkitError(f"--lora-r must be at least 1, got {r}")
        prefix, blocks = self._transformer_blocks()
        wanted = None if target_modules.strip() == "all-linear" else {
            t.strip() for t in target_modules.split(",") if t.strip()}
        linear = [name for name, module in blocks.named_modules() if isinstance(module, nn.Linear)]
        names = [f"{prefix}.{name}" for name in linear if wanted is None or name.rsplit(".", 1)[-1] in wanted]
        if not names:
            known = sorted({name.rsplit(".", 1)[-1] for name in linear})
            raise RewardkitError(f"--lora-target-modules {target_modules}: no such linear layer in the transformer "
                                 f"layers (they have: {', '.join(known)})")
        config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=names)
        # The adapters are injected into self.model in place; the PeftModel is kept outside the module tree (not a
        # submodule) only to merge and unload them later, so parameters and state-dict keys are counted once.
        object.__setattr__(self, "_lora", peft.get_peft_model(self.model, config))
        for module in head_modules(self.model):
            module.requires_grad_(True)

    def merge_lora(self) -> None:
        """Fold the LoRA adapters into the weights (in place): the model becomes a plain HF model again."""
        if self._lora is not None:
            self.model = self._lora.merge_and_unload()
            object.__setattr__(self, "_lora", None)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each layer's activations in the backward pass instead of keeping them: less memory, ~1/3 more
        compute. Non-reentrant, so frozen embeddings need no input-gradient hook.

        Training batches are then padded, not packed: packed attention is switched on only for the forward pass
        (`packing.packed_attention_for`), and the recomputation runs later, inside the backward pass."""
        if not getattr(self.model, "supports_gradient_checkpointing", False):
            raise RewardkitError(f"{type(self.model).__name__} does not support gradient checkpointing")
        self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self._checkpointing = True

    def _transformer_blocks(self) -> tuple[str, nn.ModuleList]:
        """The backbone's list of transformer layers and its dotted name in `self.model`."""
        for name, module in self.model.named_modules():
            if isinstance(module, nn.ModuleList) and len(module) == self.model.config.num_hidden_layers:
                return name, module
        raise RewardkitError(f"{type(self.model).__name__}: cannot find its transformer layers")

    def freeze_lower_layers(self, layers: int) -> None:
        """Stop training the embeddings and the `layers` lowest transformer layers.

        Nothing below the first trained layer needs a gradient, so autograd skips the frozen part of the backward
        pass: with half of the layers frozen a training step costs ~4 instead of ~6 FLOPs per weight and token.
        """
        if layers <= 0:
            return
        base = self.model.base_model
        _, blocks = self._transformer_blocks()
        if layers >= len(blocks):
            raise RewardkitError(f"cannot freeze {layers} of the model's {len(blocks)} layers: at least one must "
                                 f"train")
        embeddings = getattr(base, "embeddings", None)  # BERT-style: word, position and type embeddings + norm
        frozen = [base.get_input_embeddings() if embeddings is None else embeddings, *blocks[:layers]]
        for module in frozen:
            module.requires_grad_(False)

    # ---------------------------------------------------------------- tokenization
    def _ids_many(self, texts: Sequence[str], chunk: int = 1024) -> list[list[int]]:
        """Token ids of many texts through batched tokenizer calls (several times faster than a call per text)."""
        ids: list[list[int]] = []
        # texts longer than the model are expected here (`_assemble` truncates them): silence the tokenizer's warning
        getattr(self.tokenizer, "deprecation_warnings", {})["sequence-length-is-longer-than-the-specified-maximum"] = True
        for start in range(0, len(texts), chunk):
            ids += self.tokenizer(list(texts[start:start + chunk]), add_special_tokens=False)["input_ids"]
        return [i if text else [] for i, text in zip(ids, texts)]

    @functools.cached_property
    def _template_markers(self) -> tuple[str, ...]:
        """Special tokens that the chat template writes into a rendered prompt (e.g. `<|im_start|>`)."""
        probe = self.tokenizer.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True,
                                                   tokenize=False)
        return tuple(t for t in self.tokenizer.all_special_tokens if t and t in probe)

    @functools.cached_property
    def _assistant_turn_end(self) -> str:
        """What the template writes after an assistant message's content (e.g. `<|im_end|>\n`)."""
        _, response_text = self._chat_texts([{"role": "user", "content": "x"}], "RESPONSE", {})
        return response_text.split("RESPONSE", 1)[-1]

    def _chat_texts(self, prompt: Prompt, response: str, prefixes: dict[str, str]) -> tuple[str, str]:
        """The rendered prompt (cached in `prefixes`, one render per distinct prompt) and the response's text.

        A text prompt that holds the template's own special tokens was rendered already (e.g. by an RL framework
        applying the same chat template): it is taken as is rather than rendered a second time.
        """
        if isinstance(prompt, str) and any(marker in prompt for marker in self._template_markers):
            return prompt, response + self._assistant_turn_end
        messages = prompt if isinstance(prompt, list) else conversation_from_text(prompt)
        template = self.tokenizer.apply_chat_template
        key = prompt if isinstance(prompt, str) else json.dumps(prompt)
        if key not in prefixes:
            prefixes[key] = template(messages, add_generation_prompt=True, tokenize=False)
        prefix = prefixes[key]
        full = template(messages + [{"role": "assistant", "content": response}], tokenize=False)
        if not full.startswith(prefix):  # templates that rewrite earlier turns: fall back to the response text
            return prefix, response + (self.tokenizer.eos_token or "")
        return prefix, full[len(prefix):]

    def encode(self, prompt: Prompt, response: str) -> Encoded:
        """Token ids for one (prompt, response), truncated from the left to `max_length`."""
        return self.encode_many([prompt], [response])[0]

    def encode_many(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[Encoded]:
        """`encode` for many (prompt, response) at once: batched tokenization, each distinct prompt done once."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        prompt_index: dict[str, int] = {}
        prefixes: dict[str, str] = {}
        rows = []  # (index of the prompt text, response text, whether they form a sentence pair)
        for prompt, response in zip(prompts, responses):
            if self.use_chat_template:
                prompt_text, response_text = self._chat_texts(prompt, response, prefixes)
                pair = False
            else:
                prompt_text, response_text = prompt_as_text(prompt), response
                pair = self._pair is not None and bool(prompt_text)
            rows.append((prompt_index.setdefault(prompt_text, len(prompt_index)), response_text, pair))
        ids = self._ids_many(list(prompt_index) + [response_text for _, response_text, _ in rows])
        prompt_ids = ids[:len(prompt_index)]
        return [self._assemble(prompt_ids[p], response_ids, pair)
                for (p, _, pair), response_ids in zip(rows, ids[len(prompt_index):])]

    def _assemble(self, prompt_ids: list[int], response_ids: list[int], pair: bool) -> Encoded:
        """Special tokens around the segments, left truncation to `max_length`, token types for encoders."""
        if self.use_chat_template:
            specials = _SpecialTokens([], [], [], (0, 0, 0, 0, 0))
        else:
            specials = self._pair if pair else self._single
            if self._append_eos:
                response_ids = response_ids + [self.tokenizer.eos_token_id]
        budget = self.max_length - specials.count
        if budget < 1:
            raise RewardkitError(f"max_length {self.max_length} leaves no room for text")
        prompt_ids, response_ids, truncated = _truncate_left(prompt_ids, response_ids, budget)
        if pair:
            parts = [specials.head, prompt_ids, specials.middle, response_ids, specials.tail]
        else:  # one segment: prompt and response concatenated
            parts = [specials.head, prompt_ids, [], response_ids, specials.tail]
        input_ids = [t for part in parts for t in part]
        token_type_ids = None
        if not self.is_decoder:
            types = specials.types if pair else (specials.types[0],) + (specials.types[1],) * 3 + (specials.types[4],)
            token_type_ids = [ty for part, ty in zip(parts, types) for _ in part]
        response_start = len(specials.head) + len(prompt_ids) + len(specials.middle)
        return Encoded(input_ids, token_type_ids, response_start, truncated)

    @host_side  # built on the CPU; the forward moves the batch to the model
    def collate(self, encoded: Sequence[Encoded], padding_side: str | None = None) -> dict[str, torch.Tensor]:
        """Pad a batch to its longest member (dynamic padding).

        Decoders pad on the tokenizer's side unless told otherwise (pooling and positions follow the mask). Encoders
        always pad right: their CLS token must stay at position 0, where HF's classifier pools it.
        """
        side = (padding_side or self.tokenizer.padding_side) if self.is_decoder else "right"
        width = max(len(e.input_ids) for e in encoded)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        types = torch.zeros((len(encoded), width), dtype=torch.long) if not self.is_decoder else None
        for row, e in enumerate(encoded):
            n = len(e.input_ids)
            cols = slice(width - n, width) if side == "left" else slice(0, n)
            ids[row, cols] = torch.tensor(e.input_ids)
            mask[row, cols] = 1
            if types is not None and e.token_type_ids is not None:
                types[row, cols] = torch.tensor(e.token_type_ids)
        batch = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            batch["token_type_ids"] = types
        if self.pooling == "response":
            batch["response_starts"] = torch.tensor([self._pooled_from(e) for e in encoded])
        return batch

    @staticmethod
    def _pooled_from(e: Encoded) -> int:
        """Where "response" pooling starts in a text: its response, or its last token when the response is empty."""
        return min(e.response_start, len(e.input_ids) - 1)

    def collate_groups(self, groups: Sequence[Sequence[Encoded]]) -> dict[str, torch.Tensor]:
        """A training batch of groups of texts (a pair's chosen and rejected, a ranking's responses, or single texts).

        Packed when the backbone supports it (see `rewardkit.models.packing`): no padding, and for a decoder each
        group's shared prompt encoded once. The rewards and their gradients equal those of `collate` with the same
        texts, in the same flat order.
        """
        if self._checkpointing or not self._packing_works(groups):
            return self.collate([e for group in groups for e in group])
        return self._pack(groups)

    def group_length(self, group: Sequence[Encoded]) -> int:
        """Width of a group's attention rows in a training batch; batching groups of similar width keeps the
        attention's padding small."""
        return packing.row_width([e.input_ids for e in group], self.is_decoder, self._attention_weight)

    def _pack(self, groups: Sequence[Sequence[Encoded]]) -> dict[str, torch.Tensor]:
        types = None if self.is_decoder or groups[0][0].token_type_ids is None else \
            [[e.token_type_ids for e in group] for group in groups]
        starts = [[self._pooled_from(e) for e in group] for group in groups] if self.pooling == "response" else None
        return packing.pack([[e.input_ids for e in group] for group in groups], self.is_decoder,
                            self._attention_weight, token_types=types, pooling=self.pooling, pool_starts=starts)

    @functools.cached_property
    def _attention_weight(self) -> float:
        return packing.attention_weight(self.model)

    def _binding_sliding_window(self) -> int | None:
        """The backbone's sliding attention window when texts of max_length can outgrow it (Mistral, Gemma 2/3,
        Qwen2 with use_sliding_window), else None."""
        config = self.model.config
        window = getattr(config, "sliding_window", None)
        if not window or getattr(config, "use_sliding_window", True) is False:
            return None
        return window if window < self.max_length else None

    def _packing_works(self, groups: Sequence[Sequence[Encoded]]) -> bool:
        """Packing needs a backbone whose attention goes through transformers' attention registry and that takes
        explicit positions. Checked once, on the first batch, against the padded forward; left off if they differ."""
        if self._packing_ok is None and (window := self._binding_sliding_window()):
            # packed rows attend in full; a first batch of short texts would pass the check and hide that
            self._packing_ok = False
            warnings.warn(f"rewardkit: {type(self.model).__name__} attends through a sliding window of {window} "
                          f"tokens, shorter than max_length {self.max_length}; training on padded batches (slower)",
                          stacklevel=2)
        if self._packing_ok is None:
            sample = [list(group)[:3] for group in groups[:2]]
            was_training = self.model.training
            self.model.eval()
            # The pooled states are compared, not the rewards: a reward head fresh from initialization gives rewards
            # near 0 whose rounding noise is as large as they are. fp32 layouts agree to summation order; in bf16
            # they round differently (other shapes, other kernels): see PACKED_LOW_PRECISION_DRIFT.
            low_precision = next(self.model.parameters()).dtype != torch.float32
            try:
                with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
                    packed = self.pooled_states(**self._pack(sample)).float()
                    padded = self.pooled_states(**self.collate([e for g in sample for e in g])).float()
                difference = ((packed - padded).norm(dim=-1) / padded.norm(dim=-1).clamp(min=1e-6)).max()
                self._packing_ok = bool(difference <= (PACKED_LOW_PRECISION_DRIFT if low_precision else 1e-4))
            except (TypeError, ValueError, RuntimeError, IndexError):
                self._packing_ok = False
            finally:
                self.model.train(was_training)
            if not self._packing_ok:
                warnings.warn(f"rewardkit: {type(self.model).__name__} gives different rewards on packed batches; "
                              f"training on padded batches (slower)", stacklevel=2)
        return self._packing_ok

    # ---------------------------------------------------------------- scoring
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                row_lengths: torch.Tensor | None = None, segments: torch.Tensor | None = None,
                pool_index: torch.Tensor | None = None, pool_owner: torch.Tensor | None = None,
                response_starts: torch.Tensor | None = None, with_length: bool = False) -> torch.Tensor:
        """Rewards [B] with gradients: the training forward, for a batch from `collate` or `collate_groups`.
        `with_length` (a model with a length head): [B, 2], the reward and the length head's output."""
        if row_lengths is None and not self.is_decoder and self.pooling == "cls" and not self.feature_layers \
                and self.head_spec is None:
            # exactly what plain transformers computes
            kwargs = {"token_type_ids": token_type_ids.to(self.device)} if token_type_ids is not None else {}
            rewards = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                                 **kwargs).logits[:, 0]
        else:
            rewards = self._head(self.pooled_states(input_ids, attention_mask, token_type_ids, position_ids,
                                                    row_lengths, segments, pool_index, pool_owner, response_starts))
        if not with_length:
            self._head_features = None
            return rewards
        return torch.stack([rewards, self._length_rewards()], dim=1)

    def pooled_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                      row_lengths: torch.Tensor | None = None, segments: torch.Tensor | None = None,
                      pool_index: torch.Tensor | None = None, pool_owner: torch.Tensor | None = None,
                      response_starts: torch.Tensor | None = None) -> torch.Tensor:
        """[B, hidden]: each text's hidden states pooled as the head reads them, for a batch from `collate` or
        `collate_groups` (packed rows when `row_lengths` is given)."""
        device = self.device
        input_ids = input_ids.to(device)
        kwargs = {"token_type_ids": token_type_ids.to(device)} if token_type_ids is not None else {}
        if self.is_decoder:
            kwargs["use_cache"] = False
        if row_lengths is not None:
            kwargs[packing.LAYOUT_KWARG] = packing.row_layout(row_lengths, segments, device)
            with packing.packed_attention_for(self.model.config):
                hidden = self._hidden(self.model.base_model(input_ids=input_ids, position_ids=position_ids.to(device),
                                                            **self._layer_kwargs(kwargs)))
            return packing.pool_packed(hidden[0], pool_index.to(device), pool_owner.to(device))
        attention_mask = attention_mask.to(device)
        if self.is_decoder:
            kwargs["position_ids"] = position_ids_from_mask(attention_mask)
        hidden = self._hidden(self.model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                                    **self._layer_kwargs(kwargs)))
        return pool_padded(hidden, attention_mask, self.pooling, response_starts)

    def _layer_kwargs(self, kwargs: dict) -> dict:
        return {**kwargs, "output_hidden_states": True} if self.feature_layers else kwargs

    def _hidden(self, output) -> torch.Tensor:
        """The hidden states the pooling reads: the last layer's, or the mean of `feature_layers`."""
        return mean_of_layers(output.hidden_states, self.feature_layers) if self.feature_layers \
            else output.last_hidden_state

    def _head(self, pooled: torch.Tensor) -> torch.Tensor:
        return reward_from_pooled(self.model, pooled)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def score_encoded(self, encoded: Sequence[Encoded], batch_size: int = 32, progress: bool = False,
                      with_length: bool = False) -> torch.Tensor:
        """Rewards for already-encoded texts, returned in input order; `with_length` (a model with a length head):
        [2, N], the rewards and the length head's outputs.

        Batches are formed longest first (least padding). A decoder scores texts that share a prompt (pairs,
        best-of-n samples) as packed groups, the prompt encoded once; `batch_size` counts texts.
        """
        was_training = self.model.training
        self.model.eval()
        with on_host():  # rewards are returned on the CPU, in fp32
            scores = torch.empty((2, len(encoded)) if with_length else len(encoded), dtype=torch.float32)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(encoded), desc="scoring", unit="text")
        try:
            for rows, packed in self._scoring_batches(encoded, batch_size):
                if packed:
                    batch = self._pack([[encoded[i] for i in group] for group in rows])
                    rows = [i for group in rows for i in group]
                else:
                    batch = self.collate([encoded[i] for i in rows])
                rewards = self(**batch, with_length=with_length).float()
                with on_host():
                    rewards = rewards.cpu()
                scores[..., rows] = rewards.T if with_length else rewards  # [B, 2] -> [2, B]
                if bar is not None:
                    bar.update(len(rows))
        finally:
            if bar is not None:
                bar.close()
            self.model.train(was_training)
        return scores

    def _scoring_batches(self, encoded: Sequence[Encoded], batch_size: int):
        """(rows, packed) per batch: groups of indices with one prompt when packing a decoder, else indices."""
        if self.is_decoder and len(encoded) > 1:
            by_prompt: dict[tuple[int, ...], list[int]] = {}
            for i, e in enumerate(encoded):
                by_prompt.setdefault(tuple(e.input_ids[:e.response_start]), []).append(i)
            groups = [g[start:start + batch_size] for g in by_prompt.values() for start in range(0, len(g), batch_size)]
            if any(len(g) > 1 for g in groups) and self._packing_works([[encoded[i] for i in g] for g in groups[:2]]):
                groups.sort(key=lambda g: -self.group_length([encoded[i] for i in g]))
                batch: list[list[int]] = []
                for group in groups:
                    if batch and sum(map(len, batch)) + len(group) > batch_size:
                        yield batch, True
                        batch = []
                    batch.append(group)
                if batch:
                    yield batch, True
                return
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].input_ids))
        for start in range(0, len(order), batch_size):
            yield order[start:start + batch_size], False

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str], batch_size: int = 32,
              progress: bool = False) -> torch.Tensor:
        """Rewards [B] for (prompt, response) pairs, without gradients, on CPU, in input order."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not responses:
            return torch.empty(0)
        encoded = self.encode_many(prompts, responses)
        return self.score_encoded(encoded, batch_size=batch_size, progress=progress)
