"""Judges: does a model's answer imply the reference answer?

The paper asked GPT-4 "does the answer PRED imply GT?". Offline we use a rule-based judge (`rules`, the default)
that answers the same question with transparent, tested rules; `exact` (normalised exact match) is a strict
control. Judges are built by name from `harness.components.JUDGES` (`EvalConfig.judge`).

The `rules` judge, in order:
1. Normalise both texts: lower case, accents and punctuation dropped (punctuation still ends a clause), articles
   dropped, "n't" -> "not", simple plurals folded ("circles" -> "circle"), British -> American spelling
   ("colour" -> "color", "grey" -> "gray"), a small conservative synonym table ("violet" -> "purple"; "box" is
   NOT "square"), number words zero..twenty -> digits ("a couple" stays words).
2. A yes/no reference is judged by `detect_yes_no` (see there): a prediction with both a yes and a no is wrong.
3. Otherwise the reference's words must occur in the prediction whole and adjacent, in order ("red" is in
   "it is a red circle" but not in "reddish" or "bred"; "3" is not in "13"), and
   - no occurrence may be negated ("not red", "there is no red circle", "isn't red"): a negator negates the next
     three words of its clause unless a pronoun / verb / "and" / "but" starts a new statement first;
   - no occurrence may be a hedge with "or" ("red or blue");
   - a bare list of several members of the reference's closed class ("red, blue and green" for "red", "2 or 3"
     for "3") is a guess, not an answer. A sentence naming other colours for other things ("a red circle next
     to a blue square") is judged by containment alone.
   A reference of 0 is also implied by "none" / "no <thing>" when no other number is named. A reference that is
   only an article (the sign letter "A") needs an upper-case "A" inside a clause or an "a" that ends one.
"""

from __future__ import annotations

import inspect
import re
import unicodedata
from typing import Any, Protocol, runtime_checkable

from harness.errors import AblateError, did_you_mean, one_of


@runtime_checkable
class Judge(Protocol):
    """Does `prediction` imply `reference` (as an answer to `question`)?

    A judge may also define `batch(items)`: a list of (question, prediction, reference) -> one result per item,
    called once per benchmark split (an LLM judge batches its prompts there). A result is a bool, or a pair
    (bool, raw output): the raw output (e.g. the judge model's own words) is kept with the prediction in
    predictions.jsonl as `judge_output`."""

    def __call__(self, question: str, prediction: str, reference: str) -> bool: ...



ARTICLES = frozenset({"a", "an", "the"})
NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
# British -> American; plurals are folded before this lookup, so singular forms suffice.
SPELLING = {
    "colour": "color", "coloured": "colored", "colourful": "colorful", "grey": "gray", "greyish": "grayish",
    "centre": "center", "metre": "meter", "litre": "liter", "theatre": "theater", "fibre": "fiber",
    "favourite": "favorite", "favour": "favor", "flavour": "flavor", "harbour": "harbor", "honour": "honor",
    "humour": "humor", "labour": "labor", "neighbour": "neighbor", "behaviour": "behavior", "rumour": "rumor",
    "tyre": "tire", "aluminium": "aluminum", "jewellery": "jewelry", "pyjama": "pajama",
}
# Only pairs a careful human grader would always accept; a false synonym silently inflates every score.
SYNONYMS = {
    "violet": "purple", "sofa": "couch", "automobile": "car", "bicycle": "bike", "television": "tv",
    "ocean": "sea",
}
COLOURS = frozenset(
    "red blue green yellow purple orange pink brown black white gray cyan magenta teal navy gold silver".split()
)
YES_WORDS = frozenset({"yes", "yeah", "yep", "yup", "yea", "correct", "true", "affirmative", "certainly", "indeed"})
NO_WORDS = frozenset({"no", "nope", "nah", "false", "incorrect"})
NEGATORS = frozenset({"not", "no", "never", "neither", "nor", "without", "none", "cannot", "nothing"})
# Words that start a new statement and so end a negator's scope ("no, it is red": "red" is not negated).
SCOPE_BREAKERS = frozenset({
    "it", "its", "is", "are", "was", "were", "this", "that", "they", "he", "she", "there", "and", "but", "i",
    "s", "which", "who", "instead", "rather",
})
NEGATION_SCOPE = 3
# Words allowed between the members of a bare list ("red, blue and green"; "maybe 2 or 3").
LIST_FILLER = frozenset({"and", "or", "either", "maybe", "perhaps", "possibly", "both", "it", "is", "s", "are",
                         "they", "color"})
