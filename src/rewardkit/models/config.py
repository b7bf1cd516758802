"""`TrainRMConfig`: every option of `rewardkit train-rm`, each with its help text (no torch here: `rewardkit --help`
and `rewardkit train-rm --help` stay fast). `--device` and `--precision` come from `rewardkit.device.DeviceOptions`, the
rule every command shares."""

from __future__ import annotations

from dataclasses import dataclass, fields

from rewardkit.config import option
from rewardkit.device import DeviceOptions
from rewardkit.errors import RewardkitError
from rewardkit.kinds import KIND_SPELLINGS
from rewardkit.runs import KEEP_CHECKPOINTS_HELP, check_keep_checkpoints

# train-rm options refused with --frozen when set away from their defaults, with the head's own option where it has
# one: those that change the backbone's training, which a frozen backbone does not have (None), and fine-tuning's
# schedule, which the head would ignore
_NOT_WITH_FROZEN = {"lora_rank": None, "length_head": None, "length_decorrelation": None,
                    "gradient_checkpointing": None, "ensemble": None, "resume": None,
                    "epochs": "--head-epochs", "max_steps": "--head-epochs", "learning_rate": "--head-learning-rate",
                    "batch_size": "--head-batch-size"}
HH_FILES = ["../shared/data/hh-rlhf/helpful-base.test.jsonl.gz", "../shared/data/hh-rlhf/harmless-base.test.jsonl.gz"]


