"""The `RewardFunction` interface every reward component and the composite implement.

A reward function scores a batch: `fn(prompts, responses, references=None, finished=None) -> FloatTensor[B]`, and
every one can also give dense rewards aligned to the policy's response tokens with `fn.per_token(...)` (potential-based
shaping of its own prefix scores; see `rewardkit.rewards.dense`). Subclasses implement `_score`; a component whose value
on an unfinished prefix differs from its value as a response (e.g. the no-EOS penalty) also overrides `_potentials`.

A component that reads more of a record than its prompt, response and reference (code_tests reads `tests`) names those
fields in `needs_fields`; callers pass them as `fields=` (one mapping per response), and only such components get them
(`_score(..., fields=...)`). A user error about one response of a batch is a `ResponseError`, which carries the
response's index so that a caller that knows where the response came from (score: the record's file and line) can
name it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch

from rewardkit.data.types import Prompt
from rewardkit.device import host_side
from rewardkit.errors import RewardkitError

# One reference text, or several (BLEU/chrF use them as multiple references; the others take the best match).
Reference = str | Sequence[str]
# A record's other fields that a component reads (code_tests: "tests"), by name.
Fields = Mapping[str, Any]


class ResponseError(RewardkitError):
    """A user error about response `index` (0-based, within the batch the function was called with)."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


@host_side  # rewards are handed over on the CPU in fp32, whatever computed them
def as_reward_tensor(values: Any, size: int, where: str) -> torch.Tensor:
    """Validate `values` (list, array or tensor of numbers) as one finite float per response; name `where` if not."""
    try:
        tensor = torch.as_tensor(values, dtype=torch.float32).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise RewardkitError(f"{where} must return a list of numbers ({exc})")
    tensor = tensor.reshape(-1) if tensor.dim() == 2 and 1 in tensor.shape else tensor
    if tensor.dim() != 1 or tensor.shape[0] != size:
        raise RewardkitError(f"{where} returned {tuple(tensor.shape)} values for {size} responses")
    bad = (~torch.isfinite(tensor)).nonzero()
    if len(bad):
        j = int(bad[0])
        raise RewardkitError(f"{where} returned {float(tensor[j])} for response {j} ({len(bad)} non-finite in all)")
    return tensor


def reference_lists(references: Sequence[Reference | None] | None, size: int, where: str) -> list[list[str]]:
    """Every response's references as a non-empty list of strings; a missing one is an error naming `where`."""
    if references is None:
        raise RewardkitError(f"{where} needs a reference for every response; none were given")
    out = []
    for j, ref in enumerate(references):
        refs = [ref] if isinstance(ref, str) else list(ref or [])
        if not refs or not all(isinstance(r, str) for r in refs):
            raise RewardkitError(f"{where} needs a reference text for every response; response {j} has {ref!r}")
        out.append(refs)
    return out


