"""Check every rewardkit command on one device: wall time, throughput and peak memory of each, as the real CLI.

train-rm (full and LoRA), eval-rm, score, serve, rl, best-of-n, label import, an ensemble and fp16 training (on a
GPU), each run in a subprocess one after the other.

    python benchmarks/gpu_check.py                              # on one GPU (H200: well under 8 minutes)
    python benchmarks/gpu_check.py --device cpu --quick         # CPU smoke test: tiny sizes, ~3 minutes on 2 cores
    python benchmarks/gpu_check.py --device cuda:1 --precision fp16 --steps 200 --output-dir runs/gpu-check

Steps, on the HH data at ../shared/data/hh-rlhf and the smollm2-135m preset (--model), all with --device and
--precision passed through:
  train-rm      full fine-tuning (--freeze-layers 0) for --steps optimizer steps
  train-rm-lora the same with --lora-rank 16
  eval-rm       the full fine-tuned model on HH validation (the pairs train-rm held out) and LLMBar, --json; with
                the LoRA model as its second model when both trained (paired)
  score         --score-records HH records (prompt, response)
  serve         on a free port: wait for /health, one POST /score of --serve-items items, then SIGTERM
  rl            --rl-steps (5) PPO steps of a LoRA policy (--lora-rank 8) against the trained reward model, on HH
                prompts
  best-of-n     4 samples per prompt of --policy on rl's prompts, ranked by the trained model
  label-import  a labelling database filled by sampling --policy, items ordered by the trained model
  train-rm-ensemble, eval-rm-ensemble   a 2-member ensemble (--steps / 10 steps each), then eval-rm on it
  train-rm-fp16 on a GPU only: --precision fp16 (loss scaling), --steps / 10 steps
Later steps use the full fine-tuned model; if that step failed, the LoRA one; if both failed, the untrained preset.

Prints the machine (GPU via nvidia-smi, CPU model), then one table row per step: status, wall seconds (the whole
subprocess: start-up and model loading included), throughput (train-rm: pairs/s of its training steps from
train_summary.json; eval-rm: pairs/s over the wall time; score: the responses/s it prints; serve: start-up seconds and
the request's items/s; rl: generated tokens/s over its step times from metrics.jsonl) and peak memory: GPU memory
from nvidia-smi polled every 0.2 s on a GPU, peak RSS (VmHWM) on a CPU. Then each command's placement line (the
`rewardkit COMMAND: device ..., precision ...` line it prints on stderr) and the placement each one recorded
(train_summary.json, the eval JSON per model, serve's /health). A step whose flags `rewardkit COMMAND --help` does
not list fails at once, naming them, and the others still run. Logs of every step are kept in --output-dir.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import (HH, HH_DIR, LLMBAR, CliRun, exit_on_sigterm, machine_text, measures_gpu, missing_flags,
                    placement_lines, run_cli)

SIZES = {  # per mode: train steps, pairs per step, max_length, held-out fraction, eval-rm --limit, records, rl sizes
    "full": {"steps": 100, "batch_size": 16, "max_length": 512, "val_fraction": 0.1, "eval_limit": 0,
             "score_records": 300, "serve_items": 32, "rl_steps": 5, "rl_prompts_per_step": 8, "rl_new_tokens": 64},
    "quick": {"steps": 2, "batch_size": 2, "max_length": 128, "val_fraction": 0.005, "eval_limit": 16,
              "score_records": 8, "serve_items": 4, "rl_steps": 2, "rl_prompts_per_step": 2, "rl_new_tokens": 8},
}


class Step:
    """One row of the table."""

    def __init__(self, name: str, command: str):
        self.name, self.command = name, command
        self.run: CliRun | None = None
        self.status = "not run"
        self.throughput = ""
        self.note = ""
        self.detail = ""  # why it failed, in a few lines
        self.recorded = None  # the placement the command recorded, where it records one

    def row(self) -> str:
        seconds = f"{self.run.seconds:7.1f}" if self.run else f"{'':7s}"
        memory = f"{self.run.peak_mib:8.0f} MiB" if self.run and self.run.peak_mib else f"{'':12s}"
        return f"{self.name:14s} {self.status:8s} {seconds} {self.throughput:32s} {memory}  {self.note}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto",
                        help="passed to every command: auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--precision", default="auto",
                        help="passed to every command: auto, fp32, bf16 or fp16 (default: auto)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes for a CPU smoke test (2 steps of 2 pairs, max_length 128, 16 pairs per "
                             "eval-rm dataset, 8 score records, 2 rl steps of 2 prompts and 8 new tokens)")
    parser.add_argument("--model", default="smollm2-135m",
                        help="reward-model backbone for train-rm (default: smollm2-135m)")
    parser.add_argument("--policy", default="smollm2-135m",
                        help="rl policy, a causal language model (default: smollm2-135m)")
    parser.add_argument("--steps", type=int, help="train-rm optimizer steps (default: 100, --quick 2)")
    parser.add_argument("--batch-size", type=int, help="train-rm pairs per step (default: 16, --quick 2)")
    parser.add_argument("--max-length", type=int,
                        help="train-rm/score/serve tokens per text (default: 512, --quick 128)")
    parser.add_argument("--val-fraction", type=float,
                        help="share of HH held out by train-rm and evaluated by eval-rm (default: 0.1, --quick 0.005)")
    parser.add_argument("--eval-limit", type=int, help="eval-rm --limit per dataset (0: all; default: 0, --quick 16)")
    parser.add_argument("--score-records", type=int, help="records for score (default: 300, --quick 8)")
    parser.add_argument("--serve-items", type=int, help="items in the one /score request (default: 32, --quick 4)")
    parser.add_argument("--rl-steps", type=int, help="rl steps (default: 5, --quick 2)")
    parser.add_argument("--rl-prompts-per-step", type=int, help="rl prompts per step (default: 8, --quick 2)")
    parser.add_argument("--rl-new-tokens", type=int, help="rl --max-new-tokens (default: 64, --quick 8)")
    parser.add_argument("--step-timeout", type=float, default=300,
                        help="seconds before a step is stopped (default: 300)")
    parser.add_argument("--output-dir", help="where the models, data and logs go (default: a temporary folder, "
                                             "deleted at the end)")
    args = parser.parse_args()
    exit_on_sigterm()
    for key, value in SIZES["quick" if args.quick else "full"].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    missing = [str(p) for p in (*HH, LLMBAR) if not p.exists()]
    if missing:
        print(f"data not found: {', '.join(missing)}", file=sys.stderr)
        return 1
    if args.output_dir:
        return check(args, Path(args.output_dir))
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        return check(args, Path(tmp))


def check(args, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    gpu = measures_gpu(args.device)
    placement = ["--device", args.device, "--precision", args.precision]
    print(f"machine: {machine_text()}")
    print(f"asked: --device {args.device} --precision {args.precision}; memory column: "
          f"{'peak GPU memory (nvidia-smi)' if gpu else 'peak RSS of the command process'}; output in {out}")
    print(f"train-rm: {args.model}, {args.steps} steps x {args.batch_size} pairs, max_length {args.max_length}, "
          f"{args.val_fraction:g} of HH held out", flush=True)
    steps: list[Step] = []

    def attempt(step: Step, argv: list[str], timeout: float | None = None) -> bool:
        """Run the step's command unless it needs flags the CLI does not have; print its row as soon as it ends."""
        steps.append(step)
        absent = missing_flags(step.command, argv)
        if absent:
            step.status, step.note = "FAILED", f"`rewardkit {step.command} --help` lacks {', '.join(absent)}"
            return False
        step.run = run_cli(step.command, argv, out / "logs", gpu, name=step.name, timeout=timeout or args.step_timeout)
        step.status = "ok" if step.run.ok else "FAILED"
        if not step.run.ok:
            step.note, step.detail = "see below", step.run.failure()
        return step.run.ok

    # ---- a, b: train-rm, full fine-tuning and LoRA
    trained = {}
    for name, extra in (("train-rm", []), ("train-rm-lora", ["--lora-rank", "16"])):
        model_dir = out / name
        argv = ["--model", args.model, "--data", str(HH_DIR), "--output-dir", model_dir, "--max-steps", args.steps,
                "--batch-size", args.batch_size, "--max-length", args.max_length, "--val-fraction", args.val_fraction,
                "--freeze-layers", 0, "--save-every", 0, "--no-tensorboard", "--no-progress", *placement, *extra]
        step = Step(name, "train-rm")
        if attempt(step, [str(a) for a in argv]):
            summary = json.loads((model_dir / "train_summary.json").read_text())
            step.throughput = f"{summary['examples_per_second']:.1f} pairs/s ({summary['train_seconds']:.0f} s train)"
            step.note = f"val acc {summary.get('val_accuracy') or float('nan'):.3f} on {summary['val_examples']}"
            step.recorded = summary.get("placement", "not in train_summary.json")
            trained[name] = model_dir
        print(step.row(), flush=True)
    model = str(trained.get("train-rm") or trained.get("train-rm-lora") or args.model)
    if model == args.model:
        print(f"  (no trained model: the steps below use the preset {args.model} with an untrained head)")

    # ---- c: eval-rm on HH validation and LLMBar
    # with both trained models, eval-rm scores both on the same pairs (the LoRA one as its second model)
    step = Step("eval-rm", "eval-rm")
    second = [str(trained["train-rm-lora"])] if len(trained) == 2 else []
    argv = [model, *second, f"{HH_DIR}@validation", str(LLMBAR), "--json", "--val-fraction", str(args.val_fraction),
            "--no-progress", "--bootstrap-resamples", "200", *placement]
    if args.eval_limit:
        argv += ["--limit", str(args.eval_limit)]
    if attempt(step, argv):
        result = json.loads(step.run.stdout())
        pairs = sum(d.get("n", 0) for d in result["datasets"].values())
        models = len(result["models"])
        step.throughput = f"{models * pairs / step.run.seconds:.1f} pairs/s ({models} x {pairs} pairs, wall)"
        step.note = "; ".join(f"{name} acc {d['accuracy']:.3f}" + (f" (LoRA {d['model2']['accuracy']:.3f})"
                                                                    if "model2" in d else "") + f" n {d['n']}"
                              for name, d in result["datasets"].items())
        step.recorded = [m.get("placement", "not in the eval JSON") for m in result["models"]]
    print(step.row(), flush=True)

    # ---- d: score a few hundred records
    records = hh_records(args.score_records)
    score_input = out / "score_input.jsonl"
    score_input.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in records))
    step = Step("score", "score")
    if attempt(step, [model, "--input", str(score_input), "--output", str(out / "scores.jsonl"),
                      "--max-length", str(args.max_length), "--no-progress", *placement]):
        said = [line for line in step.run.stderr().splitlines() if line.startswith("scored ")]
        step.throughput = said[-1].split("(")[-1].rstrip(")") if said else "?"
        step.note = f"{len(records)} records"
    print(step.row(), flush=True)

    # ---- e: serve, one /score request
    steps.append(serve_step(args, model, placement, out, gpu, records))
    print(steps[-1].row(), flush=True)

    # ---- f: rl with a LoRA policy against the trained reward model
    prompts = out / "rl_prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in hh_prompts(4 * args.rl_prompts_per_step)))
    step = Step("rl", "rl")
    argv = ["--policy", args.policy, "--reward", model, "--prompts", str(prompts), "--output-dir", str(out / "rl"),
            "--steps", str(args.rl_steps), "--prompts-per-step", str(args.rl_prompts_per_step),
            "--max-new-tokens", str(args.rl_new_tokens), "--lora-rank", "8", "--eval-size", "0", "--save-every", "0",
            "--no-tensorboard", "--no-report", *placement]
    if attempt(step, argv):
        rows = [json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines() if line.strip()]
        rows = [r for r in rows if "time/step" in r]
        tokens = sum(r["response/length"] * args.rl_prompts_per_step for r in rows)
        seconds = sum(r["time/step"] for r in rows)
        step.throughput = f"{tokens / max(seconds, 1e-9):.1f} tokens/s ({seconds / max(len(rows), 1):.1f} s/step)"
        step.note = f"{len(rows)} steps, proxy reward {rows[0]['reward/proxy']:+.2f} -> {rows[-1]['reward/proxy']:+.2f}"
    print(step.row(), flush=True)

    more_steps(args, model, placement, out, attempt, records)
    report(steps, gpu)
    return 0 if all(s.status == "ok" for s in steps) else 1


