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
from rewardkit.runs import (checkpoint_dir, checkpoint_dirs, progress_bar, prune_checkpoints, truncate_jsonl,
                            write_atomically, write_jsonl_atomically)

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
def save_checkpoint(cfg: RLConfig, trainer, order: PromptOrder, run_state: dict) -> Path:
    """Every process calls it (the trainer's state gathers each process's RNG and reward state); the main process
    writes."""
    import torch

    from rewardkit.rl.critic import TokenCritic

    output_dir = Path(cfg.output_dir)
    target = checkpoint_dir(output_dir, trainer.step_count)
    state = trainer.state_dict()
    if not trainer.processes.is_main:
        return target

    def write(folder: Path) -> None:
        trainer.policy.save_pretrained(folder / "policy", safe_serialization=True)
        trainer.tokenizer.save_pretrained(folder / "policy")
        if isinstance(trainer.value_model, TokenCritic):
            trainer.value_model.model.save_pretrained(folder / "critic", safe_serialization=True)
            trainer.tokenizer.save_pretrained(folder / "critic")
        if isinstance(trainer.value_model, TokenCritic):
            state["value_model"] = None  # saved as a model folder above
        torch.save(state, folder / "trainer.pt")
        (folder / "trainer_state.json").write_text(json.dumps(
            {"step": trainer.step_count, "prompt_order": order.state_dict(), **run_state}, indent=1))

    write_atomically(target, write)
    prune_checkpoints(output_dir, cfg.keep_checkpoints)
    return target


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
def run_rl(cfg: RLConfig) -> int:
    """Run `rewardkit rl`; returns 0 on success (user errors raise RewardkitError, which the CLI prints)."""
    from rewardkit.rl.policy import load_prompt_records, require_reward_and_prompts

    require_reward_and_prompts(cfg)
    import torch

    from rewardkit.device import placement_of
    from rewardkit.rewards.spec import load_reward
    from rewardkit.rl.distributed import launch
    from rewardkit.runs import derived_seed
    from rewardkit.rl.trainer import RLTrainer, check_config
    from rewardkit.tracking import MetricsLog

    processes, placement = launch(placement_of(cfg))
    main = processes.is_main
    check_config(cfg, processes.world)
    if main:
        placement.announce("rl")
    if cfg.num_threads > 0 or processes.world > 1:  # processes sharing a CPU split its cores
        torch.set_num_threads(cfg.num_threads or max(1, (os.cpu_count() or 1) // processes.world))
    output_dir = Path(cfg.output_dir)
    prompts, references, fields, locations = load_prompt_records(cfg.prompts, cfg.prompt_field, cfg.reference_field)
    if cfg.eval_prompts:
        eval_prompts, eval_references, eval_fields, eval_locations = load_prompt_records(
            cfg.eval_prompts, cfg.prompt_field, cfg.reference_field)
        keep = slice(None, cfg.eval_size or None)
        eval_prompts, eval_fields, eval_locations = eval_prompts[keep], eval_fields[keep], eval_locations[keep]
        eval_references = eval_references[keep] if eval_references else None
    elif cfg.eval_size:
        if cfg.eval_size >= len(prompts):
            raise RewardkitError(f"--eval-size {cfg.eval_size} leaves no training prompts out of {len(prompts)}")
        eval_prompts, prompts = prompts[-cfg.eval_size:], prompts[:-cfg.eval_size]
        eval_fields, fields = fields[-cfg.eval_size:], fields[:-cfg.eval_size]
        eval_locations, locations = locations[-cfg.eval_size:], locations[:-cfg.eval_size]
        eval_references, references = ((references[-cfg.eval_size:], references[:-cfg.eval_size])
                                       if references else (None, None))
    else:
        eval_prompts, eval_references, eval_fields, eval_locations = [], None, [], []
    if cfg.eval_size == 0:
        eval_prompts = []

    checkpoint = None
    if cfg.resume:
        found = checkpoint_dirs(output_dir)
        if not found:
            raise RewardkitError(f"--resume: no checkpoint in {output_dir / 'checkpoints'}")
        checkpoint = found[-1]
    elif (output_dir / "metrics.jsonl").exists():
        raise RewardkitError(f"{output_dir} already holds a run: pass --resume to continue it or choose another "
                             "--output-dir")

    torch.manual_seed(cfg.seed)  # the same on every process: LoRA adapters and heads start identical
    reward_fn = load_reward(cfg.reward, placement=placement)
    gold_fn = load_reward(cfg.gold_reward, placement=placement) if cfg.gold_reward else None
    # code_tests reads each prompt's "tests", math its "reference": every record checked before any training
    fields = reward_fields([reward_fn, gold_fn], cfg.prompts, fields, locations)
    if eval_prompts and fields is not None:
        eval_fields = reward_fields([reward_fn, gold_fn], cfg.eval_prompts or cfg.prompts, eval_fields,
                                    eval_locations)
    else:
        eval_fields = None
    policy, tokenizer, reference, critic = load_models(cfg, checkpoint, placement)
    trainer = RLTrainer(cfg, policy, tokenizer, reward_fn, reference=reference, critic=critic, gold_fn=gold_fn,
                        placement=placement, processes=processes)
    if processes.world > 1:  # each process draws its own samples (one process keeps the seed's stream)
        torch.manual_seed(derived_seed(cfg.seed, processes.rank))
    order = PromptOrder(len(prompts), cfg.prompts_per_step, cfg.seed)  # the same global order on every process
    run_state: dict[str, Any] = {"elapsed": 0.0, "evals": [], "before_samples": []}
    if checkpoint is not None:
        run_state = load_checkpoint(checkpoint, trainer, order)
        if main:
            truncate_jsonl(output_dir / "metrics.jsonl", trainer.step_count)
            truncate_jsonl(output_dir / "eval.jsonl", trainer.step_count)
            print(f"rewardkit rl: resumed from {checkpoint} at step {trainer.step_count}", file=sys.stderr)
    processes.wait()  # every process has looked at the output folder before the main process writes to it
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    log = MetricsLog(output_dir, enabled=main, tensorboard=cfg.tensorboard)
    clock = time.perf_counter() - run_state["elapsed"]
    bar = progress_bar(cfg.progress and main, cfg.steps, trainer.step_count, "rl")

    def say(line: str) -> None:
        """A line on stderr, written through the progress bar when there is one so that neither is torn."""
        if bar is not None:
            bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def evaluate() -> list[dict] | None:
        """On the main process only, the others waiting: the same samples whatever the process count."""
        if not eval_prompts:
            return None
        if not main:
            processes.wait()
            return None
        metrics, samples = trainer.evaluate(eval_prompts, eval_references, cfg.eval_samples_per_prompt,
                                            seed=cfg.seed + 1, fields=eval_fields)
        row = {"step": trainer.step_count, **metrics}
        run_state["evals"].append(row)
        if not run_state["before_samples"]:
            run_state["before_samples"] = samples
        log.write(trainer.step_count, metrics)
        with (output_dir / "eval.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        write_jsonl_atomically(output_dir / "samples" / f"eval-step-{trainer.step_count}.jsonl", samples)
        gold = f", gold {metrics['eval/gold']:+.3f}" if "eval/gold" in metrics else ""
        say(f"eval at step {trainer.step_count}: proxy {metrics['eval/proxy']:+.3f}{gold}, "
            f"kl {metrics['eval/kl']:.3f}, length {metrics['eval/length']:.1f}")
        processes.wait()
        return samples

    try:
        if trainer.step_count == 0:
            evaluate()
        last_samples = None
        while trainer.step_count < cfg.steps:
            rows = order.next()
            metrics = trainer.step([prompts[i] for i in rows],
                                   [references[i] for i in rows] if references else None,
                                   [fields[i] for i in rows] if fields is not None else None)
            step = trainer.step_count
            log.write(step, metrics)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(proxy=f"{metrics['reward/proxy']:+.3f}", kl=f"{metrics['kl/ref']:.3f}")
            for warning in trainer.new_warnings if main else []:
                say(f"rewardkit rl: warning at step {step}: {warning}")
            if main and cfg.log_every and step % cfg.log_every == 0:
                say(_log_line(step, cfg.steps, metrics))
            if cfg.sample_every and step % cfg.sample_every == 0:
                samples = _experience_samples(trainer)
                if main:
                    write_jsonl_atomically(output_dir / "samples" / f"step-{step}.jsonl", samples)
            if step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
                last_samples = evaluate()
            run_state["elapsed"] = time.perf_counter() - clock
            if step == cfg.steps or (cfg.save_every and step % cfg.save_every == 0):
                save_checkpoint(cfg, trainer, order, run_state)
    finally:
        if bar is not None:
            bar.close()
        log.close()

    if not main:
        return 0
    final = output_dir / "policy"
    trainer.policy.save_pretrained(final, safe_serialization=True)
    tokenizer.save_pretrained(final)
    prune_checkpoints(output_dir, cfg.keep_checkpoints, run_finished=True)
    history = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    history = [row for row in history if "reward/proxy" in row]
    summary = {
        "algorithm": cfg.algorithm, "policy": cfg.policy, "reward": cfg.reward, "gold_reward": cfg.gold_reward,
        "steps": trainer.step_count, "wall_minutes": run_state["elapsed"] / 60,
        "seconds_per_step": run_state["elapsed"] / max(trainer.step_count, 1),
        "samples_per_step": cfg.prompts_per_step * cfg.samples_per_prompt,
        "eval_prompts": len(eval_prompts), "eval_samples_per_prompt": cfg.eval_samples_per_prompt,
        "evals": run_state["evals"], "warnings": trainer.watch.warnings,
        "prompts_truncated": trainer.prompts_truncated,
        "placement": placement.as_dict(), "processes": processes.world,
        "settings": {k: v for k, v in dataclasses.asdict(cfg).items() if k in _REPORTED_SETTINGS},
    }
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    if cfg.report:
        from rewardkit.rl.report import write_report

        after = last_samples or _last_eval_samples(output_dir, run_state)
        html_path, _ = write_report(output_dir, summary, history, run_state["evals"], run_state["before_samples"],
                                    after, trainer.watch.warnings, cfg.watch_window)
        print(f"rewardkit rl: report written to {html_path}", file=sys.stderr)
    return 0


def _last_eval_samples(output_dir: Path, run_state: dict) -> list[dict]:
    if not run_state["evals"]:
        return []
    path = output_dir / "samples" / f"eval-step-{run_state['evals'][-1]['step']}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


_REPORTED_SETTINGS = ("algorithm", "learning_rate", "prompts_per_step", "samples_per_prompt", "epochs",
                      "kl_coef", "kl_target", "kl_estimator", "kl_in", "entropy_coef", "max_new_tokens",
                      "temperature", "lora_rank", "whiten_rewards", "whiten_advantages", "seed")
