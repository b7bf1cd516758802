"""`rewardkit rl`: optimize a policy against a reward spec, with checkpoints, metrics, samples and a final report.

    rewardkit rl --config examples/rl_imdb.yaml
    rewardkit rl --policy smollm2-135m --reward runs/imdb-rm --prompts prompts.jsonl --algorithm grpo \\
                 --samples-per-prompt 4

Output folder: `metrics.jsonl` (+ `tensorboard/`), `eval.jsonl` (held-out evaluations), `samples/` (generations at
intervals and at every evaluation), `checkpoints/step-N/` (written atomically and pruned to --keep-checkpoints by
`rewardkit.runs`, as for train-rm; `--resume` continues from the newest one exactly), `policy/` (the final policy;
LoRA adapters only when --lora-rank > 0), `summary.json` (with the placement: device, precision and why; and the
process count) and `report.html` / `report.md`. Nothing heavy is imported at module level, so `rewardkit --help`
stays fast.

`--device` and `--precision` resolve once to a `Placement` shared by the policy, reference, critic and reward models.
Launched with `torchrun --nproc-per-node N -m rewardkit.cli rl ...` (or `accelerate launch`), the N processes share
each step's prompts and take the update one process would take (`rewardkit.rl.distributed`); only the main process
prints (and shows the progress bar), writes metrics, samples, checkpoints and the report, and evaluates on the
held-out prompts while the others wait, so that the evaluation does not depend on the process count.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rewardkit.errors import RewardkitError
from rewardkit.rl.config import ALGORITHM_NAMES, RLConfig
from rewardkit.runs import write_jsonl_atomically
from rewardkit.tracking import Run

__all__ = ["RLConfig", "ALGORITHM_NAMES", "run_rl"]


def reward_fields(rewards: list, path: str, fields: list, locations: list) -> list | None:
    """The record fields to pass to the rewards (None when none of them reads any), after checking that every record
    has each field they read, and has it in a form they can score: the first that does not is a one-line error naming
    its file and line (before any training)."""
    rewards = [fn for fn in rewards if fn is not None and getattr(fn, "needs_fields", ())]
    if not rewards:
        return None
    for fn in rewards:
        for name in fn.needs_fields:
            readers = [c.name for c in getattr(fn, "components", []) if name in c.reward.needs_fields] or [fn.name]
            for row, location in zip(fields, locations):
                if name not in row:
                    raise RewardkitError(f"{location or path}: {', '.join(readers)} reads each prompt's {name!r} "
                                         f"field, and this record has none")
        for row, location in zip(fields, locations):
            try:
                fn.check_fields(row)
            except RewardkitError as exc:
                raise RewardkitError(f"{location or path}: {exc}")
    return fields


class PromptOrder:
    """Prompts in a fresh seeded shuffle every epoch; its state (epoch, position) resumes the exact order."""

    def __init__(self, count: int, per_step: int, seed: int):
        self.count, self.per_step, self.seed = count, per_step, seed
        self.epoch, self.position = 0, 0

    def _permutation(self) -> list[int]:
        import torch

        return torch.randperm(self.count, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()

    def next(self) -> list[int]:
        indices = []
        while len(indices) < self.per_step:
            order = self._permutation()
            take = order[self.position:self.position + self.per_step - len(indices)]
            indices += take
            self.position += len(take)
            if self.position >= self.count:
                self.epoch, self.position = self.epoch + 1, 0
        return indices

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


# ------------------------------------------------------------------------------------------------ models
def load_models(cfg: RLConfig, checkpoint: Path | None, placement=None):
    """(policy, tokenizer, reference, critic). The policy comes from the checkpoint when resuming; the reference is
    always the original policy (or, with LoRA, the base model under disabled adapters). The trainable policy and critic
    are loaded in fp32 (master weights); the frozen reference, inference only, in the placement's dtype."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewardkit.models.presets import resolve_model_path
    from rewardkit.rl.critic import TokenCritic

    path = resolve_model_path(cfg.policy)
    reference_dtype = placement.weights_dtype if placement is not None else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        load = lambda p, dtype=torch.float32: AutoModelForCausalLM.from_pretrained(p, dtype=dtype)  # noqa: E731
        full_weights = checkpoint / "policy" if checkpoint is not None and not cfg.lora_rank else path
        policy = load(full_weights)
        reference = None if cfg.lora_rank else load(path, reference_dtype)
    except OSError as exc:
        raise RewardkitError(f"cannot load policy {cfg.policy!r}: {str(exc).splitlines()[0]}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if cfg.lora_rank:
        try:
            import peft
        except ImportError:
            raise RewardkitError("--lora-rank needs peft: pip install 'rewardkit[peft]'")
        if checkpoint is not None:
            policy = peft.PeftModel.from_pretrained(policy, checkpoint / "policy", is_trainable=True)
        else:
            targets = cfg.lora_targets if cfg.lora_targets == "all-linear" else [
                t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
            policy = peft.get_peft_model(policy, peft.LoraConfig(
                r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=targets,
                task_type="CAUSAL_LM"))
    critic = None
    if cfg.algorithm in ("actor_critic", "ppo") and cfg.critic != "head":
        critic_path = str(checkpoint / "critic") if checkpoint is not None else cfg.critic
        critic = TokenCritic.from_pretrained(critic_path, tokenizer)
    return policy, tokenizer, reference, critic


# ------------------------------------------------------------------------------------------------ checkpoints
def save_checkpoint(run: Run, trainer, order: PromptOrder, run_state: dict) -> Path:
    """Every process calls it (the trainer's state gathers each process's RNG and reward state); the main process
    writes."""
    import torch

    from rewardkit.rl.critic import TokenCritic

    state = trainer.state_dict()

    def write(folder: Path) -> None:
        trainer.policy.save_pretrained(folder / "policy", safe_serialization=True)
        trainer.tokenizer.save_pretrained(folder / "policy")
        if isinstance(trainer.value_model, TokenCritic):
            trainer.value_model.model.save_pretrained(folder / "critic", safe_serialization=True)
            trainer.tokenizer.save_pretrained(folder / "critic")
            state["value_model"] = None  # saved as a model folder above
        torch.save(state, folder / "trainer.pt")
        (folder / "trainer_state.json").write_text(json.dumps(
            {"step": trainer.step_count, "prompt_order": order.state_dict(), **run_state}, indent=1))

    return run.save_checkpoint(trainer.step_count, write)


def load_checkpoint(folder: Path, trainer, order: PromptOrder) -> dict:
    import torch

    # Optimizer states and RNG state are plain tensors and numbers: safe to load with weights_only. They load on the
    # CPU (a GPU run resumes on a CPU-only machine too) and the optimizer moves its state next to the parameters.
    trainer.load_state_dict(torch.load(folder / "trainer.pt", weights_only=True, map_location="cpu"))
    state = json.loads((folder / "trainer_state.json").read_text())
    order.load_state_dict(state.pop("prompt_order"))
    return state


def _log_line(step: int, steps: int, m: dict) -> str:
    gold = f" gold {m['reward/gold']:+.3f}" if "reward/gold" in m else ""
    return (f"step {step}/{steps} | proxy {m['reward/proxy']:+.3f}{gold} | kl {m['kl/ref']:.3f} (β {m['kl/coef']:.3g})"
            f" | len {m['response/length']:.1f} | entropy {m['policy/entropy']:.2f} | {m['time/step']:.1f} s")


def _experience_samples(trainer) -> list[dict]:
    """The step's samples of every process, in prompt order (a collective: every process calls it)."""
    exp = trainer.last_experience
    return trainer.processes.gather([
        {"prompt": p, "response": r, "proxy": float(s), "gold": None if exp.gold is None else float(exp.gold[i]),
         "truncated": bool(exp.rollout.truncated[i])}
        for i, (p, r, s) in enumerate(zip(exp.prompts, exp.texts, exp.scores))])


# ------------------------------------------------------------------------------------------------ the command
@dataclasses.dataclass
class PromptSet:
    """Prompts with what each one carries: its reference (None when the file has none), its other record fields (for
    rewards that read them; None when none does), and where it came from (file:line, for errors)."""

    prompts: list
    references: list | None
    fields: list | None
    locations: list

    def take(self, rows: slice | list[int]) -> "PromptSet":
        pick = (lambda xs: xs[rows]) if isinstance(rows, slice) else (lambda xs: [xs[i] for i in rows])
        return PromptSet(pick(self.prompts), None if self.references is None else pick(self.references),
                         None if self.fields is None else pick(self.fields), pick(self.locations))

    def step_inputs(self, rows: list[int]) -> tuple:
        """(prompts, references, fields) of these rows: what `RLTrainer.step` takes."""
        chosen = self.take(rows)
        return chosen.prompts, chosen.references, chosen.fields


def split_prompts(cfg: RLConfig) -> tuple[PromptSet, PromptSet]:
    """The training prompts and the held-out ones: --eval-prompts (its first --eval-size), else the last --eval-size
    of --prompts; none with --eval-size 0."""
    from rewardkit.rl.policy import load_prompt_records

    train = PromptSet(*load_prompt_records(cfg.prompts, cfg.prompt_field, cfg.reference_field))
    if cfg.eval_size == 0:
        return train, PromptSet([], None, None, [])
    if cfg.eval_prompts:
        return train, PromptSet(*load_prompt_records(cfg.eval_prompts, cfg.prompt_field, cfg.reference_field)
                                ).take(slice(None, cfg.eval_size or None))
    if cfg.eval_size >= len(train.prompts):
        raise RewardkitError(f"--eval-size {cfg.eval_size} leaves no training prompts out of {len(train.prompts)}")
    return train.take(slice(None, -cfg.eval_size)), train.take(slice(-cfg.eval_size, None))


def build_trainer(cfg: RLConfig, placement, processes, checkpoint: Path | None, train: PromptSet,
                  held_out: PromptSet):
    """The rewards, the models (from the checkpoint when resuming) and the RLTrainer wiring them. The prompt sets
    keep only the record fields the rewards read, each record checked before any training."""
    import torch

    from rewardkit.rewards.spec import load_reward
    from rewardkit.rl.trainer import RLTrainer
    from rewardkit.runs import derived_seed

    torch.manual_seed(cfg.seed)  # the same on every process: LoRA adapters and heads start identical
    reward_fn = load_reward(cfg.reward, placement=placement)
    gold_fn = load_reward(cfg.gold_reward, placement=placement) if cfg.gold_reward else None
    # code_tests reads each prompt's "tests", math its "reference": every record checked before any training
    train.fields = reward_fields([reward_fn, gold_fn], cfg.prompts, train.fields, train.locations)
    held_out.fields = reward_fields([reward_fn, gold_fn], cfg.eval_prompts or cfg.prompts, held_out.fields,
                                    held_out.locations) if held_out.prompts and train.fields is not None else None
    policy, tokenizer, reference, critic = load_models(cfg, checkpoint, placement)
    trainer = RLTrainer(cfg, policy, tokenizer, reward_fn, reference=reference, critic=critic, gold_fn=gold_fn,
                        placement=placement, processes=processes)
    if processes.world > 1:  # each process draws its own samples (one process keeps the seed's stream)
        torch.manual_seed(derived_seed(cfg.seed, processes.rank))
    return trainer


def run_rl(cfg: RLConfig) -> int:
    """Run `rewardkit rl`; returns 0 on success (user errors raise RewardkitError, which the CLI prints)."""
    cfg.require_inputs()
    import torch

    from rewardkit.device import placement_of
    from rewardkit.rl.distributed import launch

    processes, placement = launch(placement_of(cfg))
    cfg.check(processes.world)
    if processes.is_main:
        placement.announce("rl")
    if cfg.num_threads > 0 or processes.world > 1:  # processes sharing a CPU split its cores
        torch.set_num_threads(cfg.num_threads or max(1, (os.cpu_count() or 1) // processes.world))
    train, held_out = split_prompts(cfg)
    run = Run("rl", cfg.output_dir, resume=cfg.resume, is_main=processes.is_main, save_every=cfg.save_every,
              keep_checkpoints=cfg.keep_checkpoints, tensorboard=cfg.tensorboard, logs=("metrics.jsonl", "eval.jsonl"))
    checkpoint = run.checkpoint_to_resume()
    trainer = build_trainer(cfg, placement, processes, checkpoint, train, held_out)
    order = PromptOrder(len(train.prompts), cfg.prompts_per_step, cfg.seed)  # one global order on every process
    run_state: dict[str, Any] = {"elapsed": 0.0, "evals": [], "before_samples": []}
    if checkpoint is not None:
        run_state = load_checkpoint(checkpoint, trainer, order)
        run.say(f"rewardkit rl: resumed from {checkpoint} at step {trainer.step_count}")
    processes.wait()  # every process has looked at the output folder before the main process writes to it
    if processes.is_main:
        run.output_dir.mkdir(parents=True, exist_ok=True)
        (run.output_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    run.start(cfg.steps, trainer.step_count, cfg.progress)
    clock = time.perf_counter() - run_state["elapsed"]
    last_samples = None
    try:
        if trainer.step_count == 0:
            evaluate(cfg, trainer, held_out, run, run_state)
        while trainer.step_count < cfg.steps:
            metrics = trainer.step(*train.step_inputs(order.next()))
            step = trainer.step_count
            report_step(cfg, trainer, run, metrics)
            if cfg.sample_every and step % cfg.sample_every == 0:
                samples = _experience_samples(trainer)
                if processes.is_main:
                    write_jsonl_atomically(run.output_dir / "samples" / f"step-{step}.jsonl", samples)
            if step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
                last_samples = evaluate(cfg, trainer, held_out, run, run_state)
            run_state["elapsed"] = time.perf_counter() - clock
            if step == cfg.steps or run.checkpoint_due(step):
                save_checkpoint(run, trainer, order, run_state)
    finally:
        run.close()
    if processes.is_main:
        finish(cfg, trainer, run, run_state, held_out, last_samples)
    return 0


def report_step(cfg: RLConfig, trainer, run: Run, metrics: dict) -> None:
    """A step's metrics to the log and the bar, its watch warnings and (every --log-every) its line on stderr."""
    step = trainer.step_count
    run.log.write(step, metrics)
    run.stepped(proxy=f"{metrics['reward/proxy']:+.3f}", kl=f"{metrics['kl/ref']:.3f}")
    for warning in trainer.new_warnings:
        run.say(f"rewardkit rl: warning at step {step}: {warning}")
    if cfg.log_every and step % cfg.log_every == 0:
        run.say(_log_line(step, cfg.steps, metrics))


def evaluate(cfg: RLConfig, trainer, held_out: PromptSet, run: Run, run_state: dict) -> list[dict] | None:
    """The policy on the held-out prompts: on the main process only, the others waiting, so that its samples are
    the same whatever the process count. Returns the samples (None without held-out prompts, or off the main
    process)."""
    if not held_out.prompts:
        return None
    if not run.is_main:
        trainer.processes.wait()
        return None
    metrics, samples = trainer.evaluate(held_out.prompts, held_out.references, cfg.eval_samples_per_prompt,
                                        seed=cfg.seed + 1, fields=held_out.fields)
    row = {"step": trainer.step_count, **metrics}
    run_state["evals"].append(row)
    if not run_state["before_samples"]:
        run_state["before_samples"] = samples
    run.log.write(trainer.step_count, metrics)
    with (run.output_dir / "eval.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    write_jsonl_atomically(run.output_dir / "samples" / f"eval-step-{trainer.step_count}.jsonl", samples)
    gold = f", gold {metrics['eval/gold']:+.3f}" if "eval/gold" in metrics else ""
    run.say(f"eval at step {trainer.step_count}: proxy {metrics['eval/proxy']:+.3f}{gold}, "
            f"kl {metrics['eval/kl']:.3f}, length {metrics['eval/length']:.1f}")
    trainer.processes.wait()
    return samples


def finish(cfg: RLConfig, trainer, run: Run, run_state: dict, held_out: PromptSet,
           last_samples: list[dict] | None) -> None:
    """On the main process: the final policy, the pruned checkpoints, summary.json and the report."""
    output_dir = run.output_dir
    trainer.policy.save_pretrained(output_dir / "policy", safe_serialization=True)
    trainer.tokenizer.save_pretrained(output_dir / "policy")
    run.finished()
    history = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    history = [row for row in history if "reward/proxy" in row]
    summary = {
        "algorithm": cfg.algorithm, "policy": cfg.policy, "reward": cfg.reward, "gold_reward": cfg.gold_reward,
        "steps": trainer.step_count, "wall_minutes": run_state["elapsed"] / 60,
        "seconds_per_step": run_state["elapsed"] / max(trainer.step_count, 1),
        "samples_per_step": cfg.prompts_per_step * cfg.samples_per_prompt,
        "eval_prompts": len(held_out.prompts), "eval_samples_per_prompt": cfg.eval_samples_per_prompt,
        "evals": run_state["evals"], "warnings": trainer.watch.warnings,
        "prompts_truncated": trainer.prompts_truncated,
        "placement": trainer.placement.as_dict(), "processes": trainer.processes.world,
        "settings": {k: v for k, v in dataclasses.asdict(cfg).items() if k in _REPORTED_SETTINGS},
    }
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    if cfg.report:
        from rewardkit.rl.report import write_report

        after = last_samples or _last_eval_samples(output_dir, run_state)
        html_path, _ = write_report(output_dir, summary, history, run_state["evals"], run_state["before_samples"],
                                    after, trainer.watch.warnings, cfg.watch_window)
        print(f"rewardkit rl: report written to {html_path}", file=sys.stderr)


def _last_eval_samples(output_dir: Path, run_state: dict) -> list[dict]:
    if not run_state["evals"]:
        return []
    path = output_dir / "samples" / f"eval-step-{run_state['evals'][-1]['step']}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


_REPORTED_SETTINGS = ("algorithm", "learning_rate", "prompts_per_step", "samples_per_prompt", "epochs",
                      "kl_coef", "kl_target", "kl_estimator", "kl_in", "entropy_coef", "max_new_tokens",
                      "temperature", "lora_rank", "whiten_rewards", "whiten_advantages", "seed")
