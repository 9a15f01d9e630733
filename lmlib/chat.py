"""A chatbot: a system prompt, the conversation so far, and a context window (Chapter 6).

A chat model has no memory between calls. Every turn, the whole conversation is written out
with the model's chat template (special tokens mark who speaks) and the model continues it
as the assistant. `chat_prompt` writes one such prompt; Chapters 6 and 7 send batches of
them through `lmlib.generate.generate_text` (`ask_all` does both for single questions).
The conversation grows; the context window does not. `Chat` keeps the system prompt and
drops the oldest exchanges once the prompt plus the reply would not fit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lmlib.generate import GenerationConfig, generate_text, resolve, stream
from lmlib.runtime import check_int


def chat_prompt(tokenizer, messages: str | list[dict], system: str | None = None) -> str:
    """The prompt text a chat model continues as the assistant.

    ``messages`` is one user message (a string) or a conversation: a list of
    ``{"role": ..., "content": ...}`` dicts, roles "system", "user" and "assistant".
    ``system``, if given, goes first as the system message. The tokenizer's chat template
    writes it out and ends with the assistant's cue (``add_generation_prompt=True``).

    >>> class Plain:  # a stand-in for a Hugging Face tokenizer and its template
    ...     def apply_chat_template(self, messages, tokenize, add_generation_prompt):
    ...         text = "".join(f"<{m['role']}>{m['content']}\\n" for m in messages)
    ...         return text + ("<assistant>" if add_generation_prompt else "")
    >>> chat_prompt(Plain(), "Hi!", system="Be brief.")
    '<system>Be brief.\\n<user>Hi!\\n<assistant>'
    """
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not messages or not all(isinstance(m, dict) and {"role", "content"} <= m.keys()
                               and isinstance(m["role"], str) and isinstance(m["content"], str)
                               for m in messages):  # fmt: skip
        raise ValueError(f"messages must be a string or a non-empty list of "
                         f"{{'role': str, 'content': str}} dicts, got "
                         f"{messages!r:.60}")  # fmt: skip
    if system is not None:
        if not isinstance(system, str):
            raise TypeError(f"system must be None or a str, got {type(system).__name__}")
        if messages[0]["role"] == "system":
            raise ValueError("messages already start with a system message; drop system=")
        messages = [{"role": "system", "content": system}] + list(messages)
    if not hasattr(tokenizer, "apply_chat_template"):
        raise TypeError(f"tokenizer must have a chat template (apply_chat_template), got "
                        f"{type(tokenizer).__name__}")  # fmt: skip
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


class Chat:
    """A multi-turn conversation with an instruction-tuned model (the book's `Llama`).

    ``max_context`` is the token budget for the prompt *and* the reply, at most the model's
    ``block_size``; the default of 2048 keeps memory and time small on a CPU (SmolLM2 was
    trained with up to 8192). How to decode is a `lmlib.generate.GenerationConfig`
    (``config``, with keyword ``options`` overriding its fields); the default is greedy,
    which is reproducible, with replies of up to 128 tokens that end at the tokenizer's eos.
    """

    def __init__(self, model, tokenizer, system: str | None = None, max_context: int = 2048,
                 config: GenerationConfig | None = None,
                 generator: torch.Generator | None = None, **options):  # fmt: skip
        # Everything is checked here, so that send() fails only for the message itself.
        cfg = resolve(config or GenerationConfig(max_new_tokens=128), **options)
        block_size = getattr(getattr(model, "config", None), "block_size", None)
        if not isinstance(model, torch.nn.Module) or block_size is None:
            raise TypeError(f"model must be lmlib's GPT or Llama (a module with config."
                            f"block_size), got {type(model).__name__}")  # fmt: skip
        for method in ("apply_chat_template", "encode", "decode"):
            if not callable(getattr(tokenizer, method, None)):
                raise TypeError(f"tokenizer must have apply_chat_template, encode and decode "
                                f"(a Hugging Face tokenizer), got "
                                f"{type(tokenizer).__name__}")  # fmt: skip
        if system is not None and not isinstance(system, str):
            raise TypeError(f"system must be None or a str, got {type(system).__name__}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be None or a torch.Generator, got "
                            f"{type(generator).__name__}")  # fmt: skip
        if cfg.eos_token_id is None:
            cfg = cfg.replace(eos_token_id=tokenizer.eos_token_id)
        if cfg.stop_strings or cfg.num_beams > 1:
            raise ValueError("Chat streams its reply and ends it at eos: stop_strings and "
                             "num_beams are for generate_text and beam_search")  # fmt: skip
        check_int(max_context, "max_context", low=2)
        if max_context > block_size:
            raise ValueError(f"max_context {max_context} exceeds the model's block_size "
                             f"{block_size}")  # fmt: skip
        if cfg.sliding_window is not None and cfg.sliding_window > block_size:
            raise ValueError(f"sliding_window {cfg.sliding_window} exceeds the model's "
                             f"block_size {block_size}")  # fmt: skip
        if cfg.max_new_tokens >= max_context:
            raise ValueError("max_new_tokens must leave room for the prompt in max_context")
        self.model, self.tokenizer, self.generator = model, tokenizer, generator
        self.system, self.max_context, self.config = system, max_context, cfg
        self.history: list[dict] = []  # user and assistant turns, oldest first
        self.dropped = 0  # turns removed to fit the context window so far
        if system and len(self.prompt_ids()) + cfg.max_new_tokens >= max_context:
            raise ValueError(f"the system prompt takes {len(self.prompt_ids())} tokens: with "
                             f"max_new_tokens {cfg.max_new_tokens} no message fits in "
                             f"max_context {max_context}")  # fmt: skip

    @property
    def max_new_tokens(self) -> int:
        return self.config.max_new_tokens

    def messages(self) -> list[dict]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.history

    def prompt_ids(self) -> list[int]:
        """The conversation as the model reads it, ending with the assistant's cue."""
        text = chat_prompt(self.tokenizer, self.messages())
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _fit(self) -> list[int]:
        """Drop the oldest exchange (a user turn and its reply) until the prompt fits."""
        ids = self.prompt_ids()
        while len(ids) + self.max_new_tokens > self.max_context:
            if len(self.history) <= 1:
                raise ValueError(
                    f"the system prompt and the last message take {len(ids)} tokens; with "
                    f"{self.max_new_tokens} new tokens they exceed max_context="
                    f"{self.max_context}. Shorten the message or raise max_context."
                )
            del self.history[:2]
            self.dropped += 2
            ids = self.prompt_ids()
        return ids

    @torch.no_grad()
    def send(self, message: str, on_text: Callable[[str], None] | None = None) -> str:
        """Add the user's ``message``, generate the reply (streamed to ``on_text`` piece by
        piece as it is produced, e.g. ``print``), add it to the history and return it.

        If anything fails (or the cell is interrupted), the conversation is left exactly as
        it was before the call."""
        if not isinstance(message, str) or not message.strip():
            raise ValueError(f"message must be a non-empty string, got {message!r:.40}")
        if on_text is not None and not callable(on_text):
            raise TypeError(f"on_text must be None or a function, got {type(on_text).__name__}")
        saved = list(self.history), self.dropped
        try:
            return self._reply(message, on_text)
        except BaseException:
            self.history, self.dropped = saved  # leave the conversation as it was
            raise

    def _reply(self, message: str, on_text) -> str:
        self.history.append({"role": "user", "content": message})
        ids = self._fit()
        device = next(self.model.parameters()).device
        eos = set(self.config.eos_token_id if isinstance(self.config.eos_token_id, (list, tuple))
                  else [self.config.eos_token_id])  # fmt: skip
        new: list[int] = []
        shown = ""
        for token in stream(self.model, torch.tensor([ids], device=device), self.config,
                            generator=self.generator):  # fmt: skip
            if token.item() in eos:
                break
            new.append(token.item())
            # Decode everything so far and show only what is new: one token can be half a
            # character (a Chinese character is often two byte-level tokens).
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            if on_text and not text.endswith("\ufffd"):
                on_text(text[len(shown) :])
                shown = text
        reply = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        self.history.append({"role": "assistant", "content": reply})
        return reply

    def context_tokens(self) -> int:
        """Tokens the next prompt would take before the new message."""
        return len(self.prompt_ids())


def ask_all(model, tokenizer, user_messages: list[str], max_new_tokens: int = 48,
            system: str | None = None) -> list[str]:  # fmt: skip
    """One batch of single-turn questions, answered greedily (reproducible, and fair between
    the methods a chapter compares): each reply, stripped of surrounding white space."""
    if isinstance(user_messages, str) or not all(isinstance(m, str) for m in user_messages):
        raise TypeError(f"user_messages must be a list of strings, got {user_messages!r:.50}")
    prompts = [chat_prompt(tokenizer, m, system=system) for m in user_messages]
    texts = generate_text(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    return [t.strip() for t in texts]


def interactive(chat: Chat) -> None:  # pragma: no cover - needs a person at the keyboard
    """Talk to the model in a terminal or notebook; an empty line ends the conversation."""
    while message := input("you> ").strip():
        print("bot> ", end="", flush=True)
        chat.send(message, on_text=lambda piece: print(piece, end="", flush=True))
        print()
