"""The HTTP app: FastAPI routes over a `MicroBatcher`, with limits, bearer auth and Prometheus metrics.

Endpoints
- `POST /score` `{"items": [{"prompt": str | [{"role", "content"}...], "response": str}, ...]}` -> `{"scores": [...]}`
  in item order. `prompt` may be "" (no context); `response` must hold text. An ensemble (`train-rm --ensemble K`)
  answers `{"scores": [...], "disagreement": [...]}`: its score is the members' mean and its disagreement the
  population std over the members, per item, in the units of the scores (with --normalize, divided by the same std).
- `POST /get_reward`, OpenRLHF's remote reward model protocol (`--reward.remote_url http://HOST:PORT/get_reward`;
  `--remote_rm_url` before OpenRLHF v0.10): `{"query": [full texts], "prompts": [prompt texts] | null, "labels": ...}`
  -> `{"rewards": [...], "scores": [...], "extra_logs": {"rm_prompt_split": [1.0 | 0.0, ...]}}` (plus "raw_reward",
  the scores before normalization, when --normalize is on, and "reward_disagreement", an ensemble's disagreement as
  /score gives it). OpenRLHF sends one query per request and turns each extra_logs entry into a per-sample metric
  (`torch.tensor([value])` in its samples generator), so every entry is a list of numbers, one per query.
  A query is prompt + response as the policy saw it. When `prompts[i]` is given and the query starts with it (after
  nothing but the tokenizer's special tokens, e.g. BOS), the rest is the response; otherwise the whole query is scored
  as the response to an empty prompt (`rm_prompt_split` says which, per item). Special tokens around the response
  (separators, EOS, padding: the reward model's, and the policy's with --policy-tokenizer) are removed, since the
  reward model adds its own. `labels` are ignored. The pair is then scored by the model's own rule, exactly as
  /score would score it. A prompt already rendered with the reward model's
  chat template (OpenRLHF's --apply_chat_template) is recognised by the template's special tokens and not rendered a
  second time.
- `GET /health` -> 200 `{"status": "ok", "model": ..., "ensemble": K | null, "placement": {"device", "precision",
  "reason"}, "limits": {...}, "normalization": {"method", ...}}` (`ensemble`: the number of members, null for a single
  model; no token needed; 503 if the batcher died).
- With `--normalize running|fixed` (`rewardkit.serve.normalize`), /score and /get_reward serve normalized scores.
- `GET /metrics` -> Prometheus text format.

Errors are JSON `{"detail": message, "field": "items[3].response"}` (field when one is at fault): 401 missing or
wrong bearer token, 400 body not JSON, 413 body or item count over the limit, 422 invalid field, 503 queue full or
shutting down, 504 not scored within the request timeout, 500 scorer failure. An error answered before the body was
read (413 on its Content-Length, 401) is sent after the rest of the body (`rewardkit.serve.drain`), so that clients
which send their whole body before reading hear it instead of a connection reset.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from contextlib import asynccontextmanager
from typing import Any, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from rewardkit.device import Placement
from rewardkit.errors import RewardkitError
from rewardkit.integrations.openrlhf import special_tokens_of, split_query
from rewardkit.serve.batcher import ItemRejected, MicroBatcher, QueueFull, Scored
from rewardkit.serve.config import ServeConfig, check_limits
from rewardkit.serve.drain import DrainUnreadBody, drain_bound
from rewardkit.serve.metrics import MetricsMiddleware, ServeMetrics
from rewardkit.serve.normalize import normalizer_for

log = logging.getLogger("rewardkit.serve")
ENDPOINTS = frozenset({"/score", "/get_reward", "/health", "/metrics"})


class RequestError(Exception):
    """An HTTP error answered as `{"detail", "field"}` and counted under `reason` in the metrics."""

    def __init__(self, status: int, reason: str, detail: str, field: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.reason, self.detail, self.field, self.headers = status, reason, detail, field, headers


def _invalid(field: str, problem: str) -> RequestError:
    return RequestError(422, "invalid", f"{field} {problem}", field)


# -------------------------------------------------------------------- validation
def _check_text(value: Any, field: str, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise _invalid(field, f"must be a string, got {_json_type(value)}")
    if not allow_empty and not value.strip():
        raise _invalid(field, "must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(field, "is not valid Unicode (lone surrogate)")
    return value


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _reject_unknown_fields(obj: dict, allowed: set[str], where: str) -> None:
    """Refuse fields the API does not know rather than ignore them, so that a misspelling is reported."""
    unknown = set(obj) - allowed
    if unknown:
        raise _invalid(where, f"has unknown field(s) {', '.join(sorted(unknown))}")


def _check_prompt(value: Any, field: str) -> str | list[dict[str, str]]:
    if isinstance(value, list):
        if not value:
            raise _invalid(field, "must not be an empty conversation")
        for j, message in enumerate(value):
            where = f"{field}[{j}]"
            if not isinstance(message, dict):
                raise _invalid(where, f"must be an object with role and content, got {_json_type(message)}")
            _reject_unknown_fields(message, {"role", "content"}, where)
            for key in ("role", "content"):
                if key not in message:
                    raise _invalid(f"{where}.{key}", "is required")
            _check_text(message["role"], f"{where}.role", allow_empty=False)
            _check_text(message["content"], f"{where}.content", allow_empty=True)
        return [{"role": m["role"], "content": m["content"]} for m in value]
    return _check_text(value, field, allow_empty=True)


def _check_count(n: int, field: str, limit: int) -> None:
    if n == 0:
        raise _invalid(field, "must not be empty")
    if n > limit:
        raise RequestError(413, "too_many_items", f"{field} has {n} items; the limit is {limit} per request "
                                                  f"(--max-items-per-request): split it", field)


def parse_score_request(body: Any, max_items: int) -> tuple[list, list[str]]:
    """Prompts and responses of a /score body, or a RequestError naming the faulty field."""
    if not isinstance(body, dict):
        raise _invalid("body", f"must be an object with an items array, got {_json_type(body)}")
    _reject_unknown_fields(body, {"items"}, "body")
    items = body.get("items")
    if not isinstance(items, list):
        raise _invalid("items", f"must be an array of {{prompt, response}} objects, got {_json_type(items)}")
    _check_count(len(items), "items", max_items)
    prompts, responses = [], []
    for i, item in enumerate(items):
        where = f"items[{i}]"
        if not isinstance(item, dict):
            raise _invalid(where, f"must be an object with prompt and response, got {_json_type(item)}")
        _reject_unknown_fields(item, {"prompt", "response"}, where)
        if "prompt" not in item:
            raise _invalid(f"{where}.prompt", 'is required (use "" for none)')
        if "response" not in item:
            raise _invalid(f"{where}.response", "is required")
        prompts.append(_check_prompt(item["prompt"], f"{where}.prompt"))
        responses.append(_check_text(item["response"], f"{where}.response", allow_empty=False))
    return prompts, responses


def parse_get_reward_request(body: Any, max_items: int, special: Sequence[str]) -> tuple[list, list[str], list[bool]]:
    """Prompts, responses and split flags of an OpenRLHF /get_reward body."""
    if not isinstance(body, dict):
        raise _invalid("body", f"must be an object with a query array, got {_json_type(body)}")
    queries = body.get("query")
    if not isinstance(queries, list):
        raise _invalid("query", f"must be an array of strings, got {_json_type(queries)}")
    _check_count(len(queries), "query", max_items)
    prompts_in = body.get("prompts")
    if prompts_in is not None:
        if not isinstance(prompts_in, list):
            raise _invalid("prompts", f"must be an array of strings or null, got {_json_type(prompts_in)}")
        if len(prompts_in) != len(queries):
            raise _invalid("prompts", f"has {len(prompts_in)} items but query has {len(queries)}")
    prompts, responses, found = [], [], []
    for i, query in enumerate(queries):
        query = _check_text(query, f"query[{i}]", allow_empty=False)
        prompt = None
        if prompts_in is not None and prompts_in[i] is not None:
            prompt = _check_text(prompts_in[i], f"prompts[{i}]", allow_empty=True)
        p, r, ok = split_query(query, prompt, special)
        prompts.append(p)
        responses.append(r)
        found.append(ok)
    return prompts, responses, found


# -------------------------------------------------------------------- the app
async def _read_json(request: Request, limit: int) -> Any:
    """The JSON body, refusing more than `limit` bytes whether or not Content-Length says so."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "invalid", "invalid Content-Length header")
        if int(declared) > limit:
            raise RequestError(413, "body_too_large", f"request body of {declared} bytes is over the limit of "
                                                      f"{limit} (--max-body-bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(413, "body_too_large", f"request body is over the limit of {limit} bytes "
                                                      f"(--max-body-bytes)")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # not UTF-8 or JSON; digits or nesting past limits
        raise RequestError(400, "invalid", f"request body is not valid JSON: {exc}")


