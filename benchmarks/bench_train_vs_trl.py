"""Reward-model training speed and accuracy: rewardkit vs TRL's RewardTrainer, fp32 and bf16, side by side in one run.

    python benchmarks/bench_train_vs_trl.py --backbone minilm-l6                 # 3 runs: ~30 min on a 2-core CPU
    python benchmarks/bench_train_vs_trl.py --backbone smollm2-135m              # 32 steps, max_length 256: ~2 h
    python benchmarks/bench_train_vs_trl.py --runs trl-fp32 rewardkit-fp32       # the two fp32 trainers only
    python benchmarks/bench_train_vs_trl.py --runs trl-bf16 rewardkit-bf16       # bf16 autocast against bf16 autocast

Runs (--runs; default: trl-fp32 trl-bf16 rewardkit-fp32 rewardkit-auto, less the duplicates): TRL in fp32, TRL with
`bf16=True` (transformers' mixed precision: bf16 autocast over fp32 weights; on the CPU with `use_cpu=True`),
rewardkit in fp32, rewardkit in bf16 (a bf16 working copy of fp32 master weights) and rewardkit with `--precision
auto`, which is what `rewardkit train-rm` picks on this machine (rewardkit.device: bf16 where the CPU's bf16 units,
AMX or AVX512-BF16, make a matmul at least twice as fast as fp32, else fp32). Where auto is the same precision as
another rewardkit run it is not trained twice: the script says so and skips it. Everything runs on the CPU (TRL with `use_cpu=True`, rewardkit with `device="cpu"`).

Every run gets the same backbone, the same max_length, batch size, learning rate, schedule (10% warmup, cosine),
weight decay, clipping and number of optimizer steps, dropout off, and the same training pairs: one epoch over
steps x batch-size HH pairs (../shared/data/hh-rlhf, both files, the training side of the 90/10 split with seed 0 that
`rewardkit train-rm` makes) drawn at random (--pool-seed) among those that fit max_length for all, so pairs/s
compares the same work, not batches that happen to be longer for one; each trainer batches them its own way. Each runs
in its own process (so its peak RSS is its own) and waits at every optimizer step for the parent's go: the parent lets
them take turns in segments of a few steps, so a change of machine load hits all alike. pairs/s counts only the time
a trainer was running its steps (model loading, tokenization and validation are reported separately). All the
workers are alive at once (the smollm2-135m runs need ~3-4 GB of memory each).

TRL is run as its documentation shows: the explicit-prompt preference format (text for a backbone without a chat
template, conversational messages for one with a template), its default collator (random batches, padded to the
longest text), its defaults for everything not matched above (e.g. gradient checkpointing on, see
--trl-gradient-checkpointing). Two things a user must know: TRL appends the eos token to text examples and fails on a
tokenizer without one (BERT), so for such a backbone it gets `eos_token="[SEP]"`; and TRL drops every pair whose
chosen or rejected text is longer than max_length (rewardkit truncates the oldest context and keeps them).

Validation: each model scores the held-out pairs the way it was trained (rewardkit through RewardModel, TRL's
model on TRL's own tokenization with its collator); each worker sends back, per held-out pair, whether its model got
it right (chosen > rejected: 1, a tie: 1/2, else 0). Accuracies are shown on the pairs all can score (TRL cannot
score pairs beyond max_length) and on each one's full set. Then every two runs are compared PAIRED on the pairs both
scored: how many each got right, on how many they disagree, and the difference of accuracies with its standard error
from the discordant pairs (McNemar: s.e. = sqrt(sum d^2 - (sum d)^2 / n) / n over the per-pair differences d; z =
sum d / sqrt(sum d^2)). Two runs that agree on most pairs can differ significantly by fewer pairs than the binomial
s.e. of one accuracy suggests, and vice versa.

MFU: each rewardkit run's model FLOPs (PaLM's convention: 6 x per-token matmul parameters x tokens, plus 12 x layers
x hidden x tokens^2 per attention row; padding not counted) per second of its training, over the matmul peak (a
2048^3 fp32 matmul on the same threads, the highest of the readings the parent takes between segments: lower ones
caught neighbours' load, so the MFU is conservative; a bf16 run is held to the higher of that and a 1024^3 bf16
matmul's peak, read at the start and the end only). For a decoder, whose pairs are packed with their shared prompt
once, tokens are those actually processed (the prompt counted once), so the figure is the hardware's utilization, not
inflated by the work the shared prompt saves.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import HH, fill_defaults  # also sets the offline environment
DEFAULTS = {  # per backbone: steps, max_length, validation pairs (0: all held-out pairs)
    "minilm-l6": {"steps": 50, "max_length": 512, "val_pairs": 0},
    "smollm2-135m": {"steps": 32, "max_length": 256, "val_pairs": 300},
}
RUNS = ("trl-fp32", "trl-bf16", "rewardkit-fp32", "rewardkit-bf16", "rewardkit-auto")
DEFAULT_RUNS = ("trl-fp32", "trl-bf16", "rewardkit-fp32", "rewardkit-auto")
PROTOCOL = "@@ "  # prefix of the lines a worker and the parent exchange; everything else a worker says goes to its log


# ------------------------------------------------------------------------------------------------ shared by both sides

def split_pairs(val_pairs: int):
    """The train/validation split `rewardkit train-rm` makes by default (90/10, seed 0), validation capped."""
    from rewardkit.data import loaders, train_val_split

    pairs = loaders.load_pairs([str(p) for p in HH], on_identical="skip")
    train, val = train_val_split(pairs, 0.1, seed=0)
    return train, val[:val_pairs] if val_pairs else val


def agree_on_pairs(fitting: list[int]) -> set[int]:
    """Tell the parent which training pairs fit max_length here; get back the ones both train on."""
    say("fits", {"indices": fitting})
    return set(json.loads(sys.stdin.readline().removeprefix("train ")))


def pair_correct(chosen, rejected) -> list[float]:
    return [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen.tolist(), rejected.tolist())]


class Gate:
    """Lets a worker run only the steps the parent grants, and times only that running."""

    def __init__(self):
        self.granted = 0
        self.active = 0.0
        self.steps = 0
        self._since = None

    @property
    def running(self) -> bool:
        return self._since is not None

    def before_step(self) -> None:
        if self.granted == 0:
            self._report()
            line = sys.stdin.readline()
            if not line.startswith("go "):
                sys.exit(0)
            self.granted = int(line.split()[1])
            self._since = time.perf_counter()
        self.granted -= 1
        self.steps += 1

    def finish(self) -> None:
        """The last step is done: stop the clock, hand control back, and wait for the parent to close stdin, so that
        this worker's validation never overlaps the other's training."""
        self.granted = 0
        self._report()
        sys.stdin.read()

    def _report(self) -> None:
        if self._since is not None:
            self.active += time.perf_counter() - self._since
            self._since = None
        say("done", {"steps": self.steps, "active_seconds": self.active})


def say(kind: str, payload: dict) -> None:
    sys.__stdout__.write(f"{PROTOCOL}{kind} {json.dumps(payload)}\n")
    sys.__stdout__.flush()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------------ rewardkit worker

def rewardkit_worker(args) -> None:
    from rewardkit.models.config import TrainRMConfig
    from rewardkit.models.packing import attention_weight, matmul_params_per_token
    from rewardkit.models.trainer import RewardModelTrainer

    gate = Gate()
    flops = {"total": 0.0, "tokens": 0}

    class GatedTrainer(RewardModelTrainer):
        def accumulate_gradients(self, batch):
            gate.before_step()
            return super().accumulate_gradients(batch)

        def validate(self):  # called once, after the last step
            gate.finish()
            return float("nan")

    started = time.perf_counter()
    cfg = TrainRMConfig(model=args.backbone, data=[str(p) for p in HH], output_dir=args.workdir,
                        max_length=args.max_length, batch_size=args.batch_size, learning_rate=args.learning_rate,
                        max_steps=args.steps, eval_every=10 ** 9, save_every=0, tensorboard=False, progress=False,
                        num_threads=args.threads, seed=0, freeze_layers=args.freeze_layers, device="cpu",
                        precision=args.worker_precision)
    trainer = GatedTrainer(cfg)
    too_long = sum(e.truncated for e in trainer.train_examples)
    if args.same_pairs:  # train_examples are in the order of split_pairs' training pairs, the indices TRL sees
        fitting = [i for i, e in enumerate(trainer.train_examples) if not any(t.truncated for t in e.encoded)]
        keep = agree_on_pairs(fitting)
        trainer.train_examples = [e for i, e in enumerate(trainer.train_examples) if i in keep]
    rm = trainer.reward_model
    params, attention = matmul_params_per_token(rm.model), attention_weight(rm.model)

    def count(module, call_args, kwargs):
        # training steps only: validation sets just the inner model to eval mode, not this wrapper
        if not gate.running:
            return
        if kwargs.get("row_lengths") is not None:  # packed batch: tokens per attention row
            per_row = kwargs["row_lengths"]
        else:
            per_row = kwargs["attention_mask"].sum(dim=1)
        flops["tokens"] += int(per_row.sum())
        flops["total"] += 6 * params * (int(per_row.sum()) + attention * int((per_row ** 2).sum()))

    rm.register_forward_pre_hook(count, with_kwargs=True)
    setup = time.perf_counter() - started
    # the split must be the one the TRL worker rebuilds
    val_examples = trainer.val_examples[:args.val_pairs] if args.val_pairs else trainer.val_examples
    trainer.train()
    started = time.perf_counter()
    texts = [t for e in val_examples for t in e.encoded]
    scores = rm.score_encoded(texts, batch_size=32)
    correct = pair_correct(scores[0::2], scores[1::2])
    say("result", {"setup_seconds": setup, "validation_seconds": time.perf_counter() - started,
                   "train_pairs": len(trainer.train_examples), "active_seconds": gate.active, "steps": gate.steps,
                   "pairs": gate.steps * args.batch_size, "flops": flops["total"], "tokens": flops["tokens"],
                   "val_correct": dict(enumerate(correct)), "peak_rss_mb": peak_rss_mb(),
                   "truncated_train_pairs": too_long})


# ------------------------------------------------------------------------------------------------ TRL worker

def trl_worker(args) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import RewardConfig, RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    from rewardkit.data.types import conversation_from_text, prompt_as_text
    from rewardkit.models.presets import resolve_model_path

    torch.set_num_threads(args.threads)
    gate = Gate()
    started = time.perf_counter()
    path = resolve_model_path(args.backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    conversational = bool(getattr(tokenizer, "chat_template", None))

    def rows(pairs):
        for index, pair in enumerate(pairs):
            if conversational:  # TRL's conversational explicit-prompt format
                prompt = pair.prompt if isinstance(pair.prompt, list) else conversation_from_text(pair.prompt)
                yield {"index": index, "prompt": prompt, "chosen": [{"role": "assistant", "content": pair.chosen}],
                       "rejected": [{"role": "assistant", "content": pair.rejected}]}
            else:  # standard explicit-prompt format: TRL concatenates prompt + completion
                yield {"index": index, "prompt": prompt_as_text(pair.prompt), "chosen": " " + pair.chosen,
                       "rejected": " " + pair.rejected}

    train, val = split_pairs(args.val_pairs)
    config = RewardConfig(
        output_dir=args.workdir, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
        learning_rate=args.learning_rate, lr_scheduler_type="cosine", warmup_steps=0.1, weight_decay=0.01,
        max_grad_norm=1.0, max_length=args.max_length, bf16=args.worker_precision == "bf16", use_cpu=True,
        seed=0,
        gradient_checkpointing=args.trl_gradient_checkpointing == "on", save_strategy="no", eval_strategy="no",
        report_to="none", disable_tqdm=True, logging_steps=10 ** 9,
        eos_token=None if tokenizer.eos_token else tokenizer.sep_token)

    class StopClock(TrainerCallback):
        def on_step_end(self, train_args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                gate.finish()

    class GatedRewardTrainer(RewardTrainer):
        def training_step(self, *step_args, **kwargs):
            gate.before_step()
            return super().training_step(*step_args, **kwargs)

    trainer = GatedRewardTrainer(model=path, args=config, processing_class=tokenizer,
                                 train_dataset=Dataset.from_list(list(rows(train))), callbacks=[StopClock()])
    dropped = len(train) - len(trainer.train_dataset)
    if args.same_pairs:
        keep = agree_on_pairs(list(trainer.train_dataset["index"]))
        trainer.train_dataset = trainer.train_dataset.filter(lambda row: row["index"] in keep)
    setup = time.perf_counter() - started
    trainer.train()

    # validation the TRL way: its tokenization and length filter, its collator, the trained model
    started = time.perf_counter()
    val_set = trainer._prepare_dataset(Dataset.from_list(list(rows(val))), trainer.processing_class, config, "eval")
    collator = DataCollatorForPreference(pad_token_id=trainer.processing_class.pad_token_id)
    model = trainer.model.eval()
    correct = {}
    with torch.no_grad():
        for start in range(0, len(val_set), 16):
            chunk = [val_set[i] for i in range(start, min(start + 16, len(val_set)))]
            batch = collator([{"chosen_ids": c["chosen_ids"], "rejected_ids": c["rejected_ids"]} for c in chunk])
            rewards = model(**batch).logits[:, 0]
            chosen, rejected = rewards.chunk(2)
            correct.update(zip((c["index"] for c in chunk), pair_correct(chosen, rejected)))
    say("result", {"setup_seconds": setup, "validation_seconds": time.perf_counter() - started,
                   "train_pairs": len(trainer.train_dataset), "active_seconds": gate.active, "steps": gate.steps,
                   "pairs": gate.steps * args.batch_size, "val_correct": correct, "peak_rss_mb": peak_rss_mb(),
                   "dropped_train_pairs": dropped})


# ------------------------------------------------------------------------------------------------ parent

class Worker:
    def __init__(self, run: str, args, workdir: str, log_dir: Path):
        self.name = run
        self.trainer, _, self.precision = run.partition("-")
        self.log = log_dir / f"{run}.log"
        command = [sys.executable, __file__, "--worker", self.trainer, "--worker-precision", self.precision,
                   "--workdir", workdir] + args.forward
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=open(self.log, "w"), text=True, bufsize=1)
        self.status = {"steps": 0, "active_seconds": 0.0}
        self.result = None
        self.label = run  # rewardkit-auto gets the precision it resolved to

    def read(self, kind: str) -> dict:
        for line in self.process.stdout:
            if line.startswith(PROTOCOL):
                got, _, payload = line[len(PROTOCOL):].partition(" ")
                if got == kind:
                    return json.loads(payload)
        tail = self.log.read_text()[-3000:]
        raise SystemExit(f"{self.name} worker exited (code {self.process.wait()}); end of its log {self.log}:\n{tail}")

    def run(self, steps: int) -> None:
        self.process.stdin.write(f"go {steps}\n")
        self.process.stdin.flush()
        self.status = self.read("done")

    @property
    def pairs_per_second(self) -> float:
        return self.result["pairs"] / self.result["active_seconds"]


def matmul_peak(threads: int, dtype: str = "fp32", size: int = 2048) -> float:
    import torch

    torch.set_num_threads(threads)
    kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(size, size, dtype=kind), torch.randn(size, size, dtype=kind)
    a @ b
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        a @ b
        best = max(best, 2 * size ** 3 / (time.perf_counter() - started))
    return best


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} cores"


def accuracy(correct: dict, keys) -> float:
    return sum(correct[k] for k in keys) / max(len(keys), 1)


def choose_runs(asked: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """The runs to train (distinct ones, in the order asked), the precision each rewardkit run resolves to, and
    notes on the runs left out."""
    from rewardkit.device import choose_placement

    precision, runs, notes = {}, [], []
    auto = choose_placement("cpu", "auto")
    for run in dict.fromkeys(asked):
        trainer, _, asked_precision = run.partition("-")
        resolved = auto.precision if asked_precision == "auto" else asked_precision
        twin = next((r for r in runs if r.startswith(trainer) and precision[r] == resolved), None)
        if twin:
            why = f"--precision auto is {resolved} on this machine ({auto.reason.removeprefix('auto: ')}), so it is" \
                if asked_precision == "auto" else "it is"
            notes.append(f"{run} left out: {why} the same run as {twin}; not trained twice")
            continue
        runs.append(run)
        precision[run] = resolved
    return runs, precision, notes


def paired(a: Worker, b: Worker) -> str:
    """`a` against `b` on the held-out pairs both scored: McNemar-style, from the discordant pairs."""
    keys = sorted(set(a.result["val_correct"]) & set(b.result["val_correct"]), key=int)
    diffs = [a.result["val_correct"][k] - b.result["val_correct"][k] for k in keys]
    n, total, squares = len(keys), sum(diffs), sum(d * d for d in diffs)
    right_a, right_b = (sum(w.result["val_correct"][k] for k in keys) for w in (a, b))
    discordant = sum(1 for d in diffs if d)
    se = (squares - total ** 2 / max(n, 1)) ** 0.5 / max(n, 1)
    z = f"z = {total / squares ** 0.5:+.2f}" if squares else "no discordant pairs"
    return (f"{a.label} vs {b.label} on {n} pairs: {right_a:g} vs {right_b:g} right; they disagree on {discordant} "
            f"({sum(1 for d in diffs if d > 0)} for {a.label}, {sum(1 for d in diffs if d < 0)} for {b.label}); "
            f"accuracy difference {total / max(n, 1):+.4f}, s.e. {se:.4f} from the discordant pairs ({z})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="minilm-l6", choices=sorted(DEFAULTS),
                        help="the model every run fine-tunes (default: minilm-l6)")
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(DEFAULT_RUNS), metavar="RUN",
                        help=f"which trainings to run, each in its own worker ({', '.join(RUNS)}); rewardkit-auto is "
                             f"`--precision auto` (fp32 on a CPU without bf16 units) and is skipped where it "
                             f"repeats another rewardkit run (default: {' '.join(DEFAULT_RUNS)})")
    parser.add_argument("--steps", type=int, help="optimizer steps for each trainer (default per backbone)")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per optimizer step")
    parser.add_argument("--max-length", type=int, help="maximum tokens per text (default per backbone)")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="peak learning rate of every trainer")
    parser.add_argument("--freeze-layers", type=int, default=0,
                        help="rewardkit's --freeze-layers (0, full fine-tuning, is the same work as TRL's)")
    parser.add_argument("--val-pairs", type=int, help="held-out pairs to validate on (0: all; default per backbone)")
    parser.add_argument("--segment-steps", type=int, default=5, help="steps a trainer runs before the next one's turn")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of each trainer")
    parser.add_argument("--trl-gradient-checkpointing", choices=("on", "off"), default="on",
                        help="TRL's own default is on; off gives TRL its fastest setting where memory allows")
    parser.add_argument("--same-pairs", action=argparse.BooleanOptionalAction, default=True,
                        help="all train one epoch over the same steps x batch-size pairs, drawn at random "
                             "(--pool-seed) from the training pairs that fit max_length for all, so pairs/s "
                             "measures the same work; each orders them its own way (--no-same-pairs: each draws "
                             "its batches from all its training pairs; rewardkit keeps the long ones truncated, TRL "
                             "drops them)")
    parser.add_argument("--pool-seed", type=int, default=0,
                        help="seed of the draw of training pairs: repeat runs with other seeds to see how much the "
                             "accuracies move with the pairs drawn")
    parser.add_argument("--worker", choices=("rewardkit", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-precision", choices=("fp32", "bf16", "auto"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    fill_defaults(args, DEFAULTS[args.backbone])
    if args.worker:
        sys.stdout = sys.stderr  # stdout carries only the protocol lines
        (rewardkit_worker if args.worker == "rewardkit" else trl_worker)(args)
        return 0
    if not all(p.exists() for p in HH):
        print(f"HH data not found at {HH[0].parent}", file=sys.stderr)
        return 1
    runs, precision, notes = choose_runs(args.runs)
    for note in notes:
        print(note)
    if not runs:
        return 1
    args.forward = ["--backbone", args.backbone, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                    "--max-length", str(args.max_length), "--learning-rate", str(args.learning_rate),
                    "--val-pairs", str(args.val_pairs), "--threads", str(args.threads),
                    "--freeze-layers", str(args.freeze_layers),
                    "--same-pairs" if args.same_pairs else "--no-same-pairs",
                    "--trl-gradient-checkpointing", args.trl_gradient_checkpointing]
    print(f"backbone {args.backbone}: {args.steps} steps x {args.batch_size} pairs, max_length {args.max_length}, "
          f"learning rate {args.learning_rate} (10% warmup, cosine), {args.threads} threads per trainer, "
          f"turns of {args.segment_steps} steps; TRL gradient checkpointing {args.trl_gradient_checkpointing}; "
          f"rewardkit freezes {args.freeze_layers} layers; pool seed {args.pool_seed}")
    print(f"runs: {', '.join(f'{r} ({precision[r]})' if r.endswith('auto') else r for r in runs)}")
    print(f"start: {load_text()}", flush=True)
    started = time.perf_counter()
    peak_dtypes = {"fp32"} | {precision[r] for r in runs if r.startswith("rewardkit")}
    peaks = {dtype: [] for dtype in sorted(peak_dtypes)}

    def read_peaks(every_dtype: bool = False) -> None:
        """fp32 between every two segments; bf16 only at the start and the end, at a smaller size: without bf16
        matrix units a 2048^3 bf16 matmul takes half a minute"""
        for dtype, readings in peaks.items():
            if dtype == "fp32" or every_dtype:
                readings.append(matmul_peak(args.threads, dtype, 2048 if dtype == "fp32" else 1024))

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        workers = [Worker(run, args, str(Path(tmp) / run), Path(tmp)) for run in runs]
        for w in workers:
            if w.precision == "auto":
                w.label = f"{w.name} ({precision[w.name]})"
        if args.same_pairs:
            fitting = [set(w.read("fits")["indices"]) for w in workers]
            everyone = sorted(set.intersection(*fitting))
            pool = sorted(random.Random(args.pool_seed).sample(everyone,
                                                               min(len(everyone), args.steps * args.batch_size)))
            for w in workers:
                w.process.stdin.write(f"train {json.dumps(pool)}\n")
                w.process.stdin.flush()
            print(f"training pairs that fit {args.max_length} tokens: "
                  f"{', '.join(f'{len(f)} for {w.name}' for f, w in zip(fitting, workers))}, {len(everyone)} for all; "
                  f"each trains on the same {len(pool)} of them", flush=True)
        for w in workers:
            w.read("done")  # set up and waiting at its first step
        print(f"all {len(workers)} trainers set up after {time.perf_counter() - started:.0f} s; training in turns",
              flush=True)
        read_peaks(every_dtype=True)
        while any(w.status["steps"] < args.steps for w in workers):
            for w in workers:
                if w.status["steps"] < args.steps:
                    read_peaks()
                    w.run(min(args.segment_steps, args.steps - w.status["steps"]))
                    print(f"  {w.name:15s} step {w.status['steps']:4d}/{args.steps}: "
                          f"{w.status['steps'] * args.batch_size / w.status['active_seconds']:.2f} pairs/s so far",
                          flush=True)
        read_peaks(every_dtype=True)
        for w in workers:  # one at a time: validation seconds are comparable too
            w.process.stdin.close()
            w.result = w.read("result")
            w.process.wait()
    print(f"end: {load_text()}; whole run {time.perf_counter() - started:.0f} s")
    print()

    common = sorted(set.intersection(*(set(w.result["val_correct"]) for w in workers)), key=int)
    trl_fp32 = next((w for w in workers if w.name == "trl-fp32"), None)
    trl_bf16 = next((w for w in workers if w.name == "trl-bf16"), None)
    width = max(len(w.label) for w in workers)
    print(f"{'':{width}s} {'pairs/s':>8s} {'train s':>8s} {'setup s':>8s} {'val s':>6s} {'peak RSS':>9s} "
          f"{'val acc (common ' + str(len(common)) + ')':>22s} {'val acc (own set)':>18s}")
    for w in workers:
        r = w.result
        own = r["val_correct"]
        print(f"{w.label:{width}s} {w.pairs_per_second:8.2f} {r['active_seconds']:8.1f} {r['setup_seconds']:8.1f} "
              f"{r['validation_seconds']:6.0f} {r['peak_rss_mb']:7.0f}MB {accuracy(own, common):22.4f} "
              f"{accuracy(own, list(own)):11.4f} ({len(own)})")
    print()
    print("speed (pairs/s against TRL):" if trl_fp32 or trl_bf16 else "speed: no TRL run to compare with")
    for w in workers:
        against = [f"{w.pairs_per_second / t.pairs_per_second:.2f}x {t.name}" for t in (trl_fp32, trl_bf16)
                   if t is not None and t is not w]
        if against:
            print(f"  {w.label:{width}s} {', '.join(against)}")
    print()
    n = len(common)
    print(f"accuracy, paired (one pair is {1 / max(n, 1):.4f}; binomial s.e. of one accuracy on {n} pairs "
          f"~{0.5 / max(n, 1) ** 0.5:.3f}):")
    ordered = [w for w in workers if w.trainer == "rewardkit"] + [w for w in workers if w.trainer == "trl"]
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            print(f"  {paired(a, b)}")
    print()
    for w in workers:
        if w.trainer != "rewardkit":
            continue
        # a bf16 run is held to the higher of the two peaks: without bf16 units a plain bf16 matmul is far slower
        # than the fp32 one (and than autocast's kernels), and a peak below the achieved rate means nothing
        dtype = max(("fp32", precision[w.name]), key=lambda d: max(peaks[d]))
        r, readings = w.result, peaks[dtype]
        peak, achieved = max(readings), w.result["flops"] / w.result["active_seconds"]
        print(f"{w.label} MFU: {achieved / 1e9:.1f} GFLOP/s achieved / {peak / 1e9:.1f} GFLOP/s "
              f"{dtype} matmul peak (highest of {len(readings)} readings; median "
              f"{statistics.median(readings) / 1e9:.0f}, lowest {min(readings) / 1e9:.0f}) = {achieved / peak:.1%}; "
              f"{r['tokens'] / r['active_seconds']:.0f} tokens/s")
    rk = next((w.result for w in workers if w.trainer == "rewardkit"), None)
    trl = next((w.result for w in workers if w.trainer == "trl"), None)
    if args.same_pairs:
        print(f"data: all trained on the same {workers[0].result['train_pairs']} pairs (of those that fit "
              f"{args.max_length} tokens), one epoch each")
    else:
        if rk:
            print(f"data: {rk['train_pairs']} training pairs for rewardkit ({rk['truncated_train_pairs']} longer "
                  f"than {args.max_length} tokens, truncated)")
        if trl:
            print(f"data: TRL kept {trl['train_pairs']} training pairs (dropped {trl['dropped_train_pairs']} longer "
                  f"than {args.max_length} tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
