"""One RL loop for every algorithm: generate → score → reference log-probs → advantages → update → watch.

The algorithms differ only in the advantage estimator and the policy loss the loop calls (`ALGORITHMS`):

| algorithm    | advantage                                         | policy loss          | value function |
|--------------|---------------------------------------------------|----------------------|----------------|
| reinforce    | reward-to-go minus the batch's mean return        | policy gradient      | -              |
| actor_critic | GAE(γ, λ) with the learned values                 | policy gradient      | yes            |
| ppo          | GAE(γ, λ) with the learned values                 | clipped surrogate    | yes (clipped)  |
| grpo         | group-normalized total reward                     | clipped surrogate    | -              |
| rloo         | total reward minus the other samples' mean        | policy gradient      | -              |

Per-token rewards are built once for all of them: the reward function's tokens (sparse: the total on the last token,
EOS included; dense: shaped per token), minus the truncation penalty, minus β·KL per token when the KL sits in the
reward, plus the entropy bonus when it is an intrinsic reward. Sequence-level algorithms (GRPO, RLOO) use their sum.

Device and precision come from a `Placement`: the policy and the value function keep fp32 weights on the device;
sampling, the no-grad forwards and the update's forwards run under `Placement.autocast()`, while log-probs, KL,
advantages and losses are computed in fp32; fp16 scales the loss (a GradScaler) so that gradients do not underflow.
Under several processes (`rewardkit.rl.distributed`) each takes a share of the step's prompts, every batch statistic
is a sum over the processes, and gradients are summed before the optimizer step: N processes take the update of one.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from rewardkit.data.types import Prompt
from rewardkit.device import Placement
from rewardkit.rewards.base import RewardFunction
from rewardkit.rl.advantages import (discounted_returns, gae, group_normalized_advantages, leave_one_out_advantages,
                                     per_token, reinforce_advantages)
from rewardkit.rl.config import ALGORITHM_TRAITS, RLConfig
from rewardkit.rl.critic import ValueHead
from rewardkit.rl.distributed import Processes, held_rows, minibatch_order
from rewardkit.rl.kl import AdaptiveKLController, FixedKLController, kl_estimate, kl_k1
from rewardkit.rl.losses import aggregate, clipped_surrogate_loss, policy_gradient_loss, value_loss
from rewardkit.rl.masked import masked_sum, masked_whiten
from rewardkit.rl.rollout import (Rollout, SamplingSettings, decode_responses, eos_token_ids, forward_responses,
                                  left_pad, prompt_token_ids, sample)
from rewardkit.rl.watch import RewardHackingWatch
from rewardkit.runs import derived_seed, rng_state, set_rng_state

RewardFn = Callable[..., torch.Tensor]


@dataclass
class Experience:
    """One step's samples and everything computed from them before the update."""

    prompts: list[Prompt]
    references: list | None
    texts: list[str]
    rollout: Rollout
    old_logprobs: torch.Tensor      # [B, T] under the policy that sampled
    ref_logprobs: torch.Tensor      # [B, T] under the frozen reference
    entropy: torch.Tensor           # [B, T]
    scores: torch.Tensor            # [B] the proxy reward (raw, for logging)
    token_rewards: torch.Tensor     # [B, T] what the algorithm optimizes
    values: torch.Tensor | None     # [B, T]
    advantages: torch.Tensor        # [B, T]
    returns: torch.Tensor | None    # [B, T] value targets
    gold: torch.Tensor | None = None  # [B] the gold reward, when scored (watch only, never optimized)
    fields: list | None = None  # [B] each sample's record fields (code_tests' "tests"), for rewards that read them

    @property
    def mask(self) -> torch.Tensor:
        return self.rollout.response_mask


# ---------------------------------------------------------------------------------------------- the algorithms
def _reinforce(rewards, mask, values, cfg, group_size, processes):
    returns = discounted_returns(rewards, mask, cfg.gamma)
    return reinforce_advantages(returns, mask, mean_return=processes.mean(returns, mask)), None


def _gae(rewards, mask, values, cfg, group_size, processes):
    return gae(rewards, values, mask, cfg.gamma, cfg.lam)


