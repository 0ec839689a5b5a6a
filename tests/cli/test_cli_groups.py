"""The command groups: discovery, help, deprecated spellings, library defaults left to the library.

Commands are replaced by recorders where only the argument handling is under test, so these
tests run in seconds; tests/cli/test_cli.py runs the commands themselves.
"""

import argparse
import inspect
import io
import json
import logging
import subprocess
import sys

import pytest

from neurofuse.cli import build_parser, main
from neurofuse.cli import data as data_cli
from neurofuse.cli import joint as joint_cli
from neurofuse.cli import simulate as simulate_cli
from neurofuse.cli._utils import SUPPRESS, library_default, resolve
from neurofuse.cli.main import DEPRECATED


@pytest.fixture
def log():
    """What the package logger writes during the test (it does not propagate to caplog)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("neurofuse")
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def _children(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _leaves(parser, path=()):
    """(path, parser) of every command that runs something."""
    children = _children(parser)
    if not children:
        yield path, parser
    for name, child in children.items():
        yield from _leaves(child, (*path, name))


LEAVES = dict(_leaves(build_parser()))
#: Options of every command that belong to the command line itself, not to a library call.
CLI_ONLY = {"help", "verbose", "quiet"}


def test_groups_found_by_scanning_the_package():
    assert set(_children(build_parser())) == {"anatomy", "data", "demo", "eeg2meg", "joint",
                                               "meg2fmri", "simulate", "transcoder"}
    assert set(LEAVES) == {
        ("anatomy",), ("demo",), ("data", "info"), ("data", "merge"),
        ("data", "prepare", "lebel"), ("data", "prepare", "meg-bids"),
        ("data", "prepare", "podcast"), ("data", "prepare", "smn4lang"),
        ("data", "prepare", "eeg-fmri-bids"), ("data", "prepare", "eeg-meg-bids"),
        ("eeg2meg", "demo"), ("eeg2meg", "evaluate"), ("eeg2meg", "fit"),
        ("eeg2meg", "import-encoder"), ("eeg2meg", "pretrain"), ("eeg2meg", "simulate"),
        ("eeg2meg", "synthesize"),
        ("joint", "benchmark", "scaling"), ("joint", "benchmark", "simulation"),
        ("joint", "demo"), ("joint", "ecog"), ("joint", "evaluate"), ("joint", "fit"),
        ("joint", "predict"), ("meg2fmri", "demo"), ("meg2fmri", "evaluate"),
        ("meg2fmri", "fit"), ("meg2fmri", "prepare"), ("meg2fmri", "synthesize"),
        ("simulate", "ecog"), ("simulate", "study"), ("transcoder", "demo"),
        ("transcoder", "evaluate"), ("transcoder", "fit"), ("transcoder", "simulate"),
        ("transcoder", "transcode")}


@pytest.mark.parametrize("group, commands", [
    ([], ["anatomy", "data", "demo", "eeg2meg", "joint", "meg2fmri", "simulate",
          "transcoder"]),
    (["eeg2meg"], ["simulate", "pretrain", "import-encoder", "fit", "synthesize", "evaluate",
                   "demo"]),
    (["transcoder"], ["simulate", "fit", "transcode", "evaluate", "demo"]),
    (["joint"], ["fit", "predict", "evaluate", "demo", "benchmark", "ecog"]),
    (["meg2fmri"], ["prepare", "fit", "synthesize", "evaluate", "demo"]),
    (["joint", "benchmark"], ["simulation", "scaling"]),
    (["simulate"], ["study", "ecog"]),
    (["data"], ["prepare", "merge", "info"]),
    (["data", "prepare"], ["lebel", "meg-bids", "podcast", "smn4lang", "eeg-fmri-bids",
                           "eeg-meg-bids"]),
])
def test_group_help_lists_its_commands(group, commands, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*group, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    listed = [line.split()[0] for line in text.split("positional arguments:")[1]
              .split("options:")[0].splitlines()[2:] if line.startswith("    ")
              and not line.startswith("     ")]
    assert listed == commands
    if not group:  # the deprecated spellings are named with their replacements
        assert "fit -> joint fit" in " ".join(text.split())


def test_python_m_and_version():
    out = subprocess.run([sys.executable, "-m", "neurofuse.cli", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("neurofuse ")


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_no_library_default_restated(path):
    """Every option of a command is passed on only when typed: the library decides the rest."""
    parser = LEAVES[path]
    target = parser.library_target
    keywords = set(inspect.signature(resolve(target)).parameters) if target else set()
    for action in parser._actions:
        if action.dest in CLI_ONLY or action.required or not action.option_strings:
            continue
        assert action.default is SUPPRESS, (path, action.dest, action.default)
        if getattr(action, "library_target", None):  # fills a keyword of the library call
            assert action.dest in keywords, (path, action.dest, target)
    parser.format_help()  # quotes the library's defaults: every reference resolves


def test_lebel_defaults_come_from_the_library(monkeypatch, capsys):
    import neurofuse.data.datasets.lebel as lebel

    args = build_parser().parse_args(["data", "prepare", "lebel", "ROOT", "--out", "OUT"])
    assert not {"tr", "resample_tr", "sound_start", "trim_start", "trim_end", "language_model",
                "layer", "context_tokens", "repeatability"} & set(vars(args))
    # --help quotes the library's constant, whatever it is
    monkeypatch.setattr(lebel.prepare_lebel, "__signature__", inspect.signature(
        lebel.prepare_lebel).replace(parameters=[
            p.replace(default=1.5) if p.name == "tr" else p
            for p in inspect.signature(lebel.prepare_lebel).parameters.values()]), raising=False)
    assert library_default("neurofuse.data.datasets.lebel:prepare_lebel", "tr") == 1.5
    assert "(default: 1.5)" in LEAVES[("data", "prepare", "lebel")].format_help()
    monkeypatch.undo()
    assert f"(default: {lebel.LEBEL_TR})" in LEAVES[("data", "prepare", "lebel")].format_help()


def _record(monkeypatch, module, function):
    """Replace a library function by one that records its arguments."""
    calls = []

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        raise KeyboardInterrupt  # stops the command right after the call, exit code 130

    monkeypatch.setattr(module, function, record)
    return calls


def test_prepare_passes_only_what_was_typed(monkeypatch, tmp_path):
    import neurofuse.data.datasets.lebel as lebel

    calls = _record(monkeypatch, lebel, "prepare_lebel")
    assert main(["data", "prepare", "lebel", "ROOT", "--out", "OUT", "-q"]) == 130
    assert calls[-1] == (("ROOT", "OUT"), {})
    assert main(["data", "prepare", "lebel", "ROOT", "--out", "OUT", "--tr", "1.5",
                 "--resample-tr", "none", "--repeatability", "none", "--lm", "here",
                 "--splits", "a=test", "--overwrite", "-q"]) == 130
    assert calls[-1][1] == {"tr": 1.5, "resample_tr": None, "repeatability": None,
                            "language_model": "here", "splits": {"a": "test"},
                            "overwrite": True}


def test_demo_top_level_is_joint_demo_without_warning(monkeypatch, log):
    import neurofuse.evaluation.demo as demo

    calls = _record(monkeypatch, demo, "run_demo")
    assert main(["demo", "--out", "X", "-q"]) == 130
    assert main(["joint", "demo", "--out", "X", "-q"]) == 130
    assert calls == [((), {"out": "X"})] * 2
    assert log.getvalue() == ""
    assert main(["demo", "-q"]) == 130
    assert calls[-1] == ((), {})  # run_demo's own default folder


OLD_AND_NEW = [
    (["fit", "tiny", "--data", "D", "--out", "O", "--epochs", "2"], ["joint", "fit"]),
    (["predict", "M", "--stimulus", "S", "--out", "O"], ["joint", "predict"]),
    (["benchmark", "simulation", "--out", "O", "--meg-cnr", "inf"],
     ["joint", "benchmark"]),
    (["ecog", "--model", "M", "--data", "D", "--out", "O", "--n-trials", "9"],
     ["joint", "ecog"]),
    (["simulate-ecog", "--study", "S", "--out", "O"], ["simulate", "ecog"]),
    (["prepare", "podcast", "R", "--out", "O", "--band", "60", "90"], ["data", "prepare"]),
    (["merge", "A", "B", "--out", "O", "--no-ground-truth"], ["data", "merge"]),
    (["info", "D", "--json"], ["data", "info"]),
]


def test_deprecated_table_is_tested():
    assert {old[0] for old, _ in OLD_AND_NEW} == set(DEPRECATED)


@pytest.mark.parametrize("old, new", OLD_AND_NEW, ids=[o[0] for o, _ in OLD_AND_NEW])
def test_old_spelling_runs_the_new_command_and_warns(old, new, monkeypatch, log):
    """Today's commands still run (one release), as their new spelling, with a warning."""
    ran = []
    for module in (joint_cli, simulate_cli, data_cli):
        for name, func in vars(module).items():
            if name.startswith("_cmd_"):
                monkeypatch.setattr(module, name,
                                    lambda args, name=name: ran.append((name, vars(args))))
    assert main([*new, *old[1:], "-q"]) == 0
    assert log.getvalue() == ""
    assert main([*old, "-q"]) == 0
    assert ran[0] == ran[1]
    message = log.getvalue()
    assert f"'neurofuse {old[0]}' is deprecated" in message
    assert f"use 'neurofuse {' '.join(new)}'" in message


