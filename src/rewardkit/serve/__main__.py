"""`python -m rewardkit.serve MODEL [flags]`: the same as `rewardkit serve`, without loading the other commands."""

import sys

from rewardkit.config import parse_config
from rewardkit.errors import RewardkitError
from rewardkit.runs import offline_environment
from rewardkit.serve.command import run_serve
from rewardkit.serve.config import ServeConfig

offline_environment()  # this entry point bypasses rewardkit.cli.main, which sets it for the others
try:
    sys.exit(run_serve(parse_config(ServeConfig, prog="rewardkit serve")))
except RewardkitError as exc:
    print(f"rewardkit serve: error: {exc}", file=sys.stderr)
    sys.exit(2)
