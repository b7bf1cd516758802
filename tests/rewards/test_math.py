"""The `math` component: answer extraction and math-verify comparison on a hand-made table, including the traps."""

import threading

import pytest

from rewardkit.errors import RewardkitError
from rewardkit.rewards.answers import extract_answer, last_number
from rewardkit.rewards.base import ResponseError
from rewardkit.rewards.math_answer import MathAnswer
from rewardkit.rewards.spec import build_reward

# (response, reference, expected score, what it checks). Scores are 1 for the right final answer, else 0.
TABLE = [
    # symbolic equality
    (r"The answer is \boxed{\frac{1}{2}}.", "0.5", 1, "fraction = decimal"),
    (r"\boxed{0.5}", r"\frac{1}{2}", 1, "decimal = LaTeX fraction"),
    ("So the probability is 1/2.", r"\frac{1}{2}", 1, "a/b as the last number"),
    (r"\boxed{\dfrac{3}{4}}", "0.75", 1, "dfrac"),
    (r"\boxed{2\sqrt{2}}", r"\sqrt{8}", 1, "surds simplify"),
    (r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{1}{\sqrt{2}}", 1, "rationalized denominator"),
    (r"\boxed{x^2+2x+1}", "(x+1)^2", 1, "expanded polynomial"),
    (r"\boxed{3.0}", "3", 1, "3.0 = 3"),
    (r"\boxed{x = 3}", "3", 1, "an equation's right-hand side"),
    (r"\boxed{\{1, 2\}}", r"\{2, 1\}", 1, "sets ignore order"),
    (r"\boxed{[1, 2)}", "[1,2)", 1, "intervals"),
    (r"\boxed{(1, 2)}", "[1,2)", 0, "open interval is not half-open"),
    (r"\boxed{\infty}", r"\infty", 1, "infinity"),
    (r"\boxed{\pi}", "3.14159", 0, "pi is not 3.14159 (6 decimals of rounding)"),
    (r"\boxed{0.333}", "1/3", 0, "0.333 is not 1/3"),
    (r"\boxed{-5}", "5", 0, "sign matters"),
    (r"\boxed{2}", "3", 0, "plainly wrong"),
    # units
    (r"The length is \boxed{5 \text{ cm}}.", "5", 1, "units in a box are dropped"),
    ("The answer is 5 cm.", "5", 1, "units after 'the answer is'"),
    ("It costs $12 in total, so the answer is \\$12.", "12", 1, "a dollar sign"),
    (r"\boxed{50\%}", "50", 1, "a percent sign"),
    # commas in thousands
    ("The answer is 1,000.", "1000", 1, "thousands comma after 'the answer is'"),
    ("There were 1,234,567 visitors in total.", "1234567", 1, "thousands commas, last number"),
    (r"\boxed{1,000}", "1000", 1, "thousands comma in a box"),
    ("The values are 12,34", "1234", 0, "12,34 is not a thousands comma"),
    # several answers
    (r"It is \boxed{3} or maybe \boxed{4}.", "4", 0, "two different boxed answers: hedging"),
    (r"It is \boxed{3} or maybe \boxed{4}.", "3", 0, "two different boxed answers, whichever is right"),
    (r"First \boxed{7}, and to repeat: \boxed{7}.", "7", 1, "the same boxed answer twice"),
    (r"\boxed{0.5}, that is \boxed{\frac{1}{2}}", "1/2", 1, "equal boxed answers written differently"),
    ("The answer is 3. Wait, I made an error: the answer is 4.", "4", 1, "the last 'answer is' counts"),
    ("We get 3 apples, then 4 more, so 7.", "7", 1, "last number"),
    ("After 2 steps we get 10, then after 3 more steps", "10", 0, "the last number is 3"),
    # no answer
    ("I do not know.", "3", 0, "no answer at all"),
    ("", "3", 0, "empty response"),
    (r"\boxed{}", "3", 0, "an empty box is no answer"),
    # references
    (r"\boxed{72}", "Natalia sold 48/2 = 24 clips in May.\n#### 72", 1, "a GSM8K reference"),
    ("The answer is **42**.", "42", 1, "markdown bold"),
    (r"The final answer is $\frac{1}{2}$.", "0.5", 1, "'final answer is' with $...$"),
]


@pytest.fixture(scope="module")
def math_reward():
    return MathAnswer()


def test_the_table_has_30_or_more_cases():
    assert len(TABLE) >= 30


@pytest.mark.parametrize("response, reference, expected, what", TABLE, ids=[row[3] for row in TABLE])
def test_the_table(math_reward, response, reference, expected, what):
    score = math_reward([""], [response], [reference])
    assert score.tolist() == [float(expected)], (what, math_reward.last_answers, math_reward.last_reasons)
    if expected:
        assert math_reward.last_reasons == [None]
    else:  # never a silent zero: the reason is kept
        assert isinstance(math_reward.last_reasons[0], str) and math_reward.last_reasons[0]


def test_the_whole_table_in_one_batch_gives_the_same_scores(math_reward):
    scores = math_reward([""] * len(TABLE), [r[0] for r in TABLE], [r[1] for r in TABLE])
    assert scores.tolist() == [float(r[2]) for r in TABLE]


def test_reasons_say_what_went_wrong(math_reward):
    math_reward(["", "", ""], ["I do not know.", r"\boxed{3} or \boxed{4}", r"\boxed{2}"], ["3", "3", "3"])
    assert math_reward.last_reasons[0] == "no answer found (looked for: boxed, answer_is, last_number)"
    assert math_reward.last_reasons[1] == "2 different boxed answers (3, 4): no single final answer"
    assert math_reward.last_reasons[2] == "answer '2' differs from the reference"
    assert math_reward.last_answers == [None, "4", "2"]


def test_extractors_in_order_and_configurable():
    text = r"The answer is 7, but \boxed{8}. Also 9"
    assert extract_answer(text).answer == "8"
    assert extract_answer(text, ("answer_is",)).answer == "8"  # a box on the answer line is the answer
    assert extract_answer("The answer is 7, I think.", ("answer_is",)).answer == "7, I think"
    assert extract_answer(text, ("last_number",)).answer == "9"
    assert extract_answer("no digits", ("last_number",)).answer is None
    assert extract_answer(r"\boxed{3} \boxed{4}", multiple="last").answer == "4"
    assert last_number("between -3.5 and 2/3") == "2/3"
    assert last_number(r"so x = \frac{1}{2}") == r"\frac{1}{2}"
    assert last_number("1,000,000 and .5") == ".5"


def test_answer_is_takes_the_boxed_part_of_its_line():
    assert extract_answer("The answer is \\boxed{12} apples", ("answer_is",)).answer == "12"


def test_several_references_any_counts(math_reward):
    assert math_reward([""], [r"\boxed{6}"], [["5", "6"]]).tolist() == [1.0]
    assert math_reward([""], [r"\boxed{7}"], [["5", "6"]]).tolist() == [0.0]


def test_format_bonus_goes_to_the_first_extractor_right_or_wrong():
    reward = MathAnswer(format_bonus=0.25)
    scores = reward([""] * 5, [r"\boxed{3}", r"\boxed{2}", "The answer is 3", "3", r"\boxed{3} or \boxed{4}"],
                    ["3"] * 5)
    assert scores.tolist() == [1.25, 0.25, 1.0, 1.0, 0.0]  # hedging earns no format bonus
    only_numbers = MathAnswer(extract=["last_number"], format_bonus=0.5)
    assert only_numbers([""], [r"\boxed{3}"], ["3"]).tolist() == [1.5]


def test_a_reference_that_is_not_math_names_the_response(math_reward):
    with pytest.raises(ResponseError, match=r"math: response 1: the reference 'Paris\?\?' cannot be read") as info:
        math_reward(["", ""], ["3", "4"], ["3", "Paris??"])
    assert info.value.index == 1


def test_a_missing_reference_is_a_one_line_error(math_reward):
    with pytest.raises(RewardkitError, match="needs a reference"):
        math_reward([""], ["3"])


def test_bad_settings_are_one_line_errors():
    for kwargs, message in [({"extract": ["boxed", "guess"]}, "extract must list"), ({"multiple": "first"}, "multiple"),
                            ({"timeout": 0}, "timeout"), ({"extract": []}, "extract must list")]:
        with pytest.raises(RewardkitError, match=message):
            MathAnswer(**kwargs)
    with pytest.raises(RewardkitError, match=r"component 1 \(math\): unknown field 'extractors'"):
        build_reward({"components": [{"type": "math", "extractors": ["boxed"]}]})


def test_in_a_spec_and_dense_the_reward_sits_on_the_last_token():
    reward = build_reward({"mode": "dense", "components": [{"type": "math", "format_bonus": 0.5}]})
    rows = reward.per_token([""], [r"so \boxed{4}"], ["4"], token_ends=[[2, 3, 7, 10, 12]])
    assert rows[0].tolist() == [0.0, 0.0, 0.0, 0.0, 1.5]


def test_off_the_main_thread_a_worker_process_bounds_the_time(math_reward):
    """math-verify's timeouts need the main thread's signals; elsewhere a worker process does the comparison."""
    results = {}

    def score():
        results["scores"] = math_reward(["", ""], [r"\boxed{\frac{1}{2}}", r"\boxed{2}"], ["0.5", "3"]).tolist()

    thread = threading.Thread(target=score)
    thread.start()
    thread.join(120)
    assert results["scores"] == [1.0, 0.0]
    math_reward.verifier.close()
