"""How fast our RegexBPETokenizer trains on Tiny Shakespeare, next to the `tokenizers` library.

Both learn byte-level BPE with GPT-2's split pattern and the same vocabulary size (256 bytes
plus merges, no special tokens), timed with time.perf_counter around training only. Prints
readable lines, then one JSON line with keys seconds, hf_seconds, vocab_size,
bytes_per_token, hf_bytes_per_token and roundtrip_ok.

    LMLIB_DATA_DIR=../shared/data python benchmarks/bpe_train.py --vocab-size 1024
"""

import argparse
import json
import time

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from lmlib.data import load_tiny_shakespeare
from lmlib.tokenizers import RegexBPETokenizer


def train_hf(text: str, vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, like ours
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator([text], trainer)
    return tok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=1024)
    args = parser.parse_args()
    text = load_tiny_shakespeare()
    n_bytes = len(text.encode("utf-8"))
    print(f"corpus: Tiny Shakespeare, {len(text):,} characters, {n_bytes:,} bytes")

    t0 = time.perf_counter()
    ours = RegexBPETokenizer()
    ours.train(text, vocab_size=args.vocab_size)
    seconds = time.perf_counter() - t0
    ids = ours.encode(text)
    roundtrip_ok = ours.decode(ids) == text
    verdict = "ok" if roundtrip_ok else "FAILED"
    print(f"lmlib RegexBPETokenizer: {seconds:.2f} s, vocab {ours.vocab_size}, "
          f"{n_bytes / len(ids):.4f} bytes/token, round trip {verdict}")  # fmt: skip

    t0 = time.perf_counter()
    hf = train_hf(text, args.vocab_size)
    hf_seconds = time.perf_counter() - t0
    hf_ids = hf.encode(text).ids
    print(f"tokenizers BPE:          {hf_seconds:.2f} s, vocab {hf.get_vocab_size()}, "
          f"{n_bytes / len(hf_ids):.4f} bytes/token")  # fmt: skip

    result = {
        "seconds": round(seconds, 3),
        "hf_seconds": round(hf_seconds, 3),
        "vocab_size": ours.vocab_size,
        "bytes_per_token": round(n_bytes / len(ids), 4),
        "hf_bytes_per_token": round(n_bytes / len(hf_ids), 4),
        "roundtrip_ok": roundtrip_ok,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
