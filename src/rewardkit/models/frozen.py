"""`train-rm --frozen`: a reward head trained on the cached features of a frozen backbone.

The data, the split, the tokenization and the loss are train-rm's own (this trainer is a `RewardModelTrainer` that
replaces only the training loop): each text's features are computed once by the frozen backbone in inference precision
and cached (`rewardkit.models.features`), then the head trains on them with the kind's task (Bradley-Terry with
margin, Plackett-Luce, MSE on ratings, binary cross-entropy from `rewardkit.models.tasks`) by AdamW for
`--head-epochs`, in seconds. Validation scores the held-out texts' features with the head, which is what `score`,
`serve` and `eval-rm` compute with the saved folder on this machine (same precision; texts batched otherwise).

The head is the HF class's own head modules (`--head linear`: a decoder's linear `score`, BERT's pooler and
classifier), so a folder whose pooling is the class's own (cls for BERT, last for decoders) is a plain HF folder; or
an MLP (`--head mlp`), which the saved folder's modeling_rewardkit.py builds for plain transformers
(trust_remote_code=True), as it does for another pooling or a range of layers (`--feature-layers`).

Ratings with several columns (several objectives) are not supported: a rating record holds one score.
"""

from __future__ import annotations

import math
import time

import torch

from rewardkit.device import on_host
from rewardkit.errors import RewardkitError
from rewardkit.models.config import TrainRMConfig
from rewardkit.models.features import cache_root_of, extract_features, parse_feature_layers
from rewardkit.models.checkpoint import attach_mlp_head, reward_statistics
from rewardkit.models.heads import MLP_HEAD, head_modules, keep_head_in_fp32, reward_from_pooled
from rewardkit.models.trainer import RewardModelTrainer, _write_summary

