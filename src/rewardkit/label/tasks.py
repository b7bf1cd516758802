"""What labelling does differently for each kind of feedback: the labelling facet of the kinds in `rewardkit.kinds`.

A labelling database collects one kind of feedback, its task, named as the kind (`pairs`, `rankings`, `ratings`,
`binary`). `task_named(name)` gives that kind's `LabelTask`, which holds everything labelling does differently for it:
how many responses an item shows (import makes items of that many, the store refuses others), the question and the
form an annotator answers and how the form's answer is read, how a judgment value is checked, what an item adds to its
JSON, what inter-annotator agreement compares, and how judgments become the records train-rm reads (the majority vote,
or each judgment alone). The rest of the label package asks the task instead of branching on its name.

The table lives here, keyed by the kind objects of `rewardkit.kinds`, not as methods of those kinds: this facet renders
the web app's HTML and checks judgments for the store, and kinds.py sits below every command, so the arrow runs one
way (label -> kinds) and each labelling concept is written once, here. Every kind has an entry (a test checks).

Judgment values: pairs "A" | "B" | "tie" (with an optional strength 1-3); rankings a list of response indices, best
first; ratings an integer 1..scale; binary 1 (thumbs up) or 0 (down).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from typing import TYPE_CHECKING, Any, ClassVar

from rewardkit.errors import RewardkitError
from rewardkit.kinds import KINDS, FeedbackKind, kind_named
from rewardkit.label.render import escape, lang_attribute, render_markdown

if TYPE_CHECKING:
    from rewardkit.label.records import Item, Judgment

PAIRWISE_CHOICES = ("A", "B", "tie")
STRENGTHS = (1, 2, 3)
STRENGTH_NAMES = {1: "slightly", 2: "clearly", 3: "much"}


class JudgmentError(ValueError):
    """A judgment that does not fit its item (wrong choice, out-of-range rating, ...); the message says why."""


def is_digits(text: str) -> bool:
    """Only the digits 0-9: `str.isdigit` alone also takes superscripts and other digits that `int` refuses."""
    return text.isascii() and text.isdigit()


# ------------------------------------------------------------------------------------------------ majority votes
def pairwise_majority(votes: Sequence[str]) -> str:
    """"A", "B" or "tie" (including when A and B are equally frequent, or "tie" is the most frequent vote)."""
    counts = Counter(votes)
    if counts["A"] > counts["B"] and counts["A"] > counts["tie"]:
        return "A"
    if counts["B"] > counts["A"] and counts["B"] > counts["tie"]:
        return "B"
    return "tie"


def thumbs_majority(labels: Sequence[int]) -> int | None:
    """1 or 0, the majority label; None on a tie."""
    ups = sum(labels)
    downs = len(labels) - ups
    return 1 if ups > downs else 0 if downs > ups else None


def borda_ranking(rankings: Sequence[Sequence[int]], n_responses: int) -> list[int] | None:
    """Response indices best first by Borda count; None when two responses have equal totals."""
    points = [0] * n_responses
    for ranking in rankings:
        for place, response in enumerate(ranking):
            points[response] += n_responses - 1 - place
    if len(set(points)) < n_responses:
        return None
    return sorted(range(n_responses), key=lambda r: -points[r])


# ------------------------------------------------------------------------------------------------ the tasks
def _response_card(label: str, text: str, extra_class: str = "") -> str:
    return (f'<section class="response {extra_class}"><h2>{escape(label)}</h2>'
            f'<div class="md"{lang_attribute(text)}>{render_markdown(text)}</div></section>')


def _buttons(options: Sequence[tuple[Any, str, str]], mine: Any) -> str:
    """Submit buttons (value, key, label), the annotator's current choice marked."""
    return "".join(f'<button type="submit" name="choice" value="{v}" data-key="{k}" class="choice'
                   f'{" current" if mine == v else ""}"><kbd>{k.upper()}</kbd>{label}</button>'
                   for v, k, label in options)


