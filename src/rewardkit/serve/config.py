"""`ServeConfig`, every option of `rewardkit serve`, and the check of its limits.

Its own module so that the app (`rewardkit.serve.app`) and the command that runs it (`rewardkit.serve.command`) both
import it without importing each other; no torch or web framework here, so that `rewardkit serve --help` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewardkit.config import option
from rewardkit.device import DeviceOptions
from rewardkit.errors import RewardkitError

NORMALIZE_METHODS = ("none", "running", "fixed")  # rewardkit.serve.normalize implements them

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
    policy_tokenizer: str | None = option(None, "the policy's tokenizer (folder or preset): its special tokens are "
                                                "stripped from /get_reward queries too (OpenRLHF decodes prompt + "
                                                "response with them kept); default: only the reward model's. Give it "
                                                "when the policy's tokenizer is not the reward model's",
                                          metavar="PATH")
    normalize: str = option("none", "normalize the scores served by /score and /get_reward: running (mean and std "
                                    "of every score served so far; only centered during --normalize-warmup) or fixed "
                                    "(--normalize-mean/--normalize-std, else the reward statistics saved with the "
                                    "model by train-rm or eval-rm --save-reward-stats). For frameworks that do not "
                                    "normalize a remote reward, e.g. OpenRLHF", choices=NORMALIZE_METHODS)
    normalize_mean: float | None = option(None, "--normalize fixed: the mean subtracted (give with --normalize-std)")
    normalize_std: float | None = option(None, "--normalize fixed: the std divided by (give with --normalize-mean)")
    normalize_warmup: int = option(100, "--normalize running: scores are only centered until this many were served")
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
    fixed = (cfg.normalize_mean, cfg.normalize_std)
    if cfg.normalize != "fixed" and fixed != (None, None):
        raise RewardkitError("--normalize-mean and --normalize-std are for --normalize fixed")
    if (fixed[0] is None) != (fixed[1] is None):
        raise RewardkitError("--normalize-mean and --normalize-std go together")
    if fixed[1] is not None and not fixed[1] > 0:
        raise RewardkitError(f"--normalize-std must be positive, got {fixed[1]}")
    if cfg.normalize_warmup < 0:
        raise RewardkitError(f"--normalize-warmup must not be negative, got {cfg.normalize_warmup}")
    if not 0 <= cfg.port <= 65535:
        raise RewardkitError(f"--port must be in 0..65535, got {cfg.port}")
