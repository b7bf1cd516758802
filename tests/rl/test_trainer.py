"""The RL loop on a toy task: reward = share of the word "yes" in the response, tiny random Llama policy."""

import copy

import pytest
import torch

from rewardkit.errors import RewardkitError
from rewardkit.rl.config import RLConfig
from rewardkit.rl.rollout import Rollout
from rewardkit.rl.trainer import RLTrainer
from tests.rl.conftest import toy_policy, toy_tokenizer, yes_fraction

PROMPTS = ["the movie", "a film", "the plot", "a scene", "very good", "not bad", "the actor", "a movie"]


def make_trainer(algorithm="ppo", seed=0, reward=yes_fraction, **overrides):
    tokenizer = toy_tokenizer()
    policy = toy_policy(tokenizer, seed=seed)
    grouped = algorithm in ("grpo", "rloo")
    settings = dict(algorithm=algorithm, learning_rate=3e-3, value_learning_rate=1e-2, max_new_tokens=6,
                    prompts_per_step=4 if grouped else 8, samples_per_prompt=4 if grouped else 1,
                    epochs=2 if algorithm in ("ppo", "grpo") else 1, kl_coef=0.01, seed=seed)
    settings.update(overrides)
    torch.manual_seed(seed)
    return RLTrainer(RLConfig(**settings), policy, tokenizer, reward, reference=copy.deepcopy(policy))


def run(trainer, steps):
    history = []
    for step in range(steps):
        prompts = PROMPTS if trainer.cfg.samples_per_prompt == 1 else PROMPTS[step % 2::2]
        history.append(trainer.step(prompts))
    return history


@pytest.mark.parametrize("algorithm", ["reinforce", "actor_critic", "ppo", "grpo", "rloo"])
def test_each_algorithm_raises_the_reward(algorithm):
    history = run(make_trainer(algorithm), 25)
    start = sum(m["reward/proxy"] for m in history[:3]) / 3
    end = sum(m["reward/proxy"] for m in history[-5:]) / 5
    assert start < 0.25, start               # "yes" is one word of twelve at the start
    assert end > start + 0.3, (start, end)
    assert history[-1]["kl/ref"] > 0.5      # it got there by moving away from the reference
    for m in history:
        assert all(v == v for v in m.values())  # no NaN anywhere


def test_gradient_accumulation_is_exact():
    """Chunking a minibatch into forward passes must not change the update (token-weighted accumulation)."""
    a = make_trainer("ppo", epochs=1, forward_batch_size=8)
    b = make_trainer("ppo", epochs=1, forward_batch_size=3)
    for trainer in (a, b):  # plain SGD: Adam's first step (≈ lr·sign(g)) would amplify float noise near g = 0
        trainer.optimizer = torch.optim.SGD([p for g in trainer.optimizer.param_groups for p in g["params"]], lr=1.0)
    before = [p.clone() for p in a.policy.parameters()]
    for trainer in (a, b):
        torch.manual_seed(0)  # the same samples for both
        trainer.step(PROMPTS)
    moved = 0.0
    for (name, pa), pb, p0 in zip(a.policy.named_parameters(), b.policy.parameters(), before):
        assert torch.allclose(pa, pb, atol=1e-5), name
        moved = max(moved, float((pa - p0).detach().abs().max()))
    assert moved > 1e-3  # the step did change the policy
    assert torch.allclose(a.value_model.linear.weight, b.value_model.linear.weight, atol=1e-5)


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_whitening_only_scales_group_advantages(algorithm):
    def reward(prompts, responses, references=None):
        # "the movie": every sample scores 1, so its group carries no signal; "a film": the response's length
        return torch.tensor([1.0 if p == "the movie" else float(len(r)) for p, r in zip(prompts, responses)])

    batches = []
    for whiten in (False, True):
        trainer = make_trainer(algorithm, reward=reward, kl_coef=0.0, prompts_per_step=2, whiten_advantages=whiten)
        experience, _ = trainer.make_experience(["the movie", "a film"])
        batches.append((experience.advantages, experience.mask))
    (raw, mask), (whitened, _) = batches
    assert mask[:4].sum(dim=1).unique().numel() > 1  # responses of several lengths: a token-weighted shift would show
    assert torch.equal(whitened[:4], torch.zeros_like(whitened[:4]))  # no signal stays no signal
    valid = mask.bool() & (raw != 0)
    ratio = whitened[valid] / raw[valid]
    assert valid.any() and torch.allclose(ratio, ratio[0].expand_as(ratio)) and ratio[0] > 0  # one positive scale


def test_kl_penalty_keeps_the_policy_closer():
    free = run(make_trainer("reinforce", kl_coef=0.0), 15)
    tied = run(make_trainer("reinforce", kl_coef=0.5), 15)
    assert sum(m["kl/ref"] for m in tied[-5:]) < 0.5 * sum(m["kl/ref"] for m in free[-5:])


