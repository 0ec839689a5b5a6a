"""One checked device choice (select_device): clear errors for devices this machine lacks."""

import pytest
import torch

from neurofuse.cli.main import main
from neurofuse.training import available_devices, fit_task, select_device


def _fake_cuda(monkeypatch, *, build, count):
    """Pretend this torch is a CUDA build (``build``: its CUDA version or None) with ``count``
    visible GPUs."""
    monkeypatch.setattr(torch.version, "cuda", build)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_cpu_and_default():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert select_device(None) == torch.device("cpu")
    assert available_devices()[0] == "cpu"


def test_cuda_on_a_cpu_only_build(monkeypatch):
    _fake_cuda(monkeypatch, build=None, count=0)
    with pytest.raises(ValueError, match=r"'device' parameter: 'cuda' asks for a CUDA GPU, but "
                       r"this PyTorch .* is a CPU-only build\. This machine can run on: cpu\. "
                       r"Pass --device cpu, or install a CUDA build"):
        select_device("cuda")


def test_cuda_build_without_a_visible_gpu(monkeypatch):
    _fake_cuda(monkeypatch, build="12.4", count=0)
    with pytest.raises(ValueError, match="none is visible.*CUDA_VISIBLE_DEVICES"):
        select_device("cuda:0")


def test_gpu_index_beyond_the_visible_gpus(monkeypatch):
    _fake_cuda(monkeypatch, build="12.4", count=2)
    assert available_devices()[:3] == ["cpu", "cuda:0", "cuda:1"]
    with pytest.raises(ValueError, match=r"'cuda:7' does not exist: 2 CUDA GPU\(s\) are visible, "
                       r"numbered from 0 to 1\. This machine can run on: cpu, cuda:0, cuda:1"):
        select_device("cuda:7")
    assert select_device("cuda:1") == torch.device("cuda", 1)  # exists: accepted


def test_torchrun_rank_beyond_the_gpus(monkeypatch):
    _fake_cuda(monkeypatch, build="12.4", count=2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(ValueError, match="LOCAL_RANK 3 but only 2 CUDA GPU"):
        select_device(None)


def test_unknown_unsupported_and_missing_devices(monkeypatch):
    with pytest.raises(ValueError, match="'tpu' is not a device name PyTorch knows.*can run on: "
                                         "cpu"):
        select_device("tpu")
    with pytest.raises(ValueError, match="'meta' device, which neurofuse does not run on"):
        select_device("meta")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="'mps' asks for Apple's Metal"):
        select_device("mps")
    with pytest.raises(TypeError, match="'device' must be a str"):
        select_device(3)


def test_the_training_loop_checks_the_device(tmp_path):
    # before the task is even set up: a task that would fail on setup is never reached
    class Never:
        def setup(self, ctx):  # pragma: no cover - must not run
            raise AssertionError("setup ran")

    with pytest.raises(ValueError, match="'tpu' is not a device name"):
        fit_task(Never(), tmp_path / "run", device="tpu")


@pytest.mark.parametrize("argv", [
    ["joint", "fit", "tiny", "--data", "D", "--out", "O"],
    ["joint", "evaluate", "--data", "D", "--out", "O"],
    ["joint", "demo"],
    ["joint", "benchmark", "simulation", "--out", "O"],
    ["meg2fmri", "fit", "tiny", "--train", "T", "--out", "O"],
    ["meg2fmri", "synthesize", "M", "--pairs", "P", "--out", "O"],
])
def test_cli_device_is_checked_when_parsed(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--device", "tpu"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --device: Invalid value for the '--device' parameter: 'tpu'" in err
    assert "This machine can run on: cpu" in err and "Traceback" not in err


def test_meg2fmri_device_reaches_the_config_and_the_generator(tmp_path, capsys):
    import json

    import numpy as np

    from neurofuse.systems.meg2fmri.paired import PairedSet

    rng, n = np.random.default_rng(0), 16
    pairs = PairedSet(X=rng.standard_normal((n, 20)), Y=rng.uniform(size=(n, 16, 16)),
                      subject=["S1"] * n, story=["a"] * n, onset=np.arange(n, dtype=float),
                      sample=np.arange(n), volume=np.arange(n), slice=np.zeros(n, int))
    path = pairs.save(tmp_path / "pairs.npz")
    assert main(["meg2fmri", "fit", "tiny", "--train", str(path), "--out", str(tmp_path / "r"),
                 "--device", "cpu", "-q"]) == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["device"] == "cpu"
    assert main(["meg2fmri", "synthesize", str(tmp_path / "r" / "model"), "--pairs", str(path),
                 "--out", str(tmp_path / "s"), "--device", "cpu", "-q"]) == 0
    assert (tmp_path / "s" / "S1_slice-00_synthesized.nii.gz").is_file()