def test_simulate_preset_spelling(monkeypatch, log):
    ran = []
    monkeypatch.setattr(simulate_cli, "_cmd_study", lambda args: ran.append(vars(args)))
    assert main(["simulate", "study", "tiny", "--out", "O", "--seed", "3", "-q"]) == 0
    assert log.getvalue() == ""
    for argv in (["simulate", "tiny", "--out", "O", "--seed", "3", "-q"],
                 ["simulate", "--out", "O", "tiny", "--seed", "3", "-q"]):
        assert main(argv) == 0
        assert ran[-1] == ran[0]
    assert "use 'neurofuse simulate study tiny'" in log.getvalue()
    assert "use 'neurofuse simulate study PRESET|CONFIG'" in log.getvalue()


def test_deprecated_spelling_still_runs(tiny_study, capsys, log):
    """One old spelling end to end: `neurofuse info` prints the same JSON as `data info`."""
    assert main(["data", "info", str(tiny_study), "--json"]) == 0
    new = json.loads(capsys.readouterr().out)
    assert main(["info", str(tiny_study), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == new
    assert "use 'neurofuse data info'" in log.getvalue()


def test_evaluate_takes_a_store_without_ground_truth(tiny_study, monkeypatch):
    """Any store: without ground truth the command still runs (the pipeline then skips source
    recovery, tests/cli/test_cli_evaluate_stores.py)."""
    from neurofuse.data import store

    real = store.read_dataset

    class NoTruth:
        def __init__(self, ds):
            self._ds = ds

        def __getattr__(self, name):
            return getattr(self._ds, name)

        ground_truth_names = []

    monkeypatch.setattr(store, "read_dataset", lambda path: NoTruth(real(path)))
    import neurofuse.evaluation.pipeline as pipeline

    calls = _record(monkeypatch, pipeline, "evaluate_study")
    assert main(["joint", "evaluate", "--data", str(tiny_study), "--out", "O", "-q"]) == 130
    assert len(calls) == 1 and calls[0][0][0].ground_truth_names == []


def test_evaluate_passes_a_fitted_model(tiny_study, monkeypatch):
    import neurofuse.evaluation.pipeline as pipeline

    calls = _record(monkeypatch, pipeline, "evaluate_study")
    assert main(["joint", "evaluate", "--data", str(tiny_study), "--out", "O", "--model", "M",
                 "-q"]) == 130
    assert calls[-1][1] == {"model": "M"}
    assert main(["joint", "evaluate", "--data", str(tiny_study), "--out", "O", "-q"]) == 130
    assert calls[-1][1] == {}  # evaluate_study's own default: train a model
    for text, value in (("model", "model"), ("none", None), ("12.5", 12.5)):
        assert main(["joint", "evaluate", "--data", str(tiny_study), "--out", "O",
                     "--smooth-fwhm", text, "-q"]) == 130
        assert calls[-1][1] == {"smooth_fwhm": value}


@pytest.mark.parametrize("bad", ["0", "-3", "wide", "nan"])
def test_evaluate_refuses_a_bad_smoothing_width(tiny_study, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["joint", "evaluate", "--data", str(tiny_study), "--out", "O",
              "--smooth-fwhm", bad, "-q"])
    assert exc.value.code == 2
    assert "expected 'model', 'none' or a positive width in mm" in capsys.readouterr().err


def test_scaling_benchmark_passes_the_grid(monkeypatch):
    import neurofuse.evaluation.scaling as scaling

    calls = _record(monkeypatch, scaling, "run_scaling_benchmark")
    assert main(["joint", "benchmark", "scaling", "--out", "O", "-q"]) == 130
    assert calls[-1] == (("O",), {})  # the library's default scale
    assert main(["joint", "benchmark", "scaling", "--out", "O", "--scale", "tiny",
                 "--n-train", "2", "3", "--subjects", "1x1", "2X1", "-q"]) == 130
    assert calls[-1] == (("O",), {"scale": "tiny", "n_train": [2, 3],
                                  "subjects": [(1, 1), (2, 1)]})


@pytest.mark.parametrize("args, message", [
    (["--subjects", "0x1"], "expected MEGxFMRI subject counts"),
    (["--subjects", "2"], "expected MEGxFMRI subject counts"),
    (["--scale", "huge"], "invalid choice"),
])
def test_scaling_benchmark_refuses_a_bad_grid(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["joint", "benchmark", "scaling", "--out", "O", *args, "-q"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
