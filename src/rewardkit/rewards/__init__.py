"""Reward functions: learned, rule-based, reference-based and custom components, composed, sparse or dense.

The interface (`rewardkit.rewards.base.RewardFunction`)
-------------------------------------------------------
    fn(prompts, responses, references=None, *, finished=None) -> torch.FloatTensor[B]          # sparse
    fn.per_token(prompts, responses, references=None, *,
                 response_token_ids=None, tokenizer=None, token_ends=None, finished=None,
                 shaping=None, step_separator=None) -> list[torch.FloatTensor[T_i]]            # dense
    fn.token_rewards(prompts, responses, references=None, *, response_token_ids=None, tokenizer=None,
                     token_ends=None, finished=None) -> list[torch.FloatTensor[T_i]]           # in fn.mode

- prompts: list of `Prompt` (text or chat messages); responses: list of str; references: None, or per response a
  text or a list of texts; finished: None, or per response True if it ended with EOS, False if cut off at the limit.
- Per-token rewards are aligned to the POLICY's response tokens. The RL loop passes `response_token_ids` (the sampled
  ids, EOS included or not) and the policy `tokenizer`, with `responses` the tokenizer's decoding of those ids
  (skip_special_tokens=True). Alternatively `token_ends[i][t]` = the character offset in responses[i] where token t
  ends, or only `tokenizer` (responses are re-tokenized; used by `rewardkit score --dense`). The result has exactly
  len(response_token_ids[i]) values for response i.
- Dense shaping is potential-based: r_t = Φ(x, y≤t) − Φ(x, y<t) with Φ = the function's own score of the prefix text
  and Φ(x, empty) = 0, so Σ_t r_t equals the sparse reward. All prefixes of the batch are scored in one batched call.
  Tokens that add no text (EOS, other special tokens) get 0. `shaping="step"` scores only the prefixes ending at each
  `step_separator` (default newline) plus the whole response (process rewards): each increment sits on the token
  that completes the separator, zeros elsewhere. `token_rewards` follows `fn.mode`: "sparse" puts the total on the
  last token (the EOS when it is included), "dense" calls per_token. The per-token KL to a reference model is not a
  reward component: the RL loop adds it (`rewardkit.rl.kl`).

Components (spec `type:` → class; see spec.py for the YAML and each class for its fields)
---------------------------------------------------------------------------------------
reward_model (LearnedReward), remote (RemoteReward), length (TargetLength), regex (RegexMatch), repetition
(RepetitionPenalty), keywords (Keywords), no_eos (NoEOSPenalty), overlong (OverlongPenalty), bleu (Bleu), chrf (Chrf),
rouge (Rouge), embedding_similarity (EmbeddingSimilarity), token_similarity (TokenSimilarity), custom (CustomReward),
math (MathAnswer), code_tests (CodeTests), likelihood (Likelihood), http (HttpReward), judge (LLMJudge).
Components that call out (http, judge, code_tests) are `CallingReward`s: one call per response, run concurrently with a
limit, timeouts, retries with backoff, a result cache and an explicit failure policy (`rewardkit.rewards.calls`).
A component that reads a record field besides the reference (code_tests: `tests`) names it in `needs_fields` and is
passed `fields=` (one mapping per response).
`build_reward(spec_or_path)` returns a `CompositeReward` (itself a RewardFunction) whose `last_components` (raw values),
`last_contributions` (weighted, normalized, clipped terms) and `last_total` describe the last batch for logging.

`load_reward(spec_or_model)` takes a spec file (.yaml/.yml), a reward model (preset/folder) or a `rewardkit serve` URL
and returns a composite either way (what `rewardkit rl --reward`/`--gold-reward`, `rewardkit score` and
`rewardkit.integrations` call; `rewardkit serve` serves a reward model itself, not a spec).

Names are imported lazily so that `rewardkit --help` does not load torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "RewardFunction": "base", "as_reward_tensor": "base",
    "CompositeReward": "composite", "Component": "composite", "RunningMeanStd": "composite",
    "rank_normalize": "composite",
    "build_reward": "spec", "load_reward": "spec", "COMPONENT_TYPES": "spec",
    "LearnedReward": "learned", "RemoteReward": "learned",
    "TargetLength": "rules", "RegexMatch": "rules", "RepetitionPenalty": "rules", "Keywords": "rules",
    "NoEOSPenalty": "rules", "OverlongPenalty": "rules",
    "Bleu": "reference", "Chrf": "reference", "Rouge": "reference", "EmbeddingSimilarity": "reference",
    "TokenSimilarity": "reference",
    "CustomReward": "custom",
    "MathAnswer": "math_answer", "CodeTests": "code", "Likelihood": "likelihood", "HttpReward": "http",
    "LLMJudge": "judge",
    "CallingReward": "calls", "CallPolicy": "calls", "ResponseError": "base",
    "sparse_on_last_token": "dense", "resolve_token_ends": "dense",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rewardkit.rewards' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rewardkit.rewards.{_EXPORTS[name]}"), name)