def _grpo(rewards, mask, values, cfg, group_size, processes):
    totals = masked_sum(rewards, mask, dim=1)
    return per_token(group_normalized_advantages(totals, group_size, scale=cfg.group_std_scaling), mask), None


def _rloo(rewards, mask, values, cfg, group_size, processes):
    return per_token(leave_one_out_advantages(masked_sum(rewards, mask, dim=1), group_size), mask), None


# Each algorithm's advantages: (token_rewards, mask, values, cfg, group_size, processes) -> (advantages,
# returns | None); groups are local to a process, batch statistics go through `processes`. What else an algorithm
# is (clipped, critic, grouped) is `rl.config.ALGORITHM_TRAITS`.
ADVANTAGES: dict[str, Callable] = {"reinforce": _reinforce, "actor_critic": _gae, "ppo": _gae, "grpo": _grpo,
                                   "rloo": _rloo}


def _pad_columns(tensor: torch.Tensor, width: int) -> torch.Tensor:
    return nn.functional.pad(tensor, (0, width - tensor.shape[1]))


def fields_kwargs(fields: list | None) -> dict:
    """`fields=` for a RewardFunction when the prompts' records carry any, so that a reward written without a `fields`
    parameter still works on prompts that carry none."""
    return {"fields": fields} if fields is not None and any(fields) else {}


