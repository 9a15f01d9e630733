"""lmlib: the small teaching package behind the book. Modules follow the chapters:

- `lmlib.runtime`: seeding and device choice (every chapter's first cell)
- `lmlib.allocator`: memory a training step frees kept for its next step (Linux, glibc),
  set when lmlib is imported
- `lmlib.data`: the book's data sets, found offline or downloaded and checksum-verified
- `lmlib.gguf`: GGUF, llama.cpp's model file, read and de-quantized by hand (Chapters 1, 7)
- `lmlib.pretrained`: SmolLM2-135M-Instruct (also in lmlib's own Llama) and all-MiniLM-L6-v2,
  offline
- `lmlib.history`: published milestones and model sizes, with sources (Chapter 1)
- `lmlib.ngram`: n-gram language models (Chapter 1)
- `lmlib.tokenizers`: character and byte-level BPE tokenizers, from scratch (Chapter 2)
- `lmlib.neural_lm`: Bengio's neural language model, the step after n-grams (Chapter 2)
- `lmlib.word2vec`: skip-gram with negative sampling, static word vectors (Chapter 2)
- `lmlib.objectives`: pre-training objectives as data transformations: causal, masked
  (BERT's 80/10/10), next-sentence prediction, span corruption (Chapter 2)
- `lmlib.attention`: attention by hand and fused (with grouped-query heads), position
  encodings, norms, feed-forward layers (Chapters 3-4)
- `lmlib.model`: GPT-2-style and Llama-style decoder-only models side by side, and where
  their parameters are (Chapters 3-5)
- `lmlib.inputs`: a decoder's inputs: token ids or embeddings, positions and attention masks,
  with a KV cache and left padding (Chapters 3, 5)
- `lmlib.convert`: Hugging Face checkpoints in lmlib's GPT and Llama (Chapter 3)
- `lmlib.seq2seq`: the encoder-decoder Transformer, cross-attention, translation (Ch. 3)
- `lmlib.number_words`: a generated translation task, numbers in English and French words
  (Chapter 3)
- `lmlib.generation_metrics`: scoring generated text and code: BLEU, ROUGE, distinct-n and
  repetition, pass@k (Chapters 3, 5, 6)
- `lmlib.perplexity`: perplexity, exp of the mean cross-entropy, over long texts (Chapter 4)
- `lmlib.batches`: batches from one long token sequence, and the loss on fixed ones (Ch. 5)
- `lmlib.optim`: AdamW and its learning-rate schedule (Chapter 5)
- `lmlib.train`: a training run's config and the resumable training loop (Chapter 5)
- `lmlib.checkpoints`: checkpoint files with a checksum, checked before loading (Chapter 5)
- `lmlib.kvcache`: the KV cache: keys and values kept between steps, shared prefixes, its
  memory (Chapter 5)
- `lmlib.sampling`: from next-token logits to a token: logits processors, sampling (Ch. 5)
- `lmlib.generate`: the decoding loop: greedy, sampling, streaming, batched prompts (Ch. 5)
- `lmlib.beam_search`: keep the most likely continuations instead of one (Chapter 5)
- `lmlib.finetune`: LoRA, adapters and prompt tuning (Chapter 5)
- `lmlib.classifier_training`: a language model fine-tuned on its label words, or an encoder
  with a new head (Chapter 5)
- `lmlib.sft`: supervised fine-tuning on conversations, the loss on the assistant's tokens
  (Chapter 5)
- `lmlib.preference`: a reward model and direct preference optimization (DPO) (Chapter 5)
- `lmlib.grpo`: reinforcement learning with a verifiable reward, GRPO (Chapter 5)
- `lmlib.memory`: where a training step's memory goes, predicted and measured (Chapter 5)
- `lmlib.distributed`: one training run on several processes, DDP and FSDP (Chapter 5)
- `lmlib.prompting`: zero- and few-shot prompts, scored with a shared cached prefix (Ch. 6)
- `lmlib.classify`: classification by label words, a language model without a new head (Ch. 6)
- `lmlib.metrics`: accuracy, precision/recall/F1, recall@k, answers to questions (Ch. 6)
- `lmlib.rag`: passages, BM25 and dense retrieval, prompts with context (Chapter 6)
- `lmlib.chat`: a multi-turn chat loop within the context window, streamed (Chapter 6)
- `lmlib.sandbox`: running generated code against unit tests with limits (Chapter 6)
- `lmlib.quantization`: weights as small integers, and the memory that saves (Chapter 7)
- `lmlib.speculative`: speculative decoding, a 4-bit draft of the model guessing ahead and
  the model checking its guesses: greedy decoding's tokens, faster (Chapter 7)
- `lmlib.memorization`: does a model reproduce its training data word for word? (Chapter 7)
- `lmlib.scaling`: compute-optimal model sizes, Chinchilla's rule of thumb (Chapter 7)
"""

from lmlib.allocator import keep_freed_memory
from lmlib.runtime import (
    cache_root,
    environment_summary,
    get_device,
    in_colab,
    seed_everything,
)

__version__ = "0.1.0"

keep_freed_memory()  # what a step frees serves the next one: no page faults (lmlib.allocator)

__all__ = ["cache_root", "environment_summary", "get_device", "in_colab", "seed_everything"]
