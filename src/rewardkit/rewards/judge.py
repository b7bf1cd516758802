"""`judge`: a generative model grades responses, pointwise (a score for each response) or pairwise (which of two is
better), either a local transformers model (`model: smollm2-135m`, a folder or a hub id) or any OpenAI-compatible
chat-completions server (`url:` plus the `model` it serves: vLLM, llama.cpp's server, TGI, a hosted API).

The judge is asked with a template (a text file the user can change, `template: path`; the defaults are in
`rewardkit/rewards/judge_templates/`, each citing the prompt it is adapted from). `rubric:` gives the text inline
instead. Leading lines of a template file that start with "#" are comments and are not sent.

- **pointwise**, `method: generate`: the judge writes its verdict, ending with "Score: N" (the last such line counts;
  "[[N]]" too; without one, the last number); N within `scale` [lo, hi] gives (N − lo) / (hi − lo) in [0, 1]. A reply
  without a score in range is retried like a failed call (a sampled judge may answer otherwise the next time), then
  handled by `on_failure`, with the judge's last words in the reason.
- **pointwise**, `method: probabilities`: no generation. The probabilities of the score tokens "lo".."hi" as the
  judge's next token (each must be one token; default scale [1, 5]) are renormalized among themselves, and the score
  is their expectation E = Σ k·p(k), scaled as above (G-Eval's rule).
- **pairwise**: the judge sees the request and two responses, A and B, and answers "A" or "B". P(A) is
  p("A") / (p("A") + p("B")) at the answer token (`probabilities`; over HTTP read from the server's `logprobs` when
  it returns them, else parsed from the answer: 1 for A, 0 for B), or 1/0 from the generated answer (`generate`).
  Every pair is judged in both orders and the two verdicts averaged: P(x beats y) = (P_A(x, y) + 1 − P_A(y, x)) / 2,
  which cancels position bias (a judge that always says "A" gives exactly 0.5). As a reward component, each response
  is compared with the record's `reference` (AlpacaEval's win rate against a reference answer); `eval-rm --judge`
  compares a pair's two responses (`pair_probabilities`).

A local judge runs where `device` and `precision` say (rewardkit.device's rule; left at auto in a spec, they follow
the command's), loaded like `likelihood`'s model, and scores `batch_size` prompts per forward pass; probabilities are
computed in fp32. An HTTP judge makes one request per response (two for a pair) through `rewardkit.rewards.calls`:
concurrently, with timeouts, retries, a cache and `on_failure`.
"""

from __future__ import annotations

import math
import re
import time
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import ResponseError, at_least_one, finite_float, reference_lists
from rewardkit.rewards.calls import (CallingReward, CallItem, CallStats, Outcome, TransientError, json_client,
                                     policy_kwargs, post_json)

POINTWISE, PAIRWISE = "pointwise", "pairwise"  # the judge's modes (not kinds of feedback)
MODES = (POINTWISE, PAIRWISE)
METHODS = ("generate", "probabilities")
POINTWISE_FIELDS = ("prompt", "response", "reference", "lo", "hi")
PAIRWISE_FIELDS = ("prompt", "response_a", "response_b")
_SCORE = re.compile(r"(?:score\s*[:=]\s*\**\s*|\[\[\s*)(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_VERDICT = re.compile(r"\[\[\s*([AB])\s*\]\]")
_LEADING = re.compile(r"^\W*(?:(?:response|output|assistant)\s+)?\(?([AB])\)?(?![\w'])", re.IGNORECASE)
_NAMED = re.compile(r"(?:response|output|assistant)\s+\(?([AB])\)?\s+is\s+(?:the\s+)?better", re.IGNORECASE)


def default_template(mode: str, method: str) -> Path:
    """The shipped template for a mode and method (a file in rewardkit/rewards/judge_templates/)."""
    name = "pairwise.txt" if mode == PAIRWISE else (
        "pointwise_probabilities.txt" if method == "probabilities" else "pointwise.txt")
    return Path(str(resources.files("rewardkit.rewards") / "judge_templates" / name))


def read_template(path: str | Path) -> str:
    """A template file's text without its leading comment lines (those starting with "#")."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RewardkitError(f"template {str(path)!r} cannot be read ({getattr(exc, 'strerror', None) or exc})")
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    text = "\n".join(lines).strip("\n")
    if not text.strip():
        raise RewardkitError(f"template {str(path)!r} is empty")
    return text


def check_template(text: str, mode: str, where: str) -> None:
    """The template must contain its mode's response placeholders and no others."""
    allowed = PAIRWISE_FIELDS if mode == PAIRWISE else POINTWISE_FIELDS
    needed = ("{response_a}", "{response_b}") if mode == PAIRWISE else ("{response}",)
    missing = [n for n in needed if n not in text]
    if missing:
        raise RewardkitError(f"{where} must contain {' and '.join(needed)} for a {mode} judge (missing "
                             f"{', '.join(missing)}; it may also contain {', '.join('{%s}' % f for f in allowed)})")
    try:
        text.format(**{name: "" for name in allowed})
    except (KeyError, IndexError, ValueError) as exc:
        raise RewardkitError(f"{where} has a placeholder other than {', '.join('{%s}' % f for f in allowed)} "
                             f"({exc!r}); write literal braces as {{{{ and }}}}")


def prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in prompt or [])