class LabelTask:
    """What labelling does for one kind of feedback. Subclasses fill in each part."""

    kind: ClassVar[FeedbackKind]
    min_responses: ClassVar[int]
    max_responses: ClassVar[int | None]  # None: any number from min_responses up
    question: ClassVar[str]  # asked above the form
    uses_scale: ClassVar[bool] = False  # judged on the database's 1..scale rating scale
    agreement_level: ClassVar[str] = "nominal"  # how Krippendorff's alpha compares two values

    @property
    def name(self) -> str:
        return self.kind.name

    # ---------------------------------------------------------------------------------------------------- items
    def check_responses(self, n_responses: int, where: str) -> None:
        """An item must show as many responses as its task compares (`where`: the item's source, for the error)."""
        if self.min_responses <= n_responses and (self.max_responses is None or n_responses <= self.max_responses):
            return
        wanted = (f"{self.min_responses} or more" if self.max_responses is None else str(self.min_responses)
                  if self.min_responses == self.max_responses else f"{self.min_responses} to {self.max_responses}")
        raise RewardkitError(f"a {self.name} item needs {wanted} response(s), this one has {n_responses}", where)

    def item_fields(self, scale: int) -> dict:
        """What an item's JSON holds besides its id, task, prompt and responses."""
        return {"scale": scale} if self.uses_scale else {}

    # ------------------------------------------------------------------------------------------------ judgments
    def check_value(self, value: Any, n_responses: int, scale: int, strength: Any = None) -> tuple[Any, int | None]:
        """The judgment value and strength in their stored form, or JudgmentError saying what is wrong."""
        value = self.checked(value, n_responses, scale)
        return value, self.checked_strength(value, strength)

    def checked(self, value: Any, n_responses: int, scale: int) -> Any:
        raise NotImplementedError

    def checked_strength(self, value: Any, strength: Any) -> int | None:
        if strength not in (None, ""):
            raise JudgmentError(f"only pairs judgments take a strength, not {self.name}")
        return None

    def form_value(self, choice: str, n_responses: int) -> Any:
        """A form's `choice` (already stripped) as the value to store: a number, for the button forms."""
        if not is_digits(choice.removeprefix("-")):
            raise JudgmentError(f"choose one of the buttons (got {choice!r})")
        return int(choice)

    # ----------------------------------------------------------------------------------------------------- page
    def responses_html(self, responses: list[str]) -> str:
        return "".join(_response_card(f"Response {i + 1}" if len(responses) > 1 else "Response", text)
                       for i, text in enumerate(responses))

    def choices_html(self, item: Item, scale: int, current: Judgment | None, strength_wait: float = 0.0) -> str:
        """The form controls, each with its keyboard shortcut in `data-key` (`strength_wait`: seconds the page waits
        for a strength after a choice, for the tasks that take one)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------ agreement
    def agreement_values(self, value: Any) -> list[tuple[tuple, Any]]:
        """(unit within the item, value) pairs one judgment gives agreement: by default the whole value."""
        return [((), value)]

    # --------------------------------------------------------------------------------------------------- export
    def decided(self, item: Item, judgments: list[Judgment]) -> dict | None:
        """The feedback fields of the item's majority vote, or None when the vote is a tie."""
        raise NotImplementedError

    def single(self, item: Item, judgment: Judgment) -> dict | None:
        """The feedback fields of one judgment on its own, or None when it states no preference."""
        raise NotImplementedError

    def tie_value(self, value: Any) -> Any:
        """A judgment value as a tie row shows it, in terms of the row's `tied_responses` (indices into it), never of
        where a response stood on the page: by default the value as stored."""
        return value

    def __repr__(self) -> str:
        return f"<label task {self.name}>"