class RewardFunction:
    """A batch of (prompt, response[, reference]) → one reward per response; dense rewards through `per_token`.

    `finished[j]` (optional) says whether response j ended with the policy's EOS (True) or was cut off at the
    generation limit (False); only components that care (the no-EOS penalty) read it.
    """

    name: str = "reward"
    needs_reference: bool = False
    # Record fields beyond prompt, response and reference that `_score` reads (passed as `fields=`), e.g. ("tests",).
    needs_fields: tuple[str, ...] = ()
    # Whether it waits on something outside this process (a server, a subprocess): a composite runs such components
    # alongside its others instead of one after another.
    calls_out: bool = False
    # How `token_rewards` hands out the reward: "sparse" (total on the last token) or "dense" (per_token);
    # `shaping` "token" scores every token's prefix, "step" only the prefixes ending at `step_separator`.
    mode: str = "sparse"
    shaping: str = "token"
    step_separator: str = "\n"

    def __call__(self, prompts: Sequence[Prompt], responses: Sequence[str],
                 references: Sequence[Reference | None] | None = None, *,
                 finished: Sequence[bool] | None = None, fields: Sequence[Fields] | None = None) -> torch.Tensor:
        check_batch(prompts, responses, references, finished, fields)
        if not responses:
            return torch.empty(0)
        extra = {"fields": None if fields is None else list(fields)} if self.needs_fields else {}
        scores = self._score(list(prompts), list(responses), None if references is None else list(references),
                             None if finished is None else [bool(f) for f in finished], **extra)
        return as_reward_tensor(scores, len(responses), f"reward {self.name!r}")

    def _score(self, prompts: list[Prompt], responses: list[str], references: list | None,
               finished: list[bool] | None) -> torch.Tensor:
        """One score per response. A function with `needs_fields` also takes `fields` (a list of mappings, or None
        when the caller gave none)."""
        raise NotImplementedError

    def check_fields(self, fields: Fields) -> None:
        """Raise a RewardkitError if one record's `fields` cannot be scored (called by `rewardkit score` on every record
        before scoring any, so that a bad record fails early, named by its file and line)."""

    # State carried from one call to the next (a composite's running normalizers), saved in RL checkpoints so that a
    # resumed run scores as the uninterrupted one would. Components keep none.
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def share_batches(self, gather: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        """Fit that state on the whole batch of every process (`gather(values)` returns every process's values), so
        that N processes normalize as one would; None goes back to this process's own share."""

    def _potentials(self, prompts: list[Prompt], texts: list[str], references: list | None,
                    finished: list[bool] | None, complete: torch.Tensor, **fields) -> torch.Tensor:
        """Φ(x, text) for response prefixes; `complete[k]` marks texts that are a whole response (a function with
        `needs_fields` is also passed `fields=`, one mapping per text).

        By default a prefix is scored as if it were a response. Unfinished prefixes are passed `finished=True`
        (they were not cut off, generation simply goes on).
        """
        return self(prompts, texts, references, finished=finished, **fields)

    def per_token(self, prompts: Sequence[Prompt], responses: Sequence[str],
                  references: Sequence[Reference | None] | None = None, *,
                  response_token_ids: Sequence[Sequence[int]] | None = None, tokenizer: Any = None,
                  token_ends: Sequence[Sequence[int]] | None = None, finished: Sequence[bool] | None = None,
                  shaping: str | None = None, step_separator: str | None = None,
                  fields: Sequence[Fields] | None = None) -> list[torch.Tensor]:
        """Dense rewards: one FloatTensor[T_i] per response, one value per policy response token, summing to the
        sparse reward `self(prompts, responses, references)[i]` (exactly, up to float rounding).

        Token alignment (give one): `response_token_ids` + the policy `tokenizer`, or `token_ends` (the character
        offset in `responses[i]` where each token ends), or only `tokenizer` (the response text is tokenized with it).
        `shaping="token"`: r_t = Φ(x, y≤t) − Φ(x, y<t) with Φ(x, empty) = 0, so token 1 carries Φ(x, y≤1).
        `shaping="step"`: only prefixes ending at `step_separator` (and the whole response) are scored; each step's
        increment sits on the token that completes the separator, the last step's on the token closing the text.
        """
        plan, potentials = self._prefix_potentials(
            prompts, responses, references, response_token_ids=response_token_ids, tokenizer=tokenizer,
            token_ends=token_ends, finished=finished, shaping=shaping, step_separator=step_separator, fields=fields)
        return plan.shape(potentials)

    def _prefix_potentials(self, prompts, responses, references=None, *, response_token_ids=None, tokenizer=None,
                           token_ends=None, finished=None, shaping=None, step_separator=None, fields=None):
        """The prefixes of `per_token` (a `PrefixPlan`) and their potentials, scored in one batched call."""
        from rewardkit.rewards.dense import plan_prefixes, resolve_token_ends

        check_batch(prompts, responses, references, finished, fields)
        shaping = shaping or self.shaping
        if shaping not in ("token", "step"):
            raise RewardkitError(f"shaping must be 'token' or 'step', got {shaping!r}")
        ends = resolve_token_ends(responses, response_token_ids=response_token_ids, tokenizer=tokenizer,
                                  token_ends=token_ends)
        separator = (step_separator or self.step_separator) if shaping == "step" else None
        plan = plan_prefixes(responses, ends, separator)
        owner = plan.owner
        prefix_finished = None if finished is None else [bool(finished[i]) if c else True
                                                          for i, c in zip(owner, plan.complete)]
        extra = {"fields": None if fields is None else [fields[i] for i in owner]} if self.needs_fields else {}
        try:
            potentials = self._potentials([prompts[i] for i in owner], plan.texts,
                                          None if references is None else [references[i] for i in owner],
                                          prefix_finished, torch.tensor(plan.complete, dtype=torch.bool), **extra)
        except ResponseError as exc:  # it named a prefix: name its response
            raise ResponseError(str(exc), owner[exc.index]) from None
        return plan, potentials

    def token_rewards(self, prompts: Sequence[Prompt], responses: Sequence[str],
                      references: Sequence[Reference | None] | None = None, *,
                      response_token_ids: Sequence[Sequence[int]] | None = None, tokenizer: Any = None,
                      token_ends: Sequence[Sequence[int]] | None = None,
                      finished: Sequence[bool] | None = None,
                      fields: Sequence[Fields] | None = None) -> list[torch.Tensor]:
        """Per-token rewards in this function's `mode`: "sparse" puts the whole reward on each response's last token,
        "dense" is `per_token` with this function's `shaping`. Same token-alignment arguments as `per_token`."""
        if self.mode == "dense":
            return self.per_token(prompts, responses, references, response_token_ids=response_token_ids,
                                  tokenizer=tokenizer, token_ends=token_ends, finished=finished, fields=fields)
        from rewardkit.rewards.dense import resolve_token_ends, sparse_on_last_token

        if response_token_ids is not None:
            lengths = [len(ids) for ids in response_token_ids]
        else:
            lengths = [len(e) for e in resolve_token_ends(responses, tokenizer=tokenizer, token_ends=token_ends)]
        return sparse_on_last_token(self(prompts, responses, references, finished=finished, fields=fields), lengths)


def check_batch(prompts: Sequence, responses: Sequence, references: Sequence | None,
                finished: Sequence | None, fields: Sequence | None = None) -> None:
    """Programming errors (mismatched batch lengths, a non-string response) raise ValueError/TypeError."""
    n = len(responses)
    for label, seq in (("prompts", prompts), ("references", references), ("finished", finished),
                       ("fields", fields)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{len(seq)} {label} for {n} responses")
    for j, response in enumerate(responses):
        if not isinstance(response, str):
            raise TypeError(f"response {j} is {type(response).__name__}, not str")
    for j, row in enumerate(fields or ()):
        if not isinstance(row, Mapping):
            raise TypeError(f"fields {j} is {type(row).__name__}, not a mapping")


def record_field(fields: Sequence[Fields] | None, index: int, key: str, where: str) -> Any:
    """`fields[index][key]`, or a ResponseError naming `where`, the field and the response when it is missing."""
    if fields is None:
        raise ResponseError(f"{where} needs each record's {key!r} field; none were given", index)
    value = fields[index].get(key)
    if value is None:
        raise ResponseError(f"{where} needs the record's {key!r} field; response {index} has none", index)
    return value


def at_least_one(value: int, where: str) -> int:
    """A count or size from a spec (batch_size, max_length, an n-gram order): an integer of at least 1, or a
    RewardkitError naming `where`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RewardkitError(f"{where} must be an integer of at least 1, got {value!r}")
    return value


def finite_float(value: Any, where: str) -> float:
    """A spec number (weight, clip bound): a real, finite number, or a RewardkitError naming `where`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RewardkitError(f"{where} must be a finite number, got {value!r}")
    return float(value)
