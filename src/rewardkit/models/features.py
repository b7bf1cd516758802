"""Features of texts from a frozen backbone, computed once and cached on disk (`train-rm --frozen`).

A text's feature is what the reward head reads: `RewardModel.pooled_states` (the pooling, and the mean of a range of
layers when `feature_layers` is set), computed under `torch.no_grad` in the placement's inference precision (bf16
working weights where `auto` picks bf16: exactly what `score`, `serve` and `eval-rm` load), in batches of similar
length (longest first), and stored in fp32.

The cache (`FeatureCache`) is a folder per setting under `$REWARDKIT_CACHE/features` (default
`~/.cache/rewardkit/features`, the cache folder of the presets and of the CPU's bf16 measurement). A setting is the
backbone's identity (a digest of every weight and buffer below the reward head, and of its config), the pooling, the
layer range, the precision, the device type and the torch version; inside it, a text is keyed by a digest of its exact
token ids (and token types, and for `response` pooling where its response starts), so any recipe that tokenizes a
text alike (same max_length, chat template, truncation) reads its feature back, whatever the split, the head or the
order. Features are written in chunk files, each to a temporary name and then renamed: a reader sees whole chunks only,
two runs filling one setting at once only duplicate work, and a run that stops mid-way keeps the chunks it wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from rewardkit.device import Placement, on_host
from rewardkit.errors import RewardkitError
from rewardkit.models.precision import scoring_in
from rewardkit.runs import cache_dir
from rewardkit.models.heads import head_modules
from rewardkit.models.reward_model import RewardModel
from rewardkit.models.tokenization import Encoded

FORMAT = 1  # bump when what a cached feature means changes
KEY_BYTES = 16
CHUNK_TEXTS = 2048  # computed features are written every this many texts


def parse_feature_layers(spec: str, num_layers: int) -> tuple[int, int] | None:
    """`--feature-layers` as (first, last), inclusive (0 the embeddings, `num_layers` the last layer); None when
    empty. One-line errors for anything else."""
    spec = (spec or "").strip()
    if not spec:
        return None
    parts = spec.split("-")
    try:
        first, last = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (None, None)
    except ValueError:
        first = last = None
    if first is None or not 0 <= first <= last <= num_layers:
        raise RewardkitError(f"--feature-layers {spec!r}: give FIRST-LAST or N with 0 <= FIRST <= LAST <= "
                             f"{num_layers} (0 is the embeddings, {num_layers} the backbone's last layer)")
    return first, last


def default_cache_root() -> Path:
    return cache_dir() / "features"


def cache_root_of(option: str) -> Path | None:
    """The cache folder `--feature-cache` names: auto (the default folder), off (None) or a path."""
    option = (option or "auto").strip()
    if option.lower() == "off":
        return None
    return default_cache_root() if option.lower() == "auto" else Path(option).expanduser()


# config keys that do not change a backbone's hidden states (labels, names, dropout: features run in eval mode)
_IRRELEVANT_CONFIG = ("id2label", "label2id", "num_labels", "problem_type", "_name_or_path", "name_or_path",
                      "transformers_version", "architectures", "auto_map", "pad_token_id", "dtype", "torch_dtype",
                      "rewardkit_pooling", "rewardkit_feature_layers", "rewardkit_head", "output_hidden_states")


def backbone_digest(model: RewardModel) -> str:
    """A digest of what a text's features depend on in the backbone: every parameter and buffer outside the reward
    head (at full precision), and the config without its labels, names and dropout rates."""
    hf = model.model
    head = {id(t) for module in head_modules(hf) for t in [*module.parameters(), *module.buffers()]}
    digest = hashlib.sha256()
    config = {k: v for k, v in hf.config.to_dict().items()
              if k not in _IRRELEVANT_CONFIG and "dropout" not in k}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    seen: set[int] = set()
    with on_host():
        for name, tensor in [*hf.named_parameters(), *hf.named_buffers()]:
            if id(tensor) in head or id(tensor) in seen:
                continue
            seen.add(id(tensor))
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def text_key(encoded: Encoded, with_response_start: bool) -> bytes:
    """A digest of a text's exact tokens (ids, token types, and where its response starts when the pooling reads
    the response only)."""
    digest = hashlib.blake2b(digest_size=KEY_BYTES)
    digest.update(json.dumps([encoded.input_ids, encoded.token_type_ids,
                              encoded.response_start if with_response_start else None]).encode())
    return digest.digest()


@dataclass
class ExtractionStats:
    texts: int
    distinct: int
    read: int
    computed: int
    seconds: float
    precision: str
    cache: str | None

    def describe(self) -> str:
        where = f"cache {self.cache}" if self.cache else "no cache"
        return (f"features of {self.texts} texts ({self.distinct} distinct): {self.read} read from the cache, "
                f"{self.computed} computed by the backbone in {self.precision}, {self.seconds:.1f} s ({where})")


class FeatureCache:
    """Cached features of one setting (see the module's docstring): `read(keys)` and `write(keys, features)`."""

    def __init__(self, root: Path, setting: dict):
        self.setting = setting
        name = hashlib.sha256(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:32]
        self.folder = Path(root) / name
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            info = self.folder / "setting.json"
            if not info.exists():
                self._replace(info, lambda tmp: tmp.write_text(json.dumps(setting, indent=2, sort_keys=True) + "\n"))
        except OSError as error:
            raise RewardkitError(f"--feature-cache {root}: cannot write there ({error.strerror}); give another "
                                 f"folder or off") from None

    @staticmethod
    def _replace(target: Path, write) -> None:
        """Write through a temporary sibling, then rename: readers never see a partial file."""
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            write(tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def read(self, keys: Sequence[bytes]) -> dict[bytes, torch.Tensor]:
        """The cached features [hidden] (fp32) of those `keys` that are cached."""
        from safetensors import SafetensorError, safe_open

        wanted, found = set(keys), {}
        with on_host():
            for chunk in sorted(self.folder.glob("chunk-*.safetensors")):
                if len(found) == len(wanted):
                    break
                try:
                    with safe_open(str(chunk), framework="pt") as f:
                        chunk_keys = [bytes(row) for row in f.get_tensor("keys").numpy()]
                        rows = [i for i, k in enumerate(chunk_keys) if k in wanted and k not in found]
                        if rows:
                            features = f.get_tensor("features")
                            for i in rows:
                                found[chunk_keys[i]] = features[i].clone()
                except (OSError, SafetensorError, KeyError) as error:  # a damaged chunk: computed again
                    print(f"rewardkit: skipping unreadable feature chunk {chunk} ({error})", file=sys.stderr)
        return found

    def write(self, keys: Sequence[bytes], features: torch.Tensor) -> None:
        from safetensors.torch import save_file

        if not keys:
            return
        with on_host():
            tensors = {"keys": torch.tensor([list(k) for k in keys], dtype=torch.uint8),
                       "features": features.detach().to("cpu", torch.float32).contiguous()}
        target = self.folder / f"chunk-{time.time_ns()}-{secrets.token_hex(4)}.safetensors"
        try:
            self._replace(target, lambda tmp: save_file(tensors, str(tmp)))
        except OSError as error:  # a full disk costs the cache, not the run
            print(f"rewardkit: could not cache features in {self.folder} ({error.strerror})", file=sys.stderr)


def feature_setting(model: RewardModel, placement: Placement) -> dict:
    """What a cached feature depends on besides its text's tokens."""
    return {"format": FORMAT, "backbone": backbone_digest(model), "pooling": model.pooling,
            "feature_layers": list(model.feature_layers) if model.feature_layers else None,
            "precision": placement.precision, "device_type": placement.device_type, "torch": torch.__version__}


@torch.no_grad()
def extract_features(model: RewardModel, encoded: Sequence[Encoded], placement: Placement, batch_size: int = 64,
                     cache_root: Path | None = None, progress: bool = False) -> tuple[torch.Tensor, ExtractionStats]:
    """Features [N, hidden] (fp32, on the CPU) of `encoded` texts, in order: read from the cache where there, else
    computed by the frozen backbone in `placement`'s precision (and cached)."""
    started = time.perf_counter()
    response = model.pooling == "response"
    keys = [text_key(e, response) for e in encoded]
    distinct = list(dict.fromkeys(keys))
    cache = FeatureCache(cache_root, feature_setting(model, placement)) if cache_root is not None else None
    found = cache.read(distinct) if cache is not None else {}
    first = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    missing = sorted((k for k in distinct if k not in found), key=lambda k: -len(encoded[first[k]].input_ids))
    bar = None
    if progress and missing:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(missing), desc="features", unit="text", dynamic_ncols=True)
    was_training = model.model.training
    model.model.eval()
    pending_keys, pending = [], []
    weights = scoring_in([model], placement.weights_dtype) if placement.mixed else contextlib.nullcontext()
    try:
        with weights:
            for start in range(0, len(missing), batch_size):
                batch_keys = missing[start:start + batch_size]
                batch = model.collate([encoded[first[k]] for k in batch_keys])
                pooled = model.pooled_states(**batch).float()
                with on_host():
                    pooled = pooled.cpu()
                for key, row in zip(batch_keys, pooled):
                    found[key] = row
                pending_keys += batch_keys
                pending.append(pooled)
                if cache is not None and len(pending_keys) >= CHUNK_TEXTS:
                    cache.write(pending_keys, torch.cat(pending))
                    pending_keys, pending = [], []
                if bar is not None:
                    bar.update(len(batch_keys))
        if cache is not None and pending_keys:
            cache.write(pending_keys, torch.cat(pending))
    finally:
        if bar is not None:
            bar.close()
        model.model.train(was_training)
    with on_host():
        if not encoded:
            features = torch.empty(0, model.model.config.hidden_size)
        else:
            features = torch.stack([found[k] for k in keys]).float()
    stats = ExtractionStats(len(encoded), len(distinct), len(distinct) - len(missing), len(missing),
                            time.perf_counter() - started, placement.precision,
                            str(cache.folder) if cache is not None else None)
    return features, stats
