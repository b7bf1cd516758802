"""Where a train-rm step's time goes: the top operators of a few training steps under a precision, on this machine.

    python benchmarks/profile_train.py --backbone minilm-l6 --precision bf16
    python benchmarks/profile_train.py --backbone minilm-l6 --precision fp32 --steps 4 --top 20
    python benchmarks/profile_train.py --backbone smollm2-135m --precision auto --max-length 256

It builds the trainer `rewardkit train-rm` builds (HH pairs from ../shared/data, length-grouped packed batches, the
default frozen layers, the bf16 working weights or autocast that the precision means), runs one step to warm up
(the packing check, attention's precision probe, the allocator), then profiles `--steps` optimizer steps with
torch.profiler and prints, per operator, its own time and its share of the profiled steps, and the pairs/s of those
steps. Name the machine with its figures: it is printed first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import HH, machine_text  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="minilm-l6", help="model preset or folder")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 (or fp16 on a GPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps profiled (after one warm-up step)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--top", type=int, default=15, help="operators printed")
    args = parser.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from rewardkit.models.config import TrainRMConfig
    from rewardkit.models.trainer import RewardModelTrainer, length_grouped_batches

    print(f"machine: {machine_text()}", flush=True)
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainRMConfig(model=args.backbone, data=[str(HH[0])], output_dir=out, max_length=args.max_length,
                            batch_size=args.batch_size, val_fraction=0.0, save_every=0,
                            progress=False, tensorboard=False, device=args.device, precision=args.precision)
        trainer = RewardModelTrainer(cfg)
        trainer.setup_training(total_steps=args.steps + 1)
        lengths = [trainer.reward_model.group_length(e.encoded) for e in trainer.train_examples]
        batches = length_grouped_batches(lengths, cfg.batch_size, seed=cfg.seed)[:args.steps + 1]
        trainer.reward_model.train()
        cuda = trainer.placement.device_type == "cuda"

        def step(batch):
            trainer.accumulate_gradients(batch)
            trainer.optimizer_step()
            if cuda:
                torch.cuda.synchronize()

        step(batches[0])
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        started = time.perf_counter()
        with profile(activities=activities) as prof:
            for batch in batches[1:]:
                step(batch)
        seconds = time.perf_counter() - started
    pairs = sum(len(b) for b in batches[1:])
    print(f"{args.backbone}, {trainer.placement.describe()}, {torch.get_num_threads()} threads: {len(batches) - 1} "
          f"steps of {cfg.batch_size} pairs in {seconds:.2f} s under the profiler ({pairs / seconds:.2f} pairs/s)")
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in events)
    print(f"{'operator':<48} {'self ms':>10} {'share':>7} {'calls':>7}")
    for event in events[:args.top]:
        own = getattr(event, key)
        print(f"{event.key[:48]:<48} {own / 1e3:>10.1f} {100 * own / total:>6.1f}% {event.count:>7}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
