"""`RLConfig`: every option of `rewardkit rl`, each with its help text (no torch here: `rewardkit --help` stays fast).
The policy, prompt and sampling options are `PolicySampling`'s, shared with `best-of-n`; `--device` and `--precision`
come from `rewardkit.device.DeviceOptions`, the rule every command shares."""

from __future__ import annotations

from dataclasses import dataclass

from rewardkit.config import option
from rewardkit.device import DeviceOptions
from rewardkit.errors import RewardkitError
from rewardkit.runs import KEEP_CHECKPOINTS_HELP, check_keep_checkpoints


@dataclass(frozen=True)
class AlgorithmTraits:
    """What an algorithm's options may combine with (its advantage estimator lives with the trainer)."""

    clipped: bool           # PPO's clipped surrogate (else the plain policy gradient)
    critic: bool = False    # learns a value function
    grouped: bool = False   # compares several samples of the same prompt


ALGORITHM_TRAITS = {
    "reinforce": AlgorithmTraits(clipped=False),
    "actor_critic": AlgorithmTraits(clipped=False, critic=True),
    "ppo": AlgorithmTraits(clipped=True, critic=True),
    "grpo": AlgorithmTraits(clipped=True, grouped=True),
    "rloo": AlgorithmTraits(clipped=False, grouped=True),
}
ALGORITHM_NAMES = tuple(ALGORITHM_TRAITS)


