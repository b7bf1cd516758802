"""The config system: one dataclass filled from flags and YAML alike."""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from rewardkit.cli import COMMANDS
from rewardkit.config import option, parse_config
from rewardkit.errors import RewardkitError


@dataclass
class Example:
    """An example command."""

    name: str = option("x", "a name (keeps 95% of its meaning)")
    count: int = option(3, "how many")
    ratio: float | None = option(None, "an optional ratio")
    flag: bool = option(False, "a switch")
    items: list[str] = option([], "some items")


def test_help_with_percent_sign_renders(capsys):
    with pytest.raises(SystemExit):
        parse_config(Example, ["--help"])
    assert "95% of its meaning" in capsys.readouterr().out


def test_flags_and_yaml_agree_and_flags_win(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("name: y\ncount: 5\nflag: true\nitems: [a, b]\nratio: 0.5\n")
    from_yaml = parse_config(Example, ["--config", str(config)])
    assert from_yaml == Example(name="y", count=5, ratio=0.5, flag=True, items=["a", "b"])
    assert from_yaml == parse_config(Example, ["--name", "y", "--count", "5", "--flag", "--items", "a", "b",
                                               "--ratio", "0.5"])
    assert parse_config(Example, ["--config", str(config), "--count", "7", "--no-flag"]).count == 7


@dataclass
class Renamed:
    """A command whose option was renamed."""

    lora_rank: int = option(0, "a rank", formerly=("lora_r",))


def test_a_renamed_option_is_still_read_under_its_old_name(tmp_path):
    assert parse_config(Renamed, ["--lora-r", "4"]) == parse_config(Renamed, ["--lora-rank", "4"]) == Renamed(4)
    config = tmp_path / "c.yaml"
    config.write_text("lora_r: 8\n")
    assert parse_config(Renamed, ["--config", str(config)]).lora_rank == 8
    config.write_text("lora_r: 8\nlora-rank: 4\n")  # both names in one file: which one was meant?
    with pytest.raises(RewardkitError, match="c.yaml: option 'lora-rank' is given twice"):
        parse_config(Renamed, ["--config", str(config)])


def test_one_option_has_one_name_across_commands():
    """An option that several commands take is spelled alike in each (the old spellings live on as `formerly`)."""
    import dataclasses
    import importlib

    def config_class(where: str):
        module, name = where.split(":")
        return getattr(importlib.import_module(module), name)

    spellings = {f.name for where, _, _ in COMMANDS.values() for f in dataclasses.fields(config_class(where))}
    for old, new in (("lora_r", "lora_rank"), ("lora_target_modules", "lora_targets"),
                     ("bootstrap_samples", "bootstrap_resamples")):
        assert old not in spellings and new in spellings


@pytest.mark.parametrize("text, message", [
    ("count: many\n", "count must be an integer"),
    ("colour: red\n", "unknown option 'colour'"),
    ("flag: maybe\n", "flag must be true or false"),
    ("count: [1\n", r"c.yaml:\d+: invalid YAML"),
    ("- a\n", "expected a mapping"),
])
def test_bad_yaml_is_a_one_line_error_naming_the_file(tmp_path, text, message):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(RewardkitError, match=message) as info:
        parse_config(Example, ["--config", str(config)])
    assert "\n" not in str(info.value) and "c.yaml" in str(info.value)


@dataclass
class WithPositionals:
    """A command with required positional arguments, as serve (MODEL) and eval-rm (PATH...) have."""

    model: str = option(help="the model", positional=True, metavar="MODEL")
    paths: list[str] = option(help="data", positional=True, metavar="PATH")
    count: int = option(3, "how many")


def test_required_positionals_may_come_from_the_yaml_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: m\npaths: [a, b]\n")
    from_yaml = parse_config(WithPositionals, ["--config", str(config)])
    assert from_yaml == WithPositionals(model="m", paths=["a", "b"]) == parse_config(WithPositionals, ["m", "a", "b"])
    assert parse_config(WithPositionals, ["--config", str(config), "n"]).model == "n"  # the command line wins
    with pytest.raises(RewardkitError, match=r"command line: missing required option\(s\): model \(MODEL\), "
                                             r"paths \(PATH\)"):
        parse_config(WithPositionals, [])


@dataclass
class WithChoice:
    """A command with a choice."""

    shape: str = option("pairs", "a shape", choices=("pairs", "rankings"))
    max_steps: int = option(3, "how many")


def test_errors_name_where_the_bad_value_came_from(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("shape: PAIRS\n")
    with pytest.raises(RewardkitError, match=r"c\.yaml: --shape must be one of pairs, rankings; got 'PAIRS'"):
        parse_config(WithChoice, ["--config", str(config)])
    config.write_text("max_steps: 4\n")
    with pytest.raises(RewardkitError, match="^command line: max_steps must be an integer, got 'x'"):
        parse_config(WithChoice, ["--config", str(config), "--max-steps", "x"])
    config.write_text("max_steps: 4\nmax-steps: 5\n")
    with pytest.raises(RewardkitError, match="c.yaml: option 'max-steps' is given twice"):
        parse_config(WithChoice, ["--config", str(config)])


def test_a_flag_unsets_an_optional_field_that_yaml_set(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("ratio: 0.5\n")
    assert parse_config(Example, ["--config", str(config), "--ratio", "none"]).ratio is None
    assert parse_config(Example, ["--ratio", "None"]).ratio is None
    with pytest.raises(RewardkitError, match="count must be an integer"):
        parse_config(Example, ["--count", "none"])  # not optional: none is not a value


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_config_parses(path):
    from rewardkit.config import config_from_mapping, load_yaml_mapping

    if path.name.startswith("reward_"):
        from rewardkit.rewards.spec import build_reward

        assert build_reward(path).components
        return
    from rewardkit.models.config import TrainRMConfig
    from rewardkit.rl.config import RLConfig

    cls = {"train": TrainRMConfig, "rl": RLConfig}[path.name.split("_")[0]]
    assert isinstance(config_from_mapping(cls, load_yaml_mapping(path), str(path)), cls)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_help_imports_no_torch(command):
    """Each command's config module is torch-free, so `rewardkit COMMAND --help` answers in a fraction of a second."""
    code = (f"import sys\nfrom rewardkit.cli import main\ntry:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