def read_score(reply: str, lo: float, hi: float) -> float | None:
    """The verdict in `reply`: the last "Score: N" (or "[[N]]"), else the last number; None when none is within
    [lo, hi]."""
    found = _SCORE.findall(reply) or _NUMBER.findall(reply)
    if not found:
        return None
    value = float(found[-1])
    return value if lo <= value <= hi else None


def read_choice(reply: str) -> str | None:
    """"A" or "B" from a pairwise verdict: the last "[[A]]"/"[[B]]", else a reply that starts with the letter
    ("A", "B.", "Response B", "(A) ..."), else "Response X is better"; None when none is found (or both letters)."""
    for pattern in (_VERDICT, _NAMED):
        found = {m.upper() for m in pattern.findall(reply)}
        if len(found) == 1:
            return found.pop()
    match = _LEADING.match(reply.strip())
    return match.group(1).upper() if match else None


def label_probabilities(candidates: dict[str, float], labels: list[str]) -> list[float] | None:
    """Probabilities of `labels` renormalized among themselves, from {token text: probability} (a token counts for a
    label when its text, stripped of spaces, is the label); None when no label has any probability."""
    mass = [sum(p for token, p in candidates.items() if token.strip() == label) for label in labels]
    total = sum(mass)
    if total <= 0 or not math.isfinite(total):
        return None
    return [m / total for m in mass]


