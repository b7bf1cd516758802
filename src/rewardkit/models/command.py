"""`rewardkit train-rm`: train a reward model (one, an ensemble, or a head on a frozen backbone's features), save it
to `--output-dir`, and print its held-out accuracy. The options are `rewardkit.models.config.TrainRMConfig`; the
training itself `rewardkit.models.trainer` (fine-tuning) and `rewardkit.models.frozen` (heads on cached features)."""

from __future__ import annotations

from rewardkit.models.config import TrainRMConfig
from rewardkit.models.trainer import RewardModelTrainer, train_ensemble


def train_reward_model(cfg: TrainRMConfig) -> int:
    """CLI entry: train (one model or an ensemble), save to cfg.output_dir, print the validation accuracy."""
    if cfg.frozen:  # a head on a frozen backbone's cached features
        from rewardkit.models.frozen import FrozenHeadTrainer

        trainer = FrozenHeadTrainer(cfg)
        summary = trainer.train()
    elif cfg.ensemble > 1:
        trainer, summary = train_ensemble(cfg)
    else:
        trainer = RewardModelTrainer(cfg)
        summary = trainer.train()
    if trainer.accelerator.is_main_process:
        unit = trainer.kind.unit
        accuracy = f"{summary['val_accuracy']:.4f} on {summary['val_examples']} held-out {unit}" \
            if summary["val_examples"] else "none (no validation data)"
        if cfg.ensemble > 1 and summary["val_examples"]:
            members = ", ".join(f"{a:.4f}" for a in summary["member_val_accuracies"])
            accuracy = (f"{accuracy} for the ensemble of {cfg.ensemble} (members {members}; their weight average "
                        f"{summary['weight_average_val_accuracy']:.4f})")
        print(f"validation accuracy: {accuracy} ({summary['train_examples']} trained, "
              f"{summary['train_seconds']:.0f} s, {summary['examples_per_second']:.1f} {unit}/s); "
              f"model saved to {cfg.output_dir}")
    return 0