@dataclass
class TrainRMConfig(DeviceOptions):
    """Train a reward model on pairwise, ranking, rating or binary feedback."""

    model: str = option("minilm-l6", "backbone: a preset (minilm-l6, smollm2-135m, mpnet-base, gemma3-270m: see the "
                                     "README's Backbones), a local folder or a hub id")
    data: list[str] = option(HH_FILES, "feedback files or folders: JSONL (.jsonl, .ndjson), JSON, CSV or TSV, "
                                       "each optionally .gz (LLMBar and OASST layouts too); a Hugging Face dataset "
                                       "folder or hf:NAME[:split]; or a `rewardkit label` database (.sqlite), read "
                                       "as its majority votes (ties left out)", metavar="PATH")
    feedback: str = option("pairs", "shape of the feedback, which also picks the loss: pairs (Bradley-Terry), "
                                    "rankings (Plackett-Luce), ratings (MSE), binary (cross-entropy)",
                           choices=KIND_SPELLINGS)
    val_data: list[str] = option([], "validation files; when empty, val_fraction of --data is held out",
                                 metavar="PATH")
    val_fraction: float = option(0.1, "fraction of --data held out for validation when --val-data is not given; "
                                      "records that share a prompt stay on one side (AlpacaEval's ~120 answers to "
                                      "one instruction are all trained on or all held out)")
    mixture: list[str] = option([], "one weight per --data path, in order, each path a source: a share W (1: all "
                                    "of it; 0.3: a seeded 30% sample; 2: every record twice) or a count n=N (N "
                                    "records, repeating the source when it has fewer). Applied after the split, "
                                    "--max-pairs-per-prompt and --balance-length; validation takes each source's "
                                    "training share (at most 1); the counts are printed. Empty: every source once",
                                 metavar="WEIGHT")
    balance_length: bool = option(False, "pairs only: keep as many pairs whose chosen response is shorter than the "
                                         "rejected one as pairs where it is longer (in tokens of the model's "
                                         "tokenizer, response alone), in each source and on each side of the split; "
                                         "the surplus is dropped at random (seeded) and counted; equal lengths stay")
    max_pairs_per_prompt: int = option(0, "keep at most N examples (pairs, groups, ...) per prompt, chosen at random "
                                          "(seeded by --seed, whatever the file order), on each side of the split; the "
                                          "dropped are counted (0: no cap)")
    columns: list[str] = option([], "column renames FIELD=COLUMN, e.g. prompt=question chosen=good; prompt= when "
                                    "there is no prompt column", metavar="FIELD=COLUMN")
    on_bad_record: str = option("fail", "what to do with a malformed record: fail, or skip and report it",
                                choices=("fail", "skip"))
    on_identical: str = option("skip", "pairs whose chosen equals rejected carry no signal: skip (each reported "
                                       "with its file:line) or fail", choices=("fail", "skip"))
    output_dir: str = option("runs/hh-rm", "where the model, train_summary.json, metrics and checkpoints go")
    max_length: int = option(512, "maximum tokens per text; longer texts lose their oldest context first")
    batch_size: int = option(16, "examples (pairs, groups, ...) per optimizer step, over all processes")
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step on each process")
    learning_rate: float = option(1e-4, "peak AdamW learning rate")
    weight_decay: float = option(0.01, "AdamW weight decay (not applied to biases and norms)")
    warmup_ratio: float = option(0.1, "fraction of steps of linear warmup before cosine decay")
    max_grad_norm: float = option(1.0, "gradient clipping norm (0 disables)")
    epochs: int = option(1, "passes over the training data")
    max_steps: int = option(-1, "stop after this many optimizer steps (overrides --epochs when > 0)")
    dropout: bool = option(False, "keep the backbone's dropout (off by default: pairwise losses train more stably)")
    freeze_layers: int = option(-1, "train neither the embeddings nor the N lowest transformer layers: their "
                                    "backward pass is skipped (half of the layers frozen: ~1/3 less compute per step). "
                                    "-1: the lower half; 0: train everything. With --lora-rank the frozen layers get no "
                                    "adapters either: -1 adapts the upper half only, 0 every layer")
    use_margin: bool = option(True, "subtract a pair's margin inside the Bradley-Terry loss when the data has one")
    lora_rank: int = option(0, "LoRA rank: train low-rank adapters on the transformer layers and the whole reward "
                               "head instead of every weight (0: no LoRA). The saved model is merged: a plain HF "
                               "model", formerly=("lora_r",))
    lora_alpha: float = option(32.0, "LoRA scaling alpha (the adapters' update is scaled by alpha / rank)")
    lora_dropout: float = option(0.0, "dropout on the LoRA adapters' input")
    lora_targets: str = option("all-linear", "linear layers of the transformer layers that get adapters: "
                                             "all-linear, or comma-separated names such as q_proj,v_proj",
                               formerly=("lora_target_modules",))
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass instead of keeping "
                                                 "them: less memory, about a third more compute (and padded "
                                                 "instead of packed batches)")
    pooling: str = option("auto", "which tokens the reward reads: cls (the first), mean (all: what sentence-embedding "
                                  "backbones such as minilm-l6 were trained for), response (the mean of the "
                                  "response's tokens, which see the prompt through attention), last (the last real "
                                  "token); auto: the HF class's own (encoders cls, decoders last), which is all plain "
                                  "transformers computes and, on minilm-l6, generalized best in the recipe study",
                          choices=("auto", "cls", "mean", "response", "last"))
    length_decorrelation: float = option(0.0, "weight of a penalty on the batch correlation between reward and "
                                              "response length, |corr(reward, length)|, so the reward cannot "
                                              "become a length meter (0: off)")
    length_head: bool = option(False, "ODIN: train a second, length head beside the reward head; the loss sees "
                                      "their sum, the length head is pushed to correlate with length and the reward "
                                      "head not to (--length-decorrelation weighs both, and their orthogonality), "
                                      "and the saved reward is the length-free head's alone")
    center_rewards_coefficient: float = option(0.0, "weight of the (r_chosen + r_rejected)^2 centering penalty")
    normalize_ratings: bool = option(True, "z-score ratings with training statistics before the MSE loss")
    seed: int = option(0, "seed for the split, batch order and initialization")
    ensemble: int = option(1, "train K members that differ in data order and save them as one folder that every "
                              "command scores as one reward model: the members' mean, with their disagreement (std); "
                              "the folder's own weights are the members' average (WARM), for plain transformers")
    eval_every: int = option(0, "validate every N steps (0: at the end of each epoch)")
    early_stopping_patience: int = option(0, "stop after N validations without a better accuracy and keep the best "
                                             "weights (0 disables)")
    save_every: int = option(100, "write a resumable checkpoint every N steps (0: only at the end)")
    keep_checkpoints: int = option(2, KEEP_CHECKPOINTS_HELP)
    resume: bool = option(False, "continue from the newest checkpoint in --output-dir (none there: start fresh, "
                                 "said in a line); without it, a folder that already holds a run is refused")
    log_every: int = option(10, "write training metrics every N steps")
    eval_batch_size: int = option(64, "texts per forward pass when validating")
    num_threads: int = option(0, "torch CPU threads per process (0: cores divided by processes)")
    tensorboard: bool = option(True, "also write metrics for TensorBoard in output_dir/tensorboard")
    progress: bool = option(True, "show a progress bar")
    # ---- frozen-feature reward models (train-rm --frozen: rewardkit.models.frozen and rewardkit.models.features)
    frozen: bool = option(False, "keep the backbone frozen: compute each text's pooled features once, in inference "
                                 "precision, cache them on disk (--feature-cache), and train only a reward head on "
                                 "them with the same loss (seconds per epoch); saved as a normal reward-model folder")
    head: str = option("linear", "with --frozen, the reward head trained on the features: linear (the HF class's own "
                                 "head modules: plain transformers loads the folder with its own pooling), or mlp "
                                 "(hidden -> --head-width -> GELU -> 1; plain transformers needs trust_remote_code)",
                       choices=("linear", "mlp"))
    head_width: int = option(256, "with --head mlp, the width of its hidden layer")
    feature_layers: str = option("", "with --frozen, read the mean of a range of layers' hidden states before "
                                     "pooling: FIRST-LAST (e.g. 4-6; 0 is the embeddings, N the last layer) or one "
                                     "layer N; empty: the last layer's")
    feature_cache: str = option("auto", "with --frozen, the folder of cached features, keyed by backbone weights, "
                                        "token ids, pooling, layers and precision: auto ($REWARDKIT_CACHE/features, "
                                        "default ~/.cache/rewardkit/features), a folder, or off")
    head_epochs: int = option(30, "with --frozen, passes of the head over the cached features")
    head_learning_rate: float = option(1e-3, "with --frozen, the head's AdamW learning rate (constant)")
    head_batch_size: int = option(64, "with --frozen, examples per head step (0: the whole training set at once)")

    def check(self, processes: int = 1) -> None:
        """Every option combination train-rm cannot run, as a one-line user error (before data or model load)."""
        if self.ensemble < 1:
            raise RewardkitError(f"--ensemble must be at least 1, got {self.ensemble}")
        if self.batch_size % (processes * self.gradient_accumulation_steps):
            raise RewardkitError(f"--batch-size {self.batch_size} must be divisible by processes ({processes}) x "
                                 f"--gradient-accumulation-steps ({self.gradient_accumulation_steps})")
        if self.length_head and self.length_decorrelation <= 0:
            raise RewardkitError("--length-head needs --length-decorrelation > 0: without it nothing tells the two "
                                 "heads apart (ODIN used 1.0)")
        if self.length_decorrelation < 0:
            raise RewardkitError(f"--length-decorrelation must be at least 0, got {self.length_decorrelation}")
        check_keep_checkpoints(self.keep_checkpoints)
        self._check_frozen()

    def _check_frozen(self) -> None:
        """Options that mean nothing (or something else) with, or without, --frozen."""
        if not self.frozen:
            if self.head != "linear" or self.feature_layers:
                option = "--head mlp" if self.head != "linear" else "--feature-layers"
                raise RewardkitError(f"{option} trains a head on frozen features: add --frozen")
            return
        defaults = {f.name: f.default for f in fields(self)}
        for name, counterpart in _NOT_WITH_FROZEN.items():
            if getattr(self, name) != defaults[name]:
                why = (f": the head's is {counterpart}" if counterpart
                       else " (only a head trains, in seconds, on cached features)")
                raise RewardkitError(f"--{name.replace('_', '-')} does not apply to --frozen{why}")
        if self.head_epochs < 1:
            raise RewardkitError(f"--head-epochs must be at least 1, got {self.head_epochs}")
        if self.head_batch_size < 0:
            raise RewardkitError(f"--head-batch-size must be 0 (all at once) or more, got {self.head_batch_size}")
        if self.head == "mlp" and self.head_width < 1:
            raise RewardkitError(f"--head-width must be at least 1, got {self.head_width}")
        if self.head_learning_rate <= 0:
            raise RewardkitError(f"--head-learning-rate must be above 0, got {self.head_learning_rate}")