class PairsTask(LabelTask):
    kind, min_responses, max_responses = KINDS["pairs"], 2, 2
    question = "Which response is better?"

    def checked(self, value, n_responses, scale):
        if value not in PAIRWISE_CHOICES:
            raise JudgmentError(f"choice must be one of {', '.join(PAIRWISE_CHOICES)}, got {value!r}")
        return value

    def checked_strength(self, value, strength):
        if strength in (None, ""):
            return None
        # an int, or a form field's digits: never 2.9 truncated to 2, nor true taken for 1
        level = {str(n): n for n in STRENGTHS}.get(strength) if isinstance(strength, str) else strength
        if type(level) is not int or level not in STRENGTHS or value == "tie":
            raise JudgmentError(f"strength must be one of {STRENGTHS} (and none for a tie), got {strength!r}")
        return level

    def form_value(self, choice, n_responses):
        return choice

    def responses_html(self, responses):
        return ('<div class="pair">' + _response_card("A", responses[0], "a")
                + _response_card("B", responses[1], "b") + "</div>")

    def choices_html(self, item, scale, current, strength_wait=0.0):
        """A / Tie / B, then the optional strength. The strength can come first (A or B then submits at once) or,
        with the page's script and a `strength_wait`, after A or B: the page then shows the choice with a countdown
        (`#pending`, filled in by label.js), during which 1-3 sets the strength and submits; Enter, or the same
        choice again, submits at once; Esc cancels. Without the script the buttons submit at once."""
        mine = current.value if current else None
        strength = current.strength if current else None
        radios = "".join(
            f'<label><input type="radio" name="strength" value="{s}" data-key="{s}"'
            f'{" checked" if strength == s else ""}> <kbd>{s}</kbd> {STRENGTH_NAMES[s]}</label>' for s in STRENGTHS)
        buttons = _buttons((("A", "a", " A is better"), ("tie", "t", " Tie"), ("B", "b", " B is better")), mine)
        if strength_wait > 0:
            how = (f'Press <kbd>1</kbd>–<kbd>3</kbd> before or after A / B: after A or B the page waits '
                   f'{strength_wait:g} s for it (<kbd>Enter</kbd> submits at once, <kbd>Esc</kbd> cancels).'
                   f'<noscript> Without JavaScript, choose it before A / B.</noscript>')
            pending = ('<div class="pending" id="pending" role="status" aria-live="polite" hidden>'
                       '<span><strong id="pending-choice"></strong>: how much better? <kbd>1</kbd>–<kbd>3</kbd>, '
                       'or submitting in <span id="pending-seconds"></span> s</span>'
                       '<progress id="pending-bar" max="1" value="1"></progress>'
                       '<button type="button" id="pending-now"><kbd>Enter</kbd> Submit now</button>'
                       '<button type="button" id="pending-cancel"><kbd>Esc</kbd> Cancel</button></div>')
        else:
            how, pending = "Choose the strength before A / B, which submit at once.", ""
        return (f'<div class="buttons">{buttons}</div><fieldset class="strength"><legend>How much better '
                f'(optional)</legend>{radios}</fieldset><p class="hint" id="strength-hint">{how}</p>{pending}')

    def decided(self, item, judgments):
        winner = pairwise_majority([j.value for j in judgments])
        if winner == "tie":
            return None
        strengths = [j.strength for j in judgments if j.value == winner and j.strength is not None]
        counts = Counter(j.value for j in judgments)
        loser = "B" if winner == "A" else "A"
        # named by what each vote says about this row's responses, never by the side of the page they were shown on
        votes = {"chosen": counts[winner], "rejected": counts[loser], "tie": counts["tie"]}
        return (self._chosen_rejected(item, winner) | {"votes": votes}
                | ({"strength": sum(strengths) / len(strengths)} if strengths else {}))

    def single(self, item, judgment):
        if judgment.value == "tie":
            return None
        return (self._chosen_rejected(item, judgment.value)
                | ({"strength": judgment.strength} if judgment.strength is not None else {}))

    def tie_value(self, value):
        """The index in `tied_responses` of the response preferred, or "tie"."""
        return {"A": 0, "B": 1}.get(value, value)

    @staticmethod
    def _chosen_rejected(item: Item, winner: str) -> dict:
        chosen, rejected = (0, 1) if winner == "A" else (1, 0)
        return {"chosen": item.responses[chosen], "rejected": item.responses[rejected]}


