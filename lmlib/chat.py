"""A chatbot: a system prompt, the conversation so far, and a context window (Chapter 6).

A chat model has no memory between calls. Every turn, the whole conversation is written out
with the model's chat template (special tokens mark who speaks) and the model continues it
as the assistant. The conversation grows; the context window does not. `Chat` keeps the
system prompt and drops the oldest exchanges once the prompt plus the reply would not fit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lmlib.generate import stream


class Chat:
    """A multi-turn conversation with an instruction-tuned model (the book's `Llama`).

    ``max_context`` is the token budget for the prompt *and* the reply, at most the model's
    ``block_size``; the default of 2048 keeps memory and time small on a CPU (SmolLM2 was
    trained with up to 8192). Generation options (``do_sample``, ``top_p``, ...) go to
    `lmlib.generate.stream`; the default is greedy, which is reproducible.
    """

    def __init__(self, model, tokenizer, system: str | None = None, max_context: int = 2048,
                 max_new_tokens: int = 128, **options):  # fmt: skip
        if max_context > model.config.block_size:
            raise ValueError(f"max_context {max_context} exceeds the model's block_size "
                             f"{model.config.block_size}")  # fmt: skip
        if max_new_tokens >= max_context:
            raise ValueError("max_new_tokens must leave room for the prompt in max_context")
        self.model, self.tokenizer = model, tokenizer
        self.system, self.max_context, self.max_new_tokens = system, max_context, max_new_tokens
        self.options = options
        self.history: list[dict] = []  # user and assistant turns, oldest first
        self.dropped = 0  # turns removed to fit the context window so far

    def messages(self) -> list[dict]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.history

    def prompt_ids(self) -> list[int]:
        """The conversation as the model reads it, ending with the assistant's cue."""
        text = self.tokenizer.apply_chat_template(self.messages(), tokenize=False,
                                                  add_generation_prompt=True)  # fmt: skip
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
        piece as it is produced, e.g. ``print``), add it to the history and return it."""
        if not isinstance(message, str) or not message.strip():
            raise ValueError("message must be a non-empty string")
        saved = list(self.history), self.dropped
        self.history.append({"role": "user", "content": message})
        try:
            ids = self._fit()
        except ValueError:
            self.history, self.dropped = saved  # leave the conversation as it was
            raise
        device = next(self.model.parameters()).device
        eos = self.tokenizer.eos_token_id
        new: list[int] = []
        shown = ""
        for token in stream(self.model, torch.tensor([ids], device=device),
                            self.max_new_tokens, eos_token_id=eos, **self.options):  # fmt: skip
            if token.item() == eos:
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


def interactive(chat: Chat) -> None:  # pragma: no cover - needs a person at the keyboard
    """Talk to the model in a terminal or notebook; an empty line ends the conversation."""
    while message := input("you> ").strip():
        print("bot> ", end="", flush=True)
        chat.send(message, on_text=lambda piece: print(piece, end="", flush=True))
        print()
