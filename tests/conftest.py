"""Shared fixtures: tiny random reward models built from configs (fast), real tokenizers from pip packages, and the
location of the shared human-feedback data (read in place, never copied)."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def kill_once_written(argv: list[str], ready: Path, timeout: float = 180, **popen_kwargs) -> None:
    """Run `argv` until `ready` exists (e.g. a checkpoint folder), then SIGKILL it: a crash mid-run, for resume tests."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen_kwargs)
    deadline = time.time() + timeout
    while time.time() < deadline and not ready.exists():
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


def inference_precision() -> str:
    """The precision `--precision auto` gives on this machine: what `RewardModel.from_pretrained` and every command
    score in (bf16 where the CPU has bf16 units or under REWARDKIT_CPU_BF16_UNITS=1, fp32 under =0 or without)."""
    from rewardkit.device import choose_placement

    return choose_placement("cpu").precision


# The largest difference between the rewards of one text scored by two paths in one precision, as a share of the
# largest |reward| compared. fp32: summation order only. bf16 keeps 8 significant bits (a rounding of 2^-9 relative
# per operation); a text batched with other texts, packed or padded, rounds differently through every layer, which
# moved rewards by up to 1.4% of the largest (minilm-l6) and 4.1% (smollm2-135m, 30 layers); tiny test models stay
# under 2%, so 2^-5 (3.1%) holds with room and still tells texts apart whose rewards differ by more.
RELATIVE_TOLERANCE = {"fp32": 1e-5, "bf16": 2 ** -5}


def reward_tolerance(*rewards, precision: str | None = None) -> float:
    """Absolute tolerance for comparing rewards (lists, tensors or floats) computed in `precision` (default: this
    machine's inference precision) by two scoring paths: RELATIVE_TOLERANCE of the largest |reward| (in fp32 at least
    that of a reward of 1: the absolute 1e-5 the suite always used)."""
    import torch

    precision = precision or inference_precision()
    values = torch.cat([torch.as_tensor(r, dtype=torch.float64).reshape(-1) for r in rewards])
    scale = float(values.abs().max()) if len(values) else 0.0
    return RELATIVE_TOLERANCE[precision] * (max(scale, 1.0) if precision == "fp32" else max(scale, 1e-6))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def build_tiny_reward_model(kind: str, seed: int = 0, pooling: str | None = None, **config_overrides):
    """A random 2-layer BERT (minilm tokenizer) or Llama (SmolLM2 tokenizer, chat template, pad == eos) reward model,
    reading its reward with `pooling` (None: the backbone's own)."""
    import torch
    from transformers import (AutoTokenizer, BertConfig, BertForSequenceClassification, LlamaConfig,
                              LlamaForSequenceClassification)

    from rewardkit.models import RewardModel
    from rewardkit.models.presets import resolve_tokenizer_path

    torch.manual_seed(seed)
    if kind == "bert":
        tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer_path("minilm-l6"))
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=512, num_labels=1,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **config_overrides)
        model = BertForSequenceClassification(config)
    elif kind == "llama":
        tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer_path("smollm2-135m"))
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             num_key_value_heads=1, intermediate_size=64, max_position_embeddings=1024,
                             num_labels=1, pad_token_id=tokenizer.pad_token_id, **config_overrides)
        model = LlamaForSequenceClassification(config)
    else:
        raise ValueError(kind)
    return RewardModel(model, tokenizer, max_length=128, pooling=pooling)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A saved tiny BERT reward model folder (loadable by RewardModel.from_pretrained and plain transformers)."""
    path = tmp_path_factory.mktemp("tiny-bert-rm")
    build_tiny_reward_model("bert").save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A saved tiny Llama reward model folder with the SmolLM2 tokenizer (chat template, pad == eos)."""
    path = tmp_path_factory.mktemp("tiny-llama-rm")
    build_tiny_reward_model("llama").save_pretrained(path)
    return path


def _with_scaled_head(rm, factor: float = 200.0):
    """`rm` with its reward head's output layer scaled by `factor`: rewards spread beyond a random head's ~0.01."""
    import torch

    with torch.no_grad():
        (rm.model.score if rm.is_decoder else rm.model.classifier).weight.mul_(factor)
    return rm


def build_varied_reward_model(seed: int = 1):
    """The tiny random BERT with a scaled-up head, so that different texts get clearly different scores (and models
    of different seeds clearly different scores for one text)."""
    return _with_scaled_head(build_tiny_reward_model("bert", seed=seed))


