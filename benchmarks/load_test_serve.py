"""Load test of `rewardkit serve`: N concurrent clients against a real server process on loopback.

    python benchmarks/load_test_serve.py [MODEL] [--clients 32] [--requests 3000] [--items-per-request 1]
                                         [--max-length 128] [--time-limit 240] [--server-arg=--max-wait-ms=5 ...]

MODEL defaults to the minilm-l6 preset (22.7M-parameter BERT with an untrained head: the figures measure serving,
not reward quality). Texts are real HH-RLHF prompts and responses from ../shared/data when present, else synthetic.
Prints throughput, latency percentiles, errors (a correct server has none) and the server's resident memory
(VmRSS from /proc) before and after the load, plus the server's own batch-size figures from /metrics.
Client and server share the machine: on a 2-core box the load generator itself takes part of the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
HH = REPO_ROOT / ".." / "shared" / "data" / "hh-rlhf" / "helpful-base.test.jsonl.gz"
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of `pid` in MiB, from /proc/PID/status."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def load_texts(limit: int = 2000) -> tuple[list, list[str], str]:
    if HH.exists():
        from rewardkit.data.loaders import load_pairs

        pairs = load_pairs(str(HH), on_empty_response="skip")[: limit // 2]
        prompts = [p.prompt for p in pairs for _ in (0, 1)]
        responses = [r for p in pairs for r in (p.chosen, p.rejected)]
        return prompts, responses, f"HH-RLHF helpful-base test ({len(responses)} texts)"
    rng = random.Random(0)
    words = "the a reward model scores helpful answers to questions about many different topics quickly".split()
    prompts = [" ".join(rng.choices(words, k=rng.randint(5, 40))) + "?" for _ in range(limit)]
    responses = [" ".join(rng.choices(words, k=rng.randint(5, 120))) + "." for _ in range(limit)]
    return prompts, responses, f"synthetic ({limit} texts)"


def offline_items_per_s(model: str, max_length: int, prompts: list, responses: list[str]) -> float:
    """Items per second of in-process scoring, the ceiling a server on the same machine can approach."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rewardkit.models import RewardModel

    rm = RewardModel.from_pretrained(model, max_length=max_length)
    rm.score(prompts[:8], responses[:8])  # warm-up
    start = time.perf_counter()
    rm.score(prompts, responses, batch_size=32)
    return len(responses) / (time.perf_counter() - start)


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else float("nan")


async def run_load(url: str, prompts: list, responses: list[str], clients: int, total: int, per_request: int,
                   time_limit: float) -> dict:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    issued = 0
    deadline = time.monotonic() + time_limit
    rng = random.Random(1)

    async def client_loop(http: httpx.AsyncClient) -> None:
        nonlocal issued
        while issued < total and time.monotonic() < deadline:
            issued += 1
            picks = [rng.randrange(len(responses)) for _ in range(per_request)]
            body = {"items": [{"prompt": prompts[i], "response": responses[i]} for i in picks]}
            start = time.perf_counter()
            try:
                answer = await http.post("/score", json=body)
                key = str(answer.status_code)
                if answer.status_code == 200 and len(answer.json()["scores"]) != per_request:
                    key = "wrong-count"
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            latencies.append(time.perf_counter() - start)
            statuses[key] = statuses.get(key, 0) + 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120.0, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    return {"latencies": latencies, "statuses": statuses, "wall": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="minilm-l6")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--items-per-request", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=128,
                        help="server --max-length: HH dialogues are long, and a CPU forward pass costs per token")
    parser.add_argument("--time-limit", type=float, default=240.0, help="stop issuing requests after this many s")
    parser.add_argument("--baseline-items", type=int, default=256,
                        help="first score this many texts offline (RewardModel.score, batches of 32) for comparison; "
                             "0 skips it")
    parser.add_argument("--server-arg", action="append", default=[], help="extra flag for the server, repeatable")
    args = parser.parse_args()

    prompts, responses, source = load_texts()
    offline_rate = offline_items_per_s(args.model, args.max_length, prompts[:args.baseline_items],
                                       responses[:args.baseline_items]) if args.baseline_items else None
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    log = open(f"/tmp/load_test_serve-{port}.log", "wb")
    cmd = [sys.executable, "-m", "rewardkit.serve", args.model, "--host", LOOPBACK, "--port", str(port),
           "--max-length", str(args.max_length), "--log-level", "warning", *args.server_arg]
    server = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        started = time.monotonic()
        while True:
            if server.poll() is not None:
                print(Path(log.name).read_text()[-3000:], file=sys.stderr)
                return 1
            try:
                if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - started > 300:
                print("server did not start within 300 s", file=sys.stderr)
                return 1
            time.sleep(0.25)
        rss_before, _ = rss_mib(server.pid)
        result = asyncio.run(run_load(url, prompts, responses, args.clients, args.requests,
                                      args.items_per_request, args.time_limit))
        rss_after, rss_peak = rss_mib(server.pid)
        metrics = httpx.get(url + "/metrics").text
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()

    lat = sorted(result["latencies"])
    done = len(lat)
    errors = sum(n for status, n in result["statuses"].items() if status != "200")
    batches = metric(metrics, "rewardkit_batch_size_count")
    items = metric(metrics, "rewardkit_batch_size_sum")
    quantiles = statistics.quantiles(lat, n=100, method="inclusive")
    print(f"server: {' '.join(cmd[1:])}")
    print(f"texts: {source}; {args.clients} concurrent clients, {args.items_per_request} item(s) per request, "
          f"{os.cpu_count()} CPU cores shared with the clients")
    print(f"requests: {done} in {result['wall']:.1f} s -> {done / result['wall']:.1f} req/s, "
          f"{done * args.items_per_request / result['wall']:.1f} items/s")
    print(f"latency: p50 {quantiles[49] * 1000:.0f} ms, p90 {quantiles[89] * 1000:.0f} ms, "
          f"p99 {quantiles[98] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms")
    if offline_rate is not None:
        print(f"offline scoring of the same texts in this process, before the server started: "
              f"{offline_rate:.1f} items/s")
    print(f"errors: {errors} (statuses: {result['statuses']})")
    print(f"server batches: {batches:.0f} forward passes, mean {items / batches:.1f} items per batch")
    print(f"server RSS: {rss_before:.0f} MiB before, {rss_after:.0f} MiB after (peak {rss_peak:.0f} MiB)")
    if done < args.requests:
        print(f"note: stopped at the {args.time_limit:.0f} s time limit after {done} of {args.requests} requests")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
