"""The chat prompt and the chat loop on a tiny random Llama: template, streaming, history
truncation, and the generation config."""

import pytest
import torch

from lmlib.chat import Chat, ask_all, chat_prompt
from lmlib.generate import GenerationConfig
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
def model():
    torch.manual_seed(0)
    return Llama(LlamaConfig(vocab_size=V, block_size=256, n_layers=1, n_heads=2, n_kv_heads=1,
                             d_model=16, hidden=32)).eval()  # fmt: skip


@pytest.fixture
def chat(model):
    return Chat(model, TemplateTokenizer(), system="Be brief.", max_context=120,
                max_new_tokens=10)  # fmt: skip


# --------------------------------------------------------------------------------------------
# chat_prompt


def test_chat_prompt_writes_the_template_with_the_assistant_cue():
    tok = TemplateTokenizer()
    assert chat_prompt(tok, "hi") == "<user>hi\n<assistant>"
    assert chat_prompt(tok, "hi", system="Be brief.") == "<system>Be brief.\n<user>hi\n<assistant>"
    turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
             {"role": "user", "content": "c"}]  # fmt: skip
    assert chat_prompt(tok, turns) == "<user>a\n<assistant>b\n<user>c\n<assistant>"


def test_chat_prompt_equals_the_hand_written_template_call():
    """What Chapters 6 and 7 wrote by hand, with a real chat template."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}<|assistant|>{% endif %}")  # fmt: skip
    vocab = tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizers.Tokenizer(vocab))
    tok.chat_template = template
    system, question = "You are a helpful assistant.", "What is the capital of France?"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    by_hand = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert chat_prompt(tok, question, system=system) == by_hand
    assert chat_prompt(tok, messages) == by_hand


def test_chat_prompt_bad_input():
    tok = TemplateTokenizer()
    with pytest.raises(ValueError, match="messages must be"):
        chat_prompt(tok, [])
    with pytest.raises(ValueError, match="messages must be"):
        chat_prompt(tok, [{"role": "user"}])
    with pytest.raises(ValueError, match="already start with a system message"):
        chat_prompt(tok, [{"role": "system", "content": "x"}], system="y")
    with pytest.raises(TypeError, match="chat template"):
        chat_prompt(object(), "hi")


# --------------------------------------------------------------------------------------------
# Chat


def test_streamed_pieces_make_the_reply_and_history_grows(chat):
    pieces = []
    reply = chat.send("hello there", on_text=pieces.append)
    assert "".join(pieces).strip() == reply and len(reply) > 0
    assert [m["role"] for m in chat.messages()] == ["system", "user", "assistant"]
    assert chat.messages()[-1]["content"] == reply


def test_prompt_ids_are_the_chat_prompt_encoded(chat):
    chat.send("hello")
    text = chat_prompt(chat.tokenizer, chat.history, system="Be brief.")
    assert chat.prompt_ids() == chat.tokenizer.encode(text)


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


def test_a_config_is_passed_whole_and_options_override_it(model):
    tok = TemplateTokenizer()
    config = GenerationConfig(max_new_tokens=6, do_sample=True, temperature=1.5)
    bot = Chat(model, tok, config=config, max_context=120)
    assert bot.config == config.replace(eos_token_id=EOS) and bot.max_new_tokens == 6
    assert Chat(model, tok, max_context=120, config=config, max_new_tokens=8).max_new_tokens == 8
    assert Chat(model, tok, max_context=200).max_new_tokens == 128  # the default reply length

    def reply(seed):
        g = torch.Generator().manual_seed(seed)
        bot = Chat(model, tok, max_context=120, config=config, generator=g)
        return bot.send("tell me something")

    assert reply(0) == reply(0)
    assert len({reply(s) for s in range(4)}) > 1  # sampling: the seed matters
    with pytest.raises(ValueError, match="stop_strings"):
        Chat(model, tok, max_context=120, stop_strings=["\n"])
    with pytest.raises(ValueError, match="max_new_tokens must leave room"):
        Chat(model, tok, max_context=100, max_new_tokens=100)


def test_the_history_is_unchanged_after_any_error_in_send(model):
    def broken(tokens, logits):  # a processor that fails during generation
        if tokens.size(1) > 30:
            raise RuntimeError("processor failed")
        return logits

    bot = Chat(model, TemplateTokenizer(), system="Be brief.", max_context=120,
               max_new_tokens=10, logits_processors=[broken])  # fmt: skip
    bot.history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    before, dropped = [dict(m) for m in bot.history], bot.dropped
    with pytest.raises(RuntimeError, match="processor failed"):
        bot.send("hello there, a message that needs a reply")
    assert bot.history == before and bot.dropped == dropped

    def interrupt(piece):
        raise KeyboardInterrupt  # the reader stops the cell while the reply streams

    with pytest.raises(KeyboardInterrupt):
        Chat(model, TemplateTokenizer(), max_context=120, max_new_tokens=10).send("hi", interrupt)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(max_new_tokns=5), TypeError, r"unknown generation option\(s\) \['max_new_tokns'\]"),
        (dict(temperature=0), ValueError, "temperature must be"),
        (dict(generator=0), TypeError, "generator must be None or a torch.Generator"),
        (dict(max_context=0), ValueError, "max_context must be an int >= 2, got 0"),
        (dict(max_context=64.5), TypeError, "max_context must be an int"),
        (dict(system=5), TypeError, "system must be None or a str"),
        (dict(sliding_window=512), ValueError, "sliding_window 512 exceeds"),
        (dict(system="x" * 115), ValueError, "the system prompt takes"),
    ],
)
def test_options_are_checked_when_the_chat_is_made(model, kwargs, error, match):
    kwargs = {"max_context": 120, "max_new_tokens": 4, **kwargs}
    with pytest.raises(error, match=match):
        Chat(model, TemplateTokenizer(), **kwargs)
    with pytest.raises(TypeError, match="tokenizer must have apply_chat_template"):
        Chat(model, object())
    with pytest.raises(TypeError, match="model must be lmlib's GPT or Llama"):
        Chat(torch.nn.Linear(2, 2), TemplateTokenizer())


def test_ask_all_is_generate_text_on_chat_prompts_stripped(model, monkeypatch):
    import lmlib.chat

    tok, seen = TemplateTokenizer(), {}

    def fake_generate_text(m, t, prompts, **options):  # records the call, pads each reply
        seen.update(model=m, prompts=prompts, options=options)
        return [f"  reply {i}\n" for i in range(len(prompts))]

    monkeypatch.setattr(lmlib.chat, "generate_text", fake_generate_text)
    got = ask_all(model, tok, ["Hi!", "Two and two?"], max_new_tokens=6, system="Be brief.")
    assert got == ["reply 0", "reply 1"]
    assert seen["model"] is model and seen["options"] == {"max_new_tokens": 6}  # greedy
    assert seen["prompts"] == [
        chat_prompt(tok, q, system="Be brief.") for q in ("Hi!", "Two and two?")
    ]
    with pytest.raises(TypeError, match="list of strings"):
        ask_all(model, tok, "Hi!")
