"""Shared docstring blocks: a ``docdict`` filled into docstrings by ``fill_doc`` (as MNE-Python).

A docstring names a block with ``%(name)s`` where the parameter would go, at the parameter's
indentation; :func:`fill_doc` replaces it with the block, indenting the block's later lines to
match. Text after the placeholder, indented as a description, continues the block::

    @fill_doc
    def prepare_x(root, out, *, overwrite=False, verbose=None):
        \"\"\"Turn dataset X into a dataset store.

        Parameters
        ----------
        root : path-like
            The dataset folder.
        %(out)s
        %(overwrite)s
        %(verbose_loader)s
        \"\"\"

A decorated docstring goes through ``%``-formatting: write a literal ``%`` as ``%%``. Put
``@fill_doc`` directly above ``def`` (below ``@verbose``), so that the function and its
wrapper carry the filled docstring.
"""

from __future__ import annotations

__all__ = ["docdict", "fill_doc"]

# Entries: the first line is the numpydoc parameter line, later lines are indented by four
# spaces relative to it. Keep them sorted by name.
docdict: dict[str, str] = {}

docdict["device"] = """
device : str | None
    Where to run the language model (a ``torch`` device such as ``'cuda'``; ``None``: the
    CPU, or wherever an already loaded model is)."""

docdict["features_fn"] = """
features_fn : callable | None
    Replaces :func:`neurofuse.stimulus.features.extract_features` (testing, other
    features); called as ``features_fn(wav, textgrid, language_model=..., layer=...,
    context_tokens=..., sfreq=...)`` and must return an object with ``data`` (n_times,
    d_stim), ``streams``, ``sfreq`` and ``n_times``. ``language_model`` is passed as given."""

docdict["keep_work"] = """
keep_work : bool
    Keep the work folder after success (default: removed)."""

docdict["language_model"] = """
language_model : str | path-like | LanguageModel
    For the word features: a local folder or a model in the local Hugging Face cache
    (never downloaded), loaded once and only if some features are not cached; or an
    already loaded model (e.g. :func:`neurofuse.stimulus.make_random_language_model`)."""

docdict["layer_context_tokens"] = """
layer, context_tokens : int
    Hidden layer of the language model and tokens of context of the word features
    (the paper's 7 and 20 by default)."""

docdict["n_jobs"] = """
n_jobs : int | None
    Parallel jobs for MNE (``None``: MNE's default, one unless ``MNE_N_JOBS`` is set)."""

docdict["out"] = """
out : path-like
    The dataset store to create (atomically: it appears only when complete)."""

docdict["overwrite"] = """
overwrite : bool
    Replace an existing dataset at ``out`` (only once the new one is complete)."""

docdict["repeatability"] = """
repeatability : 'repeat' | 'split-half' | None
    Estimator of the repeatability of each target (channel or source) stored for each
    subject from its repeated (``n_repeats >= 2``) non-test stories; ``None`` stores none."""

docdict["returns_store"] = """
out : Path
    The dataset folder; open it with :func:`neurofuse.data.store.read_dataset`."""

docdict["splits"] = """
splits : dict of str to str | path-like | None
    ``{story: 'train' | 'val' | 'test' | 'anchor'}``, or a JSON file holding it; unlisted
    stories are ``'train'``."""

docdict["verbose_loader"] = """
verbose : bool | str | int | None
    Log level for this call (see :func:`neurofuse.set_log_level`): ``True`` shows progress
    bars and the summary."""

docdict["work_dir"] = """
work_dir : path-like | None
    Folder of intermediate results, each written atomically, so that an interrupted run
    resumes without recomputing them; default ``<out>.work`` next to ``out``."""

# Leading newlines above only keep the entries readable here.
docdict = {name: text.strip("\n") for name, text in sorted(docdict.items())}


def _indentcount_lines(lines) -> int:
    """Smallest indentation of the non-blank ``lines`` (0 when all are blank)."""
    counts = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    return min(counts) if counts else 0


def _indent_entries(indent: int, entries: dict) -> dict:
    """``entries`` with every line after the first indented by ``indent`` spaces."""
    pad = " " * indent
    out = {}
    for name, text in entries.items():
        first, *rest = text.split("\n")
        out[name] = "\n".join([first] + [pad + line if line else line for line in rest])
    return out


def fill_doc(func):
    """Fill the ``%(name)s`` blocks of ``func``'s docstring from :data:`docdict`.

    Parameters
    ----------
    func : callable | type
        The function (or class) whose ``__doc__`` to fill in place.

    Returns
    -------
    func : callable | type
        The same object, its docstring filled.

    Raises
    ------
    KeyError
        The docstring names a block that :data:`docdict` does not have.
    ValueError
        The docstring has a stray ``%`` (write a literal one as ``%%``).
    """
    doc = func.__doc__
    if not doc:
        return func
    # The docstring's own indentation: that of its lines after the summary line.
    indent = _indentcount_lines(doc.split("\n")[1:])
    name = getattr(func, "__qualname__", getattr(func, "__name__", repr(func)))
    try:
        func.__doc__ = doc % _indent_entries(indent, docdict)
    except KeyError as err:
        key = err.args[0]
        raise KeyError(
            f"The docstring of {name} names the shared block %({key})s, which "
            f"neurofuse._docs.docdict does not have. Known blocks: {sorted(docdict)}; add "
            "the block to docdict or fix the name."
        ) from None
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"The docstring of {name} cannot be filled by fill_doc ({err}): write a literal "
            "'%' as '%%' in a docstring decorated with @fill_doc."
        ) from None
    return func