@dataclass(kw_only=True)
class PolicySampling(DeviceOptions):
    """What every command that samples from a policy takes (`rl`, `best-of-n`): the policy, its prompts and how it
    samples."""

    policy: str = option("smollm2-135m", "Policy: a preset (smollm2-135m), local folder or hub id of a causal language "
                                         "model")
    prompts: str = option("", "Prompts: .jsonl/.json (records with --prompt-field, a string or a list of "
                              "{role, content} messages), .csv, or .txt (one prompt per line)", metavar="FILE")
    prompt_field: str = option("prompt", "Field (or CSV column) holding the prompt")
    reference_field: str = option("reference", "Field holding a reference answer for rewards that need one "
                                               "(ignored when absent)")
    chat_template: bool = option(False, "Wrap plain-text prompts in the policy's chat template as a user turn; "
                                        "without it they are continued as raw text (conversations always use it)")
    max_prompt_tokens: int = option(256, "Prompts longer than this keep their last tokens")
    max_new_tokens: int = option(32, "Maximum response length in tokens")
    temperature: float = option(1.0, "Sampling temperature")
    top_k: int = option(0, "Top-k sampling (0 disables)")
    top_p: float = option(1.0, "Nucleus sampling mass (1 disables)")

    def require_inputs(self) -> None:
        """The two options without which the commands have nothing to do (the configs leave them empty, since
        library callers pass a reward function and prompts of their own)."""
        if not self.reward:
            raise RewardkitError("--reward is required: a reward spec YAML or a reward model folder/preset")
        if not self.prompts:
            raise RewardkitError("--prompts is required: a file of prompts")

    def check(self) -> None:
        """Sampling settings that cannot work, as one-line user errors (before any model loads)."""
        if self.max_new_tokens < 1:
            raise RewardkitError("--max-new-tokens must be at least 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise RewardkitError("sampling needs --temperature >= 0, 0 < --top-p <= 1 and --top-k >= 0")


@dataclass
class RLConfig(PolicySampling):
    """Optimize a causal language model against a reward (REINFORCE, actor-critic, PPO, GRPO, RLOO)."""

    # ------------------------------------------------------------------ models, rewards, prompts
    reward: str = option("", "Proxy reward being optimized: a reward spec YAML, a reward-model folder/preset, or a "
                             "rewardkit serve URL", metavar="SPEC_OR_MODEL")
    gold_reward: str | None = option(None, "Optional gold reward (spec YAML or reward model) scored on the same samples "
                                           "to catch reward hacking; never optimized", metavar="SPEC_OR_MODEL")
    eval_prompts: str | None = option(None, "Held-out prompts for the before/after evaluation; by default the last "
                                            "--eval-size prompts of --prompts are held out (never trained on)",
                                      metavar="FILE")
    eval_size: int = option(32, "Number of held-out prompts evaluated (0 disables evaluation)")
    eval_samples_per_prompt: int = option(2, "Responses sampled per held-out prompt at each evaluation")
    output_dir: str = option("runs/rl", "Folder for checkpoints, metrics, samples, the final policy and the report")

    # ------------------------------------------------------------------ the algorithm
    algorithm: str = option("ppo", "Policy-optimization algorithm", choices=ALGORITHM_NAMES)
    steps: int = option(200, "Number of RL steps (each: sample, score, one update)")
    prompts_per_step: int = option(8, "Prompts sampled per step, over all processes (a multiple of their number: each "
                                      "process samples an equal share)")
    samples_per_prompt: int = option(1, "Responses per prompt; GRPO and RLOO compare them, so they need at least 2")
    epochs: int = option(1, "Passes over each step's samples (PPO/GRPO; their clipped objective keeps later passes "
                            "near the sampling policy; the unclipped algorithms take exactly one)")
    minibatch_size: int | None = option(None, "Samples per optimizer update (default: the whole step's batch)")
    forward_batch_size: int = option(16, "Samples per forward pass (memory bound; gradients are accumulated "
                                         "exactly over a minibatch)")
    learning_rate: float = option(1e-5, "Policy learning rate (AdamW)")
    value_learning_rate: float | None = option(None, "Learning rate of the value head or critic (default: the "
                                                     "policy's)")
    weight_decay: float = option(0.0, "AdamW weight decay")
    max_grad_norm: float = option(1.0, "Gradient norm clip (0 disables)")
    gamma: float = option(1.0, "Discount per token")
    lam: float = option(0.95, "GAE λ (actor_critic, ppo): 1 = Monte Carlo returns, 0 = one-step TD")
    clip_range: float = option(0.2, "PPO/GRPO ratio clip ε")
    value_clip_range: float | None = option(0.2, "PPO value clip (none disables)")
    value_coef: float = option(0.1, "Weight of the value loss (actor_critic, ppo)")
    critic: str = option("head", "Value function: 'head' (a linear head on the policy's last hidden state) or a "
                                 "reward-model folder sharing the policy's tokenizer (a separate critic initialised "
                                 "from it)")
    loss_aggregation: str = option("token_mean", "token_mean: every valid token weighs the same; sequence_mean: "
                                                 "every response weighs the same", choices=("token_mean",
                                                                                          "sequence_mean"))
    whiten_advantages: bool = option(True, "Normalize advantages over the batch's tokens: to zero mean and unit "
                                           "variance, or for grpo and rloo, whose baselines already centre each "
                                           "prompt's samples, to unit variance only (a shift by the token-weighted "
                                           "mean would give a sample that scored like the rest of its group a "
                                           "nonzero advantage)")
    whiten_rewards: bool = option(False, "Normalize the reward's totals over the batch before the KL penalty is "
                                         "added (keeps the reward/KL balance stable across reward scales)")
    group_std_scaling: bool = option(True, "GRPO: divide by the group's std (false: only centre, as Dr. GRPO)")
    truncation_penalty: float = option(0.0, "Subtracted from the reward of responses cut off without EOS")

    # ------------------------------------------------------------------ KL to the reference, entropy
    kl_coef: float = option(0.05, "KL coefficient β (initial value when --kl-target is set)")
    kl_target: float | None = option(None, "Adaptive KL: steer the per-response KL toward this many nats "
                                           "(Ziegler et al.); none keeps β fixed")
    kl_horizon: float = option(10000, "Adaptive KL horizon, in samples")
    kl_estimator: str = option("k1", "Per-token KL estimator (k1 unbiased; k3 unbiased and non-negative; k2 biased, "
                                     "low variance)", choices=("k1", "k2", "k3"))
    kl_in: str = option("reward", "Where the KL acts: a per-token penalty in the reward (PPO/RLHF style) or a loss "
                                  "term (GRPO style; use k3 or k2 there)", choices=("reward", "loss"))
    entropy_coef: float = option(0.0, "Entropy bonus weight (0 disables)")
    entropy_in: str = option("loss", "Entropy bonus as a loss term (full-distribution entropy) or an intrinsic "
                                     "per-token reward (−log π of the sampled token)", choices=("loss", "reward"))

    # ------------------------------------------------------------------ policy model
    lora_rank: int = option(0, "LoRA rank (0: full fine-tuning); with LoRA the reference is the base model with the "
                               "adapters disabled, so no second copy is kept")
    lora_alpha: float = option(32.0, "LoRA α")
    lora_dropout: float = option(0.0, "LoRA dropout")
    lora_targets: str = option("all-linear", "LoRA target modules: all-linear or comma-separated module names")
    seed: int = option(0, "Random seed (sampling, prompt order, initialisation)")
    num_threads: int = option(0, "torch CPU threads per process (0: torch's default, one per core; with several "
                                 "processes, the cores divided among them)")

    # ------------------------------------------------------------------ watch, logging, checkpoints
    watch_window: int = option(10, "Steps per window of the reward-hacking watch")
    length_drift: float = option(2.0, "Warn when the mean response length changes by more than this factor")
    gold_every: int = option(1, "Score the gold reward every this many steps")
    eval_every: int = option(25, "Evaluate on held-out prompts every this many steps (and at start and end)")
    sample_every: int = option(10, "Save the step's sampled generations every this many steps")
    save_every: int = option(50, "Checkpoint every this many steps (and at the end)")
    keep_checkpoints: int = option(2, KEEP_CHECKPOINTS_HELP)
    resume: bool = option(False, "continue from the newest checkpoint in --output-dir (none there: start fresh, "
                                 "said in a line); without it, a folder that already holds a run is refused")
    tensorboard: bool = option(True, "Also write TensorBoard event files")
    report: bool = option(True, "Write the final report (HTML and Markdown with PNG curves)")
    log_every: int = option(1, "Print a metrics line every this many steps")
    progress: bool = option(True, "Show a progress bar over the steps")

    def check(self, processes: int = 1) -> None:
        """Every option combination `rl` cannot run, as a one-line user error (before any model loads)."""
        super().check()
        algorithm = ALGORITHM_TRAITS[self.algorithm]
        if self.prompts_per_step % processes:
            raise RewardkitError(f"--prompts-per-step {self.prompts_per_step} must be divisible by the number of "
                                 f"processes ({processes})")
        if algorithm.grouped and self.samples_per_prompt < 2:
            raise RewardkitError(f"--algorithm {self.algorithm} compares samples of the same prompt: set "
                                 "--samples-per-prompt to 2 or more")
        if self.epochs > 1 and not algorithm.clipped:
            raise RewardkitError(f"--epochs {self.epochs} needs a clipped objective (ppo or grpo); {self.algorithm} "
                                 "takes one pass, later passes would be off-policy")
        batch = self.prompts_per_step * self.samples_per_prompt
        if self.minibatch_size is not None and self.minibatch_size < batch and not algorithm.clipped:
            raise RewardkitError(f"--minibatch-size {self.minibatch_size} below the step's {batch} samples needs a "
                                 f"clipped objective (ppo or grpo): {self.algorithm} has no importance ratio, and every "
                                 "update after the first would learn from samples of an older policy")
        if self.kl_in == "loss" and self.kl_estimator == "k1":
            raise RewardkitError("--kl-in loss needs --kl-estimator k3 or k2: the gradient of k1 = log π − log π_ref "
                                 "is zero in expectation, so as a loss term it would not keep the policy near the "
                                 "reference")
        for name in ("steps", "prompts_per_step", "samples_per_prompt", "epochs", "forward_batch_size"):
            if getattr(self, name) < 1:
                raise RewardkitError(f"--{name.replace('_', '-')} must be at least 1")
        if self.watch_window < 2:  # one step per window has no spread: any opposite move of proxy and gold would warn
            raise RewardkitError(f"--watch-window must be at least 2 (the watch compares the spread of the steps "
                                 f"within a window with the change between windows), got {self.watch_window}")
        if self.minibatch_size is not None and self.minibatch_size < 1:
            raise RewardkitError("--minibatch-size must be at least 1")
        if self.kl_target is not None and self.kl_target <= 0:
            raise RewardkitError("--kl-target must be positive")
        check_keep_checkpoints(self.keep_checkpoints)
