"""`python -m rewardkit.serve MODEL [flags]`: the same as `rewardkit serve`, without loading the other commands."""

import sys

from rewardkit.config import parse_config
from rewardkit.errors import RewardkitError
from rewardkit.serve.command import ServeConfig, run_serve

try:
    sys.exit(run_serve(parse_config(ServeConfig, prog="rewardkit serve")))
except RewardkitError as exc:
    print(f"rewardkit serve: error: {exc}", file=sys.stderr)
    sys.exit(2)
