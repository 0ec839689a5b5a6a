"""Contextual word embeddings from a hidden layer of a language model (paper §2.2).

The paper's word stream is the 7th hidden layer of GPT-2 given the 20 preceding tokens,
repeated over each word's duration. Here any Hugging Face causal or masked language model
works; the layer and the context length are options.

Offline only
------------
Models are loaded with ``local_files_only=True`` from a local folder or the local Hugging Face
cache (``$HF_HOME/hub``, by default ``~/.cache/huggingface/hub``); nothing is downloaded. If
the model is not there, :func:`load_language_model` raises
:class:`LanguageModelNotFoundError`, whose message says how to provide it. Tests and
benchmarks use :func:`make_random_language_model`: a small randomly initialised GPT-2 and a
word-piece tokenizer built in code.

Definition of the embedding
---------------------------
The speech words of a story (non-speech labels such as ``sp``, ``{LG}`` or ``sentence_start``
and empty labels are skipped, see :func:`is_speech_word`) are joined with single spaces and
tokenized once; each token is assigned to the word holding its last character. The embedding
of word ``i`` is the hidden state at ``layer`` of the *last* token of word ``i``, computed from
a window made of that token and the up to ``context_tokens`` tokens before it (fewer at the
start of the story) — i.e. at most ``context_tokens + 1`` tokens. ``layer = 0`` is the
embedding layer's output and ``layer = L`` the output of block ``L``, as in the
``hidden_states`` that transformers returns with ``output_hidden_states=True`` (for the last
block that includes the final layer norm when the model applies one). Tokenizers with a
``[CLS]`` token (BERT-style masked models) get ``[CLS]`` before and ``[SEP]`` after each window.
Windows are batched with right padding and an attention mask, which leaves the result of every
window unchanged.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._checks import _check_int, _check_positive, _check_type
from .._logging import logger, progress_enabled, verbose
from .textgrid import check_intervals, interval_frames

__all__ = [
    "NON_WORDS",
    "LanguageModel",
    "LanguageModelNotFoundError",
    "as_language_model",
    "is_speech_word",
    "load_language_model",
    "make_random_language_model",
    "word_embedding_features",
    "word_embeddings",
]

NON_WORDS = frozenset({"", "sp", "sil", "sl", "br", "lg", "ls", "ns", "cg", "ig", "ns_ap",
                       "sentence_start", "sentence_end"})
"""Word-tier labels that are not words (compared lower-case, without ``{}``), after the Huth
lab's ``DEFAULT_BAD_WORDS`` / ``EXTENDED_BAD_WORDS`` for LeBel's TextGrids."""


class LanguageModelNotFoundError(FileNotFoundError):
    """The language model is neither a local folder nor in the local Hugging Face cache."""


def _import_transformers():
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as err:
        raise ImportError(
            "Word embeddings need PyTorch and Hugging Face transformers, which are not "
            f"installed ({err}). Install them with: pip install \"neurofuse[real]\" (and torch, "
            "see the README).") from None
    return transformers


def is_speech_word(text) -> bool:
    """Whether a word-tier label is a word (not silence, a noise marker or empty).

    Non-words: :data:`NON_WORDS` (case-insensitive, with or without ``{}``) and any label
    wrapped in ``{}``, ``<>`` or ``[]`` (e.g. ``{inaudible}``, ``<unk>``).
    """
    text = str(text).strip()
    if not text or (text[0], text[-1]) in (("{", "}"), ("<", ">"), ("[", "]")):
        return False
    return text.lower() not in NON_WORDS


@dataclass
class LanguageModel:
    """A loaded language model and its tokenizer, reusable across stories.

    Attributes
    ----------
    model : torch.nn.Module
        A transformers model (base, causal-LM or masked-LM), in eval mode.
    tokenizer : transformers tokenizer
        Its tokenizer (fast tokenizers are exact; slow ones are tokenized word by word).
    name : str
        Where it came from (folder, hub id or ``"random"``).
    """

    model: object
    tokenizer: object
    name: str = "custom"
    _hook_ok: dict = field(default_factory=dict, repr=False)

    @property
    def config(self):
        config = self.model.config
        return config.get_text_config() if hasattr(config, "get_text_config") else config

    @property
    def n_layers(self) -> int:
        """Number of hidden layers (valid ``layer`` values are 0 to n_layers)."""
        return int(self.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        """Width of the hidden states (768 for GPT-2)."""
        return int(self.config.hidden_size)

    @property
    def max_positions(self) -> int | None:
        """Longest input the model accepts, if it says."""
        for key in ("n_positions", "max_position_embeddings"):
            value = getattr(self.config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def device(self):
        return next(self.model.parameters()).device

    def to(self, device):
        """Move the model to ``device`` (in place); return self."""
        if device is not None:
            self.model.to(device)
        return self


def _unavailable_message(name, err) -> str:
    hf_home = os.environ.get("HF_HOME", str(Path("~/.cache/huggingface").expanduser()))
    hub_id = name if not Path(name).expanduser().is_absolute() else "gpt2"
    return (
        f"The language model {name!r} (parameter 'language_model') is not available offline: "
        f"it is not a folder holding a saved model and not in the local Hugging Face cache "
        f"({hf_home}/hub). neurofuse never downloads at run time. To provide it, on a machine "
        f"with internet either\n"
        f"  * run `huggingface-cli download {hub_id}` (or `hf download {hub_id}`) and copy the "
        f"cache folder ({hf_home}) here, or set HF_HOME to where it is; or\n"
        f"  * in Python: `from transformers import AutoModel, AutoTokenizer; "
        f"AutoModel.from_pretrained('{hub_id}').save_pretrained(DIR); "
        f"AutoTokenizer.from_pretrained('{hub_id}').save_pretrained(DIR)`, copy DIR here and "
        f"pass it as language_model=DIR (--lm DIR on the command line).\n"
        f"(transformers said: {str(err).splitlines()[0] if str(err) else type(err).__name__})")


@verbose
def load_language_model(name_or_path="gpt2", *, device=None, verbose=None) -> LanguageModel:
    """Load a language model and its tokenizer from a local folder or the local HF cache.

    Parameters
    ----------
    name_or_path : str | path-like
        A folder written by ``save_pretrained`` (model + tokenizer), or a Hugging Face hub id
        (``"gpt2"``) already in the local cache. Never downloaded.
    device : str | torch.device | None
        Where to run it (``"cpu"``, ``"cuda"``); None: CPU.
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    lm : LanguageModel
        Pass it to :func:`word_embeddings` or
        :func:`neurofuse.stimulus.features.extract_features` for every story.

    Raises
    ------
    LanguageModelNotFoundError
        If the model is not available offline; the message says how to provide it.
    """
    _check_type("language_model", name_or_path, (str, os.PathLike), "a model name or folder")
    transformers = _import_transformers()
    name = str(name_or_path)
    path = Path(name).expanduser()
    source = str(path) if path.exists() else name
    if path.exists() and not path.is_dir():
        raise LanguageModelNotFoundError(
            f"'language_model' = '{path}' is a file; pass the folder that holds the model's "
            "config.json, weights and tokenizer files (as written by save_pretrained).")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = transformers.AutoModel.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as err:
        raise LanguageModelNotFoundError(_unavailable_message(name, err)) from err
    model.eval()
    lm = LanguageModel(model=model, tokenizer=tokenizer, name=name)
    lm.to(device)
    logger.info("Loaded language model %s (%d layers, width %d) on %s.", name, lm.n_layers,
                lm.hidden_size, lm.device)
    return lm


def make_random_language_model(words=(), *, n_layers=4, hidden_size=64, n_heads=4,
                               max_positions=128, seed=0, device=None) -> LanguageModel:
    """A small randomly initialised GPT-2 with a word-piece tokenizer built in code.

    For tests and benchmarks only: its features have the right shapes and timing but no
    meaning. Nothing is downloaded.

    Parameters
    ----------
    words : iterable of str
        Whole words in the vocabulary (one token each). Any other word made of letters,
        digits and ``'-.,?!`` is split into single-character pieces, so it spans several
        tokens; other characters make it ``[UNK]``.
    n_layers, hidden_size, n_heads, max_positions : int
        GPT-2 configuration.
    seed : int
        Seed of the weights (the global torch RNG is left untouched).
    device : str | torch.device | None
        Where to put it.

    Returns
    -------
    lm : LanguageModel
    """
    transformers = _import_transformers()
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    chars = string.ascii_lowercase + string.digits + "'-.,?!"
    vocab = {"[PAD]": 0, "[UNK]": 1}
    for token in [str(w).strip().lower() for w in words] + list(chars) + \
            ["##" + c for c in chars]:
        if token and token not in vocab:
            vocab[token] = len(vocab)
    core = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]",
                                                     pad_token="[PAD]")
    config = transformers.GPT2Config(
        vocab_size=len(vocab), n_positions=_check_int("max_positions", max_positions),
        n_embd=_check_int("hidden_size", hidden_size), n_layer=_check_int("n_layers", n_layers),
        n_head=_check_int("n_heads", n_heads), bos_token_id=None, eos_token_id=None,
        pad_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_check_int("seed", seed, minimum=0))
        model = transformers.GPT2Model(config).eval()
    return LanguageModel(model=model, tokenizer=tokenizer, name="random").to(device)


def as_language_model(language_model, *, device=None) -> LanguageModel:
    """Turn a name/folder, a :class:`LanguageModel` or a ``(model, tokenizer)`` pair into a
    :class:`LanguageModel` (loading a name or folder offline) on ``device``."""
    if isinstance(language_model, LanguageModel):
        return language_model.to(device)
    if isinstance(language_model, (str, os.PathLike)):
        return load_language_model(language_model, device=device)
    if isinstance(language_model, (tuple, list)) and len(language_model) == 2:
        model, tokenizer = language_model
        if not callable(model) or not hasattr(model, "config") or not callable(tokenizer):
            raise TypeError("'language_model' as a pair must be (transformers model, "
                            f"tokenizer), got ({type(model).__name__}, "
                            f"{type(tokenizer).__name__}).")
        model.eval()
        return LanguageModel(model=model, tokenizer=tokenizer,
                             name=type(model).__name__).to(device)
    raise TypeError("'language_model' must be a model name or folder, a LanguageModel (from "
                    "load_language_model) or a (model, tokenizer) pair, got "
                    f"{type(language_model).__name__}.")


# --------------------------------------------------------------------------------------
# Tokens of words
# --------------------------------------------------------------------------------------

def _tokenize_words(tokenizer, words):
    """Token ids of the joined words and, per word, the index of its last token (-1: none)."""
    last = np.full(len(words), -1, dtype=np.int64)
    if not words:
        return np.zeros(0, dtype=np.int64), last
    if getattr(tokenizer, "is_fast", False):
        text = " ".join(words)
        char_word = np.full(len(text), -1, dtype=np.int64)
        pos = 0
        for i, w in enumerate(words):
            char_word[pos:pos + len(w)] = i
            pos += len(w) + 1
        # verbose=False: the story is longer than the model's input on purpose (no warning)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                        verbose=False)
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        for t, (s, e) in enumerate(enc["offset_mapping"]):
            if e > s:
                w = char_word[e - 1]
                if w < 0:
                    w = char_word[s]
                if w >= 0:
                    last[w] = t
        return ids, last
    ids = []
    for i, w in enumerate(words):  # slow tokenizer: word by word, a space before each but the first
        pieces = tokenizer(w if i == 0 else " " + w, add_special_tokens=False,
                           verbose=False)["input_ids"]
        ids.extend(pieces)
        if pieces:
            last[i] = len(ids) - 1
    return np.asarray(ids, dtype=np.int64), last


class _Stop(Exception):
    pass


def _layer_list(model, n_layers):
    import torch

    found = [m for m in model.modules()
             if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers]
    return found[0] if len(found) == 1 else None


def _run_batch(lm, ids, mask, pick, layer, use_hook):
    """Hidden states at ``layer`` of the tokens at ``pick`` (one per row)."""
    import torch

    rows = torch.arange(ids.shape[0], device=ids.device)
    if use_hook:
        captured = {}

        def hook(module, args, output):
            captured["h"] = output[0] if isinstance(output, (tuple, list)) else output
            raise _Stop

        handle = _layer_list(lm.model, lm.n_layers)[layer - 1].register_forward_hook(hook)
        try:
            lm.model(input_ids=ids, attention_mask=mask)
        except _Stop:
            pass
        finally:
            handle.remove()
        return captured["h"][rows, pick]
    out = lm.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    return out.hidden_states[layer][rows, pick]


@verbose
def word_embeddings(words, language_model="gpt2", *, layer=7, context_tokens=20,
                    batch_size=32, device=None, verbose=None) -> np.ndarray:
    """Contextual embedding of each word: the hidden state of its last token at ``layer``.

    Parameters
    ----------
    words : sequence of str
        The story's words in order; non-words (see :func:`is_speech_word`) get zeros and are
        left out of every context.
    language_model : str | path-like | LanguageModel | (model, tokenizer)
        The model (see :func:`as_language_model`); load it once with
        :func:`load_language_model` and reuse it across stories.
    layer : int
        Hidden layer, 0 (embeddings) to the model's number of layers (GPT-2: 12). Paper: 7.
    context_tokens : int
        Tokens of context before each word's last token (paper: 20), >= 0.
    batch_size : int
        Windows per forward pass.
    device : str | torch.device | None
        Move the model there first; None keeps it where it is.
    verbose : bool | str | None
        Log level (``True`` shows a progress bar).

    Returns
    -------
    embeddings : array, shape (n_words, hidden_size), float32
        Rows of non-words (and of words the tokenizer drops entirely) are zeros.
    """
    import torch

    lm = as_language_model(language_model, device=device)
    words = [str(w) for w in words]
    layer = _check_int("layer", layer, minimum=0)
    if layer > lm.n_layers:
        raise ValueError(f"'layer' = {layer} is out of range for {lm.name!r}, which has "
                         f"{lm.n_layers} hidden layers: use 0 (embeddings) to {lm.n_layers}.")
    context_tokens = _check_int("context_tokens", context_tokens, minimum=0)
    batch_size = _check_int("batch_size", batch_size)
    tok = lm.tokenizer
    prefix, suffix = [], []
    if getattr(tok, "cls_token_id", None) is not None:
        prefix = [tok.cls_token_id]
        suffix = [tok.sep_token_id] if getattr(tok, "sep_token_id", None) is not None else []
    width = len(prefix) + context_tokens + 1 + len(suffix)
    if lm.max_positions is not None and width > lm.max_positions:
        raise ValueError(f"'context_tokens' = {context_tokens} makes windows of {width} tokens, "
                         f"more than {lm.name!r} accepts ({lm.max_positions}). Use "
                         f"context_tokens <= {lm.max_positions - width + context_tokens}.")

    out = np.zeros((len(words), lm.hidden_size), dtype=np.float32)
    speech = [i for i, w in enumerate(words) if is_speech_word(w)]
    ids, last = _tokenize_words(tok, [words[i].strip() for i in speech])
    targets = [(speech[j], int(t)) for j, t in enumerate(last) if t >= 0]
    dropped = len(speech) - len(targets)
    if dropped:
        logger.warning("%d words gave no token with %s's tokenizer; their embeddings are zeros.",
                       dropped, lm.name)
    if not targets:
        return out
    pad_id = tok.pad_token_id if getattr(tok, "pad_token_id", None) is not None else 0
    dev = lm.device
    n_layers = lm.n_layers
    hook_possible = 1 <= layer < n_layers and _layer_list(lm.model, n_layers) is not None
    use_hook = lm._hook_ok.get(layer) if hook_possible else False

    from tqdm.auto import tqdm

    starts = range(0, len(targets), batch_size)
    with torch.inference_mode():
        for b0 in tqdm(starts, desc=f"{lm.name} layer {layer}", leave=False,
                       disable=not progress_enabled()):
            chunk = targets[b0:b0 + batch_size]
            batch = np.full((len(chunk), width), pad_id, dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            pick = np.empty(len(chunk), dtype=np.int64)
            for r, (_, t) in enumerate(chunk):
                window = prefix + ids[max(0, t - context_tokens):t + 1].tolist() + suffix
                batch[r, :len(window)] = window
                mask[r, :len(window)] = 1
                pick[r] = len(prefix) + min(t, context_tokens)
            ids_t = torch.from_numpy(batch).to(dev)
            mask_t = torch.from_numpy(mask).to(dev)
            pick_t = torch.from_numpy(pick).to(dev)
            if use_hook is None:  # first use of this layer: check the fast path once
                full = _run_batch(lm, ids_t, mask_t, pick_t, layer, use_hook=False)
                fast = _run_batch(lm, ids_t, mask_t, pick_t, layer, use_hook=True)
                use_hook = bool(torch.allclose(full, fast, rtol=1e-4, atol=1e-5))
                lm._hook_ok[layer] = use_hook
                logger.debug("Layer-%d hook path %s.", layer, "used" if use_hook else
                             "differs from hidden_states; using output_hidden_states")
                hidden = full
            else:
                hidden = _run_batch(lm, ids_t, mask_t, pick_t, layer, use_hook=use_hook)
            rows = [i for i, _ in chunk]
            out[rows] = hidden.float().cpu().numpy()
    return out


@verbose
def word_embedding_features(words, n_times, language_model="gpt2", *, sfreq=50.0, layer=7,
                            context_tokens=20, batch_size=32, device=None,
                            verbose=None) -> np.ndarray:
    """The word stream: each word's embedding repeated over its duration; zeros elsewhere.

    Parameters
    ----------
    words : sequence of (start, end, word)
        Word intervals in s (e.g. a TextGrid's word tier, silences included or not).
    n_times : int
        Number of frames of the story.
    language_model, layer, context_tokens, batch_size, device
        See :func:`word_embeddings`.
    sfreq : float
        Frame rate in Hz; frame ``k`` takes the word whose interval holds ``(k + 0.5) / sfreq``.
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    features : array, shape (n_times, hidden_size), float32
    """
    n_times = _check_int("n_times", n_times, minimum=0)
    sfreq = _check_positive("sfreq", sfreq)
    spans, texts = [], []
    for start, end, text in check_intervals("words", words, label="word"):
        spans.append((start, end))
        texts.append(str(text))
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])  # context in time order
    spans, texts = [spans[i] for i in order], [texts[i] for i in order]
    lm = as_language_model(language_model, device=device)
    emb = word_embeddings(texts, lm, layer=layer, context_tokens=context_tokens,
                          batch_size=batch_size)
    codes = np.full(n_times, -1, dtype=np.int64)
    for i, (start, end) in enumerate(spans):
        k0, k1 = interval_frames(start, end, sfreq, n_times)
        codes[k0:k1] = i
    features = np.zeros((n_times, lm.hidden_size), dtype=np.float32)
    rows = np.flatnonzero(codes >= 0)
    features[rows] = emb[codes[rows]]
    return features
