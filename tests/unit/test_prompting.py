"""Few-shot prompting: demonstrations, balanced and seeded, written out as a prefix. Scoring
with the prefix computed once is lmlib.classify's job (tests/unit/test_classify.py)."""

import pytest

from lmlib.data import LabeledSentence as S
from lmlib.prompting import demonstrations, few_shot_prefix

POOL = [S("good fun", 1), S("dull", 0), S("a joy", 1), S("bad , bad", 0), S("fine", 1),
        S("awful", 0)]  # fmt: skip


def test_demonstrations_are_balanced_seeded_and_checked():
    demos = demonstrations(POOL, 4, seed=3)
    assert sorted(ex.label for ex in demos) == [0, 0, 1, 1]
    assert demos == demonstrations(POOL, 4, seed=3)
    assert len(demonstrations(POOL, 5, balanced=False)) == 5
    with pytest.raises(ValueError, match="balanced"):
        demonstrations(POOL, 3)
    with pytest.raises(ValueError, match="between"):
        demonstrations(POOL, 7)
    assert few_shot_prefix([], (" no", " yes")) == ""


def test_few_shot_prefix_writes_each_demonstration_with_its_label_word():
    demos = [S("a joy", 1), S("dull", 0)]
    got = few_shot_prefix(demos, (" no", " yes"), "{sentence} ->", sep="|")
    assert got == "a joy -> yes|dull -> no|"
