"""A rewardkit reward as OpenRLHF's `reward_func`, and the splitting of OpenRLHF's queries that `rewardkit serve`'s
`/get_reward` shares.

OpenRLHF (0.11.2, `openrlhf/utils/agent.py` `SingleTurnAgentExecutor`) takes `--reward.remote_url` (before v0.10:
`--remote_rm_url`) as either an HTTP endpoint or a `.py` file. A file is loaded with `importlib` and its
`reward_func(queries, prompts, labels)` is called from a thread (`asyncio.to_thread`), one sample per call, many
samples at once. `queries` are prompt + response decoded with the special tokens kept, `prompts` the prompts as the
policy saw them (chat template applied with --apply_chat_template), `labels` the dataset's label column. It reads
`rewards` (the reward), `scores` (for dynamic filtering; here the same values) and `extra_logs` (logged) from the
returned dict. A file of two lines makes a rewardkit reward one:

    # reward_func.py
    from rewardkit.integrations.openrlhf import make_reward_func
    reward_func = make_reward_func("rewards.yaml", tokenizer="path/to/policy")

For a learned reward, `rewardkit serve MODEL` with `--reward.remote_url http://HOST:PORT/get_reward` is usually the
better way: the server merges OpenRLHF's one-sample requests into batches, and can normalize rewards
(`--normalize`), which OpenRLHF skips for remote rewards.

Each query is split into (prompt, response) as `/get_reward` splits it (`split_query`): when the query starts with
its prompt (after nothing but special tokens such as BOS) the rest is the response, else the whole query is the
response to an empty prompt; special tokens around the response (separators, EOS, padding) are removed.
`extra_logs` carries every component's raw value and `rm_prompt_split` (1.0 where the prompt was found).

OpenRLHF passes a sample's label and nothing else of its record. For a reward that reads other record fields
(code_tests' `tests`), make the label column a JSON object (or a mapping) holding them, e.g.
`{"tests": "assert add(1, 2) == 3", "reference": "..."}`: its keys are the fields, and its `reference` (if any) is
the reference.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from rewardkit.errors import RewardkitError
from rewardkit.integrations.common import configured_source, shared_reward


def _strip_leading_special(text: str, special: Sequence[str]) -> str:
    while True:
        stripped = text.lstrip()
        token = next((t for t in special if stripped.startswith(t)), None)
        if token is None:
            return text
        text = stripped[len(token):]


def _strip_trailing_special(text: str, special: Sequence[str]) -> str:
    while True:
        stripped = text.rstrip()
        token = next((t for t in special if stripped.endswith(t)), None)
        if token is None:
            return text
        text = stripped[:-len(token)]


def split_query(query: str, prompt: str | None, special: Sequence[str]) -> tuple[str, str, bool]:
    """(prompt, response, whether the prompt was found) for one OpenRLHF query; see the module docstring.
    `special`: the special tokens to strip, longest first (so that "</s>" goes before "<")."""
    found = False
    if prompt:
        start = query.find(prompt)
        if start >= 0 and not _strip_leading_special(query[:start], special).strip():
            query, found = query[start + len(prompt):], True
    # Separators and BOS before the response, EOS and padding after it: the reward model adds its own.
    response = _strip_trailing_special(_strip_leading_special(query, special), special)
    return (prompt if found else ""), response, found


def special_tokens_of(tokenizer: Any) -> set[str]:
    """The special tokens of a tokenizer, given as one or as a folder or preset name (none for None)."""
    if tokenizer is None:
        return set()
    if isinstance(tokenizer, str):
        from transformers import AutoTokenizer

        from rewardkit.models.presets import resolve_tokenizer_path

        try:
            tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer_path(tokenizer))
        except OSError as exc:
            raise RewardkitError(f"cannot load tokenizer {tokenizer!r}: {str(exc).splitlines()[0]}")
    return {t for t in tokenizer.all_special_tokens if t}


def label_fields(label: Any) -> dict:
    """A sample's record fields from its OpenRLHF label: a mapping, or the text of a JSON object."""
    import json
    from collections.abc import Mapping

    if isinstance(label, str):
        try:
            label = json.loads(label)
        except ValueError:
            label = None
    if not isinstance(label, Mapping):
        raise RewardkitError("the reward reads record fields (such as tests), which OpenRLHF can only pass in the "
                             "label: make the label column a JSON object holding them, e.g. {\"tests\": \"...\"}")
    return dict(label)


def make_reward_func(source: Any, tokenizer: Any = None) -> Callable[..., dict]:
    """OpenRLHF's `reward_func(queries, prompts, labels, **kwargs) -> {"rewards", "scores", "extra_logs"}` scoring
    with `source` (a reward spec, model, `rewardkit serve` URL or built reward). `tokenizer` (the policy's: a
    tokenizer, a folder or a preset name) adds its special tokens to those stripped from the queries; the reward's
    own models' special tokens are always stripped."""
    import torch

    reward = shared_reward(source)
    special = tuple(sorted(set(reward.special_tokens()) | special_tokens_of(tokenizer), key=len,
                           reverse=True))

    def reward_func(queries: Sequence[str], prompts: Sequence[str] | None = None, labels: Sequence[Any] | None = None,
                    **kwargs: Any) -> dict:
        given = list(prompts) if prompts is not None else [None] * len(queries)
        split = [split_query(q, p, special) for q, p in zip(queries, given)]
        fields = None
        if reward.needs_fields and labels is not None:
            fields = [label_fields(label) for label in labels]
            labels = [f.get("reference") for f in fields] if reward.needs_reference else labels
        scored = reward.score([p for p, _, _ in split], [r for _, r, _ in split], labels, fields)
        rewards = torch.tensor(scored.scores, dtype=torch.float32)
        extra_logs = {name: torch.tensor(values, dtype=torch.float32) for name, values in scored.components.items()}
        extra_logs["rm_prompt_split"] = torch.tensor([float(found) for _, _, found in split])
        return {"rewards": rewards, "scores": rewards, "extra_logs": extra_logs}

    return reward_func


def reward_func(queries: Sequence[str], prompts: Sequence[str] | None = None, labels: Sequence[Any] | None = None,
                **kwargs: Any) -> dict:
    """`make_reward_func`'s function for the reward in $REWARDKIT_REWARD, loaded once per process, so that
    `--reward.remote_url $(python -c "import rewardkit.integrations.openrlhf as m; print(m.__file__)")` works
    without a file of your own."""
    return make_reward_func(configured_source(None, "OpenRLHF"))(queries, prompts, labels)