def more_steps(args, model: str, placement: list[str], out: Path, attempt, records) -> None:
    """best-of-n, label import with a policy and a reward model, a 2-member ensemble (train-rm, then eval-rm on it),
    and fp16 training on a GPU: the paths a GPU run has not otherwise crossed."""
    prompts = out / "bon_prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in hh_prompts(args.rl_prompts_per_step)))
    step = Step("best-of-n", "best-of-n")
    if attempt(step, ["--policy", args.policy, "--prompts", str(prompts), "--reward", model, "--n", "4",
                      "--max-new-tokens", str(args.rl_new_tokens), "--output-dir", str(out / "bon"),
                      "--bootstrap-resamples", "50", "--no-progress", *placement]):
        step.note = f"{args.rl_prompts_per_step} prompts x 4 samples"
    print(step.row(), flush=True)

    step = Step("label-import", "label import")
    if attempt(step, [str(out / "labels.sqlite"), "--policy", args.policy, "--prompts", str(prompts),
                      "--samples-per-prompt", "2", "--max-new-tokens", str(args.rl_new_tokens), "--order", "margin",
                      "--reward-model", model, *placement]):
        step.note = "items sampled by the policy, ordered by the reward model"
    print(step.row(), flush=True)

    ensemble = out / "ensemble"
    step = Step("train-rm-ensemble", "train-rm")
    argv = ["--model", args.model, "--data", str(HH_DIR), "--output-dir", str(ensemble), "--ensemble", "2",
            "--max-steps", str(max(1, args.steps // 10)), "--batch-size", str(args.batch_size), "--max-length",
            str(args.max_length), "--val-fraction", str(args.val_fraction), "--save-every", "0", "--no-tensorboard",
            "--no-progress", *placement]
    if attempt(step, argv):
        summary = json.loads((ensemble / "train_summary.json").read_text())
        step.note = f"ensemble val acc {summary.get('val_accuracy') or float('nan'):.3f}"
        step.recorded = summary.get("placement")
        evaluated = Step("eval-rm-ensemble", "eval-rm")
        if attempt(evaluated, [str(ensemble), f"{HH_DIR}@validation", "--json", "--val-fraction",
                               str(args.val_fraction), "--no-progress", "--bootstrap-resamples", "50", *placement]):
            evaluated.note = "members' mean and disagreement"
        print(step.row(), flush=True)
        print(evaluated.row(), flush=True)
    else:
        print(step.row(), flush=True)

    if args.device.startswith("cuda") or (args.device == "auto" and measures_gpu(args.device)):
        step = Step("train-rm-fp16", "train-rm")
        argv = ["--model", args.model, "--data", str(HH_DIR), "--output-dir", str(out / "fp16"), "--max-steps",
                str(max(1, args.steps // 10)), "--batch-size", str(args.batch_size), "--max-length",
                str(args.max_length), "--val-fraction", str(args.val_fraction), "--save-every", "0",
                "--no-tensorboard", "--no-progress", "--device", args.device, "--precision", "fp16"]
        if attempt(step, argv):
            summary = json.loads((out / "fp16" / "train_summary.json").read_text())
            step.note = f"fp16 with loss scaling, val acc {summary.get('val_accuracy') or float('nan'):.3f}"
        print(step.row(), flush=True)


def hh_records(n: int) -> list[tuple[str, str]]:
    """The first n (prompt, chosen response) pairs of HH helpful-base test, through rewardkit's loader."""
    from rewardkit.data.loaders import load_pairs

    with contextlib.redirect_stderr(io.StringIO()):  # its notes about skipped records
        pairs = load_pairs(str(HH[0]), on_empty_response="skip")
    return [(p.prompt, p.chosen) for p in pairs[:n]]


def hh_prompts(n: int) -> list[str]:
    """Short single-turn HH prompts ("Human: ... Assistant:"), as plain text for the policy to continue."""
    singles = [p for p, _ in hh_records(40 * n) if p.count("Human:") == 1 and len(p) < 300]
    return list(dict.fromkeys(singles))[:n]


def serve_step(args, model: str, placement: list[str], out: Path, gpu: bool, records) -> Step:
    step = Step("serve", "serve")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [model, "--port", str(port), "--max-length", str(args.max_length), "--log-level", "warning", *placement]
    absent = missing_flags("serve", argv)
    if absent:
        step.status, step.note = "FAILED", f"`rewardkit serve --help` lacks {', '.join(absent)}"
        return step
    url = f"http://127.0.0.1:{port}"
    step.run = CliRun("serve", argv, out / "logs", gpu).start()
    try:
        started = time.perf_counter()
        health = None
        while time.perf_counter() - started < args.step_timeout and step.run.process.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    health = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.5)
        if health is None:
            step.status, step.note = "FAILED", "no /health answer"
            step.detail = step.run.terminate().failure()
            return step
        ready = time.perf_counter() - started
        items = [{"prompt": p, "response": r} for p, r in (records * args.serve_items)[:args.serve_items]]
        request = urllib.request.Request(f"{url}/score", data=json.dumps({"items": items}).encode(),
                                         headers={"Content-Type": "application/json"})
        sent = time.perf_counter()
        with urllib.request.urlopen(request, timeout=args.step_timeout) as response:
            body = json.loads(response.read())
        latency = time.perf_counter() - sent
        scores = body.get("scores") or body.get("rewards") or []
        step.status = "ok" if len(scores) == len(items) else "FAILED"
        step.throughput = f"{len(items) / latency:.1f} items/s (ready {ready:.0f} s)"
        step.note = f"{len(scores)} scores for {len(items)} items in {latency:.2f} s"
        step.recorded = health.get("placement", "not in /health")
    except OSError as exc:
        step.status, step.note = "FAILED", f"request failed: {exc}"
    finally:
        step.run.terminate()
    return step


def report(steps: list[Step], gpu: bool) -> None:
    print()
    memory = "peak GPU" if gpu else "peak RSS"
    print(f"{'step':14s} {'status':8s} {'wall s':>7s} {'throughput':32s} {memory:>12s}  notes")
    for step in steps:
        print(step.row())
    print()
    print("placement lines (stderr) and what each command recorded:")
    for step in steps:
        said = placement_lines(step.run.stderr(), step.command) if step.run else []
        print(f"  {step.name:14s} {' | '.join(said) or 'no placement line printed'}")
        if step.recorded is not None:
            print(f"  {'':14s} recorded: {json.dumps(step.recorded)}")
    failed = [s for s in steps if s.status != "ok"]
    if failed:
        print()
        print(f"{len(failed)} of {len(steps)} steps failed: {', '.join(s.name for s in failed)}")
        for step in failed:
            print(f"  {step.name}: {step.detail or step.note}")


if __name__ == "__main__":
    sys.exit(main())
