"""Learned rewards (local model, calibration, remote server) and custom callables."""

import json

import httpx
import pytest
import torch

from rewardkit.errors import RewardkitError
from rewardkit.models import RewardModel
from rewardkit.rewards.custom import CustomReward
from rewardkit.rewards.learned import RemoteReward
from rewardkit.rewards.spec import build_reward
from tests.conftest import reward_tolerance

PROMPTS = ["What is 2+2?", [{"role": "user", "content": "Hi"}]]
RESPONSES = ["4", "Hello! How can I help?"]


def test_reward_model_component_scores_like_the_model(tiny_bert_dir):
    reward = build_reward({"components": [{"type": "reward_model", "path": str(tiny_bert_dir), "batch_size": 1}]})
    expected = RewardModel.from_pretrained(str(tiny_bert_dir)).score(PROMPTS, RESPONSES)
    # both load at --precision auto, batched differently (1 text, 2 texts): compared at that precision's tolerance
    tol = reward_tolerance(expected)
    assert reward(PROMPTS, RESPONSES).tolist() == pytest.approx(expected.tolist(), abs=tol)
    assert reward.last_components["reward_model"].tolist() == pytest.approx(expected.tolist(), abs=tol)


def test_calibrated_scores_are_divided_by_the_saved_temperature(tiny_bert_dir, tmp_path):
    model = RewardModel.from_pretrained(str(tiny_bert_dir))
    model.temperature = 4.0
    model.save_pretrained(tmp_path)
    plain = build_reward({"components": [{"type": "reward_model", "path": str(tmp_path)}]})(PROMPTS, RESPONSES)
    calibrated = build_reward({"components": [{"type": "reward_model", "path": str(tmp_path),
                                               "calibrated": True}]})(PROMPTS, RESPONSES)
    assert calibrated.tolist() == pytest.approx((plain / 4.0).tolist(), abs=1e-6)


def test_missing_model_folder_is_a_user_error(tmp_path):
    with pytest.raises(RewardkitError, match=r"component 1 \(reward_model\)"):
        build_reward({"components": [{"type": "reward_model", "path": str(tmp_path / "nope")}]})


class FakeServer:
    """A /health + /score server in an httpx MockTransport; fails the first `failures` score requests with 503."""

    def __init__(self, failures=0, max_items=2):
        self.failures, self.max_items, self.requests = failures, max_items, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"limits": {"max_items_per_request": self.max_items,
                                                        "max_body_bytes": 1 << 20}})
        self.requests.append(request)
        if self.failures:
            self.failures -= 1
            return httpx.Response(503, json={"detail": "busy"})
        items = json.loads(request.content)["items"]
        return httpx.Response(200, json={"scores": [float(len(i["response"])) for i in items]})


def remote(server, monkeypatch, **kwargs):
    monkeypatch.setenv("REWARDKIT_API_TOKEN", "s3cret")
    reward = RemoteReward("http://rm.test:8000/score", **kwargs)
    client = reward.client
    client.backoff_s = 0.0
    client._http = httpx.Client(transport=httpx.MockTransport(server), headers=client._http.headers)
    return reward


def test_remote_reward_posts_items_with_the_token_and_retries(monkeypatch):
    server = FakeServer(failures=1, max_items=2)
    reward = remote(server, monkeypatch, retries=2)
    responses = ["a", "bb", "ccc"]
    assert reward(["p", "q", "r"], responses).tolist() == [1.0, 2.0, 3.0]
    assert len(server.requests) == 3  # one 503 retried, then two chunks of at most 2 items
    first = server.requests[-2]
    assert first.headers["authorization"] == "Bearer s3cret"
    assert json.loads(first.content)["items"] == [{"prompt": "p", "response": "a"}, {"prompt": "q", "response": "bb"}]


def test_remote_reward_gives_up_with_a_clear_error(monkeypatch):
    reward = remote(FakeServer(failures=5), monkeypatch, retries=1)
    with pytest.raises(RewardkitError, match="503"):
        reward(["p"], ["a"])
    with pytest.raises(RewardkitError, match="http"):
        RemoteReward("rm.test:8000")


def test_custom_callable_by_import_path():
    reward = CustomReward("tests.rewards.helpers:word_count", kwargs={"scale": 2.0})
    assert reward(["p", "p"], ["one two", "three"]).tolist() == [4.0, 2.0]
    spec = build_reward({"components": [{"type": "custom", "function": "tests.rewards.helpers:word_count"}]})
    assert spec(["p"], ["a b c"]).tolist() == [3.0]


@pytest.mark.parametrize("path, message", [
    ("tests.rewards.helpers:too_few", r"returned \(1,\) values for 2 responses"),
    ("tests.rewards.helpers:not_numbers", "must return a list of numbers"),
    ("tests.rewards.helpers:nan_for_second", "returned nan for response 1"),
    ("tests.rewards.helpers:NOT_CALLABLE", "is not callable"),
    ("tests.rewards.helpers:absent", "has no attribute 'absent'"),
    ("tests.rewards.helpers", "package.module:function"),
])
def test_custom_callable_errors(path, message):
    with pytest.raises(RewardkitError, match=message):
        CustomReward(path)(["p", "p"], ["a", "b"])


def test_custom_results_accept_arrays_and_tensors():
    import numpy as np

    from rewardkit.rewards.base import as_reward_tensor

    assert as_reward_tensor(np.array([1, 2]), 2, "f").tolist() == [1.0, 2.0]
    assert as_reward_tensor(torch.tensor([[1.0], [2.0]]), 2, "f").tolist() == [1.0, 2.0]


def test_load_reward_takes_a_spec_file_or_a_model(tiny_bert_dir, tmp_path):
    from rewardkit.rewards.spec import load_reward

    spec = tmp_path / "r.yml"
    spec.write_text("components: [{type: length, target: 3}]\n")
    assert [c.name for c in load_reward(str(spec)).components] == ["length"]
    model = load_reward(str(tiny_bert_dir), max_length=64)
    assert [c.name for c in model.components] == ["reward_model"]
    assert model.components[0].reward.model.max_length == 64