AUXILIARIES = frozenset({"is", "are", "was", "were", "does", "do", "did", "can", "could", "will", "would", "has",
                         "have", "had", "should", "shall", "may", "might"})
# Not content: what a yes/no question is about is in its other words (format instructions included).
_QUESTION_STOPWORDS = AUXILIARIES | ARTICLES | frozenset(
    "there it this that these those any in on of at to image picture photo video scene shown visible answer yes no "
    "or please with one word s clip frame some object from by give short reply respond tell me you your just only "
    "following question".split()
)

_CLAUSE_END = re.compile(r"[.,;:!?()\[\]\n]+")
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[a-z]+")


def _fold_plural(word: str) -> str:
    """Crude singular form, applied to both sides alike, so only collisions between distinct words can hurt."""
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "shes", "ches", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def canonical_word(word: str) -> str:
    """One lower-case word -> its canonical form (plural, spelling, synonym, number word)."""
    word = _fold_plural(word)
    word = SPELLING.get(word, word)
    word = SYNONYMS.get(word, word)
    return NUMBER_WORDS.get(word, word)


QUESTION_STOPWORDS = frozenset(canonical_word(w) for w in _QUESTION_STOPWORDS)


def clauses(text: str, drop_articles: bool = True) -> list[list[str]]:
    """Normalised text as clauses of canonical words; punctuation separates clauses."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # "1,000" is one number, not "1" and "000"
    text = text.replace("cannot", "can not").replace("n't", " not").replace("'", "")
    out = []
    for part in _CLAUSE_END.split(text):
        words = [canonical_word(w) for w in _TOKEN.findall(part) if not (drop_articles and w in ARTICLES)]
        if words:
            out.append(words)
    return out


def normalise(text: str) -> str:
    """Canonical words joined by spaces: 'The Colours are GREY.' -> 'color are gray'."""
    return " ".join(w for clause in clauses(text) for w in clause)


def _negated(clause: list[str], start: int) -> bool:
    """Is the word at `start` in the scope of a negator earlier in its clause?"""
    for j in range(start - 1, max(-1, start - 1 - NEGATION_SCOPE), -1):
        if clause[j] in NEGATORS:
            return True
        if clause[j] in SCOPE_BREAKERS:
            return False
    return False


def detect_yes_no(prediction: str, question: str = "") -> str | None:
    """'yes', 'no' or None (unclear, or both).

    A prediction that starts with (or contains only one kind of) explicit answer words gives that answer; one
    with both a yes-word and a no-word is None. Without answer words, a negated restatement of the question's
    content gives 'no' ("the circle is not red") and a full positive restatement gives 'yes' ("the circle is
    red" for "is the circle red?"); anything else is None.
    """
    parts = clauses(prediction, drop_articles=False)
    words = [w for clause in parts for w in clause]
    if not words:
        return None
    has_yes = any(w in YES_WORDS for w in words)
    has_no = any(w in NO_WORDS for w in words)
    if has_yes and has_no:
        return None
    if has_yes:
        return "yes"
    if has_no:
        return "no"
    content = {w for clause in clauses(question) for w in clause} - QUESTION_STOPWORDS
    negated = {c[i] for c in parts for i in range(len(c)) if _negated(c, i)}
    if any(w in NEGATORS for w in words) and (not content or negated & content):
        return "no"
    if content and content <= set(words) and not any(w in NEGATORS for w in words):
        return "yes"
    return None


def _closed_class(word: str) -> frozenset[str] | None:
    if word in COLOURS:
        return COLOURS
    return None


def _bare_list(words: list[str], ref: str) -> bool:
    """Is the prediction only a list of several members of the reference's closed class (a guess)?"""
    if ref.isdigit():
        members = [w for w in words if w.isdigit()]
        rest = [w for w in words if not w.isdigit()]
    else:
        cls = _closed_class(ref)
        if cls is None:
            return False
        members = [w for w in words if w in cls]
        rest = [w for w in words if w not in cls]
    return len(set(members)) > 1 and all(w in LIST_FILLER for w in rest)


def _letter_a(prediction: str, reference: str) -> bool:
    """An article-only reference (the sign letter "A") is named by an upper-case "A" inside a clause, or by an
    "a" that ends its clause ("the letter is a."): an article always has a word after it."""
    letter = reference.strip(" .!?'\"").lower()
    if not letter:
        return False
    for part in _CLAUSE_END.split(prediction):
        tokens = re.findall(r"[A-Za-z0-9]+", part)
        if tokens and tokens[-1].lower() == letter:
            return True
        if any(t == letter.upper() for t in tokens[1:]):
            return True
    return False


def implies(question: str, prediction: str, reference: str) -> bool:
    """The `rules` judge's verdict (see the module docstring for the rules)."""
    ref = [w for c in clauses(reference) for w in c]
    if not ref:  # only articles: an OCR answer "A"
        return _letter_a(prediction, reference)
    if ref in (["yes"], ["no"]):
        return detect_yes_no(prediction, question) == ref[0]
    parts = clauses(prediction)
    words = [w for c in parts for w in c]
    if not words:
        return False
    if len(ref) == 1 and _bare_list(words, ref[0]):
        return False
    ref_has_negator = any(w in NEGATORS for w in ref)
    n = len(ref)
    matched = False
    for clause in parts:
        for i in range(len(clause) - n + 1):
            if clause[i:i + n] != ref:
                continue
            if not ref_has_negator and _negated(clause, i):
                return False  # a negated mention contradicts any other one
            hedged = (i > 0 and clause[i - 1] == "or") or (i + n < len(clause) and clause[i + n] == "or")
            matched = matched or not hedged
    if matched:
        return True
    if ref == ["0"]:  # "there are no triangles", "none"
        has_zero_word = any(w in ("no", "none") for w in words)
        return has_zero_word and not any(w.isdigit() for w in words)
    return False


class RuleJudge:
    """The default judge: normalisation, numbers, synonyms, yes/no detection, guarded whole-word containment."""

    def __call__(self, question: str, prediction: str, reference: str) -> bool:
        return implies(question, prediction, reference)


class ExactJudge:
    """A strict control: the normalised prediction equals the normalised reference."""

    def __call__(self, question: str, prediction: str, reference: str) -> bool:
        ref = normalise(reference)
        return bool(ref) and normalise(prediction) == ref


def build_judge(name: str, options: dict[str, Any] | None = None) -> Judge:
    """The judge registered under `name`, built with `options` (`eval.judge.options`) as keyword arguments.
    Unknown names fail with the known ones and a suggestion; options the judge does not take fail naming those it
    does."""
    from harness.components import JUDGES

    factory = JUDGES.get(name)
    check_judge_options(name, factory, options or {})
    return factory(**(options or {}))


def check_judge_options(name: str, factory: Any, options: dict[str, Any]) -> None:
    """Refuse options that `factory` has no keyword parameter for (unless it takes **kwargs)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    takes = [k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [k for k in options if k not in takes]
    if unknown:
        raise AblateError(f"eval.judge.options: judge '{name}' takes no option '{unknown[0]}'"
                          f"{did_you_mean(unknown[0], takes)}; it takes {one_of(takes) if takes else 'none'}")
