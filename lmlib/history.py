"""Published figures about language models: milestones, sizes and training data.

Chapter 1 plots these; the trends chapter reuses them for scaling estimates. Every number
here is a figure its authors published, with the source next to it. Where the authors did
not publish a number (GPT-2's training tokens, GPT-4's size) it is ``None``, never a guess.

>>> gpt3 = next(m for m in PUBLISHED_MODELS if m.name == "GPT-3")
>>> f"{training_flops(gpt3):.2e}"  # 6 * N * D; the GPT-3 paper reports 3.14e23
'3.15e+23'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Milestone:
    year: int
    name: str
    idea: str  # what it introduced, in a few words
    source: str  # the paper or announcement


@dataclass(frozen=True)
class PublishedModel:
    name: str
    year: int  # year of the paper or release
    params: float | None  # total parameters, as published
    tokens: float | None  # training tokens, as published (None: not disclosed)
    source: str


MILESTONES: tuple[Milestone, ...] = (
    Milestone(1948, "n-grams of English", "letters and words predicted from the ones before",
              "Shannon, A Mathematical Theory of Communication (1948)"),
    Milestone(1976, "Statistical speech recognition", "n-gram language models in practice",
              "Jelinek, Continuous speech recognition by statistical methods (1976)"),
    Milestone(1997, "LSTM", "recurrent networks that keep long-range memory",
              "Hochreiter and Schmidhuber, Long Short-Term Memory (1997)"),
    Milestone(2003, "Neural language model", "learned word embeddings shared across contexts",
              "Bengio et al., A Neural Probabilistic Language Model (2003)"),
    Milestone(2010, "RNN language model", "a recurrent network predicts the next word",
              "Mikolov et al., Recurrent neural network based language model (2010)"),
    Milestone(2013, "word2vec", "cheap embeddings from billions of words",
              "Mikolov et al., Efficient Estimation of Word Representations (2013)"),
    Milestone(2014, "Seq2seq and attention", "encoder-decoder RNNs that attend to the input",
              "Sutskever et al. (2014); Bahdanau et al. (2014)"),
    Milestone(2017, "Transformer", "attention only, no recurrence: parallel training",
              "Vaswani et al., Attention Is All You Need (2017)"),
    Milestone(2018, "GPT and BERT", "pre-train once, fine-tune for each task",
              "Radford et al. (2018); Devlin et al. (2018)"),
    Milestone(2019, "GPT-2 and T5", "bigger models, tasks as text",
              "Radford et al. (2019); Raffel et al. (2019)"),
    Milestone(2020, "GPT-3 and scaling laws", "few-shot learning from the prompt alone",
              "Brown et al. (2020); Kaplan et al. (2020)"),
    Milestone(2022, "InstructGPT, Chinchilla, ChatGPT",
              "instruction tuning with human feedback; compute-optimal data",
              "Ouyang et al. (2022); Hoffmann et al. (2022); OpenAI (Nov 2022)"),
    Milestone(2023, "LLaMA, GPT-4, Llama 2, Mistral 7B", "strong open-weight models",
              "Touvron et al. (2023); OpenAI (2023); Jiang et al. (2023)"),
    Milestone(2024, "Llama 3, Qwen2.5, DeepSeek-V3", "open models trained on 15T+ tokens",
              "Llama Team (2024); Qwen Team (2024); DeepSeek-AI (2024)"),
    Milestone(2025, "DeepSeek-R1", "reasoning learned with reinforcement learning",
              "DeepSeek-AI, DeepSeek-R1 (2025)"),
)  # fmt: skip

PUBLISHED_MODELS: tuple[PublishedModel, ...] = (
    PublishedModel("Transformer (big)", 2017, 213e6, None,
                   "Vaswani et al. 2017, Table 3"),
    PublishedModel("GPT", 2018, 117e6, None,
                   "Radford et al. 2019, Table 2 (smallest size = original GPT)"),
    # 1M steps of 256 sequences; 90% of the steps used sequences of 128 tokens and the last
    # 10% sequences of 512: 1e6 * 256 * (0.9 * 128 + 0.1 * 512) = 4.26e10 tokens (counting
    # every step at 512 tokens, as "256 x 512 = 128,000 tokens/batch" suggests, is 3x more).
    PublishedModel("BERT-Large", 2018, 340e6, 1e6 * 256 * (0.9 * 128 + 0.1 * 512),
                   "Devlin et al. 2019, App. A.2: 1M steps of 256 sequences, 90% of 128 "
                   "tokens"),
    PublishedModel("GPT-2", 2019, 1.542e9, None, "Radford et al. 2019, Table 2"),
    PublishedModel("T5-11B", 2019, 11e9, 1e12,
                   "Raffel et al. 2020, Sec. 3.7: about 1 trillion tokens"),
    PublishedModel("GPT-3", 2020, 175e9, 300e9, "Brown et al. 2020, Table 2.2 and D.1"),
    PublishedModel("Gopher", 2021, 280e9, 300e9, "Rae et al. 2021"),
    PublishedModel("Chinchilla", 2022, 70e9, 1.4e12, "Hoffmann et al. 2022"),
    PublishedModel("PaLM", 2022, 540e9, 780e9, "Chowdhery et al. 2022"),
    PublishedModel("GPT-4", 2023, None, None, "OpenAI 2023: size and data not disclosed"),
    PublishedModel("LLaMA-65B", 2023, 65e9, 1.4e12, "Touvron et al. 2023, Table 2"),
    PublishedModel("Llama 2 70B", 2023, 70e9, 2e12, "Touvron et al. 2023b"),
    PublishedModel("Llama 3.1 405B", 2024, 405e9, 15.6e12, "Llama Team 2024"),
    PublishedModel("DeepSeek-V3", 2024, 671e9, 14.8e12,
                   "DeepSeek-AI 2024 (37B parameters active per token)"),
    PublishedModel("Qwen2.5-72B", 2024, 72.7e9, 18e12, "Qwen Team 2024"),
    PublishedModel("SmolLM2-135M", 2024, 135e6, 2e12, "Allal et al. 2025"),
    PublishedModel("SmolLM2-1.7B", 2024, 1.7e9, 11e12, "Allal et al. 2025"),
)  # fmt: skip


def training_flops(model: PublishedModel) -> float | None:
    """Training compute estimated as 6 * N * D floating-point operations.

    Each parameter costs about 2 FLOPs per token in the forward pass (a multiply and an
    add) and about 4 in the backward pass (Kaplan et al. 2020). None when N or D is unknown.
    """
    if not isinstance(model, PublishedModel):
        raise TypeError(f"model must be a PublishedModel, got {type(model).__name__}")
    if model.params is None or model.tokens is None:
        return None
    return 6.0 * model.params * model.tokens
