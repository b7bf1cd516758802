"""`rewardkit serve`: load a reward model and serve it over HTTP (FastAPI app in `rewardkit.serve.app`, options in
`rewardkit.serve.config`).

No torch, transformers or web framework at module level: they are imported when the server starts.
"""

from __future__ import annotations

import os
import sys

from rewardkit.serve.config import TOKEN_ENV, ServeConfig, check_limits
from rewardkit.web import is_loopback


def run_serve(cfg: ServeConfig) -> int:
    check_limits(cfg)
    cfg.api_token = cfg.api_token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(cfg.host) and cfg.api_token is None:
        print(f"rewardkit serve: warning: listening on {cfg.host} without --api-token: anyone who can reach this "
              f"port can use the model", file=sys.stderr)

    from rewardkit.device import placement_of
    from rewardkit.models.ensemble import load_reward_model
    from rewardkit.serve.app import create_app

    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    placement = placement_of(cfg, "serve")
    model = load_reward_model(cfg.model, max_length=cfg.max_length, placement=placement)
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
