"""What `rl`, `best-of-n` and `label import` share about a policy: reading prompts and sampling responses. (The
policy to sample from loads through `rewardkit.models.causal_lm`; rl's trainable policy, its reference and LoRA are
`rewardkit.rl.command.load_models`.)
"""

from __future__ import annotations

from pathlib import Path

from rewardkit.errors import RewardkitError


def load_prompts(path: str, prompt_field: str = "prompt",
                 reference_field: str | None = "reference") -> tuple[list, list | None]:
    """Prompts (text or conversations) and, when every row has one, their references. `.txt`: one prompt a line."""
    prompts, references, _, _ = load_prompt_records(path, prompt_field, reference_field)
    return prompts, references


def load_prompt_records(path: str, prompt_field: str = "prompt",
                        reference_field: str | None = "reference") -> tuple[list, list | None, list, list]:
    """(prompts, references, fields, locations): `load_prompts`' two, plus each row's other fields (a mapping per
    prompt, e.g. code_tests' "tests"; empty for a .txt file) and where each row came from (None for a .txt line)."""
    from rewardkit.data import read_rows
    from rewardkit.data.fields import BadRecord, messages

    if Path(path).suffix == ".txt":
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise RewardkitError(f"{path}: cannot read ({exc.strerror or exc})")
        prompts = [line for line in lines if line.strip()]
        if not prompts:
            raise RewardkitError(f"{path}: no prompts")
        return prompts, None, [{} for _ in prompts], [None] * len(prompts)
    prompts, references, locations, fields = [], [], [], []
    for location, row in read_rows(path):
        if prompt_field not in row:
            raise RewardkitError(f"no {prompt_field!r} field (known: {', '.join(map(str, row))}); set --prompt-field",
                                 location)
        value = row[prompt_field]
        if isinstance(value, str) and value.strip():
            prompts.append(value)
        elif isinstance(value, list) and value:
            try:
                prompts.append(messages(value, prompt_field))
            except BadRecord as exc:
                raise RewardkitError(str(exc), location)
        else:
            raise RewardkitError(f"{prompt_field} must be non-empty text or a list of messages", location)
        references.append(row.get(reference_field) if reference_field else None)
        fields.append({k: v for k, v in row.items() if k not in (prompt_field, reference_field) and v not in (None, "")})
        locations.append(location)
    if not prompts:
        raise RewardkitError(f"{path}: no prompts")
    given = [i for i, r in enumerate(references) if r is not None]
    if not given:
        return prompts, None, fields, locations
    if len(given) < len(references):  # dropping them all would leave a reference reward with none, and no reason
        missing = next(i for i, r in enumerate(references) if r is None)
        raise RewardkitError(f"no {reference_field!r} field, but {locations[given[0]]} has one: give a reference with "
                             "every prompt or with none (--reference-field none reads none)", locations[missing])
    return prompts, references, fields, locations


def sample_responses(model, tokenizer, prompts: list, n: int, settings, placement, chat_template: bool,
                     max_prompt_tokens: int | None) -> tuple[list[str], list[bool]]:
    """n sampled responses per prompt, prompt by prompt in order (texts, and whether each was cut off), under the
    placement's autocast."""
    from rewardkit.rl.rollout import decode_responses, eos_token_ids, left_pad, prompt_token_ids, sample

    repeated = [p for p in prompts for _ in range(n)]
    ids, _ = prompt_token_ids(tokenizer, repeated, chat_template, max_prompt_tokens)
    query_ids, query_mask = left_pad(ids, tokenizer.pad_token_id)
    device = placement.torch_device
    with placement.autocast():
        rollout = sample(model, query_ids.to(device), query_mask.to(device), settings, eos_token_ids(model, tokenizer),
                         tokenizer.pad_token_id)
    return decode_responses(tokenizer, rollout), rollout.truncated.tolist()
