"""Scoring throughput: RewardModel.score vs the plain transformers loop a user would write, on the same model.

    python benchmarks/bench_score.py                                  # minilm-l6, 2000 HH pairs (~8 min, quiet CPU)
    python benchmarks/bench_score.py --model smollm2-135m             # 300 pairs by default, max_length 256
    python benchmarks/bench_score.py --model smollm2-135m --pairs 2000 # ~60 min

Both score the same HH pairs (../shared/data/hh-rlhf, both files, in file order), each pair as (prompt, chosen) and
(prompt, rejected) one after the other, from strings to scores (tokenization included, model loading excluded), with
the same model object, batch size, max_length and threads, taking turns chunk by chunk so that load changes hit both.

The plain loop: `tokenizer(batch, padding=True, truncation=True, max_length=...)` on texts in input order, no length
sorting, `model(**batch).logits` under `torch.no_grad()`; an encoder gets (prompt, response) as a sentence pair, a
decoder the conversation rendered by its chat template. rewardkit: `rm.score(prompts, responses, batch_size=...)`
(length-sorted batches; a decoder's texts with the same prompt packed with the prompt encoded once).

The scores must agree: printed is the largest difference on texts that fit max_length (the two truncate long texts
differently: transformers cuts the end of the longer segment, rewardkit the oldest context).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from common import HH  # also sets the offline environment
DEFAULTS = {"minilm-l6": {"pairs": 2000, "max_length": 512}, "smollm2-135m": {"pairs": 300, "max_length": 256}}


def plain_transformers_scores(model, tokenizer, prompts, responses, batch_size: int, max_length: int):
    """What a user writes with transformers alone."""
    import torch

    from rewardkit.data.types import conversation_from_text, prompt_as_text

    chat = bool(getattr(tokenizer, "chat_template", None)) and hasattr(model, "score")
    scores = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch_prompts, batch_responses = prompts[start:start + batch_size], responses[start:start + batch_size]
            if chat:
                texts = [tokenizer.apply_chat_template(conversation_from_text(p) + [{"role": "assistant",
                                                                                     "content": r}], tokenize=False)
                         for p, r in zip(batch_prompts, batch_responses)]
                batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                                  add_special_tokens=False)
            else:
                batch = tokenizer([prompt_as_text(p) for p in batch_prompts], list(batch_responses), padding=True,
                                  truncation=True, max_length=max_length, return_tensors="pt")
            scores.append(model(**batch).logits[:, 0])
    return torch.cat(scores)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6", help="preset or reward model folder")
    parser.add_argument("--pairs", type=int, help="HH pairs to score (default: 2000 for minilm-l6, 300 for smollm2)")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass, for both")
    parser.add_argument("--max-length", type=int, help="default: 512 for minilm-l6, 256 for smollm2-135m")
    parser.add_argument("--chunks", type=int, default=4, help="turns: the pairs are split into this many chunks")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    defaults = DEFAULTS.get(args.model, DEFAULTS["minilm-l6"])
    args.pairs = args.pairs or defaults["pairs"]
    args.max_length = args.max_length or defaults["max_length"]
    if not all(p.exists() for p in HH):
        print(f"HH data not found at {HH[0].parent}", file=sys.stderr)
        return 1

    import torch

    from rewardkit.data import loaders
    from rewardkit.models import RewardModel

    torch.set_num_threads(args.threads)
    pairs = loaders.load_pairs([str(p) for p in HH], on_identical="skip")[:args.pairs]
    rm = RewardModel.from_pretrained(args.model, max_length=args.max_length, dropout=False)
    prompts = [p.prompt for p in pairs for _ in range(2)]
    responses = [r for p in pairs for r in (p.chosen, p.rejected)]
    one = os.getloadavg()[0]
    print(f"model {args.model}: {len(pairs)} HH pairs ({len(responses)} texts), batch {args.batch_size} texts, "
          f"max_length {args.max_length}, {args.threads} threads, {args.chunks} turns each")
    print(f"start: load average {one:.1f} on {os.cpu_count()} cores", flush=True)

    seconds = {"rewardkit": 0.0, "transformers": 0.0}
    results = {"rewardkit": [], "transformers": []}
    size = -(-len(pairs) // args.chunks) * 2
    for turn, start in enumerate(range(0, len(responses), size)):
        chunk = slice(start, start + size)
        order = ("rewardkit", "transformers") if turn % 2 == 0 else ("transformers", "rewardkit")
        for name in order:
            began = time.perf_counter()
            if name == "rewardkit":
                scores = rm.score(prompts[chunk], responses[chunk], batch_size=args.batch_size)
            else:
                scores = plain_transformers_scores(rm.model.eval(), rm.tokenizer, prompts[chunk], responses[chunk],
                                                   args.batch_size, args.max_length)
            seconds[name] += time.perf_counter() - began
            results[name].append(scores)
        done = min(start + size, len(responses)) // 2
        print(f"  {done:5d} pairs: rewardkit {done / seconds['rewardkit']:.2f} pairs/s, "
              f"transformers {done / seconds['transformers']:.2f} pairs/s", flush=True)

    ours, theirs = torch.cat(results["rewardkit"]), torch.cat(results["transformers"])
    fits = torch.tensor([not e.truncated for e in rm.encode_many(prompts, responses)])
    print(f"end: load average {os.getloadavg()[0]:.1f}")
    print()
    for name in ("transformers", "rewardkit"):
        print(f"{name:12s} {len(pairs) / seconds[name]:8.2f} pairs/s  ({seconds[name]:.1f} s)")
    print(f"speed: rewardkit / transformers = {seconds['transformers'] / seconds['rewardkit']:.2f}x")
    print(f"agreement: largest |difference| {float((ours - theirs)[fits].abs().max()):.2e} on the "
          f"{int(fits.sum())} texts within max_length ({int((~fits).sum())} longer ones truncated differently)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
