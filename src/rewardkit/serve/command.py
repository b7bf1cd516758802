"""`rewardkit serve`: load a reward model and serve it over HTTP (FastAPI app in `rewardkit.serve.app`).

No torch or transformers at module level: the CLI imports this module to build its parser.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass

from rewardkit.config import option
from rewardkit.device import DeviceOptions
from rewardkit.errors import RewardkitError

TOKEN_ENV = "REWARDKIT_API_TOKEN"


@dataclass
class ServeConfig(DeviceOptions):
    """Serve a reward model over HTTP: POST /score, POST /get_reward (OpenRLHF remote RM), GET /health, GET /metrics."""

    model: str = option(help="reward model to serve: a preset (minilm-l6, smollm2-135m), a folder saved by rewardkit "
                             "or any HF sequence-classification folder", positional=True, metavar="MODEL")
    host: str = option("127.0.0.1", "address to bind; loopback by default. Binding another address exposes the "
                                    "model to the network: set --api-token then")
    port: int = option(8000, "TCP port to listen on (0 picks a free one and prints it)")
    api_token: str | None = option(None, f"bearer token required by every endpoint except /health "
                                         f"(also read from ${TOKEN_ENV}); no token means no authentication")
    max_batch_size: int = option(32, "most items scored in one forward pass; concurrent requests are merged up to it")
    max_wait_ms: float = option(5.0, "how long the first queued item waits for others to fill its batch")
    max_batch_tokens: int = option(16384, "most padded tokens in one forward pass (items x longest item); a single "
                                          "item longer than this is still scored, alone")
    max_body_bytes: int = option(4 * 1024 * 1024, "largest request body accepted; larger ones get 413")
    max_items_per_request: int = option(1024, "most items in one request; more get 413 (clients split into chunks)")
    max_queued_items: int = option(16384, "most items waiting to be scored; beyond it new requests get 503 so that "
                                          "clients back off instead of timing out")
    request_timeout_s: float = option(60.0, "a request not scored within this many seconds gets 504 and its "
                                            "unscored items are dropped from the queue")
    max_length: int | None = option(None, "truncate (prompt, response) to this many tokens, oldest prompt tokens "
                                          "first (default: the model's saved max_length, else 512)")
    torch_threads: int | None = option(None, "CPU threads per forward pass (default: torch's, one per core). On a "
                                             "machine shared with other busy processes 1 can be much faster")
    log_level: str = option("info", "server log level",
                            choices=("critical", "error", "warning", "info", "debug"))


def check_limits(cfg: ServeConfig) -> None:
    """Reject limits that cannot work, naming the flag."""
    positive = ("max_batch_size", "max_batch_tokens", "max_body_bytes", "max_items_per_request", "max_queued_items",
                "request_timeout_s")
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise RewardkitError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    if cfg.max_wait_ms < 0:
        raise RewardkitError(f"--max-wait-ms must not be negative, got {cfg.max_wait_ms}")
    for name in ("max_length", "torch_threads"):
        if getattr(cfg, name) is not None and getattr(cfg, name) <= 0:
            raise RewardkitError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    if not 0 <= cfg.port <= 65535:
        raise RewardkitError(f"--port must be in 0..65535, got {cfg.port}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(cfg: ServeConfig) -> int:
    check_limits(cfg)
    cfg.api_token = cfg.api_token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(cfg.host) and cfg.api_token is None:
        print(f"rewardkit serve: warning: listening on {cfg.host} without --api-token: anyone who can reach this "
              f"port can use the model", file=sys.stderr)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rewardkit.device import placement_of
    from rewardkit.models import RewardModel
    from rewardkit.serve.app import create_app

    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    placement = placement_of(cfg, "serve")
    model = RewardModel.from_pretrained(cfg.model, max_length=cfg.max_length, placement=placement)
    model.eval()
    serve_app(create_app(model, cfg, model_name=cfg.model, placement=placement), cfg)
    return 0


def serve_app(app, cfg: ServeConfig) -> None:
    """Run `app` under uvicorn until SIGINT/SIGTERM.

    On the signal uvicorn stops accepting connections, lets in-flight requests finish (each is bounded by the request
    timeout, so the wait is too), then runs the app's shutdown, which drains the batcher.
    """
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(
        app, host=cfg.host, port=cfg.port, log_level=cfg.log_level, access_log=cfg.log_level == "debug",
        timeout_graceful_shutdown=int(cfg.request_timeout_s) + 5, timeout_keep_alive=30,
    ))
    server.run()
