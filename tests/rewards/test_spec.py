"""The YAML spec factory: valid specs build composites; bad specs fail with file:line, component index and type."""

import pytest

from rewardkit.errors import RewardkitError
from rewardkit.rewards.composite import CompositeReward
from rewardkit.rewards.rules import RepetitionPenalty, TargetLength
from rewardkit.rewards.spec import COMPONENT_TYPES, build_reward, component_fields


def write(tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_a_valid_spec_builds_a_composite(tmp_path):
    path = write(tmp_path, """\
mode: dense
shaping: step
clip: [-3, 3]
components:
  - {type: length, target: 120, tolerance: 40, unit: chars, weight: 0.2}
  - {type: length, target: 10, normalize: rank}
  - type: repetition
    n: 2
    weight: -1
    clip: [-1, 0]
""")
    reward = build_reward(path)
    assert isinstance(reward, CompositeReward)
    assert (reward.mode, reward.shaping, reward.clip) == ("dense", "step", (-3.0, 3.0))
    assert [c.name for c in reward.components] == ["length", "length_2", "repetition"]
    first, second, third = reward.components
    assert isinstance(first.reward, TargetLength) and first.reward.target == 120 and first.weight == 0.2
    assert second.normalize == "rank"
    assert isinstance(third.reward, RepetitionPenalty) and third.reward.n == 2 and third.clip == (-1.0, 0.0)
    assert reward(["p"], ["x" * 120]).shape == (1,)


@pytest.mark.parametrize("components, message", [
    ("- {type: length, target: 5}\n  - {type: rouge, varient: rougeL}",
     "spec.yaml:5: component 2 (rouge): unknown field 'varient'"),
    ("- {type: length, target: 5}\n  - {type: bleurt}", "spec.yaml:5: component 2 (bleurt): unknown type 'bleurt'"),
    ("- {type: length, tolerance: 5}", "spec.yaml:4: component 1 (length): missing field 'target'"),
    ("- {type: length, target: 5, weight: heavy}",
     "spec.yaml:4: component 1 (length): weight must be a finite number, got 'heavy'"),
    ("- {type: length, target: 5, weight: .nan}", "component 1 (length): weight must be a finite number, got nan"),
    ("- {type: length, target: many}", "component 1 (length): field 'target' must be a number, got 'many'"),
    ("- {type: length, target: 5, normalize: zscore}", "component 1 (length): normalize must be one of"),
    ("- {type: length, target: 5, clip: [2, 1]}", "component 1 (length): clip lower bound 2.0 is above"),
    ("- {target: 5}", "spec.yaml:4: component 1: missing field 'type'"),
    ("- {type: regex, pattern: '('}", "component 1 (regex): invalid pattern"),
    ("- {type: custom, function: no_such_module_xyz:f}", "component 1 (custom): cannot import 'no_such_module_xyz'"),
    ("- {type: custom, function: 'math:hypot', kwargs: [1, 2]}", "component 1 (custom): kwargs must be a mapping"),
    ("- {type: length, target: .nan}", "component 1 (length): field 'target' must be a finite number, got nan"),
    ("- {type: overlong, max_length: 9, penalty: .inf}", "component 1 (overlong): field 'penalty' must be a finite"),
    ("- {type: chrf, char_order: 0}", "component 1 (chrf): char_order must be an integer of at least 1, got 0"),
    ("- {type: embedding_similarity, batch_size: 0}", "(embedding_similarity): batch_size must be an integer of at "
                                                       "least 1, got 0"),
    ("- {type: reward_model, path: x, max_length: 0}", "(reward_model): max_length must be an integer of at least 1"),
])
def test_bad_components_name_file_line_index_and_type(tmp_path, components, message):
    path = write(tmp_path, f"# a reward\nmode: sparse\ncomponents:\n  {components}\n")
    with pytest.raises(RewardkitError) as info:
        build_reward(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("components: []", "'components' must be a non-empty list"),
    ("compnents: [{type: length, target: 1}]", "unknown field 'compnents'"),
    ("mode: streaming\ncomponents: [{type: length, target: 1}]", "mode must be sparse|dense"),
    ("components: [{type: length, target: 1}]\nclip: 5", "clip must be [lo, hi]"),
])
def test_bad_top_level_fields(tmp_path, text, message):
    with pytest.raises(RewardkitError, match="spec.yaml") as info:
        build_reward(write(tmp_path, text))
    assert message in str(info.value)


def test_missing_spec_file(tmp_path):
    with pytest.raises(RewardkitError, match="no such file"):
        build_reward(tmp_path / "absent.yaml")


def test_every_type_declares_its_fields():
    for kind, cls in COMPONENT_TYPES.items():
        fields = component_fields(cls)
        assert not {"type", "weight", "normalize", "clip", "name"} & set(fields), kind
