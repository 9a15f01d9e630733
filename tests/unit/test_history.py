"""The published figures: sourced, consistent, and the 6ND estimate."""

import pytest

from lmlib.history import MILESTONES, PUBLISHED_MODELS, training_flops


def test_every_figure_has_a_source_and_plausible_values():
    for m in PUBLISHED_MODELS:
        assert m.source.strip()
        assert 2017 <= m.year <= 2026
        assert m.params is None or 1e7 < m.params < 1e13
        assert m.tokens is None or 1e9 < m.tokens < 1e14
    assert [m.year for m in MILESTONES] == sorted(m.year for m in MILESTONES)


def test_six_n_d_matches_the_compute_reported_for_gpt3():
    gpt3 = next(m for m in PUBLISHED_MODELS if m.name == "GPT-3")
    assert training_flops(gpt3) == pytest.approx(3.14e23, rel=0.01)  # Brown et al., Table D.1


def test_undisclosed_figures_give_no_estimate():
    gpt4 = next(m for m in PUBLISHED_MODELS if m.name == "GPT-4")
    assert training_flops(gpt4) is None


def test_bert_large_tokens_count_the_short_sequences_of_most_steps():
    """Devlin et al. 2019, Appendix A.2: 1M steps of 256 sequences, 90% of the steps with
    sequences of 128 tokens, 10% with 512."""
    bert = next(m for m in PUBLISHED_MODELS if m.name == "BERT-Large")
    by_hand = 900_000 * 256 * 128 + 100_000 * 256 * 512  # 29.5e9 + 13.1e9
    assert bert.tokens == pytest.approx(by_hand) == pytest.approx(4.26e10, rel=1e-3)
    assert bert.tokens / bert.params == pytest.approx(125.3, abs=0.1)