def save_varied_ensemble(out: Path, members) -> Path:
    """`members` (reward models of one backbone and pooling) saved in `out` as a train-rm --ensemble folder."""
    from rewardkit.models.ensemble import average_state_dicts, member_dir, save_ensemble

    folders = [member_dir(out, k) for k in range(len(members))]
    for member, folder in zip(members, folders):
        member.save_pretrained(folder)
    average = copy.deepcopy(members[0])  # the members' backbone and pooling, with their mean weights
    average.model.load_state_dict(average_state_dicts([m.model.state_dict() for m in members]))
    save_ensemble(out, folders, average)
    return out


@pytest.fixture(scope="session")
def varied_bert_dir(tmp_path_factory) -> Path:
    """`build_varied_reward_model()` saved."""
    path = tmp_path_factory.mktemp("varied-bert-rm")
    build_varied_reward_model().save_pretrained(path)
    return path


def build_distinct_reward_model(seed: int = 2, kind: str = "bert"):
    """A tiny random BERT (or Llama) reading its reward from the mean of its token states, with a head scaled up as
    the varied model's: its rewards move with the text by a good share of their size, so that texts stay told apart
    at bf16's `reward_tolerance` (3.1% of the largest |reward|). A random model's CLS or last-token state barely
    moves with the text: the varied model's rewards differ by about 1% of their size from text to text, less than
    the bf16 tolerance; a mean over the tokens spreads them over 10-50% of the largest."""
    return _with_scaled_head(build_tiny_reward_model(kind, seed=seed, pooling="mean"))


@pytest.fixture(scope="session")
def distinct_bert_dir(tmp_path_factory) -> Path:
    """`build_distinct_reward_model()` saved."""
    path = tmp_path_factory.mktemp("distinct-bert-rm")
    build_distinct_reward_model().save_pretrained(path)
    return path


def min_gap(*rewards) -> float:
    """The smallest difference between two of `rewards` (lists, tensors or floats, pooled): more than twice the
    `reward_tolerance` tells every text apart from every other however the two scoring paths round."""
    import torch

    values = torch.cat([torch.as_tensor(r, dtype=torch.float64).reshape(-1) for r in rewards]).sort().values
    return float(values.diff().min())


def figure_tolerance(bound: float, fp32: float) -> float:
    """Tolerance for a figure (a mean, a std) computed from the rewards of two scoring paths: `bound`, how far the
    reward tolerance lets the figure move, in bf16; in fp32 the tighter `fp32` the test has always used (two fp32
    paths differ by summation order only, far less than the reward tolerance's floor of 1e-5)."""
    return fp32 if inference_precision() == "fp32" else bound


def outcome_bounds(chosen, rejected, tol: float):
    """The lowest and the highest per-pair credit (as `metrics.pair_outcomes`: 1, 0.5 on a tie, 0) of rewards that
    each lie within `tol` of `chosen` and `rejected`: a pair whose margin is within 2 * tol may go either way on
    another scoring path, every other pair keeps its credit. The accuracy of the other path lies between the means of
    the two, and so does any figure that grows with the credits (a bootstrap interval's ends); when no pair is that
    close (fp32, or rewards that differ clearly) the two bounds are the credits themselves."""
    import numpy as np

    from rewardkit.eval import metrics

    chosen, rejected = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (chosen, rejected))
    outcomes = metrics.pair_outcomes(chosen, rejected)
    open_ = np.abs(chosen - rejected) <= 2 * tol
    return np.where(open_, 0.0, outcomes), np.where(open_, 1.0, outcomes)


def rank_correlation_tolerance(scores, tol: float) -> float:
    """How far a Spearman correlation of `scores` with fixed values can move when each score moves by up to `tol`:
    0 when no two scores are within 2 * tol (their ranks are settled), else 2 * |rank changes| / |centred ranks|, the
    rank of a score changing by at most the number of others within 2 * tol of it (the correlation is a cosine of
    centred ranks: moving one unit vector by d moves its cosine with another by at most d)."""
    import numpy as np

    from rewardkit.eval import metrics

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    close = np.abs(scores[:, None] - scores[None, :]) <= 2 * tol
    np.fill_diagonal(close, False)
    moves = close.sum(axis=1)
    if not moves.any():
        return 0.0
    ranks = metrics.average_ranks(scores)
    return float(2 * np.linalg.norm(moves) / np.linalg.norm(ranks - ranks.mean()))