def test_kl_in_the_loss_with_adaptive_coefficient():
    trainer = make_trainer("grpo", kl_in="loss", kl_estimator="k3", kl_coef=0.1, kl_target=0.1, kl_horizon=100)
    history = run(trainer, 12)
    assert all("loss/kl" in m for m in history)
    # the KL overshoots a tiny target, so β must have grown
    assert history[-1]["kl/ref"] > 0.1 and trainer.kl_controller.value > 0.1


def test_shape_rewards_by_hand():
    trainer = make_trainer("reinforce", kl_coef=0.5, truncation_penalty=1.0, whiten_rewards=True,
                           entropy_coef=0.1, entropy_in="reward")
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    rollout = Rollout(torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1), torch.zeros(2, 3, dtype=torch.long),
                      mask, torch.tensor([False, True]))
    scores = torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 2.0]])
    kl = torch.tensor([[0.2, 0.4, 0.0], [0.0, 0.2, 0.2]])
    logprobs = torch.tensor([[-1.0, -2.0, 0.0], [-1.0, -1.0, -1.0]])
    rewards = trainer.shape_rewards(scores, rollout, kl, logprobs)
    # totals after the truncation penalty: 3 and 2 - 1 = 1; whitened: mean 2, std sqrt(2) -> (+1, -1)/sqrt 2
    # then -0.5 * kl and +0.1 * (-logprob) per token
    s = 2 ** 0.5
    expected = torch.tensor([[0 - 0.1 + 0.1, 3 / s - 2 / s - 0.2 + 0.2, 0.0],
                             [0.0 - 0.0 + 0.1, 0.0 - 0.1 + 0.1, 1 / s - 2 / s - 0.1 + 0.1]])
    assert torch.allclose(rewards, expected, atol=1e-5), rewards


def test_dense_reward_functions_lay_out_their_own_tokens():
    class Dense:
        def __call__(self, prompts, responses, references=None, finished=None):
            return torch.tensor([float(len(r.split())) for r in responses])

        def token_rewards(self, prompts, responses, references=None, *, response_token_ids, tokenizer, finished):
            assert len(finished) == len(responses)
            return [torch.ones(len(ids)) for ids in response_token_ids]

    trainer = make_trainer("reinforce", reward=Dense())
    rollout = trainer.generate(PROMPTS)
    texts = [""] * len(PROMPTS)
    tokens = trainer.score_tokens(trainer.reward_fn, PROMPTS, texts, rollout, None)
    assert torch.equal(tokens, rollout.response_mask)


def test_lora_policy_uses_its_base_as_reference():
    peft = pytest.importorskip("peft")
    tokenizer = toy_tokenizer()
    base = toy_policy(tokenizer, seed=0)
    frozen = copy.deepcopy(base)
    policy = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    cfg = RLConfig(algorithm="ppo", learning_rate=1e-2, value_learning_rate=1e-2, max_new_tokens=6,
                   prompts_per_step=8, kl_coef=0.01, epochs=2)
    torch.manual_seed(0)
    trainer = RLTrainer(cfg, policy, tokenizer, yes_fraction)
    run(trainer, 5)
    experience = trainer.last_experience
    rollout, mask = experience.rollout, experience.rollout.response_mask.bool()
    moved = (experience.old_logprobs - experience.ref_logprobs).abs()[mask].mean()
    assert moved > 0.01  # the adapters changed the policy, not the reference
    from rewardkit.rl.rollout import forward_responses
    with torch.no_grad():
        expected = forward_responses(frozen.eval(), rollout).logprobs
    assert torch.allclose(trainer.reference_logprobs(rollout)[mask], expected[mask], atol=1e-5)


def test_separate_critic_from_a_reward_model():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from rewardkit.rl.critic import TokenCritic

    tokenizer = toy_tokenizer()
    torch.manual_seed(5)
    rm = LlamaForSequenceClassification(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                                    num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                                    num_labels=1, pad_token_id=tokenizer.pad_token_id))
    policy = toy_policy(tokenizer)
    cfg = RLConfig(algorithm="actor_critic", learning_rate=3e-3, value_learning_rate=1e-2, max_new_tokens=6,
                   prompts_per_step=8)
    trainer = RLTrainer(cfg, policy, tokenizer, yes_fraction, reference=copy.deepcopy(policy),
                        critic=TokenCritic(rm))
    before = rm.score.weight.clone()
    metrics = run(trainer, 3)[-1]
    assert "value/explained_variance" in metrics and not torch.equal(before, rm.score.weight)


