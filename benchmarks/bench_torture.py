"""Hostile-user torture run of the ``neurofuse`` CLI (issue 16). Prints one JSON object.

Every case runs the real command line in a subprocess (``python -m neurofuse.cli``, this
checkout) on a deliberately bad input and classifies what happened:

* ``clear``: exit 1 or 2, a one-line ``error:`` message, no traceback, and the message names
  the cause (each case gives a pattern the message must match, e.g. ``disk full``);
* ``unclear``: an error without a traceback that does not name the cause;
* ``traceback``: a Python traceback, or death by a signal (e.g. MemoryError, OOM kill);
* ``silent``: exit 0 on an input that should have been refused, or outputs that are not
  finite (a silently wrong result);
* ``hang``: still running after the case's time limit;
* ``false_alarm``: a valid control input that was refused (the checks must not cry wolf);
* ``ok``: a valid control input that ran and wrote finite outputs.

Besides the catalogue: ``--kills`` training runs killed with SIGKILL at a random moment and
resumed with ``--resume`` must end with model weights byte-identical to an uninterrupted
run; disk-full and read-only runs write into a tiny ``tmpfs`` mounted in a private mount
namespace (``unshare -rm``; skipped, and counted as such, where that is not allowed).

    python benchmarks/bench_torture.py --work /tmp/torture > benchmarks/results/torture.json
    python benchmarks/bench_torture.py --work W --kills 3 --only predict   # a quick look
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = "neurofuse-dataset.json"


# --------------------------------------------------------------------------------------
# running one command


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    return env


def _cli(*args):
    return [sys.executable, "-m", "neurofuse.cli", *map(str, args)]


def _run(cmd, *, timeout, cwd=None):
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(),
                           cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return None, err, time.perf_counter() - t0
    return p.returncode, p.stderr + p.stdout, time.perf_counter() - t0


def _message(text):
    lines = [ln for ln in text.strip().splitlines() if "error" in ln.lower()]
    return (lines[-1] if lines else text.strip().splitlines()[-1] if text.strip() else "")[:400]


def _error_text(text):
    """The error message and the lines after it (a store check lists its problems below)."""
    lines = text.strip().splitlines()
    first = next((i for i, ln in enumerate(lines) if "error:" in ln), 0)
    return "\n".join(lines[first:])


def _finite_outputs(folder):
    """True when every .npy / .fif / .nii.gz under ``folder`` holds finite numbers."""
    import mne

    folder = Path(folder)
    if not folder.exists():
        return False
    for f in folder.rglob("*.npy"):
        a = np.load(f, mmap_mode="r", allow_pickle=False)
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            return False
    for f in folder.rglob("*.fif"):
        try:
            raw = mne.io.read_raw_fif(f, preload=True, verbose="error")
        except Exception:  # not a raw file (info, forward): not an output to check
            continue
        if not np.isfinite(raw.get_data()).all():
            return False
    for f in folder.rglob("*-lh.stc"):
        if not np.isfinite(mne.read_source_estimate(f).data).all():
            return False
    return True


def classify(rc, text, *, expect, pattern=None, outputs=None):
    """One outcome word for a finished (or timed-out) command; see the module docstring."""
    if rc is None:
        return "hang"
    tb = "Traceback (most recent call last)" in text
    if expect == "ok":
        if rc == 0:
            return "ok" if outputs is None or _finite_outputs(outputs) else "silent"
        return "traceback" if tb or rc < 0 or rc > 2 else "false_alarm"
    if tb or rc < 0 or rc not in (0, 1, 2):
        return "traceback"
    if rc == 0:
        return "silent"
    if pattern and not re.search(pattern, _error_text(text), flags=re.I):
        return "unclear"
    return "clear"


# --------------------------------------------------------------------------------------
# building bad inputs from good ones


def _link_copy(src, dst):
    """Copy a folder by hard links (fast); change files only through :func:`_rewrite`."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def _rewrite(path, data: bytes):
    path = Path(path)
    path.unlink(missing_ok=True)  # never write through a hard link into the original
    path.write_bytes(data)


