"""Shared docstring blocks (neurofuse._docs): filling, indentation, errors, and their use."""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import neurofuse
from neurofuse._docs import docdict, fill_doc

PACKAGE_DIR = Path(neurofuse.__file__).parent


def _modules():
    """Every module of the package, imported (a module that cannot be imported fails);
    ``__main__`` modules run a program when imported and are left out."""
    names = ["neurofuse"] + [m.name for m in pkgutil.walk_packages([str(PACKAGE_DIR)],
                                                                  prefix="neurofuse.")
                             if not m.name.endswith(".__main__")]
    return [importlib.import_module(name) for name in sorted(names)]


def _docstrings(module):
    """``(where, docstring)`` of the module and of everything it defines (classes' members
    included), as Python shows them (``__doc__``, and the unwrapped function's too)."""
    yield module.__name__, module.__doc__
    for name, obj in vars(module).items():
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        members = [(name, obj)]
        if inspect.isclass(obj):
            members += [(f"{name}.{k}", v) for k, v in vars(obj).items()
                        if inspect.isfunction(v) or isinstance(v, (property, staticmethod,
                                                                   classmethod))]
        for where, member in members:
            target = getattr(member, "__func__", getattr(member, "fget", member))
            yield f"{module.__name__}.{where}", getattr(target, "__doc__", None)
            wrapped = getattr(target, "__wrapped__", None)
            if wrapped is not None:
                yield f"{module.__name__}.{where} (unwrapped)", wrapped.__doc__


def test_fill_doc_fills_and_indents(monkeypatch):
    monkeypatch.setitem(docdict, "thing", "thing : int\n    The thing,\n\n    in two paragraphs.")

    @fill_doc
    def func(thing):
        """Summary line.

        Parameters
        ----------
        %(thing)s
            A continuation line.
        %(overwrite)s
        """

    expected = ("Summary line.\n\n"
                "        Parameters\n"
                "        ----------\n"
                "        thing : int\n"
                "            The thing,\n"
                "\n"  # a blank line of the block is not padded with spaces
                "            in two paragraphs.\n"
                "            A continuation line.\n"
                "        overwrite : bool\n"
                "            Replace an existing dataset at ``out`` (only once the new one is "
                "complete).\n"
                "        ")
    assert func.__doc__ == expected

    class Holder:
        @fill_doc
        def method(self):
            """Summary.

            %(thing)s
            """

    assert Holder.method.__doc__ == ("Summary.\n\n            thing : int\n"
                                     "                The thing,\n\n"
                                     "                in two paragraphs.\n            ")
    # A docstring that begins on its own line, and one without blocks, are handled too.

    @fill_doc
    def own_line():
        """
        %(keep_work)s
        """

    assert own_line.__doc__ == ("\n        keep_work : bool\n            Keep the work folder "
                                "after success (default: removed).\n        ")

    @fill_doc
    def plain():
        """No block here; 100 %% sure."""

    assert plain.__doc__ == "No block here; 100 % sure."

    @fill_doc
    def no_doc():
        pass

    assert no_doc.__doc__ is None


def test_fill_doc_errors():
    with pytest.raises(KeyError, match=r"bad_doc.*%\(no_such_block\)s.*Known blocks.*'out'"):
        @fill_doc
        def bad_doc():
            """Summary.

            %(no_such_block)s
            """

    with pytest.raises(ValueError, match=r"stray_percent.*'%%'"):
        @fill_doc
        def stray_percent():
            """Within 5 % of it."""


def test_docdict_entries_are_numpydoc_parameters():
    for name, text in docdict.items():
        first, *rest = text.split("\n")
        assert re.fullmatch(r"[a-z_, ]+ : \S.*", first), name  # "name : type"
        assert rest and all(line.startswith("    ") or not line for line in rest), name
        assert not text.startswith(" ") and not text.endswith("\n"), name


def test_every_docdict_entry_is_used():
    sources = "\n".join(p.read_text() for p in PACKAGE_DIR.rglob("*.py")
                        if p.name != "_docs.py")
    unused = [name for name in docdict if f"%({name})s" not in sources]
    assert not unused, f"docdict entries no docstring uses: {unused}"


def test_no_unfilled_block_in_any_docstring():
    """Every ``%(name)s`` in the package is filled: a docstring that names a block but lacks
    ``@fill_doc`` would show it raw."""
    left = []
    n_docs = 0
    for module in _modules():
        if module.__name__ == "neurofuse._docs":  # its own docstring shows the syntax
            continue
        for where, doc in _docstrings(module):
            n_docs += doc is not None
            if doc and "%(" in doc:
                left.append(where)
    assert n_docs > 300  # the walk did see the package
    assert not left, f"unfilled %(...)s blocks in: {left}"
    # and the loaders' parameters did get filled
    from neurofuse.data.datasets import lebel

    assert "overwrite : bool\n        Replace an existing dataset" in lebel.prepare_lebel.__doc__
