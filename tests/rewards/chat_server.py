"""A minimal OpenAI-compatible chat-completions server that runs a real causal LM, for the judge's tests:
`python -m tests.rewards.chat_server MODEL_DIR [--always A]` prints "PORT n" once it listens on 127.0.0.1.

POST /v1/chat/completions takes {"messages", "max_tokens", "logprobs", "top_logprobs"}; the messages go through the
model's chat template with the assistant's turn open, and the answer is greedy (temperature is ignored: the tests ask
for 0). With "logprobs": true, each generated token comes with its log-probability and the `top_logprobs` most likely
alternatives (any count, in fp32), as OpenAI's API and vLLM return them. `--always A` answers "A" whatever it is asked
(no logprobs), for the position-bias test.
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--always", default=None)
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    lock = threading.Lock()

    def complete(body: dict) -> dict:
        if args.always is not None:
            return {"choices": [{"index": 0, "message": {"role": "assistant", "content": args.always},
                                 "finish_reason": "stop"}]}
        text = tokenizer.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        steps, top = int(body.get("max_tokens") or 16), int(body.get("top_logprobs") or 0)
        content, generated = [], []
        with lock, torch.no_grad():
            for _ in range(min(steps, 32)):
                logprobs = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)
                token = int(logprobs.argmax())
                if token == tokenizer.eos_token_id:
                    break
                generated.append(token)
                values, indices = logprobs.topk(top) if top else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
                content.append({"token": tokenizer.decode([token]), "logprob": float(logprobs[token]),
                                "top_logprobs": [{"token": tokenizer.decode([int(i)]), "logprob": float(v)}
                                                 for v, i in zip(values, indices)]})
                ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        choice = {"index": 0, "message": {"role": "assistant", "content": tokenizer.decode(generated)},
                  "finish_reason": "length"}
        if body.get("logprobs"):
            choice["logprobs"] = {"content": content}
        return {"choices": [choice]}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions":
                self.send_error(404)
                return
            payload = json.dumps(complete(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"PORT {httpd.server_address[1]}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