class RankingsTask(LabelTask):
    kind, min_responses, max_responses = KINDS["rankings"], 2, None
    question = "Rank the responses, best first."

    def checked(self, value, n_responses, scale):
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value) or sorted(
                value) != list(range(n_responses)):
            raise JudgmentError(f"a ranking must list each of the {n_responses} responses (0..{n_responses - 1}) "
                                f"once, best first; got {value!r}")
        return list(value)

    def form_value(self, choice, n_responses):
        """Response numbers typed 1-based, best first ("2 1 3"), as 0-based indices."""
        parts = choice.replace(",", " ").split()
        if not all(is_digits(p) for p in parts):
            raise JudgmentError(f"type the response numbers best first, e.g. "
                                f"{' '.join(str(i + 1) for i in range(n_responses))}")
        return [int(p) - 1 for p in parts]

    def choices_html(self, item, scale, current, strength_wait=0.0):
        n = len(item.responses)
        shown = " ".join(str(r + 1) for r in current.value) if current else ""
        return (f'<div class="ranking"><label for="order">Best to worst (type the response numbers, e.g. '
                f'{" ".join(str(i + 1) for i in range(n))}): </label>'
                f'<input id="order" name="choice" data-ranking="{n}" value="{escape(shown)}" '
                f'autocomplete="off" inputmode="numeric"> <button type="submit" class="choice" data-key="Enter">'
                f'<kbd>Enter</kbd> Submit</button> <span class="hint"><kbd>Backspace</kbd> undoes a number</span>'
                f'</div>')

    def agreement_values(self, value):
        """Each pair of responses is a unit: whether the first was ranked above the second (a ranking's places are
        not interval data, and rankings of one item agree as much as their pairwise orders do)."""
        position = {response: place for place, response in enumerate(value)}
        return [((a, b), position[a] < position[b]) for a, b in combinations(sorted(position), 2)]

    def decided(self, item, judgments):
        order = borda_ranking([j.value for j in judgments], len(item.responses))
        return None if order is None else {"responses": [item.responses[r] for r in order]}

    def single(self, item, judgment):
        return {"responses": [item.responses[r] for r in judgment.value]}


class RatingsTask(LabelTask):
    kind, min_responses, max_responses = KINDS["ratings"], 1, 1
    question = "How good is the response?"
    uses_scale = True
    agreement_level = "interval"  # a 4 is closer to a 5 than a 1 is

    def checked(self, value, n_responses, scale):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= scale:
            raise JudgmentError(f"a rating must be an integer from 1 to {scale}, got {value!r}")
        return value

    def choices_html(self, item, scale, current, strength_wait=0.0):
        buttons = _buttons([(v, str(v), "") for v in range(1, scale + 1)], current.value if current else None)
        return f'<div class="buttons">{buttons}<span class="hint">1 = worst, {scale} = best</span></div>'

    def decided(self, item, judgments):
        return {"response": item.responses[0], "score": sum(j.value for j in judgments) / len(judgments)}

    def single(self, item, judgment):
        return {"response": item.responses[0], "score": judgment.value}


class BinaryTask(LabelTask):
    kind, min_responses, max_responses = KINDS["binary"], 1, 1
    question = "Is the response good?"

    def checked(self, value, n_responses, scale):
        if isinstance(value, bool) or value not in (0, 1):
            raise JudgmentError(f"thumbs must be 1 (up) or 0 (down), got {value!r}")
        return int(value)

    def choices_html(self, item, scale, current, strength_wait=0.0):
        buttons = _buttons(((1, "u", " 👍 Good"), (0, "d", " 👎 Bad")), current.value if current else None)
        return f'<div class="buttons">{buttons}</div>'

    def decided(self, item, judgments):
        label = thumbs_majority([j.value for j in judgments])
        return None if label is None else {"response": item.responses[0], "label": label}

    def single(self, item, judgment):
        return {"response": item.responses[0], "label": judgment.value}


LABEL_TASKS: dict[FeedbackKind, LabelTask] = {task.kind: task for task in
                                               (PairsTask(), RankingsTask(), RatingsTask(), BinaryTask())}
TASKS: tuple[str, ...] = tuple(task.name for task in LABEL_TASKS.values())  # what `label import --task` accepts


def task_named(name: str) -> LabelTask:
    """The labelling task of the kind called `name` (or one of its aliases)."""
    return LABEL_TASKS[kind_named(name)]
