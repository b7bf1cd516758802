"""`rewardkit label serve` (serve the labelling app; `rewardkit label DB` is the same) and `rewardkit label export`
(judgments -> train-rm data).

`rewardkit label import` lives in `rewardkit.label.importing`. No web framework at module level.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from rewardkit.errors import RewardkitError
from rewardkit.label.config import LabelConfig, LabelExportConfig
from rewardkit.label.export import export_rows
from rewardkit.label.store import Store
from rewardkit.runs import write_jsonl_atomically

ADMIN_TOKEN_ENV = "REWARDKIT_LABEL_ADMIN_TOKEN"
MAX_STRENGTH_WAIT = 30.0


def ties_path(output: Path) -> Path:
    name = output.name[:-len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return output.with_name(name + ".ties.jsonl")


def run_export(cfg: LabelExportConfig) -> int:
    store = Store(cfg.db)
    if cfg.min_judgments < 1:
        raise RewardkitError(f"--min-judgments must be at least 1, got {cfg.min_judgments}")
    rows, ties = export_rows(store, cfg.mode, cfg.min_judgments, cfg.selected_by)
    output = Path(cfg.output)
    write_jsonl_atomically(output, [row for _, row in rows])
    ties_file = ties_path(output)
    if ties:
        write_jsonl_atomically(ties_file, ties)
    elif ties_file.exists():
        ties_file.unlink()  # a stale file from an earlier export would misreport
    print(f"rewardkit label export: wrote {len(rows)} {store.task} record(s) ({cfg.mode}) to {output}"
          + (f"; {len(ties)} tie(s) to {ties_file}" if ties else "; no ties"))
    return 0


def _links(cfg: LabelConfig, tokens: dict[str, str], admin_token: str) -> dict:
    base = f"http://{cfg.host if ':' not in cfg.host else f'[{cfg.host}]'}:{cfg.port}"
    return {"admin": f"{base}/progress?token={admin_token}",
            "annotators": {name: f"{base}/?token={token}" for name, token in tokens.items()}}


def run_label(cfg: LabelConfig) -> int:
    from rewardkit.label.app import create_app
    from rewardkit.web import is_loopback

    store = Store(cfg.db)
    if store.task is None:
        raise RewardkitError(f"{cfg.db} holds no items yet: add some with `rewardkit label import`")
    if cfg.lease_minutes <= 0 or cfg.max_body_bytes <= 0:
        raise RewardkitError("--lease-minutes and --max-body-bytes must be positive")
    if not 0 <= cfg.strength_wait <= MAX_STRENGTH_WAIT:  # also refuses NaN
        raise RewardkitError(f"--strength-wait must be from 0 to {MAX_STRENGTH_WAIT:g} seconds, got "
                             f"{cfg.strength_wait:g}")
    if not 1 <= cfg.port <= 65535:
        raise RewardkitError(f"--port must be in 1..65535 (the printed links name it), got {cfg.port}")
    existing = {a.name for a in store.annotators()}
    tokens = {}
    for name in cfg.annotators:
        if name in existing:
            if cfg.reissue_tokens:
                tokens[name] = store.reissue_token(name)
        else:
            tokens[name] = store.add_annotator(name)
    admin_token = cfg.admin_token or os.environ.get(ADMIN_TOKEN_ENV) or secrets.token_urlsafe(24)
    links = _links(cfg, tokens, admin_token)
    print(f"rewardkit label: {store.task} items in {cfg.db}; admin (progress, agreement): {links['admin']}")
    for name, link in links["annotators"].items():
        print(f"rewardkit label: annotator {name}: {link}")
    kept = sorted(existing - set(tokens))
    if kept:
        print(f"rewardkit label: {len(kept)} annotator(s) keep the tokens issued earlier ({', '.join(kept)}); "
              f"--annotators NAME --reissue-tokens gives new ones")
    if cfg.tokens_file:
        path = Path(cfg.tokens_file)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(links | {"admin_token": admin_token, "tokens": tokens}, f, indent=1)
    if not is_loopback(cfg.host):
        print(f"rewardkit label: warning: listening on {cfg.host}: tokens travel in clear text unless a HTTPS proxy "
              f"is in front", file=sys.stderr)
    sys.stdout.flush()
    import uvicorn

    app = create_app(store, admin_token=admin_token, lease_seconds=cfg.lease_minutes * 60,
                     max_body_bytes=cfg.max_body_bytes, strength_wait=cfg.strength_wait)
    uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level,
                                  access_log=cfg.log_level == "debug", timeout_keep_alive=30)).run()
    return 0