class LLMJudge(CallingReward):
    """A generative model's grade of each response (see the module docstring).

    `model`: a local causal LM (preset such as smollm2-135m, folder, hub id), or with `url` (an OpenAI-compatible base
    URL such as http://127.0.0.1:8000/v1) the name of the model that server serves. `mode`: pointwise (default) or
    pairwise (against the record's reference). `method`: generate or probabilities (default: probabilities for a
    local model, generate for a server). `template`: the path of a template file; `rubric`: its text inline (default:
    the shipped template for the mode and method). `system`: an optional system message. `scale` [lo, hi]: the
    pointwise score range (default [1, 10] to generate, [1, 5] for probabilities). `temperature` (default 0: greedy),
    `max_tokens` of a generated answer. Local: `device`, `precision`, `batch_size`. Server: `token_env` (the
    environment variable holding an API key), `top_logprobs` asked for with method probabilities. `concurrency`
    (default 8), `timeout` (default 60 s a request), `retries`, `backoff`, `cache`, `on_failure`, `neutral`: as for
    every calling component."""

    name = "judge"

    def __init__(self, url: str | None = None, model: str = "", mode: str = POINTWISE, method: str | None = None,
                 template: str | None = None, rubric: str | None = None, system: str | None = None,
                 scale: list[float] | None = None, temperature: float = 0.0, max_tokens: int = 512,
                 device: str = "auto", precision: str = "auto", batch_size: int = 8, top_logprobs: int = 20,
                 token_env: str | None = None, concurrency: int = 8, timeout: float = 60.0, retries: int = 2,
                 backoff: float = 1.0, cache: bool | str = True, on_failure: str = "error", neutral: float = 0.0,
                 *, lm: Any = None, tokenizer: Any = None, placement: Any = None):
        if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
            raise RewardkitError(f"url must start with http:// or https://, got {url!r}")
        if not model and lm is None:
            raise RewardkitError("model must name the judge: a local model (preset such as smollm2-135m, folder, hub "
                                 "id), or with url the model the server serves")
        if mode not in MODES:
            raise RewardkitError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        method = method or ("generate" if url is not None else "probabilities")
        if method not in METHODS:
            raise RewardkitError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if template is not None and rubric is not None:
            raise RewardkitError("give template (a file) or rubric (the text), not both")
        if rubric is not None:
            text, where = rubric, "rubric"
        else:
            path = Path(template) if template is not None else default_template(mode, method)
            text, where = read_template(path), f"template {str(path)!r}"
        check_template(text, mode, where)
        scale = ([1, 5] if method == "probabilities" else [1, 10]) if scale is None else scale
        if not isinstance(scale, (list, tuple)) or len(scale) != 2:
            raise RewardkitError(f"scale must be [lo, hi], got {scale!r}")
        lo, hi = (finite_float(v, "scale") for v in scale)
        if lo >= hi:
            raise RewardkitError(f"scale must be [lo, hi] with lo < hi, got {scale!r}")
        if method == "probabilities" and mode == POINTWISE and not (lo.is_integer() and hi.is_integer()):
            raise RewardkitError(f"method probabilities reads whole-number scores; scale {scale!r} is not")
        self.url = None if url is None else url.rstrip("/").removesuffix("/chat/completions")
        self.model, self.mode, self.method, self.template, self.system = model, mode, method, text, system
        self.lo, self.hi = lo, hi
        self.temperature = finite_float(temperature, "temperature")
        self.max_tokens = at_least_one(max_tokens, "max_tokens")
        self.top_logprobs = at_least_one(top_logprobs, "top_logprobs")
        self.batch_size = at_least_one(batch_size, "batch_size")
        self.labels = (["A", "B"] if mode == PAIRWISE
                       else [str(k) for k in range(int(lo), int(hi) + 1)] if method == "probabilities" else [])
        policy = policy_kwargs(concurrency, timeout, retries, backoff, cache, on_failure, neutral)
        self.placement = None
        if self.url is not None:
            self._http = json_client(policy, token_env=token_env)
            self.lm = None
        else:
            if lm is None:
                from rewardkit.device import component_placement
                from rewardkit.models.causal_lm import load_causal_lm

                self.placement = component_placement(device, precision, placement)
                lm, tokenizer = load_causal_lm(model, self.placement)
            self._use_local(lm, tokenizer)
        super().__init__(policy)
        if self.url is None:
            self.calls_out = False  # it computes here; nothing to wait on

    @classmethod
    def from_model(cls, lm: Any, tokenizer: Any, **kwargs) -> "LLMJudge":
        """A local judge from a loaded causal LM and its tokenizer (library callers and tests), on its device."""
        return cls(model=kwargs.pop("model", type(lm).__name__), lm=lm, tokenizer=tokenizer, **kwargs)

    def _use_local(self, lm: Any, tokenizer: Any) -> None:
        self.lm, self.tokenizer = lm.eval(), tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._label_ids: list[list[int]] = []
        for label in self.labels:  # the label alone and after a space, where either is one token
            ids = {ids[0] for ids in (tokenizer(text, add_special_tokens=False).input_ids
                                      for text in (label, " " + label)) if len(ids) == 1}
            if not ids:
                raise RewardkitError(f"the judge's tokenizer has no single token for {label!r}; method "
                                     f"probabilities needs one per answer (choose a smaller scale, or method generate)")
            self._label_ids.append(sorted(ids))

    @property
    def local(self) -> bool:
        return self.url is None

    def identity(self) -> Any:
        return ["judge", self.url, self.model, self.mode, self.method, self.template, self.system, self.lo, self.hi,
                self.temperature, self.max_tokens]

    # ------------------------------------------------------------------------------------------ prompts
    def messages(self, item: CallItem) -> list[dict]:
        """The chat the judge is asked: pointwise, the response in `item.response`; pairwise, A in `item.response` and
        B in `item.reference`."""
        if self.mode == PAIRWISE:
            user = self.template.format(prompt=prompt_text(item.prompt), response_a=item.response,
                                        response_b=item.reference)
        else:
            reference = item.reference if isinstance(item.reference, str) else "\n".join(item.reference or [])
            user = self.template.format(prompt=prompt_text(item.prompt), response=item.response, reference=reference,
                                        lo=f"{self.lo:g}", hi=f"{self.hi:g}")
        return ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": user}]

    def _chat_ids(self, item: CallItem) -> list[int]:
        messages = self.messages(item)
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return self.tokenizer(text, add_special_tokens=False).input_ids
        text = "\n\n".join(m["content"] for m in messages) + "\n"
        return self.tokenizer(text, add_special_tokens=True).input_ids

    # ------------------------------------------------------------------------------------------ verdicts
    def _value(self, probabilities: list[float]) -> float:
        """The verdict from the labels' probabilities: pairwise P(A); pointwise the expected score, scaled."""
        if self.mode == PAIRWISE:
            return probabilities[0]
        expected = sum(int(label) * p for label, p in zip(self.labels, probabilities))
        return (expected - self.lo) / (self.hi - self.lo)

    def _from_text(self, reply: str) -> Outcome:
        """A generated verdict: pairwise 1 for A, 0 for B; pointwise the scaled score. TransientError if none."""
        tail = " ".join((reply or "").split())[-120:]
        if self.mode == PAIRWISE:
            choice = read_choice(reply or "")
            if choice is None:
                raise TransientError(f"the judge named neither A nor B (it said: {tail!r})")
            return Outcome(1.0 if choice == "A" else 0.0)
        value = read_score(reply or "", self.lo, self.hi)
        if value is None or not math.isfinite(value):
            raise TransientError(f"the judge gave no score in [{self.lo:g}, {self.hi:g}] (it said: {tail!r})")
        reason = None if value == self.hi else f"judge score {value:g} of {self.hi:g}"
        return Outcome((value - self.lo) / (self.hi - self.lo), reason)

    @torch.no_grad()
    def _local_probabilities(self, items: list[CallItem]) -> list[float]:
        """The verdicts of a local judge from its next-token probabilities, `batch_size` prompts per forward pass."""
        rows = [self._chat_ids(item) for item in items]
        device = next(self.lm.parameters()).device
        pad = int(self.tokenizer.pad_token_id)
        values: list[float] = [0.0] * len(rows)
        order = sorted(range(len(rows)), key=lambda k: len(rows[k]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            width = max(len(rows[k]) for k in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, k in enumerate(chunk):  # right-padded: each row's own last position predicts its answer
                input_ids[r, :len(rows[k])] = torch.tensor(rows[k], dtype=torch.long)
                mask[r, :len(rows[k])] = 1
            logits = self.lm(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            last = torch.tensor([len(rows[k]) - 1 for k in chunk], device=logits.device)
            probs = torch.softmax(logits[torch.arange(len(chunk), device=logits.device), last].float(), dim=-1).cpu()
            for r, k in enumerate(chunk):
                mass = [float(probs[r, ids].sum()) for ids in self._label_ids]
                values[k] = self._value([m / sum(mass) for m in mass])
        return values

    @torch.no_grad()
    def _local_generate(self, item: CallItem) -> str:
        ids = torch.tensor([self._chat_ids(item)], dtype=torch.long, device=next(self.lm.parameters()).device)
        sample = self.temperature > 0
        out = self.lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_tokens,
                               do_sample=sample, temperature=self.temperature if sample else None, top_p=None,
                               top_k=None, pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    def _http_verdict(self, item: CallItem, timeout: float) -> Outcome:
        body: dict[str, Any] = {"model": self.model, "messages": self.messages(item),
                                "temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.method == "probabilities":
            body.update(logprobs=True, top_logprobs=self.top_logprobs)
        endpoint = f"{self.url}/chat/completions"
        answer = post_json(self._http, endpoint, body, timeout)
        try:
            choice = answer.json()["choices"][0]
            reply = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise RewardkitError(f"{endpoint} answered {answer.text[:120]!r}, not a chat completion")
        if self.method == "probabilities":
            probabilities = self._logprob_verdict(choice.get("logprobs") if isinstance(choice, dict) else None)
            if probabilities is not None:
                return Outcome(self._value(probabilities))
        return self._from_text(reply or "")

    def _logprob_verdict(self, logprobs: Any) -> list[float] | None:
        """The labels' probabilities at the first answer token that is a label, from an OpenAI-style `logprobs`
        block ({"content": [{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}]}); None without one."""
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        positions = [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []

        def candidates(position: dict) -> dict[str, float]:
            found: dict[str, float] = {}
            for entry in [position, *(position.get("top_logprobs") or [])]:
                try:
                    found.setdefault(str(entry["token"]), math.exp(float(entry["logprob"])))
                except (KeyError, TypeError, ValueError, OverflowError):
                    continue
            return found

        # the answer token: the first one that is a label, else the first whose alternatives hold a label
        chosen = [p for p in positions if str(p.get("token", "")).strip() in self.labels]
        for position in chosen[:1] + positions:
            probabilities = label_probabilities(candidates(position), self.labels)
            if probabilities is not None:
                return probabilities
        return None

    def call(self, item: CallItem, timeout: float) -> Outcome:
        if self.local:  # method generate (probabilities are batched in _verdicts)
            return self._from_text(self._local_generate(item))
        return self._http_verdict(item, timeout)

    def _verdicts(self, items: list[CallItem]) -> list[Outcome]:
        if self.local and self.method == "probabilities":  # batched here; counted as one call per verdict
            start = time.perf_counter()
            outcomes = [Outcome(v) for v in self._local_probabilities(items)]
            stats = CallStats(responses=len(items), calls=len(items), seconds=time.perf_counter() - start)
            self.runner.last_stats = stats
            self.runner.stats.add(stats)
            return outcomes
        return self.runner.run(items)

    # ------------------------------------------------------------------------------------------ scores
    def pair_probabilities(self, prompts: list, first: list[str], second: list[str]) -> list[Outcome]:
        """P(A) for each (prompt, A = first, B = second) as shown, in that one order (no averaging): what eval-rm's
        position-bias figures read. A failed call (on_failure: neutral) is an Outcome with failed set."""
        if self.mode != PAIRWISE:
            raise RewardkitError("pair_probabilities needs a judge with mode: pairwise")
        return self._verdicts([CallItem(p, a, b) for p, a, b in zip(prompts, first, second)])

    def preferences(self, prompts: list, first: list[str], second: list[str]) -> tuple[list[float], list, list]:
        """P(first beats second) with both orders averaged, and the two orders' outcomes (P_A as shown)."""
        n = len(first)
        try:
            outcomes = self.pair_probabilities(list(prompts) * 2, list(first) + list(second),
                                               list(second) + list(first))
        except ResponseError as exc:  # it named one of the 2n verdicts: name the pair, and the order
            j = exc.index % n
            text = re.sub(rf"^response {exc.index}: ", "", str(exc))
            raise ResponseError(f"response {j} (shown as {'B' if exc.index >= n else 'A'}): {text}", j) from None
        forward, backward = outcomes[:n], outcomes[n:]
        # 0.5 + (P_A(x, y) − P_A(y, x)) / 2 = (P_A(x, y) + P_B(y, x)) / 2, exactly 0.5 when the order alone decides
        values = [self.policy.neutral if f.failed or b.failed else 0.5 + (f.score - b.score) / 2
                  for f, b in zip(forward, backward)]
        return values, forward, backward

    def _score(self, prompts, responses, references, finished, fields=None):
        if self.mode == POINTWISE:
            items = self.items(prompts, responses, references, fields)
            outcomes = self._verdicts(items)
            self.last_reasons = [o.reason for o in outcomes]
            return [o.score for o in outcomes]
        others = [refs[0] for refs in reference_lists(references, len(responses), "a pairwise judge")]
        values, forward, backward = self.preferences(prompts, responses, others)
        self.last_reasons = []
        for f, b, v in zip(forward, backward, values):
            failed = f.reason if f.failed else b.reason if b.failed else None
            self.last_reasons.append(failed or (None if v >= 0.5 else
                                                f"the judge prefers the reference (P = {v:.3f}; as A {f.score:.3f}, "
                                                f"as B {1 - b.score:.3f})"))
        return values

    @property
    def needs_reference(self) -> bool:  # type: ignore[override]
        return self.mode == PAIRWISE

