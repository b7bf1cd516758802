"""Calling components scored concurrently: a composite whose `judge` (or `http`) component calls a loopback server
that takes a fixed 200 ms per request, on 64 responses, one call at a time against `concurrency` calls at once.

    python benchmarks/bench_concurrent_rewards.py [--component judge|http] [--responses 64] [--delay 0.2]
                                                  [--concurrency 16]

The composite is `judge` (weight 1; the server's /v1/chat/completions answers "Score: N", N from the response's
characters) or `http` (its /score answers {"score": ...}), plus `length` (weight 0.1), scored through
`rewardkit score`'s own batch function.
Each setting gets a fresh composite with the cache off, so every response is a real request; the scores of the two
runs must be identical. A third run repeats the concurrent one with the cache on, twice, to show a second pass served
from the cache. Prints the CPU, the seconds of each run, the ratio (the issue asks for concurrent <= 1/5 of
sequential), and the calling component's latency line as the score log prints it.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import sys
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def serve(delay: float) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(delay)
            if self.path.endswith("/chat/completions"):  # a judge: the response is the rubric's [Response] section
                response = body["messages"][-1]["content"].split("[Response]\n", 1)[1].split("\n\n", 1)[0]
                reply = f"A fair answer.\nScore: {1 + sum(map(ord, response)) % 10}"
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
            else:
                response = body["response"]
                payload = json.dumps({"score": (sum(map(ord, response)) % 97) / 97.0}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # the default backlog of 5 drops concurrent connects (a 1 s SYN retry each)

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def composite(url: str, component: str, concurrency: int, cache: bool):
    from rewardkit.rewards.spec import build_reward

    calling = ({"type": "judge", "url": f"{url}/v1", "model": "bench-judge"} if component == "judge"
               else {"type": "http", "url": f"{url}/score"})
    return build_reward({"components": [
        {**calling, "concurrency": concurrency, "cache": cache, "timeout": 10},
        {"type": "length", "target": 40, "tolerance": 10, "weight": 0.1}]})


def timed(reward, items) -> tuple[float, list[float]]:
    from rewardkit.rewards.command import score_batch

    start = time.perf_counter()
    records = score_batch(reward, items)
    return time.perf_counter() - start, [r["total"] for r in records]


def main() -> int:
    from rewardkit.device import cpu_model_name
    from rewardkit.rewards.command import _Item

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds the server takes per request")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--component", choices=("judge", "http"), default="judge",
                        help="the calling component: an LLM judge over HTTP (chat completions) or http")
    args = parser.parse_args()

    server, url = serve(args.delay)
    items = [_Item(f"bench:{k}", f"Question {k}?", [f"Answer number {k}: " + "word " * (k % 13)])
             for k in range(args.responses)]
    print(f"CPU: {cpu_model_name()} ({os.cpu_count()} cores); {args.component} + length on {args.responses} "
          f"responses; server delay {args.delay * 1000:.0f} ms per request")
    sequential = composite(url, args.component, 1, cache=False)
    seq_s, seq_scores = timed(sequential, items)
    print(f"sequential (concurrency 1):     {seq_s:6.2f} s   {args.responses / seq_s:6.1f} responses/s")
    concurrent = composite(url, args.component, args.concurrency, cache=False)
    con_s, con_scores = timed(concurrent, items)
    print(f"concurrent (concurrency {args.concurrency:<2}):    {con_s:6.2f} s   {args.responses / con_s:6.1f} "
          f"responses/s")
    cached = composite(url, args.component, args.concurrency, cache=True)
    first_s, _ = timed(cached, items)
    again_s, cached_scores = timed(cached, items)
    print(f"cached, second pass:            {again_s:6.3f} s   (first pass {first_s:.2f} s)")
    same = seq_scores == con_scores == cached_scores
    ratio = con_s / seq_s
    print(f"concurrent / sequential = {ratio:.3f} (1/{1 / ratio:.1f}); scores identical: {same}")
    print("score log line (concurrent):", concurrent.components[0].reward.describe_stats())
    server.shutdown()
    if not same or ratio > 0.2:
        print("FAILED: the concurrent run must give the same scores in at most 1/5 of the sequential time",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
