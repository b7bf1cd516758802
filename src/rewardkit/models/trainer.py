"""The fine-tuning loop of `rewardkit train-rm` (its entry: `rewardkit.models.command`), on Accelerate (1 process or
DDP; sharded launches, FSDP and DeepSpeed, are refused: checkpoints and saved folders read whole state dicts).

The loop is deliberately plain. Global batches are built on every process from the seed and the epoch (length-grouped,
then shuffled); each process takes its share of every global batch, so N processes compute the same optimizer step as
one process with the same global batch. Losses are summed per micro-batch and divided by the global batch size, so
gradient accumulation and the process count leave the loss scale unchanged. Checkpoints hold everything a resumed run
needs (weights, optimizer, scheduler, RNG, step, and with early stopping the best weights so far); `rewardkit.runs`
writes them atomically and prunes them to --keep-checkpoints, as for `rewardkit rl`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from safetensors.torch import load_file, load_model, save_file, save_model
from transformers import get_cosine_schedule_with_warmup

from rewardkit.data.sampling import Selection, parse_mixture, split_and_select
from rewardkit.device import on_host, placement_of
from rewardkit.errors import RewardkitError
from rewardkit.kinds import kind_named
from rewardkit.losses import head_orthogonality_loss, length_decorrelation_loss
from rewardkit.models import tasks
from rewardkit.models.config import TrainRMConfig
from rewardkit.models.precision import WorkingWeights, scoring_in
from rewardkit.models.ensemble import RewardEnsemble, average_state_dicts, member_dir, save_ensemble
from rewardkit.models.checkpoint import LENGTH_HEAD_FILE, reward_statistics
from rewardkit.models.reward_model import RewardModel
from rewardkit.runs import checkpoint_dirs, derived_seed, json_ready, rng_state, set_rng_state, write_text_atomically
from rewardkit.tracking import Run

__all__ = ["RewardModelTrainer", "TrainRMConfig", "length_grouped_batches", "shard", "train_ensemble"]


# ------------------------------------------------------------------------------------------------ data preparation

ENCODE_CHUNK = 2048  # records tokenized per call when encoding training and validation data

def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, group_factor: int = 50) -> list[list[int]]:
    """Global batches of similar lengths (little padding) in a random but seed-determined order.

    Shuffle, cut into mega-batches of `group_factor` batches, sort each by length (longest first), split into batches,
    then shuffle the batches so long and short ones alternate across the epoch.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * group_factor
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start:start + mega], key=lambda i: -lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def shard(batch: list[int], rank: int, world: int, micro_batches: int) -> list[list[int]]:
    """This process's micro-batches of one global batch (strided, so shares stay balanced in length)."""
    mine = batch[rank::world]
    return [mine[i::micro_batches] for i in range(micro_batches) if mine[i::micro_batches]]


def _write_summary(output_dir: Path, summary: dict) -> None:
    """OUTPUT/train_summary.json, of one model or of an ensemble (a NaN, e.g. the accuracy of an empty validation, as
    null)."""
    write_text_atomically(output_dir / "train_summary.json", json.dumps(json_ready(summary), indent=2) + "\n")


# ------------------------------------------------------------------------------------------------ the trainer

# train-rm options whose change makes a checkpoint unloadable: they decide its weights, adapters, heads and optimizer
CHECKPOINT_OPTIONS = ("model", "feedback", "lora_rank", "lora_targets", "length_head", "freeze_layers", "pooling")
_RENAMED_OPTIONS = {"lora_r": "lora_rank", "lora_target_modules": "lora_targets"}  # as checkpoints wrote them before


