"""The rule-based judge on hand-written (question, prediction, reference, verdict) cases, tricky ones included.

Decisions the table pins down (see harness/evaluation/judges.py):
- containment is by whole words after normalisation: "reddish" and "bred" do not contain "red", "13" not "3";
- a multi-word reference must appear with its words adjacent and in order (articles ignored);
- any negated mention ("not red", "no red circle", "isn't red") makes the answer wrong;
- a hedge ("red or blue") or a bare list of several colours / numbers ("red, blue and green") is a guess and
  does not imply any one of them; a sentence that names other colours for other objects is fine;
- a yes/no answer with both a yes and a no is wrong; without either word, a restatement decides;
- empty and punctuation-only predictions imply nothing;
- the sign letter "A" (an article once normalised) is only named by an upper-case "A" or a clause-final "a".
"""

from __future__ import annotations

import pytest

from harness.components import JUDGES
from harness.errors import RegistryError
from harness.evaluation.judges import Judge, build_judge, detect_yes_no, normalise

CASES = [
    # plain containment and normalisation
    ("What colour is the circle?", "red", "red", True),
    ("What colour is the circle?", "Red.", "red", True),
    ("What colour is the circle?", "It is a red circle.", "red", True),
    ("What colour is the circle?", "  RED  ", "Red", True),
    ("What colour is the circle?", "blue", "red", False),
    ("What colour is the circle?", "reddish", "red", False),
    ("What colour is the circle?", "The shape is bred from lines", "red", False),
    ("What is the shape?", "A circle.", "circle", True),
    ("What shapes are there?", "three circles", "circle", True),
    # spelling variants and synonyms
    ("What colour is the square?", "grey", "gray", True),
    ("What colour is the square?", "It is gray in colour", "grey", True),
    ("What colour is the star?", "violet", "purple", True),
    ("What is the shape?", "a box", "square", False),
    # negation
    ("What colour is the circle?", "not red", "red", False),
    ("What colour is the circle?", "It isn't red.", "red", False),
    ("What colour is the circle?", "There is no red circle here", "red", False),
    ("What colour is the circle?", "It is not blue, it is red", "red", True),
    ("What colour is the circle?", "No, it is red", "red", True),
    # numbers
    ("How many squares are there?", "3", "3", True),
    ("How many squares are there?", "three", "3", True),
    ("How many squares are there?", "3", "three", True),
    ("How many squares are there?", "There are 3 squares.", "three", True),
    ("How many squares are there?", "13", "3", False),
    ("How many squares are there?", "There are 13 squares", "three", False),
    ("How many squares are there?", "a couple", "2", False),
    ("How many squares are there?", "2 or 3", "3", False),
    ("How many squares are there?", "There are 3 squares and 2 circles.", "3", True),
    ("How many triangles are there?", "There are no triangles.", "0", True),
    ("How many triangles are there?", "none", "zero", True),
    ("How many triangles are there?", "twenty", "20", True),
    # multi-word references
    ("Where is the circle?", "The circle is at the top left.", "top left", True),
    ("Where is the circle?", "It is on the left, near the top", "top left", False),
    ("What is in the image?", "a big red circle", "red circle", True),
    ("What is in the image?", "a red square and a blue circle", "red circle", False),
    ("What does the sign say?", "The sign says OPEN 24", "open 24", True),
    # lists and hedges
    ("What colour is the circle?", "red, blue and green", "red", False),
    ("What colour is the circle?", "It is either red or blue.", "red", False),
    ("What colour is the circle?", "a red circle next to a blue square", "red", True),
    # yes / no
    ("Is there a red circle?", "yes", "yes", True),
    ("Is there a red circle?", "Yes, there is a red circle in the image.", "yes", True),
    ("Is there a red circle?", "No.", "yes", False),
    ("Is there a red circle?", "yes and no", "yes", False),
    ("Is there a red circle?", "Yes. No.", "no", False),
    ("Is there a red circle?", "There is no red circle.", "no", True),
    ("Is the circle red?", "The circle is not red.", "no", True),
    ("Is the circle red?", "The circle is red.", "yes", True),
    ("Is the circle red?", "The circle is blue.", "yes", False),
    ("Is the circle red?", "Nope", "no", True),
    # degenerate predictions and long answers
    ("What colour is the circle?", "", "red", False),
    ("What colour is the circle?", "?!...", "red", False),
    ("Is there a red circle?", "", "no", False),
    ("What is the place?", "In this picture we can see a sunny beach with sand, the sea in the background and a "
     "few shapes scattered around on the ground near the water", "beach", True),
    ("What letter is on the sign?", "The sign shows the letter A.", "A", True),
    ("What letter is on the sign?", "A", "A", True),
    ("What letter is on the sign?", "It shows an A in black", "A", True),
    ("What letter is on the sign?", "It is a sign", "A", False),
    # the world's own answers
    ("Which way does the star move?", "The star moves to the left.", "left", True),
    ("Which way does the star move?", "It does not move left, it moves right", "left", False),
    ("What shapes are there?", "two crosses", "cross", True),
]


@pytest.mark.parametrize(("question", "prediction", "reference", "verdict"), CASES)
def test_rules_judge(question: str, prediction: str, reference: str, verdict: bool) -> None:
    assert build_judge("rules")(question, prediction, reference) is verdict


def test_table_is_large_and_balanced() -> None:
    assert len(CASES) >= 40
    assert 0.3 < sum(v for *_, v in CASES) / len(CASES) < 0.7


def test_judges_follow_the_protocol() -> None:
    for name in JUDGES:
        assert isinstance(build_judge(name), Judge)


def test_exact_judge_is_strict() -> None:
    exact = build_judge("exact")
    assert exact("", "Red.", "red")
    assert not exact("", "It is red", "red")
    assert not exact("", "", "")


def test_unknown_judge_fails_with_a_suggestion() -> None:
    with pytest.raises(RegistryError, match=r"unknown judge 'rulez' \(did you mean 'rules'\?\); known: 'exact', 'rules'"):
        build_judge("rulez")


@pytest.mark.parametrize(("prediction", "expected"), [
    ("Yes", "yes"), ("no.", "no"), ("Yeah, I think so", "yes"), ("yes, no", None), ("maybe", None), ("", None),
])
def test_detect_yes_no(prediction: str, expected: str | None) -> None:
    assert detect_yes_no(prediction) == expected


def test_normalise() -> None:
    assert normalise("The Colours are GREY!") == "color are gray"
    assert normalise("There aren't twelve boxes") == "there are not 12 box"
    assert normalise("1,000 violets") == "1000 purple"