def test_critic_from_a_reward_model_folder_must_share_the_tokenizer(tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from rewardkit.models.presets import resolve_tokenizer_path
    from rewardkit.rl.critic import TokenCritic

    tokenizer = toy_tokenizer()
    rm = LlamaForSequenceClassification(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                                    num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                                    num_labels=1, pad_token_id=tokenizer.pad_token_id))
    rm.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    critic = TokenCritic.from_pretrained(str(tmp_path / "rm"), tokenizer)
    assert torch.equal(critic.model.score.weight, rm.score.weight)
    other = AutoTokenizer.from_pretrained(resolve_tokenizer_path("smollm2-135m"))
    with pytest.raises(RewardkitError, match="tokenizer differs"):
        TokenCritic.from_pretrained(str(tmp_path / "rm"), other)


def test_unusable_combinations_are_user_errors():
    with pytest.raises(RewardkitError, match="samples-per-prompt"):
        make_trainer("grpo", samples_per_prompt=1)
    with pytest.raises(RewardkitError, match="epochs"):
        make_trainer("reinforce", epochs=3)
    with pytest.raises(RewardkitError, match="minibatch-size 2 below the step's 16 samples"):
        make_trainer("rloo", minibatch_size=2)
    make_trainer("rloo", minibatch_size=16)  # one update per step: on-policy
    make_trainer("grpo", minibatch_size=2)   # the clipped ratio corrects for the older policy
    with pytest.raises(RewardkitError, match="kl-estimator k3 or k2"):
        make_trainer("grpo", kl_in="loss")
    with pytest.raises(RewardkitError, match="watch-window must be at least 2"):
        make_trainer("reinforce", watch_window=1)


def test_dense_reward_spec_sums_to_the_sparse_reward(tmp_path):
    """A reward spec in dense mode hands out per-token rewards aligned to the policy's tokens; they sum to the
    sparse reward, so only the credit assignment changes."""
    from rewardkit.rewards.spec import load_reward

    spec = "mode: {mode}\ncomponents:\n  - {{type: custom, function: 'tests.rl.conftest:yes_fraction'}}\n"
    (tmp_path / "dense.yaml").write_text(spec.format(mode="dense"))
    (tmp_path / "sparse.yaml").write_text(spec.format(mode="sparse"))
    dense = make_trainer("reinforce", reward=load_reward(str(tmp_path / "dense.yaml")))
    torch.manual_seed(1)
    rollout = dense.generate(PROMPTS)
    from rewardkit.rl.rollout import decode_responses
    texts = decode_responses(dense.tokenizer, rollout)
    dense_tokens = dense.score_tokens(dense.reward_fn, PROMPTS, texts, rollout, None)
    sparse_fn = load_reward(str(tmp_path / "sparse.yaml"))
    sparse_tokens = dense.score_tokens(sparse_fn, PROMPTS, texts, rollout, None)
    assert torch.allclose(dense_tokens.sum(1), sparse_tokens.sum(1), atol=1e-5)
    assert torch.allclose(sparse_tokens.sum(1), yes_fraction(PROMPTS, texts), atol=1e-6)
    last = rollout.lengths.long() - 1
    off_last = dense_tokens.clone()
    off_last[torch.arange(len(last)), last] = 0
    assert (sparse_tokens.sum(1) > 0).any()  # some "yes" was sampled with this seed
    assert off_last.abs().sum() > 0  # dense: credit lands on the tokens that earned it, not only the last
    assert (dense_tokens * (1 - rollout.response_mask)).abs().sum() == 0
    metrics = dense.step(PROMPTS)
    assert metrics["reward/proxy"] == metrics["reward/proxy"]


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_first_update_starts_on_policy(algorithm):
    """Before any update the ratio π/π_old must be 1 everywhere: the log-probs recorded while sampling (GRPO) or by
    the no-grad forward (PPO) equal those of the update's forward, whatever the chunking and padding."""
    trainer = make_trainer(algorithm, forward_batch_size=3)
    prompts = PROMPTS if trainer.cfg.samples_per_prompt == 1 else PROMPTS[:4]
    experience, _ = trainer.make_experience(prompts)
    _, stats = trainer.chunk_loss(experience, torch.tensor([5, 0, 2]))
    assert stats["policy/clip_fraction"] == 0.0
    assert abs(stats["policy/approx_kl"]) < 1e-6


def test_evaluation_leaves_the_running_reward_normalizers_as_training_left_them():
    from rewardkit.rewards.spec import build_reward

    spec = {"components": [{"type": "custom", "function": "tests.rl.conftest:yes_fraction", "normalize": "running"}]}
    trainer = make_trainer("reinforce", reward=build_reward(spec))
    trainer.gold_fn = build_reward(spec)
    run(trainer, 1)
    before = {"proxy": trainer.reward_fn.state_dict(), "gold": trainer.gold_fn.state_dict()}
    assert before["proxy"]["custom"]["running"]["count"] == 8  # the step's 8 responses
    trainer.evaluate(PROMPTS[:3], samples_per_prompt=2)
    assert trainer.reward_fn.state_dict() == before["proxy"] and trainer.gold_fn.state_dict() == before["gold"]
