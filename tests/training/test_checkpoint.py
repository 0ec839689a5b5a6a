"""Checkpoint files: the version-1 layout (the joint model's trainer before the generic loop)
is read as version 2, and a newer version is refused."""

import json

import pytest
import torch
from safetensors.torch import save_file

from neurofuse.training import load_checkpoint, restore_checkpoint, save_checkpoint


def _training_state():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(lin.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    lin(torch.randn(4, 3)).pow(2).sum().backward()
    opt.step()
    sched.step()
    return lin, opt, sched


def _write_version_1(path, lin, opt, sched, trainer):
    """What neurofuse's trainer wrote before checkpoint format 2 (one optimizer, no names)."""
    st = opt.state_dict()
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in lin.state_dict().items()}
    meta_opt = {"param_groups": st["param_groups"], "state": {}}
    for idx, s in st["state"].items():
        meta_opt["state"][str(idx)] = {}
        for key, val in s.items():
            tensors[f"opt.{idx}.{key}"] = val.contiguous()
            meta_opt["state"][str(idx)][key] = "__tensor__"
    tensors["rng.torch_cpu"] = torch.get_rng_state()
    (path / "epoch-0002").mkdir(parents=True)
    save_file(tensors, str(path / "epoch-0002" / "state.safetensors"))
    (path / "epoch-0002" / "state.json").write_text(json.dumps({
        "format_version": 1, "model_config": {"n": 2}, "train_config": {"lr": 0.1},
        "trainer": trainer, "optimizer": meta_opt, "scheduler": sched.state_dict()}))
    (path / "latest").write_text("epoch-0002\n")


def test_version_1_is_read_as_version_2(tmp_path):
    lin, opt, sched = _training_state()
    trainer = {"epoch": 2, "best_val": 0.5, "bad_epochs": 0, "phase_alpha_fmri": 1.0,
               "history": [], "stopped": False}
    _write_version_1(tmp_path / "v1", lin, opt, sched, trainer)
    save_checkpoint(tmp_path / "v2", model_state=lin.state_dict(), optimizers={"main": opt},
                    schedulers={"main": sched}, model_config={"n": 2}, config={"lr": 0.1},
                    trainer_state={**{k: v for k, v in trainer.items()
                                      if k != "phase_alpha_fmri"}, "phase": 1.0})
    t1, m1 = load_checkpoint(tmp_path / "v1")
    t2, m2 = load_checkpoint(tmp_path / "v2")
    assert sorted(t1) == sorted(t2)
    for k in t1:
        assert torch.equal(t1[k], t2[k]), k
    assert json.loads(json.dumps(m1)) == json.loads(json.dumps(m2))
    # And it restores: a fresh optimizer gets the saved moments.
    _, opt2, sched2 = _training_state()
    opt2.state.clear()
    restore_checkpoint(t1, m1, optimizers={"main": opt2}, schedulers={"main": sched2})
    for p, q in zip(opt.state.values(), opt2.state.values(), strict=True):
        assert torch.equal(p["exp_avg"], q["exp_avg"])
    with pytest.raises(ValueError, match=r"optimizers \['main'\].*\['d', 'g'\]"):
        restore_checkpoint(t1, m1, optimizers={"g": opt2, "d": opt2})


def test_newer_checkpoint_is_refused(tmp_path):
    lin, opt, sched = _training_state()
    save_checkpoint(tmp_path, model_state=lin.state_dict(), optimizers={"main": opt},
                    trainer_state={"epoch": 1})
    state = tmp_path / "epoch-0001" / "state.json"
    meta = json.loads(state.read_text())
    state.write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match="newer neurofuse; upgrade"):
        load_checkpoint(tmp_path)


def test_a_damaged_checkpoint_is_refused(tmp_path):
    """The checksum written in state.json catches a flipped bit in the tensors."""
    from neurofuse._io import DamagedFileError

    lin, opt, sched = _training_state()
    path = save_checkpoint(tmp_path, model_state=lin.state_dict(), optimizers={"main": opt},
                           schedulers={"main": sched}, trainer_state={"epoch": 1})
    load_checkpoint(tmp_path)  # intact: reads
    assert set(json.loads((path / "state.json").read_text())["checksums"]) == {
        "state.safetensors"}
    data = bytearray((path / "state.safetensors").read_bytes())
    data[-1] ^= 0x01
    (path / "state.safetensors").write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match="checkpoint tensors .*state.json"):
        load_checkpoint(tmp_path)
