"""OpenRLHF: rewardkit's `reward_func` file and `rewardkit serve`'s /get_reward, called as OpenRLHF calls them.

OpenRLHF cannot be installed here (0.11.2 pins transformers 5.15, deepspeed and flash-attn), so its calling code is
copied from its 0.11.2 wheel (PyPI `openrlhf-0.11.2-cp311-cp311-manylinux1_x86_64.whl`): `openrlhf/utils/agent.py`
`SingleTurnAgentExecutor` (loading the `.py` file, `_fetch_rewards_via_func`, `_fetch_rewards_via_http` with aiohttp,
and how `execute` reads the answer) and `openrlhf/trainer/ppo_utils/samples_generator.py` (how `rewards`, `scores`
and `extra_logs` become tensors). The query is built as `execute` builds it: the policy's chat-templated prompt and
its response tokens, decoded with the special tokens kept.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shlex
import re
from urllib.parse import urlsplit

import pytest
import torch

from rewardkit.integrations.openrlhf import split_query
from rewardkit.models import RewardModel
from rewardkit.models.presets import resolve_tokenizer_path
from rewardkit.rewards.spec import load_reward
from tests.integrations.conftest import README_POLICY, readme_block

SAMPLES = [  # (user message, response, label)
    ("How do I bake bread?", "Mix flour, water and yeast, then bake it.", "Mix flour and water, bake."),
    ("Name a colour.", "Blue.", "Red."),
]


@pytest.fixture(scope="module")
def policy_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_tokenizer_path("smollm2-135m"))


def openrlhf_query(tokenizer, message: str, response: str) -> tuple[str, str]:
    """(query, prompt) as OpenRLHF 0.11.2 makes them with --apply_chat_template."""
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                           add_generation_prompt=True)
    prompt_token_ids = tokenizer(text=prompt, add_special_tokens=False, return_tensors="pt")["input_ids"][0].tolist()
    action_token_ids = tokenizer(response + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    query = tokenizer.decode(prompt_token_ids + action_token_ids, skip_special_tokens=False)
    return query, prompt


# --- openrlhf 0.11.2 openrlhf/utils/agent.py SingleTurnAgentExecutor.__init__: a `.py` remote_url is loaded so
def load_reward_func(path: str):
    spec = importlib.util.spec_from_file_location("reward_func", path)
    reward_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reward_module)
    return reward_module.reward_func


# --- openrlhf 0.11.2 SingleTurnAgentExecutor._fetch_rewards_via_func: one sample per call, from threads
async def fetch_rewards_via_func(reward_func, queries_list, prompts_list, labels_list):
    batch_size = 1
    num_chunks = (len(queries_list) + batch_size - 1) // batch_size
    tasks = []
    for i in range(num_chunks):
        start_idx = i * batch_size
        end_idx = min((i + 1) * batch_size, len(queries_list))
        tasks.append(asyncio.to_thread(reward_func, queries_list[start_idx:end_idx], prompts_list[start_idx:end_idx],
                                       labels_list[start_idx:end_idx]))
    return await asyncio.gather(*tasks)


# --- openrlhf 0.11.2 SingleTurnAgentExecutor._fetch_rewards_via_http (one server; aiohttp, json payload)
async def fetch_rewards_via_http(rm, queries_list, prompts_list, labels_list):
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=180)
    payload = {"query": queries_list, "prompts": prompts_list, "labels": labels_list}
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(rm, json=payload) as response:
            response.raise_for_status()
            return [await response.json()]


# --- openrlhf 0.11.2 SingleTurnAgentExecutor.execute reads the answer, samples_generator.py makes tensors of it
def experience_info(rewards_info: dict) -> dict:
    score_value = rewards_info.get("scores")
    if score_value is None:
        score_value = rewards_info.get("rewards")
    output = {"reward": rewards_info.get("rewards"), "scores": score_value,
              "extra_logs": rewards_info.get("extra_logs") or {}}
    info = {"reward": torch.tensor([output["reward"]]), "score": torch.tensor([output["scores"]])}
    for key, value in output["extra_logs"].items():
        if isinstance(value, torch.Tensor):
            value = value.flatten()[0].item()
        info[key] = torch.tensor([value])
    return info


def test_reward_func_file_as_openrlhf_loads_and_calls_it(spec_path, in_readme_dir, policy_tokenizer):
    # the README's OpenRLHF file, with SmolLM2's tokenizer as the policy's
    path = in_readme_dir / "reward_func.py"
    path.write_text(readme_block("# reward_func.py").replace(README_POLICY, "smollm2-135m"))
    reward_func = load_reward_func(str(path))
    built = [openrlhf_query(policy_tokenizer, m, r) for m, r, _ in SAMPLES]
    answers = asyncio.run(fetch_rewards_via_func(reward_func, [q for q, _ in built], [p for _, p in built],
                                                 [label for *_, label in SAMPLES]))
    reward = load_reward(str(spec_path))
    total = reward([p for _, p in built], [r for _, r, _ in SAMPLES], [label for *_, label in SAMPLES])
    for i, answer in enumerate(answers):
        info = experience_info(answer)
        assert info["reward"].item() == pytest.approx(float(total[i]), abs=1e-6)
        assert info["score"].item() == pytest.approx(float(total[i]), abs=1e-6)
        assert info["rouge"].item() == pytest.approx(float(reward.last_components["rouge"][i]), abs=1e-6)
        assert info["rm_prompt_split"].item() == 1.0
    # the response reached the reward without the policy's EOS: rouge1 of "Blue." against "Red." is 0
    assert experience_info(answers[1])["rouge"].item() == 0.0


def test_split_query_of_an_openrlhf_query_gives_back_prompt_and_response(policy_tokenizer):
    query, prompt = openrlhf_query(policy_tokenizer, "Name a colour.", "Blue.")
    special = sorted(policy_tokenizer.all_special_tokens, key=len, reverse=True)
    assert split_query(query, prompt, special) == (prompt, "Blue.", True)


def test_get_reward_answers_openrlhf_http_client_with_rewards_scores_and_extra_logs(server, varied_bert_dir,
                                                                                   policy_tokenizer):
    # the README's OpenRLHF flags (both names) point at /get_reward on the server
    urls = re.findall(r"--(?:reward\.remote_url|remote_rm_url) (http://\S+)", readme_block("--remote_rm_url http"))
    assert len(urls) == 2 and {urlsplit(u).path for u in urls} == {"/get_reward"}
    built = [openrlhf_query(policy_tokenizer, m, r) for m, r, _ in SAMPLES]
    rm = RewardModel.from_pretrained(str(varied_bert_dir))
    for (query, prompt), (_, response, label) in zip(built, SAMPLES):
        answer = asyncio.run(fetch_rewards_via_http(server.url + urlsplit(urls[0]).path, [query], [prompt],
                                                    [label]))[0]
        assert set(answer) == {"rewards", "scores", "extra_logs"}
        info = experience_info(answer)
        # the server strips its own model's special tokens; with BERT's, the policy's EOS stays in the response
        _, served_response, found = split_query(query, prompt, sorted(rm.tokenizer.all_special_tokens, key=len,
                                                                      reverse=True))
        assert found and served_response == response + policy_tokenizer.eos_token
        assert info["reward"].item() == pytest.approx(float(rm.score([prompt], [served_response])[0]), abs=1e-5)
        assert info["rm_prompt_split"].item() == 1.0


def test_the_readmes_serve_line_is_a_valid_serve_command():
    from rewardkit.config import parse_config
    from rewardkit.serve.config import ServeConfig, check_limits

    line = next(l for l in readme_block("--remote_rm_url http").splitlines() if l.startswith("rewardkit serve "))
    cfg = parse_config(ServeConfig, shlex.split(line)[2:])
    check_limits(cfg)
    assert (cfg.model, cfg.port, cfg.normalize, cfg.policy_tokenizer) == ("runs/hh-rm", 8000, "fixed", README_POLICY)
