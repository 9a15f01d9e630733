"""The chat loop on a tiny random Llama: template, streaming, and history truncation."""

import pytest
import torch

from lmlib.chat import Chat
from lmlib.model import Llama, LlamaConfig

V, EOS = 64, 0


class TemplateTokenizer:
    """Characters as tokens (code point mod 63, + 1, so 0 stays the eos), a plain template."""

    eos_token_id = EOS

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        text = "".join(f"<{m['role']}>{m['content']}\n" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")

    def encode(self, text, add_special_tokens=True):
        return [ord(c) % (V - 1) + 1 for c in text]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(96 + i % 26) for i in ids if i != EOS)


@pytest.fixture
def chat():
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=V, block_size=256, n_layer=1, n_head=2, n_kv_head=1,
                              d_model=16, hidden=32)).eval()  # fmt: skip
    return Chat(model, TemplateTokenizer(), system="Be brief.", max_context=120,
                max_new_tokens=10)  # fmt: skip


def test_streamed_pieces_make_the_reply_and_history_grows(chat):
    pieces = []
    reply = chat.send("hello there", on_text=pieces.append)
    assert "".join(pieces).strip() == reply and len(reply) > 0
    assert [m["role"] for m in chat.messages()] == ["system", "user", "assistant"]
    assert chat.messages()[-1]["content"] == reply


def test_old_turns_are_dropped_to_fit_the_context_but_not_the_system_prompt(chat):
    for i in range(6):
        chat.send(f"message number {i}, with some padding words")
        assert chat.context_tokens() + chat.max_new_tokens <= chat.max_context + 60
    assert chat.dropped > 0 and chat.dropped % 2 == 0
    assert chat.messages()[0] == {"role": "system", "content": "Be brief."}
    assert chat.messages()[1]["role"] == "user"  # exchanges are dropped whole
    assert "number 5" in chat.messages()[-2]["content"]


def test_a_message_too_long_is_refused_and_the_history_kept(chat):
    chat.send("hi")
    before = list(chat.history)
    with pytest.raises(ValueError, match="max_context"):
        chat.send("x" * 200)
    assert chat.history == before
    with pytest.raises(ValueError, match="non-empty"):
        chat.send("   ")
    with pytest.raises(ValueError, match="block_size"):
        Chat(chat.model, chat.tokenizer, max_context=1000)


def test_greedy_chat_is_reproducible(chat):
    first = chat.send("same question")
    chat.history.clear()
    assert chat.send("same question") == first