def _edit_array(path, fn):
    a = np.array(np.load(path, allow_pickle=False))
    a = fn(a)
    Path(path).unlink()
    np.save(path, a)


def _edit_manifest(store, fn):
    path = Path(store) / MANIFEST
    m = json.loads(path.read_text())
    fn(m)
    _rewrite(path, json.dumps(m, indent=1).encode())


def _flip_bit(path, offset_from_end=64):
    b = bytearray(Path(path).read_bytes())
    b[len(b) - offset_from_end] ^= 0x10
    _rewrite(path, bytes(b))


def _meg_subject(store):
    m = json.loads((Path(store) / MANIFEST).read_text())
    return next(s for s, v in m["subjects"].items() if "meg" in v["modalities"])


def _fmri_subject(store):
    m = json.loads((Path(store) / MANIFEST).read_text())
    return next(s for s, v in m["subjects"].items() if "fmri" in v["modalities"])


def _nan_meg(a):
    a = a.astype(np.float32)
    a[0, 5, 100:200] = np.nan
    return a


def _inf_one(a):
    a = a.astype(np.float32)
    a.reshape(-1)[a.size // 2] = np.inf
    return a


def _nan_row(a):
    a = a.astype(np.float32)
    a[3] = np.nan
    return a


STORE_CASES = {
    # name: (function(store) editing a hard-linked copy, pattern the message must match)
    "meg-nan-100-samples": (lambda s: _edit_array(
        s / "subjects" / _meg_subject(s) / "meg" / "story-01.npy", _nan_meg), r"nan|finite"),
    "leadfield-nan-row": (lambda s: _edit_array(
        s / "subjects" / _meg_subject(s) / "meg-leadfield.npy", _nan_row), r"nan|finite"),
    "meg-all-zero-story": (lambda s: _edit_array(
        s / "subjects" / _meg_subject(s) / "meg" / "story-01.npy", np.zeros_like),
        r"zero|flat|constant"),
    "fmri-one-inf": (lambda s: _edit_array(
        s / "subjects" / _fmri_subject(s) / "fmri" / "story-02.npy", _inf_one), r"inf|finite"),
    "features-nan": (lambda s: _edit_array(s / "features" / "story-01.npy", _inf_one),
                     r"inf|nan|finite"),
    "manifest-sfreq": (lambda s: _edit_manifest(s, lambda m: m.update(sfreq=100.0)),
                       r"sfreq|n_times|samples|duration"),
    "manifest-n-times": (lambda s: _edit_manifest(
        s, lambda m: m["stories"]["story-01"].update(n_times=1500)), r"n_times|shape|samples"),
    "manifest-n-repeats": (lambda s: _edit_manifest(
        s, lambda m: m["subjects"][_meg_subject(s)]["n_repeats"]["meg"].update(
            {"story-01": 3})), r"repeat"),
    "manifest-unknown-split": (lambda s: _edit_manifest(
        s, lambda m: m["stories"]["story-01"].update(split="trian")), r"split"),
    "manifest-overlapping-streams": (lambda s: _edit_manifest(
        s, lambda m: m["feature_streams"].update(phoneme=[20, 76])), r"stream|overlap"),
    "manifest-cnr-abc": (lambda s: _edit_manifest(
        s, lambda m: m["subjects"][_meg_subject(s)]["cnr"].update(meg="abc")), r"cnr"),
    "manifest-not-json": (lambda s: _rewrite(s / MANIFEST, b"{ not json"), r"json|manifest"),
    "manifest-missing": (lambda s: (s / MANIFEST).unlink(), r"manifest|dataset|not a"),
    "array-truncated": (lambda s: _rewrite(
        s / "features" / "story-02.npy",
        (s / "features" / "story-02.npy").read_bytes()[:5000]), r"story-02|truncat|damaged"),
    "array-wrong-shape": (lambda s: _edit_array(
        s / "features" / "story-03.npy", lambda a: a[:, :50]), r"story-03|shape|features"),
    "array-missing": (lambda s: (s / "subjects" / _fmri_subject(s) / "fmri" / "story-01.npy")
                      .unlink(), r"missing|story-01"),
    "array-object-pickle": (lambda s: (
        (s / "features" / "story-04.npy").unlink(),
        np.save(s / "features" / "story-04.npy",
                np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)),
        r"story-04|pickle|object|dtype"),
    "array-int-dtype": (lambda s: _edit_array(
        s / "features" / "story-01.npy", lambda a: a.astype(np.int64)), r"dtype|float"),
    "all-stories-shorter-than-a-piece": (lambda s: _short_store(s), r"piece|short"),
}


def _short_store(s):
    """Cut every story to 0.8 s (40 samples at 50 Hz; TR 2 s: zero whole pieces)."""
    m = json.loads((s / MANIFEST).read_text())
    n = int(0.8 * m["sfreq"])
    for story in m["stories"]:
        m["stories"][story].update(n_times=n, duration=n / m["sfreq"])
        _edit_array(s / "features" / f"{story}.npy", lambda a: a[:n])
        for sub, v in m["subjects"].items():
            for mod in v["modalities"]:
                f = s / "subjects" / sub / mod / f"{story}.npy"
                if f.exists():
                    if mod == "meg":
                        _edit_array(f, lambda a: a[..., :n])
                    else:
                        _edit_array(f, lambda a: a[..., :0])  # no whole TR
    for f in (s / "ground_truth" / "sources").glob("*.npy"):
        _edit_array(f, lambda a: a[..., :n])
    _rewrite(s / MANIFEST, json.dumps(m, indent=1).encode())


# --------------------------------------------------------------------------------------
# the catalogue


class Torture:
    def __init__(self, work, *, timeout, only=None, log=None):
        self.work = Path(work)
        self.timeout = timeout
        self.only = only
        self.rows = []
        self.log = log or (lambda *a: print(*a, file=sys.stderr, flush=True))

    def case(self, group, name, cmd, *, expect="error", pattern=None, outputs=None,
             timeout=None, cwd=None):
        if self.only and not any(o in f"{group}/{name}" for o in self.only):
            return None
        rc, text, secs = _run(cmd, timeout=timeout or self.timeout, cwd=cwd)
        outcome = classify(rc, text, expect=expect, pattern=pattern, outputs=outputs)
        row = {"group": group, "case": name, "expect": expect, "outcome": outcome, "rc": rc,
               "seconds": round(secs, 1), "message": _message(text)}
        if outcome in ("traceback", "silent", "hang", "false_alarm", "unclear"):
            row["tail"] = text.strip()[-1500:]
        self.rows.append(row)
        self.log(f"[{outcome:>11}] {group}/{name} ({secs:.1f} s): {row['message'][:150]}")
        return row

    # -- good inputs ------------------------------------------------------------------------
    def setup(self):
        w = self.work
        w.mkdir(parents=True, exist_ok=True)
        self.store = w / "good-store"
        if not (self.store / MANIFEST).is_file():
            rc, text, _ = _run(_cli("simulate", "study", "tiny", "--out", self.store, "-q"),
                               timeout=900)
            if rc != 0:
                raise SystemExit(f"could not simulate the good store:\n{text[-3000:]}")
        self.fit = w / "good-fit"
        if not (self.fit / "model" / "model.json").is_file():
            rc, text, _ = _run(_cli("joint", "fit", "tiny", "--data", self.store, "--out",
                                    self.fit, "-q"), timeout=900)
            if rc != 0:
                raise SystemExit(f"could not fit the good model:\n{text[-3000:]}")
        self.model = self.fit / "model"
        feats = np.load(self.store / "features" / "story-04.npy", allow_pickle=False)
        self.n_features = feats.shape[1]
        self.stimulus = w / "stimulus.npy"
        np.save(self.stimulus, np.asarray(feats[:500], dtype=np.float32))

    def out(self, name):
        path = self.work / "out" / name
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # -- catalogue groups -------------------------------------------------------------------
    def controls(self):
        self.case("control", "info", _cli("data", "info", self.store), expect="ok")
        self.case("control", "info-check", _cli("data", "info", "--check", self.store),
                  expect="ok")
        out = self.out("control-predict")
        self.case("control", "predict", _cli("joint", "predict", self.model, "--stimulus",
                                             self.stimulus, "--out", out, "-q"),
                  expect="ok", outputs=out)
        out = self.out("control-fit")
        self.case("control", "fit-1-epoch", _cli("joint", "fit", "tiny", "--data", self.store,
                                                 "--out", out, "--epochs", "1", "-q"),
                  expect="ok", outputs=out / "model")

    def stores(self):
        for name, (edit, pattern) in STORE_CASES.items():
            if self.only and not any(o in f"store/{name}" for o in self.only):
                continue
            bad = _link_copy(self.store, self.work / "stores" / name)
            edit(bad)
            self.case("store", f"{name}/info-check", _cli("data", "info", "--check", bad),
                      pattern=pattern)
            out = self.out(f"store-fit-{name}")
            self.case("store", f"{name}/fit", _cli("joint", "fit", "tiny", "--data", bad,
                                                    "--out", out, "--epochs", "1", "-q"),
                      pattern=pattern, outputs=out / "model")

    def models(self):
        def bad_model(name, edit):
            path = _link_copy(self.model, self.work / "models" / name)
            edit(path)
            return path

        def edit_json(path, fn):
            m = json.loads((path / "model.json").read_text())
            fn(m)
            _rewrite(path / "model.json", json.dumps(m).encode())

        cases = {
            "weights-bit-flip": (lambda p: _flip_bit(p / "model.safetensors", 4096),
                                 r"damaged|checksum|sha"),
            "weights-truncated": (lambda p: _rewrite(
                p / "model.safetensors", (p / "model.safetensors").read_bytes()[:1000]),
                r"damaged|truncat|checksum|safetensors"),
            "weights-missing": (lambda p: (p / "model.safetensors").unlink(),
                                r"missing|safetensors|no such"),
            "model-json-n-layers": (lambda p: edit_json(
                p, lambda m: m["encoder"].update(n_layers=1)), r"n_layers|layer|weights"),
            "model-json-d-model": (lambda p: edit_json(
                p, lambda m: m["encoder"].update(d_model=32)), r"d_model|shape|weights"),
            "model-json-not-json": (lambda p: _rewrite(p / "model.json", b"{"),
                                    r"json|model"),
            "model-json-wrong-format": (lambda p: edit_json(
                p, lambda m: m.update(format="something-else")), r"format"),
        }
        for name, (edit, pattern) in cases.items():
            if self.only and not any(o in f"model/{name}" for o in self.only):
                continue
            path = bad_model(name, edit)
            out = self.out(f"model-{name}")
            self.case("model", name, _cli("joint", "predict", path, "--stimulus", self.stimulus,
                                          "--out", out, "-q"), pattern=pattern, outputs=out)

    def predict_inputs(self):
        w = self.work / "stimuli"
        w.mkdir(exist_ok=True)
        feats = np.load(self.stimulus)

        def stim(name, array=None, raw=None, pickle=False):
            path = w / f"{name}.npy"
            if raw is not None:
                path.write_bytes(raw)
            else:
                np.save(path, array, allow_pickle=pickle)
            return path

        def huge():
            path = w / "huge.npy"
            if not path.exists():
                # a sparse file of zeros: cheap to make, 1.8 GB to read
                np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                          shape=(5_000_000, self.n_features)).flush()
            return path

        nan = feats.copy()
        nan[10, 3] = np.nan
        cases = {
            "3-samples": (stim("short", feats[:3]), [], r"short|samples|at least"),
            "5-million-samples": (huge(), [], r"GiB|memory|long|chunk"),
            "wrong-n-features": (stim("wrongf", feats[:, :10]), [], r"feature|92|d_stim"),
            "one-dimensional": (stim("oned", feats[:, 0]), [], r"shape|2-d|dimension"),
            "nan-in-stimulus": (stim("nan", nan), [], r"nan|finite"),
            "object-array": (stim("obj", np.array([{"x": 1}], dtype=object), pickle=True), [],
                             r"pickle|object|dtype"),
            "not-npy": (stim("text", raw=b"hello, world\n"), [], r"npy|format|read"),
            "stimulus-missing": (w / "missing.npy", [], r"missing|not found|no such|exist"),
            "sfreq-mismatch": (self.stimulus, ["--sfreq", "100"], r"sfreq|Hz"),
            "unknown-subject": (self.stimulus, ["--subjects", "S99"], r"S99|subject"),
        }
        for name, (path, extra, pattern) in cases.items():
            out = self.out(f"predict-{name}")
            self.case("predict", name, _cli("joint", "predict", self.model, "--stimulus", path,
                                            "--out", out, "-q", *extra),
                      pattern=pattern, outputs=out, timeout=max(self.timeout, 180))
        out = self.out("predict-out-exists")
        out.mkdir()
        (out / "keep.txt").write_text("keep me")
        self.case("predict", "out-exists", _cli("joint", "predict", self.model, "--stimulus",
                                                self.stimulus, "--out", out, "-q"),
                  pattern=r"exist|overwrite")

    def fit_settings(self):
        cfg = self.work / "configs"
        cfg.mkdir(exist_ok=True)

        def conf(name, text):
            path = cfg / name
            path.write_text(text)
            return path

        tiny = json.loads((self.fit / "config.json").read_text())
        enc = dict(tiny["model"]["encoder"])
        enc = {k: enc[k] for k in ("d_model", "n_layers", "n_heads", "d_ff", "dropout",
                                   "window")}

        def with_(train=None, encoder=None, name="x.json"):
            c = {"train": {**tiny["train"], **(train or {})}, "encoder": {**enc, **(encoder or {})}}
            return conf(name, json.dumps(c))

        cases = {
            "device-cuda": ("tiny", ["--device", "cuda"], r"cuda|device|gpu"),
            "device-tpu": ("tiny", ["--device", "tpu"], r"device|tpu"),
            "device-cuda-7": ("tiny", ["--device", "cuda:7"], r"cuda|device|gpu"),
            "huge-d-model": (with_(encoder={"d_model": 1_000_000}, name="huge.json"), [],
                             r"d_model|memory|GiB"),
            "heads-not-dividing": (with_(encoder={"n_heads": 3}, name="heads.json"), [],
                                   r"n_heads|d_model|divis"),
            "negative-lr": (with_(train={"lr": -1.0}, name="lr.json"), [], r"lr"),
            "zero-batch": (with_(train={"batch_size": 0}, name="batch.json"), [],
                           r"batch"),
            "epochs-zero": ("tiny", ["--epochs", "0"], r"epoch"),
            "epochs-negative": ("tiny", ["--epochs", "-3"], r"epoch"),
            "unknown-key": (with_(train={"learning_rate": 1e-3}, name="key.json"), [],
                            r"learning_rate|unknown"),
            "bad-toml": (conf("bad.toml", "[train\nlr = 1"), [], r"toml|parse|bad\.toml"),
            "unknown-preset": ("tinyy", [], r"preset|tinyy"),
            "data-missing": ("tiny", ["--data", self.work / "nope"], r"nope|exist|not found"),
            "data-is-a-file": ("tiny", ["--data", self.stimulus], r"stimulus\.npy|folder|dataset"),
            "out-is-a-file": ("tiny", ["--out", self.stimulus], r"stimulus\.npy|folder|file"),
        }
        for name, (config, extra, pattern) in cases.items():
            out = self.out(f"fit-{name}")
            args = ["joint", "fit", config, "--data", self.store, "--out", out, "--epochs", "1",
                    "-q"]
            # a later --data/--out/--epochs replaces the default one (argparse keeps the last)
            self.case("fit", name, _cli(*args, *extra), pattern=pattern, outputs=out / "model")

    def resume(self):
        if self.only and not any(o in "resume" for o in self.only):
            return
        base = self.out("resume-base")
        rc, text, _ = _run(_cli("joint", "fit", "tiny", "--data", self.store, "--out", base,
                                "--epochs", "2", "-q"), timeout=600)
        other = _link_copy(self.store, self.work / "stores" / "other-data")
        _edit_array(other / "features" / "story-01.npy", lambda a: a[::-1].copy())
        cfg = self.work / "configs" / "lr.json"
        tiny = json.loads((self.fit / "config.json").read_text())
        enc = {k: tiny["model"]["encoder"][k] for k in ("d_model", "n_layers", "n_heads",
                                                        "d_ff", "dropout", "window")}
        cfg.parent.mkdir(exist_ok=True)
        cfg.write_text(json.dumps({"train": {**tiny["train"], "lr": 0.01}, "encoder": enc}))
        for name, (config, data, pattern, expect) in {
            "other-dataset": ("tiny", other, r"data|fingerprint|differ", "error"),
            "changed-lr": (cfg, self.store, r"lr", "error"),
            "changed-lr-override": (cfg, self.store, None, "ok"),
        }.items():
            out = self.out(f"resume-{name}")
            shutil.copytree(base, out)
            flag = ["--resume", "override"] if name.endswith("override") else ["--resume"]
            self.case("resume", name, _cli("joint", "fit", config, "--data", data, "--out",
                                           out, "--epochs", "3", "-q", *flag),
                      pattern=pattern, expect=expect, outputs=out / "model")
        out = self.out("resume-checkpoint-bit-flip")
        shutil.copytree(base, out)
        ck = sorted((out / "checkpoints").glob("epoch-*"))[-1]
        target = max(ck.rglob("*.safetensors"), key=lambda p: p.stat().st_size)
        _flip_bit(target, 4096)
        self.case("resume", "checkpoint-bit-flip", _cli(
            "joint", "fit", "tiny", "--data", self.store, "--out", out, "--epochs", "3", "-q",
            "--resume"), pattern=r"damaged|checksum")

    def meg2fmri(self):
        """System C on inputs it cannot use (a store without events or volumes)."""
        out = self.out("m2f-prepare-no-events")
        self.case("meg2fmri", "prepare-no-events", _cli(
            "meg2fmri", "prepare", "--data", self.store, "--out", out / "pairs.npz", "-q"),
            pattern=r"event")
        out = self.out("m2f-fit-missing-pairs")
        self.case("meg2fmri", "fit-missing-pairs", _cli(
            "meg2fmri", "fit", "tiny", "--train", self.work / "nope.npz", "--out", out, "-q"),
            pattern=r"nope\.npz|not found|exist")
        out = self.out("m2f-fit-pairs-not-npz")
        self.case("meg2fmri", "fit-pairs-not-npz", _cli(
            "meg2fmri", "fit", "tiny", "--train", self.stimulus, "--out", out, "-q"),
            pattern=r"stimulus\.npy|pairs|npz")

    def simulate_settings(self):
        cfg = self.work / "configs"
        cfg.mkdir(exist_ok=True)

        def conf(name, **over):
            path = cfg / f"sim-{name}.json"
            path.write_text(json.dumps({"preset": "tiny", **over}))
            return path

        cases = {
            "story-duration-1e9": (conf("dur", story_duration=1e9), [], r"story_duration|GiB|memory|disk"),
            "n-train-1e6": (conf("ntrain", n_train=1_000_000), [], r"n_train|GiB|memory|disk"),
            "n-meg-subjects-1e5": (conf("nmeg", n_meg_subjects=100_000), [],
                                   r"n_meg_subjects|GiB|memory|disk"),
            "n-train-negative": (conf("neg", n_train=-2), [], r"n_train"),
            "story-duration-nan": (cfg / "sim-nan.json", [], r"story_duration|nan|number"),
            "unknown-key": (conf("key", n_trian=3), [], r"n_trian|unknown"),
            "meg-cnr-abc": ("tiny", ["--meg-cnr", "abc"], r"cnr|number"),
            "meg-cnr-negative": ("tiny", ["--meg-cnr", "-1"], r"cnr"),
            "unknown-preset": ("tinyy", [], r"preset|tinyy"),
        }
        (cfg / "sim-nan.json").write_text('{"preset": "tiny", "story_duration": NaN}')
        for name, (config, extra, pattern) in cases.items():
            out = self.out(f"simulate-{name}")
            self.case("simulate", name, _cli("simulate", "study", config, "--out", out, "-q",
                                             *extra), pattern=pattern, timeout=120)
        out = self.out("simulate-out-exists")
        out.mkdir()
        (out / "keep.txt").write_text("keep")
        self.case("simulate", "out-exists", _cli("simulate", "study", "tiny", "--out", out, "-q"),
                  pattern=r"exist|overwrite")
        self.case("simulate", "out-under-a-file", _cli(
            "simulate", "study", "tiny", "--out", self.stimulus / "sub", "-q"),
            pattern=r"stimulus\.npy|not a folder|file")

    # -- operating system: disk full, read-only --------------------------------------------
    def _in_tmpfs(self, size, cmd, *, readonly=False):
        mnt = self.work / "mnt"
        mnt.mkdir(exist_ok=True)
        remount = f" && mount -o remount,ro {mnt}" if readonly else ""
        inner = " ".join(f"'{c}'" for c in cmd)
        return ["unshare", "-rm", "sh", "-c",
                f"mount -t tmpfs -o size={size} tmpfs {mnt}{remount} && exec {inner}"], mnt

    def os_errors(self):
        if shutil.which("unshare") is None or _run(
                ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs tmpfs {self.work}"],
                timeout=30)[0] != 0:
            self.log("[    skipped] os: no private tmpfs mounts (unshare -rm) on this machine")
            self.skipped_os = True
            return
        self.skipped_os = False
        mnt = self.work / "mnt"
        full = r"disk full|no space|free there"  # refused up front, or when the disk fills
        for name, size, args, pattern in [
            ("simulate-disk-full", "2m", ["simulate", "study", "tiny", "--out", mnt / "sim"],
             full),
            ("simulate-disk-full-forced", "2m", ["simulate", "study", "tiny", "--out",
                                                 mnt / "sim", "--force"], r"disk full"),
            ("fit-disk-full", "3m", ["joint", "fit", "tiny", "--data", self.store, "--out",
                                     mnt / "fit", "--epochs", "1"], full),
            ("fit-disk-full-forced", "3m", ["joint", "fit", "tiny", "--data", self.store,
                                            "--out", mnt / "fit", "--epochs", "1", "--force"],
             r"disk full"),
            ("predict-disk-full", "256k", ["joint", "predict", self.model, "--stimulus",
                                           self.stimulus, "--out", mnt / "pred"], full),
            ("predict-disk-full-forced", "256k", ["joint", "predict", self.model, "--stimulus",
                                                  self.stimulus, "--out", mnt / "pred",
                                                  "--force"], r"disk full"),
        ]:
            cmd, _ = self._in_tmpfs(size, _cli(*args, "-q"))
            self.case("os", name, cmd, pattern=pattern)
        for name, args in [
            ("simulate-read-only", ["simulate", "study", "tiny", "--out", mnt / "sim"]),
            ("predict-read-only", ["joint", "predict", self.model, "--stimulus", self.stimulus,
                                   "--out", mnt / "pred"]),
        ]:
            cmd, _ = self._in_tmpfs("512m", _cli(*args, "-q"), readonly=True)
            self.case("os", name, cmd, pattern=r"read-only|permission")

    # -- kill -9 and resume ------------------------------------------------------------------
    def kills(self, n, *, epochs=6, seed=0):
        if n <= 0 or (self.only and not any(o in "kills" for o in self.only)):
            return None
        rng = random.Random(seed)
        ref = self.out("kill-reference")
        args = ["joint", "fit", "tiny", "--data", self.store, "--epochs", str(epochs), "-q"]
        t0 = time.perf_counter()
        rc, text, _ = _run(_cli(*args, "--out", ref), timeout=900)
        t_ref = time.perf_counter() - t0
        if rc != 0:
            raise SystemExit(f"reference fit failed:\n{text[-3000:]}")
        want = _sha(ref / "model" / "model.safetensors")
        trials = []
        for i in range(n):
            at = rng.uniform(0.15, 0.9) * t_ref
            killed = False
            for _ in range(5):  # the run may finish first on a quiet machine: kill earlier
                out = self.out(f"kill-{i:02d}")
                p = subprocess.Popen(_cli(*args, "--out", out), env=_env(),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    p.wait(timeout=at)
                except subprocess.TimeoutExpired:
                    p.send_signal(signal.SIGKILL)
                    p.wait()
                    killed = True
                    break
                at *= 0.6
            rc, text, _ = _run(_cli(*args, "--out", out, "--resume"), timeout=900)
            got = _sha(out / "model" / "model.safetensors") if rc == 0 else None
            trial = {"kill_after_s": round(at, 2), "killed": killed, "resume_rc": rc,
                     "identical": got == want}
            if rc != 0:
                trial["message"] = _message(text)
            trials.append(trial)
            self.log(f"[kill {i + 1:2d}/{n}] after {at:.1f} s (killed={killed}): "
                     f"resume rc {rc}, identical {got == want}")
            shutil.rmtree(out, ignore_errors=True)
        return {"tried": n, "killed": sum(t["killed"] for t in trials),
                "resumed_identical": sum(t["identical"] for t in trials),
                "reference_fit_s": round(t_ref, 1), "epochs": epochs, "trials": trials}


def _sha(path):
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, type=Path, help="work folder (good inputs reused)")
    p.add_argument("--kills", type=int, default=20, help="kill -9 / resume trials (default 20)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    p.add_argument("--only", nargs="*", help="run only cases whose group/name contains one "
                   "of these (e.g. predict store/manifest kills)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    t = Torture(args.work, timeout=args.timeout, only=args.only)
    t.setup()
    t.skipped_os = None
    for group in (t.controls, t.stores, t.models, t.predict_inputs, t.fit_settings, t.resume,
                  t.meg2fmri, t.simulate_settings, t.os_errors):
        group()
    kills = t.kills(args.kills)
    counts = {}
    for r in t.rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    bad_input = [r for r in t.rows if r["expect"] == "error"]
    result = {
        "benchmark": "torture",
        "command": "python benchmarks/bench_torture.py --work W" + (
            f" --kills {args.kills}" if args.kills != 20 else ""),
        "tried": len(t.rows),
        "bad_inputs": len(bad_input),
        "counts": {k: counts.get(k, 0) for k in ("clear", "unclear", "traceback", "silent",
                                                 "hang", "false_alarm", "ok")},
        "kills": kills,
        "os_cases_skipped": t.skipped_os,
        "cases": t.rows,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