class RewardModelTrainer:
    """Wires data, RewardModel, loss task, optimizer and Accelerate; `train()` runs to the end and returns a summary."""

    def __init__(self, cfg: TrainRMConfig, member: int = 0):
        """`member` k > 0 of an ensemble sees the data in another order (and draws other dropout masks); the split
        and the head's initialization stay those of the seed, so members can be averaged (WARM)."""
        self.cfg = cfg
        self.order_seed = cfg.seed if member == 0 else derived_seed(cfg.seed, member)
        self.placement = placement_of(cfg)
        self.kind = kind_named(cfg.feedback)
        if self.placement.device_type == "cuda" and ":" in self.placement.device:
            torch.cuda.set_device(self.placement.torch_device)  # one process on a chosen GPU; launchers set their own
        # Mixed precision: bf16 trains on a bf16 working copy of the weights refreshed from fp32 masters once per step
        # (`rewardkit.models.precision`); fp16 runs autocast around the forward with a loss scale. Weights, gradients
        # and optimizer state stay fp32 either way. It is not Accelerate's `mixed_precision`: that is fixed once per
        # process, so a second trainer in the same process (a recipe study, the tests) could not choose another.
        self.accelerator = Accelerator(cpu=self.placement.device_type == "cpu")
        self.scaler = torch.amp.GradScaler(self.placement.device_type, enabled=self.placement.loss_scaling)
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        sharded = self.accelerator.distributed_type.value
        if sharded in ("FSDP", "DEEPSPEED", "MEGATRON_LM"):
            raise RewardkitError(f"train-rm runs on one process or data-parallel (DDP) processes; this launch asks for "
                                 f"{sharded}, whose sharded weights its checkpoints and saved folders cannot read")
        if self.accelerator.is_main_process:
            self.placement.announce("train-rm")
        if self.placement.device_type == "cpu":
            torch.set_num_threads(cfg.num_threads or max(1, (os.cpu_count() or 1) // self.world))
        cfg.check(self.world)
        self.run = Run("train-rm", cfg.output_dir, resume=cfg.resume, is_main=self.accelerator.is_main_process,
                       save_every=cfg.save_every, keep_checkpoints=cfg.keep_checkpoints, tensorboard=cfg.tensorboard)
        self.output_dir = self.run.output_dir
        self.resume_from = self.run.checkpoint_to_resume()  # before data and model: a refused folder fails at once
        torch.manual_seed(cfg.seed)
        records = self._load_records()  # before the model: bad data fails in seconds
        self.reward_model = RewardModel.from_pretrained(cfg.model, max_length=cfg.max_length, dropout=cfg.dropout,
                                                        placement=self.placement, train=True,
                                                        pooling=None if cfg.pooling == "auto" else cfg.pooling)
        if cfg.length_head:
            self.reward_model.add_length_head()
        if cfg.lora_rank:
            try:
                self.reward_model.add_lora(cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
            except RewardkitError as error:  # the model speaks of LoRA; the user set it with these flags
                raise RewardkitError(f"--lora-rank {cfg.lora_rank} --lora-targets {cfg.lora_targets}: {error}")
        layers = self.reward_model.model.config.num_hidden_layers
        self.reward_model.freeze_lower_layers(layers // 2 if cfg.freeze_layers < 0 else cfg.freeze_layers)
        if cfg.gradient_checkpointing:
            self.reward_model.enable_gradient_checkpointing()
        if member:
            torch.manual_seed(self.order_seed)
        self.train_examples, self.val_examples, self.task = self._prepare_data(*records)
        self.best_weights: dict[str, torch.Tensor] | None = None  # of the best validation, kept for early stopping
        self.working: WorkingWeights | None = None  # the bf16 working weights (made in train, on the model's device)
        self.val_reward_sums: list | None = None  # of the last validation (see validate)

    # -------------------------------------------------------------- data
    def _load_records(self) -> tuple[list, list]:
        """Training and validation records, validated."""
        cfg = self.cfg
        policies = (cfg.columns, cfg.on_bad_record, cfg.on_identical)

        def load(paths):
            return self.kind.load(paths, *policies)

        # --mixture, --balance-length and --max-pairs-per-prompt (rewardkit.data.sampling) read each path as a source
        selection = Selection(cfg.max_pairs_per_prompt, cfg.balance_length, parse_mixture(cfg.mixture, cfg.data),
                              cfg.seed, self.kind.unit, "response tokens")
        sources = [load(path) for path in cfg.data] if selection.active else [load(cfg.data)]
        lengths = self._response_token_counts() if cfg.balance_length else None
        train_records, val_records, lines = split_and_select(sources, cfg.data, selection, cfg.val_fraction, cfg.seed,
                                                             lengths, split=not cfg.val_data)
        for line in lines:
            self.run.say(f"train-rm: {line}")
        if cfg.val_data:
            val_records = load(cfg.val_data)
        if not train_records:
            raise RewardkitError(f"no training records in {', '.join(cfg.data)}")
        if cfg.early_stopping_patience and not val_records:  # it would stop after `patience` evaluations of nothing
            raise RewardkitError("--early-stopping-patience needs validation data: give --val-data, or a "
                                 "--val-fraction above 0")
        return train_records, val_records

    def _response_token_counts(self):
        """Token counts of responses under the model's tokenizer (no special tokens), for --balance-length; in chunks,
        keeping only the counts."""
        from transformers import AutoTokenizer

        from rewardkit.models.presets import resolve_tokenizer_path

        try:
            tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer_path(self.cfg.model))
        except OSError as exc:
            raise RewardkitError(f"--balance-length counts tokens with the tokenizer of {self.cfg.model!r}, which "
                                 f"cannot be loaded: {str(exc).splitlines()[0]}")

        def counts(texts: list[str]) -> list[int]:
            found: list[int] = []
            for start in range(0, len(texts), 1024):
                ids = tokenizer(texts[start:start + 1024], add_special_tokens=False)["input_ids"]
                found += map(len, ids)
            return found

        return counts

    def _prepare_data(self, train_records: list, val_records: list):
        """The loss task and the encoded training and validation examples."""
        cfg = self.cfg
        task = tasks.task_for(self.kind, cfg, train_records)
        train, val = self._encode(train_records), self._encode(val_records)
        truncated = sum(e.truncated for e in train)
        self.run.say(f"train-rm: {len(train)} training and {len(val)} validation {self.kind.unit}; "
                  f"{truncated} training examples ({100 * truncated / len(train):.1f}%) were longer than "
                  f"{cfg.max_length} tokens and lost their oldest context (none dropped)")
        return train, val, task

    def _encode(self, records) -> list:
        """The records' Examples, encoded ENCODE_CHUNK records at a time: only one chunk's untruncated token ids live
        beside the kept (truncated) ones, and each token id is one shared int object (a list of ids then holds 8
        bytes a token instead of 36). A record repeated by --mixture is encoded once. The ids are those of one call
        for every record."""
        examples: list[tasks.Example] = []
        shared_ints: dict[int, int] = {}
        done: dict[int, tasks.Example] = {}  # by id(record)
        for start in range(0, len(records), ENCODE_CHUNK):
            chunk = list({id(r): r for r in records[start:start + ENCODE_CHUNK] if id(r) not in done}.values())
            wanted = [self.kind.texts(record) for record in chunk]
            prompts = [record.prompt for record, (responses, _) in zip(chunk, wanted) for _ in responses]
            # batched calls: several times faster than encoding text by text
            encoded = iter(self.reward_model.encode_many(prompts, [t for responses, _ in wanted for t in responses]))
            for record, (responses, target) in zip(chunk, wanted):
                texts = [next(encoded) for _ in responses]
                for text in texts:
                    text.input_ids = [shared_ints.setdefault(i, i) for i in text.input_ids]
                done[id(record)] = tasks.Example(texts, target)
            examples += [done[id(record)] for record in records[start:start + ENCODE_CHUNK]]
        return examples

    # -------------------------------------------------------------- evaluation
    def validate(self, scorer=None) -> float | None:
        """Mean per-example accuracy on the validation set (pairs: chosen scored higher, ties half), of the model being
        trained or of another `scorer` of the same texts (an ensemble, a weight average); None without validation
        data."""
        if not self.val_examples:
            return None
        model = scorer if scorer is not None else self.accelerator.unwrap_model(self.reward_model)
        mine = self.val_examples[self.rank::self.world]
        texts = [t for e in mine for t in e.encoded]
        with self._scoring_weights(model):
            scores = model.score_encoded(texts, batch_size=self.cfg.eval_batch_size) if texts else torch.empty(0)
        correct = self.task.correct(scores, mine) if mine else torch.empty(0)
        # count, sum and sum of squares of every validation reward (the model's saved reward statistics), with the
        # correct count: summed over processes on their device (a NCCL group refuses CPU tensors)
        rewards = scores.detach().double()
        sums = torch.tensor([float(correct.sum()), len(mine), len(rewards), float(rewards.sum()),
                             float((rewards ** 2).sum())], device=self.accelerator.device,
                            dtype=torch.float32 if self.accelerator.device.type == "mps" else torch.float64)
        sums = self.accelerator.reduce(sums, reduction="sum") if self.world > 1 else sums
        with on_host():  # the figures, for the log and the summary
            sums = sums.cpu()
        self.val_reward_sums = [int(sums[2]), float(sums[3]), float(sums[4])]
        return float(sums[0] / sums[1])

    def _scoring_weights(self, model):
        """Validation scores with the weights inference loads (bf16/fp16 where the placement says, the head in fp32),
        so that its accuracy and reward statistics are those of the saved model in `score`, `serve` and `eval-rm`."""
        if not self.placement.mixed:
            return contextlib.nullcontext()
        if self.working is not None and model is self.working.model:
            return self.working.in_use()
        return scoring_in(getattr(model, "members", [model]), self.placement.weights_dtype)

    # -------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, step: int, state: dict) -> None:
        self.accelerator.wait_for_everyone()
        # every process's RNG: with dropout on, processes draw different amounts (their shares differ in length)
        rng_states = gather_object([rng_state(self.accelerator.device)]) if self.world > 1 \
            else [rng_state(self.accelerator.device)]
        model = self.accelerator.unwrap_model(self.reward_model)

        def write(folder: Path):
            # the weights as they train (LoRA adapters unmerged), loaded back strictly by _load_checkpoint
            save_model(model.model, str(folder / "model.safetensors"))
            if model.length_head is not None:
                save_model(model.length_head, str(folder / LENGTH_HEAD_FILE))
            torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")
            torch.save(self.scaler.state_dict(), folder / "scaler.pt")
            torch.save(rng_states, folder / "rng.pt")
            if self.best_weights is not None:  # early stopping restores them at the end, even after a resume
                save_file({k: v.contiguous() for k, v in self.best_weights.items()}, folder / "best.safetensors")
            (folder / "trainer_state.json").write_text(json.dumps(
                {**state, "step": step, "checkpoint_options": self._checkpoint_options()}, indent=2))

        self.run.save_checkpoint(step, write)
        self.accelerator.wait_for_everyone()

    def _checkpoint_options(self) -> dict:
        """The options that decide what a checkpoint holds (which weights, adapters, heads and optimizer groups)."""
        return {name: getattr(self.cfg, name) for name in CHECKPOINT_OPTIONS}

    def _load_checkpoint(self, folder: Path) -> dict:
        state = json.loads((folder / "trainer_state.json").read_text())
        if "pairs_seen" in state:  # written before the key was renamed (it counts examples of every kind)
            state["examples_seen"] = state.pop("pairs_seen")
        written_with = state.pop("checkpoint_options", None)  # absent from checkpoints written before it was kept
        written_with = {_RENAMED_OPTIONS.get(k, k): v for k, v in (written_with or {}).items()} or None
        changed = [f"--{name.replace('_', '-')} {written_with[name]!r}, not {value!r}"
                   for name, value in self._checkpoint_options().items()
                   if written_with is not None and name in written_with and written_with[name] != value]
        if changed:
            raise RewardkitError(f"{folder} was written with {'; '.join(changed)}: resume with the options it was "
                                 f"written with, or choose another --output-dir")
        model = self.accelerator.unwrap_model(self.reward_model)
        load_model(model.model, str(folder / "model.safetensors"), strict=True, device=str(self.accelerator.device))
        if model.length_head is not None:
            load_model(model.length_head, str(folder / LENGTH_HEAD_FILE), strict=True,
                       device=str(self.accelerator.device))
        # weights_only: checkpoints hold tensors and numbers only, never arbitrary pickled objects
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu"))
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True, map_location="cpu"))
        if (folder / "scaler.pt").exists():
            self.scaler.load_state_dict(torch.load(folder / "scaler.pt", weights_only=True, map_location="cpu"))
        rng_states = torch.load(folder / "rng.pt", weights_only=True, map_location="cpu")
        if len(rng_states) == self.world:
            set_rng_state(rng_states[self.rank], self.accelerator.device)
        else:  # another process count cannot replay the same draws: each process starts a stream of its own
            torch.manual_seed(derived_seed(self.cfg.seed, state["step"], self.rank))
        if (folder / "best.safetensors").exists():
            self.best_weights = load_file(folder / "best.safetensors", device=str(self.accelerator.device))
        return state

    def _optimizer(self):
        decay, no_decay = [], []
        for name, param in self.reward_model.named_parameters():
            if param.requires_grad:
                (no_decay if param.ndim < 2 else decay).append(param)
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        try:
            # One fused kernel per step instead of a loop over tensors: ~13x less optimizer time on CPU (a 22M-parameter
            # step took 0.23 s instead of 3.1 s), which is >10% of a minilm training step.
            return torch.optim.AdamW(groups, lr=self.cfg.learning_rate, fused=True)
        except (RuntimeError, ValueError):  # a device or dtype without a fused kernel
            return torch.optim.AdamW(groups, lr=self.cfg.learning_rate)

    def accumulate_gradients(self, batch: list[int]) -> tuple[float, float, float]:
        """Backpropagate one global batch (this process's share, in micro-batches); return its mean loss, accuracy
        and length-decorrelation term.

        Each micro-batch's loss is summed over examples and divided by the global batch size (times the process count
        that DDP averages over), so the gradient equals that of the mean loss over the global batch whatever the
        accumulation steps and processes. The length-decorrelation term is a statistic of a micro-batch, weighted by
        its share of the global batch for the same reason.
        """
        acc, model, cfg = self.accelerator, self.reward_model, self.cfg
        odin = acc.unwrap_model(model).length_head is not None
        totals = torch.zeros(3, device=acc.device)
        micro_batches = shard(batch, self.rank, self.world, cfg.gradient_accumulation_steps)
        # A last batch smaller than the process count leaves some process without an example. It still runs one
        # forward and backward, on another's example with weight 0, so that its gradient all-reduce meets the others'
        # (skipping it would hang them) and adds nothing.
        idle = not micro_batches
        if idle:
            micro_batches = [batch[:1]]
        for i, micro in enumerate(micro_batches):
            examples = [self.train_examples[j] for j in micro]
            share = 0.0 if idle else len(examples) * self.world / len(batch)
            last = i == len(micro_batches) - 1
            # DDP syncs gradients at the last micro-batch only; the working weights are synced by hand (below)
            synced = last or self.world == 1 or self.working is not None
            with contextlib.nullcontext() if synced else acc.no_sync(model):
                with self._training_forward():  # the packing check, made on the first batch, in the same precision
                    inputs = acc.unwrap_model(model).collate_groups([e.encoded for e in examples])
                    outputs = model(**inputs, with_length=odin).float()  # losses and log-sigmoids in fp32
                rewards, length_rewards = (outputs[:, 0], outputs[:, 1]) if odin else (outputs, None)
                # ODIN fits the labels with both heads together; only `rewards` is the saved model's reward
                scores = rewards + length_rewards if odin else rewards
                losses = self.task.loss(scores, examples)
                objective = losses.sum() * (share / len(examples))
                decorrelation = rewards.new_zeros(())
                if cfg.length_decorrelation:
                    lengths = torch.tensor([len(t.input_ids) - t.response_start for e in examples for t in e.encoded],
                                           device=rewards.device)
                    decorrelation = length_decorrelation_loss(rewards, lengths, length_rewards)
                    if odin:
                        decorrelation = decorrelation + head_orthogonality_loss(
                            *acc.unwrap_model(model).head_weights())
                    objective = objective + cfg.length_decorrelation * decorrelation * share
                acc.backward(self.scaler.scale(objective))
                if self.working is not None:  # accumulated in fp32, on the masters
                    self.working.gradients_to_masters()
            if not idle:
                totals += torch.stack([losses.detach().sum(), self.task.correct(scores.detach(), examples).sum(),
                                       decorrelation.detach() * len(examples)]).float()
        if self.working is not None and self.world > 1:
            self._average_gradients()
        if self.world > 1:
            totals = acc.reduce(totals, reduction="sum")
        with on_host():  # the step's figures, for the log: one transfer at the end of the step
            totals = totals.cpu()
        return float(totals[0]) / len(batch), float(totals[1]) / len(batch), float(totals[2]) / len(batch)

    def _training_forward(self):
        """The training forward's precision: bf16 working weights, else autocast (fp16 with a loss scale) or fp32."""
        return self.working.in_use() if self.working is not None else self.placement.autocast()

    def _average_gradients(self) -> None:
        """What DDP does for the fp32 masters of working weights: average their gradients over processes, in one
        collective (every process ran a backward, an idle one with weight 0, so every gradient exists)."""
        params = [p for p in self.reward_model.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        flat = self.accelerator.reduce(flat, reduction="mean")
        for p, grad in zip(params, flat.split([p.numel() for p in params])):
            p.grad.copy_(grad.view_as(p))

    def setup_training(self, total_steps: int) -> None:
        """The optimizer, its schedule over `total_steps`, the model on its device (DDP-wrapped, or with bf16
        working weights) and the gradient-clipping groups."""
        cfg, acc = self.cfg, self.accelerator
        self.optimizer = self._optimizer()
        # warmup steps rounded up, as transformers' Trainer does: a short run still starts gently
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, math.ceil(cfg.warmup_ratio * total_steps),
                                                         total_steps)
        if self.placement.precision == "bf16":
            # no DDP wrapper: the forward runs on the working weights, whose gradients `_average_gradients` averages
            self.reward_model = self.reward_model.to(acc.device)
            self.optimizer = acc.prepare(self.optimizer)
            self.working = WorkingWeights(self.reward_model, torch.bfloat16)
        else:
            self.reward_model, self.optimizer = acc.prepare(self.reward_model, self.optimizer)
        # ODIN's length head is clipped on its own: its correlation gradient grows as 1/std of its outputs, which start
        # tiny, and in one global norm it shrank every other gradient ~30-fold (measured: the HH loss stayed at log 2)
        self.length_head = acc.unwrap_model(self.reward_model).length_head
        own = {id(p) for p in self.length_head.parameters()} if self.length_head is not None else set()
        self.clipped_together = [p for p in self.reward_model.parameters() if id(p) not in own]

    def optimizer_step(self) -> float | None:
        """Clip, step the optimizer and its schedule, clear the gradients, refresh the working weights; the gradient
        norm before clipping (None without clipping)."""
        self.scaler.unscale_(self.optimizer)  # no-ops unless fp16 scales the loss
        grad_norm = None
        if self.cfg.max_grad_norm > 0:
            grad_norm = self.accelerator.clip_grad_norm_(self.clipped_together, self.cfg.max_grad_norm)
            if self.length_head is not None:
                torch.nn.utils.clip_grad_norm_(self.length_head.parameters(), self.cfg.max_grad_norm)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # an fp16 step skipped for inf/nan gradients lowers the scale: the schedule waits for a real step
        if scale is None or self.scaler.get_scale() >= scale:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.working is not None:
            self.working.refresh()
        return float(grad_norm) if grad_norm is not None else None

    def train(self) -> dict:
        cfg, run = self.cfg, self.run
        steps_per_epoch = math.ceil(len(self.train_examples) / cfg.batch_size)
        total_steps = cfg.max_steps if cfg.max_steps > 0 else steps_per_epoch * cfg.epochs
        self.setup_training(total_steps)
        state = {"step": 0, "best_accuracy": None, "evals_without_improvement": 0, "train_seconds": 0.0,
                 "examples_seen": 0}
        if self.resume_from is not None:
            state = self._load_checkpoint(self.resume_from)
            if self.working is not None:
                self.working.refresh()
            run.say(f"train-rm: resumed from {self.resume_from} at step {state['step']}")
        run.start(total_steps, state["step"], cfg.progress)
        try:
            stopped_early = self._train_steps(state, total_steps, steps_per_epoch)
        finally:
            run.close()

        final = self.accelerator.unwrap_model(self.reward_model)
        if self.best_weights is not None:
            final.load_state_dict(self.best_weights)
            state["val_accuracy"] = state["best_accuracy"]
        # the saved model's reward statistics are those of the weights it keeps (none without validation data)
        sums = state.get("best_val_reward_sums" if self.best_weights is not None else "val_reward_sums")
        final.reward_stats = reward_statistics(*sums, data=f"train-rm validation ({len(self.val_examples)} "
                                                            f"examples)") if sums and sums[0] else None
        final.merge_lora()
        return self._finish(final, state, stopped_early)

    def _train_steps(self, state: dict, total_steps: int, steps_per_epoch: int) -> bool:
        """Train from step `state["step"]` to `total_steps`, logging, validating and checkpointing on the way;
        True when early stopping ended it."""
        cfg, run = self.cfg, self.run
        model = self.accelerator.unwrap_model(self.reward_model)  # DDP wraps it in setup_training
        lengths = [model.group_length(e.encoded) for e in self.train_examples]
        self.reward_model.train()
        eval_every = cfg.eval_every or steps_per_epoch
        window_start, window_examples = time.perf_counter(), 0
        while state["step"] < total_steps:
            epoch, offset = divmod(state["step"], steps_per_epoch)
            for batch in length_grouped_batches(lengths, cfg.batch_size, seed=self.order_seed + epoch)[offset:]:
                if state["step"] >= total_steps:
                    break
                loss, accuracy, decorrelation, grad_norm = self._train_step(batch, state)
                step = state["step"]
                window_examples += len(batch)
                run.stepped(loss=f"{loss:.4f}", acc=f"{accuracy:.3f}",
                            per_s=f"{state['examples_seen'] / max(state['train_seconds'], 1e-9):.1f}")
                if step % cfg.log_every == 0 or step == total_steps:
                    now = time.perf_counter()
                    run.log.write(step, {"loss": loss, "accuracy": accuracy,
                                         **({"length_decorrelation": decorrelation}
                                            if cfg.length_decorrelation else {}),
                                         "learning_rate": self.scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                                         "examples_per_second": window_examples / max(now - window_start, 1e-9),
                                         "epoch": step / steps_per_epoch}, prefix="train")
                    window_start, window_examples = now, 0
                # without validation data there is nothing to evaluate (nor to log as nan at every evaluation)
                if self.val_examples and (step % eval_every == 0 or step == total_steps):
                    if self._validate_at(step, total_steps, state):
                        return True
                if run.checkpoint_due(step) and step < total_steps:
                    self._save_checkpoint(step, state)
        return False

    def _train_step(self, batch: list[int], state: dict) -> tuple[float, float, float, float | None]:
        """One optimizer step on `batch`, counted in `state`: (loss, accuracy, length decorrelation, grad norm)."""
        started = time.perf_counter()
        loss, accuracy, decorrelation = self.accumulate_gradients(batch)
        if not math.isfinite(loss):
            last = checkpoint_dirs(self.output_dir)
            raise RewardkitError(f"loss became {loss} at step {state['step'] + 1}; stopped. Last good checkpoint: "
                                 f"{last[-1] if last else 'none'} (try a lower --learning-rate)")
        grad_norm = self.optimizer_step()
        state["step"] += 1
        state["examples_seen"] += len(batch)
        state["train_seconds"] += time.perf_counter() - started
        return loss, accuracy, decorrelation, grad_norm

    def _validate_at(self, step: int, total_steps: int, state: dict) -> bool:
        """Validate, log it, and keep the best weights for early stopping; True when it is time to stop."""
        accuracy = self.validate()
        state["val_accuracy"], state["val_reward_sums"] = accuracy, self.val_reward_sums
        self.run.log.write(step, {"accuracy": accuracy}, prefix="val")
        self.run.say(f"train-rm: step {step}/{total_steps} validation accuracy {accuracy:.4f}")

        def keep_best():
            model = self.accelerator.unwrap_model(self.reward_model)
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            state["best_val_reward_sums"] = self.val_reward_sums

        return self.early_stop(state, accuracy, keep_best)

    def early_stop(self, state: dict, accuracy: float, keep_best) -> bool:
        """Early stopping's bookkeeping after a validation (of train-rm and of `--frozen`'s head): a better accuracy
        is kept (`keep_best()` saves what gave it, when early stopping is on); True once --early-stopping-patience
        validations in a row brought none."""
        patience = self.cfg.early_stopping_patience
        if state["best_accuracy"] is None or accuracy > state["best_accuracy"]:
            state["best_accuracy"], state["evals_without_improvement"] = accuracy, 0
            if patience:
                keep_best()
            return False
        state["evals_without_improvement"] += 1
        if patience and state["evals_without_improvement"] >= patience:
            self.run.say(f"train-rm: no better validation accuracy in {patience} validations; stopping early")
            return True
        return False

    def _finish(self, model, state: dict, stopped_early: bool) -> dict:
        self.accelerator.wait_for_everyone()
        summary = {
            "model": self.cfg.model, "feedback": self.kind.name, "steps": state["step"],
            "train_examples": len(self.train_examples), "val_examples": len(self.val_examples),
            "examples_seen": state["examples_seen"], "train_seconds": round(state["train_seconds"], 2),
            "examples_per_second": round(state["examples_seen"] / max(state["train_seconds"], 1e-9), 2),
            "val_accuracy": state.get("val_accuracy"), "best_val_accuracy": state["best_accuracy"],
            "val_reward_stats": model.reward_stats,
            "stopped_early": stopped_early, "processes": self.world, "placement": self.placement.as_dict(),
            "truncated_train_examples": sum(e.truncated for e in self.train_examples),
            "config": dataclasses.asdict(self.cfg),
        }
        if self.accelerator.is_main_process:
            model.save_pretrained(self.output_dir)
            _write_summary(self.output_dir, summary)
            self.run.finished()
        self.accelerator.wait_for_everyone()
        return summary


def train_ensemble(cfg: TrainRMConfig) -> tuple[RewardModelTrainer, dict]:
    """Train cfg.ensemble members into OUT/members/member-K, then save OUT as one ensemble (see
    `rewardkit.models.ensemble`). On --resume, members that had finished are kept and the interrupted one resumes."""
    summaries, folders, trainer = [], [], None
    for member in range(cfg.ensemble):
        folder = member_dir(cfg.output_dir, member)
        folders.append(folder)
        if cfg.resume and (folder / "train_summary.json").exists():
            summaries.append(json.loads((folder / "train_summary.json").read_text()))
            continue
        trainer = RewardModelTrainer(dataclasses.replace(cfg, output_dir=str(folder), ensemble=1), member=member)
        trainer.run.say(f"train-rm: ensemble member {member + 1} of {cfg.ensemble}")
        summaries.append(trainer.train())
    if trainer is None:  # every member had finished: the validation data comes from a trainer of the last one
        trainer = RewardModelTrainer(dataclasses.replace(cfg, output_dir=str(folders[-1]), ensemble=1))

    # the ensemble and the members' weight average, validated on the same held-out examples as each member
    device = trainer.accelerator.device
    members = [RewardModel.from_pretrained(str(f), placement=trainer.placement, train=True).to(device)
               for f in folders]
    ensemble_accuracy = trainer.validate(RewardEnsemble(members))
    ensemble_sums = trainer.val_reward_sums
    average = members[0]
    average.load_state_dict(average_state_dicts([m.state_dict() for m in members]))
    average_accuracy = trainer.validate(average)
    # the folder's statistics are those of what rewardkit scores it with: the members' mean
    validated = ensemble_sums is not None and ensemble_sums[0] > 0  # None without validation data
    average.reward_stats = reward_statistics(*ensemble_sums, data=f"train-rm validation of the ensemble "
                                             f"({len(trainer.val_examples)} examples)") if validated else None
    summary = {
        "model": cfg.model, "feedback": trainer.kind.name, "ensemble": cfg.ensemble,
        "val_accuracy": ensemble_accuracy, "weight_average_val_accuracy": average_accuracy,
        "member_val_accuracies": [s["val_accuracy"] for s in summaries],
        "train_examples": summaries[0]["train_examples"], "val_examples": summaries[0]["val_examples"],
        "train_seconds": round(sum(s["train_seconds"] for s in summaries), 2),
        "examples_per_second": round(sum(s["examples_seen"] for s in summaries)
                                     / max(sum(s["train_seconds"] for s in summaries), 1e-9), 2),
        "placement": trainer.placement.as_dict(), "members": [str(f) for f in folders],
        "config": dataclasses.asdict(cfg),
    }
    if trainer.accelerator.is_main_process:
        save_ensemble(cfg.output_dir, folders, average)
        _write_summary(Path(cfg.output_dir), summary)
    trainer.accelerator.wait_for_everyone()
    return trainer, summary