def _special_tokens(scorer: Any, policy_tokenizer: str | None) -> tuple[str, ...]:
    """The special tokens stripped around /get_reward responses: the scorer's tokenizer's and the policy's."""
    tokenizer = getattr(scorer, "tokenizer", None)
    tokens = {t for t in getattr(tokenizer, "all_special_tokens", None) or () if t}
    tokens |= special_tokens_of(policy_tokenizer)
    return tuple(sorted(tokens, key=len, reverse=True))  # longest first: "</s>" before "<"


def create_app(scorer: Any, settings: ServeConfig, model_name: str | None = None,
               placement: Placement | None = None) -> FastAPI:
    """An app serving `scorer` (anything with `score(prompts, responses)`; see `ScorerAdapter`) under `settings`;
    `/health` reports `placement` (where the model runs): as given, else the model's own (a loaded `RewardModel`'s,
    an ensemble's first member's), else null (a scorer that is no model)."""
    check_limits(settings)
    service = ScoringService(scorer, settings, model_name, placement)
    app = FastAPI(title="rewardkit reward model server", lifespan=service.lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.batcher = service.batcher
    app.state.metrics = service.metrics
    app.add_middleware(MetricsMiddleware, metrics=service.metrics, endpoints=ENDPOINTS)
    # added last, so outermost: it sees every response start, whichever layer answers early
    app.add_middleware(DrainUnreadBody, max_bytes=drain_bound(settings.max_body_bytes))
    app.add_exception_handler(RequestError, service.request_error)
    app.add_api_route("/score", service.score_endpoint, methods=["POST"])
    app.add_api_route("/get_reward", service.get_reward_endpoint, methods=["POST"])
    app.add_api_route("/health", service.health, methods=["GET"])
    app.add_api_route("/metrics", service.metrics_endpoint, methods=["GET"])
    return app


def _placement_of(scorer: Any, placement: Placement | None) -> Placement | None:
    members = getattr(scorer, "members", None)
    return placement or getattr(members[0] if members else scorer, "placement", None)


def _api_token_bytes(api_token: str | None) -> bytes | None:
    if api_token and not api_token.isascii():  # HTTP headers carry ASCII: it could never match
        raise RewardkitError("the API token must be ASCII: an HTTP client cannot send other characters in a header")
    return api_token.encode("ascii") if api_token else None


class ScoringService:
    """What the routes share (the batcher, metrics, normalizer, token) and the routes' handlers."""

    def __init__(self, scorer: Any, settings: ServeConfig, model_name: str | None, placement: Placement | None):
        self.settings, self.model_name = settings, model_name
        self.placement = _placement_of(scorer, placement)
        self.metrics = ServeMetrics(settings.max_batch_size, settings.max_batch_tokens)
        self.batcher = MicroBatcher(scorer, max_batch_size=settings.max_batch_size,
                                    max_batch_tokens=settings.max_batch_tokens,
                                    max_wait_s=settings.max_wait_ms / 1000,
                                    max_queued_items=settings.max_queued_items, metrics=self.metrics)
        self.special = _special_tokens(scorer, settings.policy_tokenizer)
        self.normalize = normalizer_for(settings.normalize, settings.normalize_mean, settings.normalize_std,
                                        settings.normalize_warmup, getattr(scorer, "reward_stats", None),
                                        model_name or settings.model)
        self.token = _api_token_bytes(settings.api_token)

    @asynccontextmanager
    async def lifespan(self, app: FastAPI):
        self.batcher.start()
        try:
            yield
        finally:
            # uvicorn runs this after in-flight requests finished (graceful shutdown); anything left is scored.
            await self.batcher.close()

    async def request_error(self, request: Request, exc: RequestError) -> JSONResponse:
        endpoint = request.url.path if request.url.path in ENDPOINTS else "other"
        self.metrics.errors.labels(endpoint, exc.reason).inc()
        content = {"detail": exc.detail} | ({"field": exc.field} if exc.field else {})
        return JSONResponse(content, status_code=exc.status, headers=exc.headers)

    def authorize(self, request: Request) -> None:
        if self.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # compare_digest takes time independent of where the strings differ, so the token cannot be guessed
        # byte by byte from response times.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8"), self.token):
            raise RequestError(401, "unauthorized", "missing or wrong bearer token (Authorization: Bearer TOKEN)",
                               headers={"WWW-Authenticate": "Bearer"})

    async def score(self, prompts: list, responses: list[str], field: str) -> Scored:
        timeout = self.settings.request_timeout_s
        try:
            return await asyncio.wait_for(self.batcher.score(prompts, responses), timeout)
        except TimeoutError:
            raise RequestError(504, "timeout", f"not scored within {timeout:g} s (--request-timeout-s); the server "
                                               f"is overloaded or the request too large")
        except QueueFull as exc:
            raise RequestError(503, "overloaded", f"{exc}; retry later", headers={"Retry-After": "1"})
        except ItemRejected as exc:
            raise _invalid(f"{field}[{exc.index}]", str(exc))
        except Exception as exc:  # a scorer failure is a server bug: log it, answer JSON
            log.exception("scoring failed")
            raise RequestError(500, "internal", f"scoring failed: {type(exc).__name__}: {exc}")

    async def score_endpoint(self, request: Request) -> JSONResponse:
        self.authorize(request)
        prompts, responses = parse_score_request(await _read_json(request, self.settings.max_body_bytes),
                                                 self.settings.max_items_per_request)
        scores, spreads = self.normalize(*await self.score(prompts, responses, "items"))
        return JSONResponse({"scores": scores} | ({"disagreement": spreads} if spreads is not None else {}))

    async def get_reward_endpoint(self, request: Request) -> JSONResponse:
        self.authorize(request)
        prompts, responses, found = parse_get_reward_request(
            await _read_json(request, self.settings.max_body_bytes), self.settings.max_items_per_request,
            self.special)
        raw = await self.score(prompts, responses, "query")
        rewards, spreads = self.normalize(*raw)
        extra_logs = {"rm_prompt_split": [float(f) for f in found]}
        if spreads is not None:
            extra_logs["reward_disagreement"] = spreads
        if self.normalize.method != "none":
            extra_logs["raw_reward"] = raw.scores
        return JSONResponse({"rewards": rewards, "scores": rewards, "extra_logs": extra_logs})

    async def health(self) -> JSONResponse:
        limits = {name: getattr(self.settings, name) for name in
                  ("max_batch_size", "max_items_per_request", "max_body_bytes", "request_timeout_s")}
        status = 200 if self.batcher.running else 503
        return JSONResponse({"status": "ok" if status == 200 else "unavailable", "model": self.model_name,
                             "ensemble": self.batcher.adapter.members,
                             "placement": self.placement.as_dict() if self.placement is not None else None,
                             "limits": limits, "normalization": self.normalize.describe()}, status_code=status)

    async def metrics_endpoint(self, request: Request) -> Response:
        self.authorize(request)
        return Response(self.metrics.render(), media_type=ServeMetrics.CONTENT_TYPE)
