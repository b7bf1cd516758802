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
Precision follows `rewardkit.device`: weights in fp32 for training (under autocast) or in bf16/fp16 for inference, and
the reward head always computes in fp32 (`keep_head_in_fp32`), so that rewards do not tie at bf16's resolution.
Saved folders are standard HF folders (safetensors) that `AutoModelForSequenceClassification` loads with one label;
the few rewardkit settings (max_length, calibration temperature, the mean and std of its rewards on held-out data)
sit beside them in `rewardkit.json`.
Its parts live beside it: the tokenization rule (`tokenization`), pooling and heads (`heads`), packed and padded
batches and scoring (`batching`), LoRA/freezing/checkpointing (`adapters`), loading and saving (`checkpoint`).
"""

from __future__ import annotations

import torch
from torch import nn

from rewardkit.device import Placement
from rewardkit.errors import RewardkitError
from rewardkit.models import packing
from rewardkit.models.adapters import Adapters
from rewardkit.models.batching import Batching
from rewardkit.models.checkpoint import Checkpointing
from rewardkit.models.heads import (MLP_HEAD, POOLINGS, final_linear, is_decoder_head, keep_head_in_fp32,
                                    mean_of_layers, pool_padded, position_ids_from_mask, reward_from_pooled)
from rewardkit.models.tokenization import TextEncoding, _SpecialTokens


class RewardModel(Checkpointing, Adapters, TextEncoding, Batching, nn.Module):
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

    # ---------------------------------------------------------------- the forward pass
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