class RLTrainer:
    """Holds the policy, reference, value function, optimizer and KL controller; `step(prompts)` runs one RL step.

    `placement` (default: the CPU in fp32) says where the models run; the policy and value function are moved there
    in fp32, the reference stays in the dtype it was loaded in. `processes` (default: one) are the run's processes."""

    def __init__(self, cfg: RLConfig, policy: nn.Module, tokenizer, reward_fn: RewardFn, *,
                 reference: nn.Module | None = None, critic: nn.Module | None = None,
                 gold_fn: RewardFn | None = None, placement: Placement | None = None,
                 processes: Processes | None = None):
        self.placement = placement or Placement("cpu", "fp32", "default")
        self.processes = processes or Processes()
        cfg.check(self.processes.world)
        self.device = self.placement.torch_device
        self.cfg, self.policy, self.tokenizer = cfg, policy.to(self.device), tokenizer
        self.reward_fn, self.gold_fn = reward_fn, gold_fn
        # running and rank normalizers fit on every process's responses, so that N processes normalize as one
        self._batch_gather = self.processes.gather_values if self.processes.world > 1 else None
        for fn in self._stateful_rewards():
            fn.share_batches(self._batch_gather)
        self.algorithm = ALGORITHM_TRAITS[cfg.algorithm]
        self.advantage_fn = ADVANTAGES[cfg.algorithm]
        self.is_peft = hasattr(policy, "disable_adapter")
        if reference is None and not self.is_peft:
            raise ValueError("a full fine-tuning run needs a frozen reference model (LoRA policies use their base)")
        self.reference = reference
        if self.reference is not None:
            self.reference.requires_grad_(False).eval().to(self.device)
        self.policy.eval()  # no dropout: log-probs of the update must match those of sampling
        self.value_model = None
        if self.algorithm.critic:
            self.value_model = critic if critic is not None else ValueHead(policy.config.hidden_size)
            self.value_model.eval().to(self.device)
        self.sampling = SamplingSettings(cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p)
        self.eos_ids = eos_token_ids(policy, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        groups = [{"params": [p for p in policy.parameters() if p.requires_grad], "lr": cfg.learning_rate}]
        if self.value_model is not None:
            groups.append({"params": list(self.value_model.parameters()),
                           "lr": cfg.value_learning_rate or cfg.learning_rate})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        # fp16 gradients underflow without a loss scale; disabled (bf16, fp32) it passes everything through unchanged.
        self.scaler = torch.amp.GradScaler(self.placement.device_type, enabled=self.placement.loss_scaling)
        self.kl_controller = (AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
                              if cfg.kl_target is not None else FixedKLController(cfg.kl_coef))
        self.watch = RewardHackingWatch(cfg.watch_window, cfg.length_drift)
        self.step_count = 0
        self.prompts_truncated = 0

    # ------------------------------------------------------------------------------------------ generation
    def generate(self, prompts: Sequence[Prompt]) -> Rollout:
        """One sampled response per prompt (repeat a prompt to sample it several times)."""
        ids, truncated = prompt_token_ids(self.tokenizer, prompts, self.cfg.chat_template, self.cfg.max_prompt_tokens)
        self.prompts_truncated += truncated
        query_ids, query_mask = left_pad(ids, self.pad_id)
        with self.placement.autocast():
            return sample(self.policy, query_ids.to(self.device), query_mask.to(self.device), self.sampling,
                          self.eos_ids, self.pad_id)

    def _no_grad_forward(self, model: nn.Module, rollout: Rollout, with_entropy: bool = False,
                         with_values: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(logprobs, entropy, values) [B, T] in chunks of `forward_batch_size`."""
        width = rollout.response_ids.shape[1]
        logprobs, entropies, values = [], [], []
        use_hidden = with_values and getattr(self.value_model, "uses_policy_hidden", False)
        with torch.no_grad(), self.placement.autocast():
            for start in range(0, len(rollout), self.cfg.forward_batch_size):
                part = rollout.select(slice(start, start + self.cfg.forward_batch_size))
                out = forward_responses(model, part, self.cfg.temperature or 1.0, with_entropy, use_hidden)
                logprobs.append(_pad_columns(out.logprobs, width))
                if with_entropy:
                    entropies.append(_pad_columns(out.entropy, width))
                if with_values:
                    values.append(_pad_columns(self.value_model.values(part, out.hidden), width))
        return (torch.cat(logprobs), torch.cat(entropies) if with_entropy else None,
                torch.cat(values) if with_values else None)

    def reference_logprobs(self, rollout: Rollout) -> torch.Tensor:
        if self.reference is not None:
            return self._no_grad_forward(self.reference, rollout)[0]
        with self.policy.disable_adapter():  # LoRA: the base model is the reference
            return self._no_grad_forward(self.policy, rollout)[0]

    # ------------------------------------------------------------------------------------------ rewards
    def score_tokens(self, fn: RewardFn, prompts: list, texts: list[str], rollout: Rollout,
                     references: list | None, fields: list | None = None) -> torch.Tensor:
        """[B, T] rewards on the response tokens: a rewardkit RewardFunction lays them out itself (sparse or dense,
        aligned to the policy's tokens); a plain callable's score goes on the last token. `fields` (one mapping per
        sample: its record's other fields) go to a RewardFunction when there are any (`fields_kwargs`)."""
        mask = rollout.response_mask
        if hasattr(fn, "token_rewards"):
            ids = [row[m.bool()].tolist() for row, m in zip(rollout.response_ids, mask)]
            rows = fn.token_rewards(prompts, texts, references, response_token_ids=ids, tokenizer=self.tokenizer,
                                    finished=(~rollout.truncated).tolist(), **fields_kwargs(fields))
            out = torch.zeros_like(mask)
            for i, row in enumerate(rows):
                out[i, :len(row)] = row
            return out
        scores = self.call_reward(fn, prompts, texts, rollout, references, fields).to(mask.device)
        last = (rollout.lengths.long() - 1).clamp(min=0)
        return torch.zeros_like(mask).scatter(1, last[:, None], scores[:, None])

    @staticmethod
    def call_reward(fn: RewardFn, prompts: list, texts: list[str], rollout: Rollout,
                    references: list | None, fields: list | None = None) -> torch.Tensor:
        kwargs = {"finished": (~rollout.truncated).tolist(), **fields_kwargs(fields)} \
            if hasattr(fn, "token_rewards") else {}
        scores = fn(prompts, texts, references, **kwargs) if references is not None else fn(prompts, texts, **kwargs)
        return torch.as_tensor(scores, dtype=torch.float32).reshape(-1)

    def shape_rewards(self, score_tokens: torch.Tensor, rollout: Rollout, kl_tokens: torch.Tensor,
                      old_logprobs: torch.Tensor) -> torch.Tensor:
        """The per-token rewards the algorithm optimizes (see the module docstring)."""
        mask = rollout.response_mask
        last = (rollout.lengths.long() - 1).clamp(min=0)[:, None]
        rewards = score_tokens.clone()
        if self.cfg.truncation_penalty:
            penalty = self.cfg.truncation_penalty * rollout.truncated.float()[:, None]
            rewards = rewards.scatter_add(1, last, -penalty)
        if self.cfg.whiten_rewards:
            # Whiten each response's total over the whole batch (every process's share): dense tokens are scaled,
            # the mean comes off the last token.
            totals = masked_sum(rewards, mask, dim=1)
            mean, var = self.processes.moments(totals)
            std = var.add(1e-8).sqrt()
            rewards = (rewards / std).scatter_add(1, last, -(mean / std).expand(len(totals), 1))
        if self.cfg.kl_in == "reward":
            rewards = rewards - self.kl_controller.value * kl_tokens
        if self.cfg.entropy_coef and self.cfg.entropy_in == "reward":
            rewards = rewards - self.cfg.entropy_coef * old_logprobs
        return rewards * mask

    # ------------------------------------------------------------------------------------------ one step
    def make_experience(self, prompts: Sequence[Prompt], references: Sequence | None = None,
                        fields: Sequence | None = None) -> tuple[Experience, dict]:
        """Sample `samples_per_prompt` responses per prompt, score them, and compute advantages. `fields`: each
        prompt's record fields, passed to the rewards with each of its samples."""
        cfg, timings = self.cfg, {}
        group = cfg.samples_per_prompt
        prompts = [p for p in prompts for _ in range(group)]  # a prompt's samples are contiguous (one group)
        references = None if references is None else [r for r in references for _ in range(group)]
        fields = None if fields is None else [f for f in fields for _ in range(group)]
        start = time.perf_counter()
        truncated_before = self.prompts_truncated
        rollout = self.generate(prompts)
        # Every process keeps the whole batch's count, so that the main process's checkpoint holds the right one.
        local = torch.tensor(float(self.prompts_truncated - truncated_before), device=self.device)
        self.prompts_truncated = truncated_before + int(self.processes.sum(local))
        texts = decode_responses(self.tokenizer, rollout)
        timings["time/generate"] = time.perf_counter() - start

        start = time.perf_counter()
        score_tokens = self.score_tokens(self.reward_fn, prompts, texts, rollout, references, fields)
        timings["time/score"] = time.perf_counter() - start

        start = time.perf_counter()
        if self.algorithm.critic:  # the values need a forward pass anyway; take the log-probs from it too
            old_logprobs, entropy, values = self._no_grad_forward(self.policy, rollout, with_entropy=True,
                                                                  with_values=True)
        else:  # recorded while sampling: no second forward pass through the policy
            old_logprobs, entropy, values = rollout.logprobs, rollout.entropy, None
        ref_logprobs = self.reference_logprobs(rollout)
        timings["time/forward"] = time.perf_counter() - start

        mask = rollout.response_mask
        kl_tokens = kl_estimate(old_logprobs, ref_logprobs, cfg.kl_estimator) * mask
        token_rewards = self.shape_rewards(score_tokens, rollout, kl_tokens, old_logprobs)
        advantages, returns = self.advantage_fn(token_rewards, mask, values, cfg, group, self.processes)
        if cfg.whiten_advantages:  # grouped advantages are centred per prompt already: only scaled (see the option)
            advantages = masked_whiten(advantages, mask, shift_mean=not self.algorithm.grouped,
                                       moments=self.processes.moments(advantages, mask)) * mask
        scores = masked_sum(score_tokens, mask, dim=1)
        experience = Experience(prompts, references, texts, rollout, old_logprobs, ref_logprobs, entropy, scores,
                                token_rewards, values, advantages, returns, fields=fields)
        return experience, timings

    def step(self, prompts: Sequence[Prompt], references: Sequence | None = None,
             fields: Sequence | None = None) -> dict[str, float]:
        """One RL step on the step's `prompts` (all processes', of which this process takes its contiguous share);
        returns the step's metrics over the whole batch (warnings of the watch under `self.new_warnings`). `fields`:
        each prompt's record fields (e.g. code_tests' "tests"), for the rewards."""
        step_start = time.perf_counter()
        share = self.processes.share(len(prompts))
        experience, metrics = self.make_experience(prompts[share], None if references is None else references[share],
                                                   None if fields is None else fields[share])
        start = time.perf_counter()
        metrics.update(self.update(experience))
        metrics["time/update"] = time.perf_counter() - start
        self.step_count += 1

        mask, rollout, batch = experience.mask, experience.rollout, self.processes
        sequence_kl = masked_sum(kl_k1(experience.old_logprobs, experience.ref_logprobs), mask, dim=1)
        proxy_mean, proxy_var = batch.moments(experience.scores)
        metrics.update({  # means over every process's samples
            "reward/proxy": float(proxy_mean),
            "reward/proxy_std": float(proxy_var.sqrt()),
            "reward/shaped": float(batch.mean(masked_sum(experience.token_rewards, mask, dim=1))),
            "kl/ref": float(batch.mean(sequence_kl)),
            "kl/coef": self.kl_controller.value,
            "response/length": float(batch.mean(rollout.lengths)),
            "response/truncated": float(batch.mean(rollout.truncated.float())),
            "policy/entropy": float(batch.mean(experience.entropy, mask)),
        })
        if self.gold_fn is not None and (self.step_count - 1) % max(self.cfg.gold_every, 1) == 0:
            experience.gold = self.call_reward(self.gold_fn, experience.prompts, experience.texts, rollout,
                                               experience.references, experience.fields)
            metrics["reward/gold"] = float(batch.mean(experience.gold))
        self.kl_controller.update(metrics["kl/ref"], len(rollout) * batch.world)
        self.new_warnings = self.watch.update(self.step_count, metrics["reward/proxy"], metrics["response/length"],
                                              metrics.get("reward/gold"))
        metrics["time/step"] = time.perf_counter() - step_start
        self.last_experience = experience
        return metrics

    # ------------------------------------------------------------------------------------------ the update
    def update(self, exp: Experience) -> dict[str, float]:
        """`epochs` passes of minibatch updates. Minibatches are drawn over the global sample index (every process's
        share; this process holds rows `held`); each minibatch's gradient is accumulated over forward chunks and
        processes with weights that make it exactly the gradient of the minibatch's aggregated loss. The logged losses
        are the minibatches' aggregated losses, averaged over the updates."""
        cfg, batch = self.cfg, self.processes
        local = len(exp.rollout)
        n = local * batch.world  # every process holds an equal share
        held = slice(batch.rank * local, (batch.rank + 1) * local)
        minibatch = min(cfg.minibatch_size or n, n)
        token_mean = cfg.loss_aggregation == "token_mean"
        # Every sample's token count, on every process: a minibatch's loss is normalised by its total.
        lengths = torch.zeros(n, device=self.device)
        lengths[held] = exp.mask.sum(dim=1)
        lengths = batch.sum(lengths)
        weighted: dict[str, float] = {}
        grad_norms: list[float] = []
        updates = 0
        trainable = [p for g in self.optimizer.param_groups for p in g["params"]]
        for epoch in range(cfg.epochs):
            order = minibatch_order(n, cfg.seed, self.step_count, epoch)
            for mb_start in range(0, n, minibatch):
                rows = order[mb_start:mb_start + minibatch]
                total = lengths[rows].sum() if token_mean else float(len(rows))
                mine = held_rows(rows, held)
                self.optimizer.zero_grad(set_to_none=True)
                for chunk_start in range(0, len(mine), cfg.forward_batch_size):
                    chunk = mine[chunk_start:chunk_start + cfg.forward_batch_size]
                    weight = float((exp.mask[chunk].sum() if token_mean else len(chunk)) / total)
                    loss, chunk_stats = self.chunk_loss(exp, chunk)
                    self.scaler.scale(loss * weight).backward()
                    for key, value in chunk_stats.items():
                        weighted[key] = weighted.get(key, 0.0) + value * weight
                batch.sum_gradients(trainable)  # a process holding none of the rows still takes part
                self.scaler.unscale_(self.optimizer)
                if cfg.max_grad_norm:
                    grad_norms.append(float(nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)))
                self.scaler.step(self.optimizer)
                self.scaler.update()
                updates += 1
        # Each process holds rows of some minibatch, so every process has every key.
        keys = sorted(weighted)
        sums = batch.sum(torch.tensor([weighted[k] for k in keys], dtype=torch.float64, device=self.device))
        out = {key: float(value) / updates for key, value in zip(keys, sums)}
        if grad_norms:
            out["policy/grad_norm"] = sum(grad_norms) / len(grad_norms)
        if exp.values is not None:
            out.update(_value_stats(exp.values, exp.returns, exp.mask, batch))
        return out

    def chunk_loss(self, exp: Experience, rows: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one forward chunk (aggregated over the chunk) and its statistics."""
        cfg = self.cfg
        part = exp.rollout.select(rows)
        width = part.response_ids.shape[1]
        mask = part.response_mask

        def cols(t: torch.Tensor) -> torch.Tensor:
            return t[rows][:, :width]

        need_entropy = cfg.entropy_coef > 0 and cfg.entropy_in == "loss"
        use_hidden = getattr(self.value_model, "uses_policy_hidden", False)
        with self.placement.autocast():  # the forwards; log-probs, values and losses come out in fp32
            out = forward_responses(self.policy, part, cfg.temperature or 1.0, need_entropy, use_hidden)
            values = self.value_model.values(part, out.hidden) if self.value_model is not None else None
        advantages, old_logprobs = cols(exp.advantages), cols(exp.old_logprobs)
        stats = {}
        if self.algorithm.clipped:
            surrogate = clipped_surrogate_loss(out.logprobs, old_logprobs, advantages, mask, cfg.clip_range,
                                               cfg.loss_aggregation)
            loss = surrogate.loss
            stats["policy/clip_fraction"] = float(surrogate.clip_fraction)
            stats["policy/approx_kl"] = float(surrogate.approx_kl)
        else:
            loss = policy_gradient_loss(out.logprobs, advantages, mask, cfg.loss_aggregation)
        stats["loss/policy"] = float(loss.detach())
        if values is not None:
            clip = cfg.value_clip_range if self.algorithm.clipped else None
            v_loss = value_loss(values, cols(exp.returns), mask, cols(exp.values), clip, cfg.loss_aggregation)
            loss = loss + cfg.value_coef * v_loss
            stats["loss/value"] = float(v_loss.detach())
        if cfg.kl_in == "loss":
            kl = aggregate(kl_estimate(out.logprobs, cols(exp.ref_logprobs), cfg.kl_estimator), mask,
                           cfg.loss_aggregation)
            loss = loss + self.kl_controller.value * kl
            stats["loss/kl"] = float(kl.detach())
        if need_entropy:
            entropy = aggregate(out.entropy, mask, cfg.loss_aggregation)
            loss = loss - cfg.entropy_coef * entropy
        return loss, stats

    # ------------------------------------------------------------------------------------------ evaluation
    def evaluate(self, prompts: Sequence[Prompt], references: Sequence | None = None, samples_per_prompt: int = 1,
                 seed: int = 1234, fields: Sequence | None = None) -> tuple[dict[str, float], list[dict]]:
        """Proxy and gold reward, KL and length on held-out prompts, with a fixed sampling seed, so evaluations at
        different steps compare the policies, not the dice. Training is left as it was: its RNG, and the rewards'
        running normalizers (held-out scores must not shift the statistics that training rewards are scaled by)."""
        prompts = [p for p in prompts for _ in range(samples_per_prompt)]
        references = None if references is None else [r for r in references for _ in range(samples_per_prompt)]
        fields = None if fields is None else [f for f in fields for _ in range(samples_per_prompt)]
        chunk = self.cfg.prompts_per_step * self.cfg.samples_per_prompt
        proxy, gold, kl, lengths, samples = [], [], [], [], []
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []  # sampling on a GPU draws from its RNG
        # only the main process evaluates: normalizers fit on its samples alone, and get their state back after
        reward_states = {fn: copy.deepcopy(fn.state_dict()) for fn in self._stateful_rewards()}
        for fn in reward_states:
            fn.share_batches(None)
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            for start in range(0, len(prompts), chunk):
                batch_prompts = prompts[start:start + chunk]
                batch_refs = None if references is None else references[start:start + chunk]
                batch_fields = None if fields is None else fields[start:start + chunk]
                rollout = self.generate(batch_prompts)
                texts = decode_responses(self.tokenizer, rollout)
                scores = self.call_reward(self.reward_fn, batch_prompts, texts, rollout, batch_refs, batch_fields)
                golds = (self.call_reward(self.gold_fn, batch_prompts, texts, rollout, batch_refs, batch_fields)
                         if self.gold_fn is not None else None)
                seq_kl = masked_sum(kl_k1(rollout.logprobs, self.reference_logprobs(rollout)), rollout.response_mask,
                                    dim=1)
                proxy.append(scores), kl.append(seq_kl), lengths.append(rollout.lengths)
                if golds is not None:
                    gold.append(golds)
                for i, text in enumerate(texts):
                    samples.append({"prompt": batch_prompts[i], "response": text, "proxy": float(scores[i]),
                                    "gold": None if golds is None else float(golds[i]),
                                    "truncated": bool(rollout.truncated[i])})
        for fn, state in reward_states.items():
            fn.load_state_dict(state)
            fn.share_batches(self._batch_gather)
        metrics = {"eval/proxy": float(torch.cat(proxy).mean()), "eval/kl": float(torch.cat(kl).mean()),
                   "eval/length": float(torch.cat(lengths).mean())}
        metrics["eval/proxy_sem"] = _sem(torch.cat(proxy))
        if gold:
            metrics["eval/gold"] = float(torch.cat(gold).mean())
            metrics["eval/gold_sem"] = _sem(torch.cat(gold))
        return metrics, samples

    # ------------------------------------------------------------------------------------------ state
    def _stateful_rewards(self) -> list[RewardFunction]:
        """The proxy and gold rewards that are rewardkit reward functions (they may carry normalizer state)."""
        return [fn for fn in dict.fromkeys((self.reward_fn, self.gold_fn)) if isinstance(fn, RewardFunction)]

    def state_dict(self) -> dict[str, Any]:
        """Everything but the policy weights (saved as a model folder) needed to resume exactly. Every process calls
        it (it gathers each process's RNG state); the rest, the rewards' normalizer state included (fitted on the whole
        batch), is the same on every process."""
        return {"step": self.step_count, "optimizer": self.optimizer.state_dict(),
                "value_model": self.value_model.state_dict() if self.value_model is not None else None,
                "kl_controller": self.kl_controller.state_dict(), "watch": self.watch.state_dict(),
                "prompts_truncated": self.prompts_truncated, "grad_scaler": self.scaler.state_dict(),
                "rng": self.processes.gather([rng_state(self.device)]),
                "reward_states": {"proxy": _reward_state(self.reward_fn), "gold": _reward_state(self.gold_fn)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = state["step"]
        self.optimizer.load_state_dict(state["optimizer"])
        if self.value_model is not None and state["value_model"] is not None:
            self.value_model.load_state_dict(state["value_model"])
        self.kl_controller.load_state_dict(state["kl_controller"])
        self.watch.load_state_dict(state["watch"])
        self.prompts_truncated = state["prompts_truncated"]
        if state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        if len(state["rng"]) == self.processes.world:
            set_rng_state(state["rng"][self.processes.rank], self.device)
        else:  # another process count cannot draw the same samples: each process starts a stream of its own
            torch.manual_seed(derived_seed(self.cfg.seed, self.step_count, self.processes.rank))
        saved = state.get("reward_states", {})  # none in checkpoints from before rewards had a state
        for key, fn in (("proxy", self.reward_fn), ("gold", self.gold_fn)):
            if isinstance(fn, RewardFunction) and saved.get(key) is not None:
                fn.load_state_dict(saved[key])


def _sem(values: torch.Tensor) -> float:
    return float(values.std() / math.sqrt(len(values))) if len(values) > 1 else 0.0


def _value_stats(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                 processes: Processes) -> dict[str, float]:
    """Explained variance 1 − Var(R − V)/Var(R) over the whole batch: 1 is a perfect critic, 0 no better than a
    constant."""
    var_returns = processes.moments(returns, mask)[1]
    explained = 1 - processes.moments(returns - values, mask)[1] / var_returns.clamp(min=1e-8)
    return {"value/mean": float(processes.mean(values, mask)), "value/explained_variance": float(explained)}


def _reward_state(fn: RewardFn | None) -> dict | None:
    """What a rewardkit reward function carries across steps (running normalizers); None for a plain callable."""
    return fn.state_dict() if isinstance(fn, RewardFunction) else None
