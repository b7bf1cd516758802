"""A server process whose scorer sleeps SLOW_SCORER_DELAY seconds per batch (for the graceful-shutdown test).

    python -m tests.serve.slow_app fake --host 127.0.0.1 --port PORT [ServeConfig flags]
"""

import os
import time

from rewardkit.config import parse_config
from rewardkit.serve.app import create_app
from rewardkit.serve.command import serve_app
from rewardkit.serve.config import ServeConfig


class SlowScorer:
    def __init__(self, delay: float):
        self.delay = delay

    def score(self, prompts, responses):
        time.sleep(self.delay)
        return [float(len(r)) for r in responses]


if __name__ == "__main__":
    cfg = parse_config(ServeConfig)
    serve_app(create_app(SlowScorer(float(os.environ.get("SLOW_SCORER_DELAY", "1.0"))), cfg), cfg)