class FrozenHeadTrainer(RewardModelTrainer):
    """train-rm's data, split, tokenization and task, with a frozen backbone: `train()` extracts (or reads) the
    features, trains the head on them, saves the folder and returns train-rm's summary."""

    def __init__(self, cfg: TrainRMConfig):
        super().__init__(cfg)
        if self.world > 1:
            raise RewardkitError("--frozen runs on one process (its head trains in seconds); launch it without "
                                 "torchrun or accelerate launch")
        model = self.reward_model
        model.feature_layers = parse_feature_layers(cfg.feature_layers, model.model.config.num_hidden_layers)
        model.model.requires_grad_(False)
        if cfg.head == "mlp":
            torch.manual_seed(cfg.seed)
            attach_mlp_head(model.model, cfg.head_width)
            keep_head_in_fp32(model.model)
            self.head_params = list(getattr(model.model, MLP_HEAD).parameters())
        else:
            self.head_params = [p for module in head_modules(model.model) for p in module.parameters()]
        for p in self.head_params:
            p.requires_grad_(True)
        self.reward_model = model.to(self.accelerator.device)
        self.train_features: torch.Tensor | None = None  # [texts, hidden] fp32 on the device, after `features()`
        self.val_features: torch.Tensor | None = None
        self.extraction = None  # the `ExtractionStats` of the features

    # -------------------------------------------------------------- features
    def features(self) -> None:
        """Every training and validation text's features, read from the cache or computed (and cached)."""
        cfg, model = self.cfg, self.reward_model
        texts = [t for e in self.train_examples for t in e.encoded]
        val_texts = [t for e in self.val_examples for t in e.encoded]
        features, stats = extract_features(model, texts + val_texts, self.placement, batch_size=cfg.eval_batch_size,
                                           cache_root=cache_root_of(cfg.feature_cache),
                                           progress=cfg.progress and self.accelerator.is_main_process)
        self.run.say(f"train-rm --frozen: {stats.describe()}")
        features = features.to(self.accelerator.device)
        self.train_features, self.val_features = features[:len(texts)], features[len(texts):]
        self.extraction = stats

    @staticmethod
    def _rows(examples) -> list[torch.Tensor]:
        """Each example's rows in the flat features of its texts."""
        rows, start = [], 0
        with on_host():
            for e in examples:
                rows.append(torch.arange(start, start + len(e.encoded)))
                start += len(e.encoded)
        return rows

    def head_scores(self, features: torch.Tensor) -> torch.Tensor:
        """Rewards [N] of features [N, hidden]: the reward model's own head (`reward_from_pooled`), in fp32."""
        return reward_from_pooled(self.reward_model.model, features).float()

    @torch.no_grad()
    def val_scores(self) -> torch.Tensor:
        """The rewards the head gives the validation texts, in their order (what the saved folder scores)."""
        return self.head_scores(self.val_features)

    def validate_head(self) -> float | None:
        """Validation accuracy of the head (train-rm's measure); sets `val_reward_sums` as `validate` does."""
        if not self.val_examples:
            return None
        scores = self.val_scores()
        correct = self.task.correct(scores, self.val_examples)
        rewards = scores.double()
        with on_host():
            self.val_reward_sums = [len(rewards), float(rewards.sum()), float((rewards ** 2).sum())]
            return float(correct.sum()) / len(self.val_examples)

    # -------------------------------------------------------------- training
    def train(self) -> dict:
        cfg, model = self.cfg, self.reward_model
        self.features()
        model.model.eval()  # dropout off: the head trains on what inference computes
        state = {"step": 0, "best_accuracy": None, "evals_without_improvement": 0, "examples_seen": 0,
                 "train_seconds": 0.0}
        self.run.start(cfg.head_epochs, 0, cfg.progress)
        # a head's matmuls are too small to share among threads: on 2 busy cores, 2 threads took 400 ms a step of 64
        # pairs where 1 thread took 10 ms
        threads = torch.get_num_threads()
        if self.placement.device_type == "cpu":
            torch.set_num_threads(1)
        started = time.perf_counter()
        try:
            epochs, stopped_early, best_head = self._train_head(state)
        finally:
            torch.set_num_threads(threads)
            self.run.close()
        head_seconds = time.perf_counter() - started
        sums = state.get("val_reward_sums")
        if best_head is not None:
            with torch.no_grad():
                for p, kept in zip(self.head_params, best_head[0]):
                    p.copy_(kept)
            state["val_accuracy"], sums = state["best_accuracy"], best_head[1]
        for p in self.head_params:
            p.requires_grad_(False)
        model.reward_stats = reward_statistics(*sums, data=f"train-rm validation ({len(self.val_examples)} "
                                                          f"examples)") if sums and sums[0] else None
        # train-rm's time is what it took to get the model: the features (read or computed) and the head
        state["train_seconds"] = self.extraction.seconds + head_seconds
        summary = self._finish(model, state, stopped_early)
        stats = self.extraction
        summary.update({
            "frozen": True, "head": cfg.head, "head_epochs_run": epochs, "head_seconds": round(head_seconds, 2),
            "feature_seconds": round(stats.seconds, 2), "features_read_from_cache": stats.read,
            "features_computed": stats.computed, "feature_texts": stats.texts, "feature_precision": stats.precision,
            "feature_layers": list(model.feature_layers) if model.feature_layers else None,
            "feature_cache": stats.cache,
        })
        if self.accelerator.is_main_process:
            _write_summary(self.output_dir, summary)
        return summary

    def _train_head(self, state: dict) -> tuple[int, bool, tuple | None]:
        """The head's epochs on the features, validated after each: (epochs run, whether early stopping ended them,
        the best head's weights and validation reward sums when early stopping kept them, else None)."""
        cfg, run = self.cfg, self.run
        decay = [p for p in self.head_params if p.ndim >= 2]
        no_decay = [p for p in self.head_params if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=cfg.head_learning_rate)
        n = len(self.train_examples)
        batch_size = cfg.head_batch_size or n
        total_steps = math.ceil(n / batch_size) * cfg.head_epochs
        generator = torch.Generator().manual_seed(self.order_seed)
        report_every = max(1, cfg.head_epochs // 10)
        kept: list = []  # the best head, when early stopping keeps it

        def keep_best():
            kept[:] = [([p.detach().clone() for p in self.head_params], self.val_reward_sums)]

        for epoch in range(1, cfg.head_epochs + 1):
            loss, accuracy = self._head_epoch(optimizer, generator, batch_size, epoch, state)
            run.log.write(state["step"], {"loss": loss, "accuracy": accuracy, "epoch": epoch}, prefix="train")
            run.stepped(loss=f"{loss:.4f}", acc=f"{accuracy:.3f}")
            if not self.val_examples:
                continue
            with torch.no_grad():
                val_accuracy = self.validate_head()
            state["val_accuracy"], state["val_reward_sums"] = val_accuracy, self.val_reward_sums
            run.log.write(state["step"], {"accuracy": val_accuracy}, prefix="val")
            if epoch % report_every == 0 or epoch == cfg.head_epochs:
                run.say(f"train-rm: epoch {epoch}/{cfg.head_epochs} (step {state['step']}/{total_steps}) "
                        f"validation accuracy {val_accuracy:.4f}")
            if self.early_stop(state, val_accuracy, keep_best):
                return epoch, True, kept[0] if kept else None
        return cfg.head_epochs, False, kept[0] if kept else None

    def _head_epoch(self, optimizer, generator, batch_size: int, epoch: int, state: dict) -> tuple[float, float]:
        """One pass over the training features in a seeded order: (mean loss, accuracy)."""
        rows, n = self._rows(self.train_examples), len(self.train_examples)
        with on_host():
            order = torch.randperm(n, generator=generator).tolist()
        loss_sum = correct_sum = 0.0
        for start in range(0, n, batch_size):
            batch = order[start:start + batch_size]
            examples = [self.train_examples[i] for i in batch]
            with on_host():
                index = torch.cat([rows[i] for i in batch])
            scores = self.head_scores(self.train_features[index.to(self.train_features.device)])
            losses = self.task.loss(scores, examples)
            loss = losses.mean()
            if not torch.isfinite(loss):
                raise RewardkitError(f"the head's loss became {float(loss)} in epoch {epoch}; stopped (try a "
                                     f"lower --head-learning-rate)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.head_params, self.cfg.max_grad_norm)
            optimizer.step()
            state["step"] += 1
            state["examples_seen"] += len(batch)
            with on_host():
                loss_sum += float(losses.detach().sum())
                correct_sum += float(self.task.correct(scores.detach(), examples).sum())
        return loss_sum / n, correct_sum / n
