"""What training changes about a backbone besides its weights: LoRA adapters, frozen lower layers, gradient
checkpointing. A mixin of `RewardModel`; it reads the model's HF `model`."""

from __future__ import annotations

from torch import nn

from rewardkit.errors import RewardkitError
from rewardkit.models.heads import head_modules


class Adapters:
    """LoRA adapters, freezing and gradient checkpointing on `self.model`."""

    def add_lora(self, r: int, alpha: float, dropout: float = 0.0, target_modules: str = "all-linear") -> None:
        """Train low-rank adapters on the transformer layers' linear maps, and the whole reward head.

        Adapters go only inside the transformer layers (never on the head or the pooler): the head is trained in
        full, since a fresh head has nothing for an adapter to adapt. `target_modules` is "all-linear" or
        comma-separated layer names (e.g. q_proj,v_proj or query,value). `merge_lora` folds them into the weights.
        """
        try:
            import peft
        except ImportError:
            raise RewardkitError("LoRA needs peft: pip install 'rewardkit[peft]'")
        if r < 1:
            raise RewardkitError(f"a LoRA rank must be at least 1, got {r}")
        prefix, blocks = self._transformer_blocks()
        wanted = None if target_modules.strip() == "all-linear" else {
            t.strip() for t in target_modules.split(",") if t.strip()}
        linear = [name for name, module in blocks.named_modules() if isinstance(module, nn.Linear)]
        names = [f"{prefix}.{name}" for name in linear if wanted is None or name.rsplit(".", 1)[-1] in wanted]
        if not names:
            known = sorted({name.rsplit(".", 1)[-1] for name in linear})
            raise RewardkitError(f"LoRA targets {target_modules!r}: no such linear layer in the transformer "
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
