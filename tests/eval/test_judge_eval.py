"""`eval-rm --judge`: a judge evaluated on preference pairs like a reward model, with position bias (scripted
stand-in judges with hand-set probabilities, and a real tiny transformers model end to end)."""

import json
import math

import pytest

from rewardkit.cli import main
from rewardkit.errors import RewardkitError
from rewardkit.eval.command import EvalConfig, load_dataset
from rewardkit.eval.judging import judge_dataset, position_bias
from rewardkit.rewards.judge import LLMJudge
from tests.rewards.helpers import ScriptedLM, shown_as_a

PAIRS = [("Capital of France?", "Paris.", "Lyon, a large city in the south-east of France."),
         ("Capital of Italy?", "Rome.", "Milan is where the fashion is."),
         ("Capital of Spain?", "Madrid is the capital.", "Seville."),
         ("2+2?", "4", "5, since addition is commutative.")]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from rewardkit.models.presets import resolve_tokenizer_path

    return AutoTokenizer.from_pretrained(resolve_tokenizer_path("smollm2-135m"))


@pytest.fixture()
def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n" for p, c, r in PAIRS))
    return path


def test_position_bias_figures_by_hand():
    # P_A with the chosen response shown first, then second
    figures = position_bias([0.9, 0.6, 0.5, 0.2], [0.7, 0.3, 0.5, 0.1])
    assert figures["picks_a_chosen_first"] == 0.5 and figures["picks_a_rejected_first"] == 0.25
    assert figures["picks_a"] == 0.375
    assert figures["accuracy_chosen_first"] == 0.625  # right, right, a tie (half), wrong
    assert figures["accuracy_rejected_first"] == 0.625  # wrong, right, a tie, right
    assert figures["consistent"] == 0.25  # only pair 2 picks the same response in both orders
    assert figures["mean_p_a_chosen_first"] == pytest.approx(0.55, abs=1e-12)


def test_a_judge_that_always_says_a_is_at_chance_with_total_position_bias(tokenizer, pairs_file):
    cfg = EvalConfig(paths=[str(pairs_file)], judge="scripted")
    data = load_dataset(str(pairs_file), None, "pairs", cfg)
    judge = LLMJudge.from_model(ScriptedLM(tokenizer, lambda text: {"A": 0.8, "B": 0.2}), tokenizer, mode="pairwise")
    scored, forward, backward = judge_dataset(data, judge, cfg)
    chosen, rejected = scored.scores[0]
    assert chosen.tolist() == [0.0] * 4 and rejected.tolist() == [0.0] * 4  # P = 0.5 exactly: ties
    assert position_bias(forward, backward)["picks_a"] == 1.0
    assert position_bias(forward, backward)["consistent"] == 0.0


def test_a_biased_judge_scores_like_a_reward_model(tokenizer, pairs_file):
    # prefers the shorter response; P_A = 0.9 when the shorter is A, 0.6 when it is B (leans to A)
    def probabilities(text):
        a = shown_as_a(text)
        b = text.split("[Response B]\n", 1)[1].split("\n\n", 1)[0]
        return {"A": 0.9, "B": 0.1} if len(a) < len(b) else {"A": 0.6, "B": 0.4}

    cfg = EvalConfig(paths=[str(pairs_file)], judge="scripted")
    data = load_dataset(str(pairs_file), None, "pairs", cfg)
    judge = LLMJudge.from_model(ScriptedLM(tokenizer, probabilities), tokenizer, mode="pairwise")
    scored, forward, backward = judge_dataset(data, judge, cfg)
    chosen, rejected = scored.scores[0]
    # the chosen response is shorter in pairs 1, 2 and 4: P = 0.5 + (0.9 − 0.6)/2 = 0.65; pair 3: 0.35
    expected = [0.65, 0.65, 0.35, 0.65]
    assert [1 / (1 + math.exp(-(c - r))) for c, r in zip(chosen, rejected)] == pytest.approx(expected, abs=1e-6)
    assert forward == pytest.approx([0.9, 0.9, 0.6, 0.9], abs=1e-6)
    figures = position_bias(forward, backward)
    assert figures["picks_a_chosen_first"] == 1.0 and figures["picks_a_rejected_first"] == 1.0


@pytest.fixture(scope="module")
def tiny_judge_dir(tmp_path_factory, tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(11)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    folder = tmp_path_factory.mktemp("tiny-judge")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_eval_rm_judge_end_to_end(tiny_judge_dir, pairs_file, tmp_path, capsys):
    assert main(["eval-rm", "--judge", str(tiny_judge_dir), str(pairs_file), "--json", "--precision", "fp32",
                 "--device", "cpu", "--report", str(tmp_path / "report")]) == 0
    results = json.loads(capsys.readouterr().out)
    entry = results["datasets"]["pairs"]
    judge = LLMJudge(model=str(tiny_judge_dir), mode="pairwise", device="cpu", precision="fp32")
    values, forward, backward = judge.preferences(*zip(*PAIRS))
    right = [1.0 if v > 0.5 else 0.5 if v == 0.5 else 0.0 for v in values]
    assert entry["accuracy"] == pytest.approx(sum(right) / 4, abs=1e-12)
    assert entry["n"] == 4 and "prefers_longer" in entry and "length_correlation" in entry
    bias = entry["position_bias"]
    assert bias["mean_p_a_chosen_first"] == pytest.approx(sum(o.score for o in forward) / 4, abs=1e-5)
    assert bias["mean_p_a_rejected_first"] == pytest.approx(sum(o.score for o in backward) / 4, abs=1e-5)
    assert results["models"][0]["judge"]["method"] == "probabilities"
    assert results["models"][0]["placement"]["precision"] == "fp32"
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Position bias" in html and "picks A (chosen first)" in html
    assert main(["eval-rm", "--judge", str(tiny_judge_dir), str(pairs_file), "--precision", "fp32"]) == 0
    text = capsys.readouterr().out
    assert "picks A (rejected first)" in text and "8 verdicts (4 pairs, both orders)" in text


def test_judge_bad_input_is_one_line(tmp_path, pairs_file, capsys):
    spec = tmp_path / "judge.yaml"
    spec.write_text("url: http://127.0.0.1:1/v1\nmodel: m\nmode: pointwise\n")
    with pytest.raises(RewardkitError, match=r"judge.yaml: eval-rm --judge compares .* must be pairwise"):
        from rewardkit.eval.command import run_eval

        run_eval(EvalConfig(paths=[str(pairs_file)], judge=str(spec)))
    ratings = tmp_path / "ratings.jsonl"
    ratings.write_text(json.dumps({"prompt": "q", "response": "a", "score": 3}) + "\n")
    spec.write_text("url: http://127.0.0.1:1/v1\nmodel: m\n")
    with pytest.raises(RewardkitError, match="evaluates preference pairs; this data holds ratings"):
        run_eval(EvalConfig(paths=[str(ratings)], judge=str(spec)))
