"""The generic training loop on toy tasks: two optimizers against a hand-written loop, gradient
clipping against its analytic effect, exact resume after an interruption (also under bf16
mixed precision, on CPU and, when there is one, on a GPU), early stopping."""

import math

import numpy as np
import pytest
import torch

from neurofuse.training import LoopConfig, Task, fit_task, load_checkpoint
from neurofuse.training.loop import replay_early_stopping, with_added_later

N_FEAT = 3


class Regression(Task):
    """Linear regression through dropout, in shuffled mini-batches, with two optimizers: SGD
    with momentum for the weights and Adam for the bias, each with its own schedule. Dropout
    and the shuffling draw from torch's RNG, so an exact resume must restore it."""

    progress_keys = ("train_mse", "val_loss")

    def __init__(self, *, dropout=0.2, n=48, batch_size=8, optimizers=("weight", "bias")):
        self.dtypes = set()  # dtypes of the forward passes' outputs (bf16 under autocast)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n + 16, N_FEAT))
        y = x @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.1 * rng.standard_normal(n + 16)
        x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
        self.x, self.y, self.x_val, self.y_val = x[:n], y[:n], x[n:], y[n:]
        self.dropout, self.batch_size, self.names = dropout, batch_size, optimizers

    def setup(self, ctx):
        return torch.nn.Sequential(torch.nn.Dropout(self.dropout),
                                   torch.nn.Linear(N_FEAT, 1)).to(ctx.device)

    def configure_optimizers(self, model):
        lin = model[1]
        if self.names == ("all",):
            opt = torch.optim.SGD(lin.parameters(), lr=0.1)
            return {"all": opt}, {}
        w = torch.optim.SGD([lin.weight], lr=0.05, momentum=0.9)
        b = torch.optim.Adam([lin.bias], lr=0.05)
        return ({"weight": w, "bias": b},
                {"weight": torch.optim.lr_scheduler.StepLR(w, step_size=2, gamma=0.5),
                 "bias": torch.optim.lr_scheduler.ExponentialLR(b, gamma=0.9)})

    def train_batches(self, epoch):
        order = torch.randperm(len(self.x))
        for b0 in range(0, len(order), self.batch_size):
            idx = order[b0:b0 + self.batch_size]
            yield self.x[idx], self.y[idx]

    def _forward(self, ctx, x):
        with ctx.autocast():
            pred = ctx.model(x.to(ctx.device))
        self.dtypes.add(pred.dtype)
        return pred[:, 0].float()  # the loss in float32

    def training_step(self, ctx, batch, optimizer):
        x, y = batch
        loss = (self._forward(ctx, x) - y.to(ctx.device)).pow(2).mean()
        return loss, {"mse": float(loss.detach())}

    def validate(self, ctx, epoch):
        pred = self._forward(ctx, self.x_val)
        return {"val_loss": float((pred - self.y_val.to(ctx.device)).pow(2).mean())}


def _reference(task, *, max_epochs, seed=0, grad_clip=None):
    """The same training written out by hand."""
    torch.manual_seed(seed)
    model = task.setup(type("Ctx", (), {"device": torch.device("cpu")})())
    optimizers, schedulers = task.configure_optimizers(model)
    for _ in range(max_epochs):
        model.train()
        for x, y in task.train_batches(None):
            for opt in optimizers.values():
                loss = (model(x)[:, 0] - y).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                if grad_clip:
                    torch.nn.utils.clip_grad_norm_(
                        [p for g in opt.param_groups for p in g["params"]], grad_clip)
                opt.step()
        for sched in schedulers.values():
            sched.step()
    return model


def _weights(out):
    tensors, meta = load_checkpoint(out / "checkpoints")
    return {k: v for k, v in tensors.items() if k.startswith("model.")}, tensors, meta


@pytest.mark.parametrize("grad_clip", [None, 0.05])
def test_two_optimizers_equal_a_hand_written_loop(tmp_path, grad_clip):
    history = fit_task(Regression(), tmp_path / "run",
                       config=dict(max_epochs=4, patience=None, grad_clip=grad_clip))
    ref = _reference(Regression(), max_epochs=4, grad_clip=grad_clip)
    weights, _, meta = _weights(tmp_path / "run")
    for k, v in ref.state_dict().items():
        assert torch.equal(weights[f"model.{k}"], v), k
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    # Each optimizer's learning rate follows its own schedule, logged per name.
    assert [row["lr_weight"] for row in history] == pytest.approx([0.05, 0.025, 0.025, 0.0125])
    assert [row["lr_bias"] for row in history] == pytest.approx([0.05 * 0.9 ** e
                                                                 for e in range(1, 5)])
    assert sorted(meta["optimizers"]) == ["bias", "weight"]
    assert meta["trainer"]["history"] == history


def test_gradient_clipping_bounds_the_step(tmp_path):
    """One SGD step (lr 0.1) on one batch: the parameters move by lr * clip in norm when the
    gradient is longer than the clip, and by lr * |grad| when it is not."""

    class OneBatch(Regression):
        def train_batches(self, epoch):
            yield self.x, self.y

    def step_norm(clip, out):
        task = OneBatch(dropout=0.0, optimizers=("all",))
        torch.manual_seed(0)
        init = torch.cat([p.detach().flatten() for p in task.setup(
            type("Ctx", (), {"device": torch.device("cpu")})()).parameters()])
        fit_task(task, out, config=dict(max_epochs=1, grad_clip=clip))
        w, _, _ = _weights(out)
        after = torch.cat([w["model.1.weight"].flatten(), w["model.1.bias"]])
        return float((after - init).norm())

    free = step_norm(None, tmp_path / "free")  # lr * |grad|
    assert free > 0.1 * 0.5
    assert step_norm(0.5, tmp_path / "clipped") == pytest.approx(0.1 * 0.5, rel=1e-5)
    assert step_norm(100.0, tmp_path / "loose") == pytest.approx(free, rel=1e-6)


class _Interrupt(Exception):
    pass


def _check_exact_resume(tmp_path, *, device="cpu", mixed_precision=False):
    config = dict(max_epochs=6, patience=None, grad_clip=1.0, mixed_precision=mixed_precision)
    straight = fit_task(Regression(), tmp_path / "straight", config=config, device=device)

    def crash_after_3(epoch, row):
        if epoch == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        fit_task(Regression(), tmp_path / "resumed", epoch_callback=crash_after_3,
                 config=config, device=device)
    _, _, meta = _weights(tmp_path / "resumed")
    assert meta["trainer"]["epoch"] == 3
    with pytest.raises(FileExistsError, match="resume"):
        fit_task(Regression(), tmp_path / "resumed", config=dict(max_epochs=6), device=device)
    task = Regression()
    resumed = fit_task(task, tmp_path / "resumed", resume=True, config=config, device=device)
    assert task.dtypes == {torch.bfloat16 if mixed_precision else torch.float32}
    _, a, _ = _weights(tmp_path / "straight")
    _, b, _ = _weights(tmp_path / "resumed")
    assert sorted(a) == sorted(b)
    assert any(k.startswith("opt.weight.") for k in a) and any(k.startswith("rng.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k  # model, both optimizers' states, RNG
    drop = [{k: v for k, v in row.items() if k != "seconds"} for row in straight]
    assert drop == [{k: v for k, v in row.items() if k != "seconds"} for row in resumed]
    # Not trivially equal: a run that does not restore the RNG (a fresh seed) differs.
    other = fit_task(Regression(), tmp_path / "other", config={**config, "seed": 1},
                     device=device)
    assert other[-1]["train_mse"] != straight[-1]["train_mse"]


@pytest.mark.parametrize("mixed_precision", [False, True])
def test_interrupted_run_resumes_exactly(tmp_path, mixed_precision):
    _check_exact_resume(tmp_path, mixed_precision=mixed_precision)


def _check_mixed_precision(tmp_path, device):
    """Under mixed precision the forward pass really runs in bf16 (its output's dtype, and a
    run that differs from the float32 one in its numbers) and still learns; the weights
    stay float32. Without it, float32 throughout."""
    runs = {}
    for mixed in (False, True):
        task = Regression(dropout=0.0)
        history = fit_task(task, tmp_path / f"mixed{mixed}", device=device,
                           config=dict(max_epochs=8, patience=None, mixed_precision=mixed))
        assert task.dtypes == {torch.bfloat16 if mixed else torch.float32}
        weights, _, _ = _weights(tmp_path / f"mixed{mixed}")
        assert {v.dtype for v in weights.values()} == {torch.float32}
        # the noise variance of the data is 0.01: from ~7 down to near it
        assert history[-1]["val_loss"] < 0.05 * history[0]["val_loss"]
        runs[mixed] = history, weights
    (h32, w32), (h16, w16) = runs[False], runs[True]
    assert h16[-1]["train_mse"] != h32[-1]["train_mse"]  # bf16 arithmetic, not ignored
    # bf16 keeps 8 bits of mantissa: the learnt weights agree to about 1 %
    for k in w32:
        torch.testing.assert_close(w16[k], w32[k], rtol=0.02, atol=0.02)


def test_mixed_precision_on_cpu(tmp_path):
    _check_mixed_precision(tmp_path, "cpu")


def test_mixed_precision_needs_autocast_on_the_device():
    from neurofuse.training import RunContext

    with pytest.raises(ValueError, match="mixed_precision=False"):
        RunContext(device=torch.device("meta"), mixed_precision=True).autocast()
    RunContext(device=torch.device("meta")).autocast()  # off: nothing to check


@pytest.mark.gpu
def test_mixed_precision_and_exact_resume_on_gpu(tmp_path):
    _check_mixed_precision(tmp_path / "mixed", "cuda")
    _check_exact_resume(tmp_path / "resume", device="cuda", mixed_precision=True)


class Scripted(Regression):
    """Validation losses read from a script; the phase changes at ``phase_from``."""

    def __init__(self, losses, *, phase_from=None, stop_from=0):
        super().__init__()
        self.losses, self.phase_from, self.stop_from = losses, phase_from, stop_from

    def validate(self, ctx, epoch):
        return {"val_loss": self.losses[epoch]}

    def phase(self, epoch):
        return None if self.phase_from is None else int(epoch >= self.phase_from)

    def may_stop(self, epoch):
        return epoch >= self.stop_from

    def save_model(self, model, path):
        super().save_model(model, path)
        self.saved_after = getattr(self, "saved_after", []) + [self.epoch_seen]

    def train_batches(self, epoch):
        self.epoch_seen = epoch + 1
        return super().train_batches(epoch)


_LOSSES = [5.0, 4.0, 4.5, 4.2, 4.1, 3.0, 3.5, 2.0]
_STOPPING_CASES = [
    ({}, 2, 0, 4, [1, 2]),                             # 5, 4 improve; 4.5, 4.2 do not: stop
    ({}, 3, 0, 5, [1, 2]),                             # 4.1 is the third epoch above 4.0
    ({"stop_from": 4}, 2, 0, 5, [1, 2]),               # stopping allowed from the 5th epoch on
    ({"phase_from": 3}, 2, 0, 8, [1, 2, 4, 5, 6, 8]),  # the new phase forgets 4.0: 4.2 improves
    ({}, None, 0, 8, [1, 2, 6, 8]),                    # no early stopping
    ({}, 2, 5, 5, [1, 2]),                             # patience ran out at 4: stop at the 5th
    ({}, 2, 6, 8, [1, 2, 6, 8]),                       # the 6th improves: the plateau waited out
]


@pytest.mark.parametrize("kwargs, patience, min_epochs, n_epochs, saved", _STOPPING_CASES)
def test_early_stopping(tmp_path, kwargs, patience, min_epochs, n_epochs, saved):
    task = Scripted(_LOSSES, **kwargs)
    config = dict(max_epochs=8, patience=patience, min_epochs=min_epochs)
    history = fit_task(task, tmp_path / "run", config=config)
    assert len(history) == n_epochs
    assert task.saved_after == saved  # the best model is saved when the monitor improves
    _, _, meta = _weights(tmp_path / "run")
    assert meta["trainer"]["stopped"] == (n_epochs < 8)
    assert meta["trainer"]["best_val"] == min(_LOSSES[saved[-1] - 1:n_epochs])
    assert math.isfinite(meta["trainer"]["best_val"])
    # The replay of the rule on the whole record agrees with the loop that ran it.
    phases = [task.phase(e) for e in range(8)]
    replay = replay_early_stopping(_LOSSES, config=config, phases=phases,
                                   may_stop=[task.may_stop(e) for e in range(8)])
    assert replay == {"epochs": n_epochs, "best_epoch": saved[-1],
                      "best": _LOSSES[saved[-1] - 1], "stopped": n_epochs < 8}


def test_replay_needs_a_record_that_reaches_the_stop():
    stop = {"epochs": 4, "best_epoch": 2, "best": 4.0, "stopped": True}
    assert replay_early_stopping(_LOSSES[:4], config=dict(max_epochs=8, patience=2)) == stop
    # a stop at the max_epochs-th epoch is a stop, as the loop's checkpoint records it
    assert replay_early_stopping(_LOSSES, config=dict(max_epochs=4, patience=2)) == stop
    assert replay_early_stopping(_LOSSES, config=dict(max_epochs=3, patience=2)) == {
        "epochs": 3, "best_epoch": 2, "best": 4.0, "stopped": False}
    with pytest.raises(ValueError, match="holds 4 epochs.*has not stopped"):
        replay_early_stopping(_LOSSES[:4], config=dict(max_epochs=8, patience=3))
    with pytest.raises(ValueError, match="'phases' \\(3\\)"):
        replay_early_stopping(_LOSSES, config={}, phases=[0, 0, 0])
    # fit_task stops a run whose monitored number is not finite: no record of it holds one
    with pytest.raises(ValueError, match="'monitor' contains 1 NaN.*TrainingDivergedError"):
        replay_early_stopping([math.nan, *_LOSSES[1:]], config=dict(max_epochs=8, patience=2))


def test_settings_added_later_fill_only_what_a_record_lacks():
    """A checkpoint or fit record written before a setting existed is read as holding the
    value every such run had; what it records wins, and sections it lacks stay absent."""
    added = {"train": {"monitor": "val_loss"}, "model": {"g": {"pad": "reflect", "k": 0.0}}}
    old = {"train": {"lr": 0.1}, "model": {"g": {"k": 5.0}, "data": "x"}}
    filled = with_added_later(old, added)
    assert filled == {"train": {"lr": 0.1, "monitor": "val_loss"},
                      "model": {"g": {"k": 5.0, "pad": "reflect"}, "data": "x"}}
    assert old == {"train": {"lr": 0.1}, "model": {"g": {"k": 5.0}, "data": "x"}}  # a copy
    assert with_added_later(filled, added) == filled  # a newer record is read as written
    assert with_added_later({"model": None}, added) == {"model": None}
    assert with_added_later({}, added) == {}
    assert with_added_later({}, {"betas": (0.9, 0.99)}) == {"betas": [0.9, 0.99]}  # as JSON


def test_a_malformed_added_later_is_an_error_before_any_work(tmp_path):
    class Flat(Regression):
        added_later = {"monitor": "val_loss"}  # not nested under "config"

    with pytest.raises(TypeError, match=r"'Flat\.added_later' must be .*got \{'monitor'"):
        fit_task(Flat(), tmp_path, config=LoopConfig(max_epochs=1))
    assert not (tmp_path / "checkpoints").exists()


def test_a_stopped_run_resumed_with_a_later_minimum_goes_on(tmp_path, catch_logs):
    """Stopped by patience at epoch 4, resumed with min_epochs 6: training continues where it
    stopped and ends as a run that had min_epochs 6 from the start (weights bit for bit)."""
    base = dict(max_epochs=8, patience=2)
    assert len(fit_task(Scripted(_LOSSES), tmp_path / "a", config=base)) == 4
    resumed = fit_task(Scripted(_LOSSES), tmp_path / "a", resume=True,
                       config={**base, "min_epochs": 6})
    straight = fit_task(Scripted(_LOSSES), tmp_path / "b", config={**base, "min_epochs": 6})
    assert [r["epoch"] for r in resumed] == list(range(1, 9)) == [r["epoch"] for r in straight]
    _, a, _ = _weights(tmp_path / "a")
    _, b, _ = _weights(tmp_path / "b")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # resumed at its max_epochs, a run the new settings would not have stopped says so but
    # does not claim to go on
    fit_task(Scripted(_LOSSES), tmp_path / "d", config={**base, "max_epochs": 4})
    with catch_logs("info") as log:
        assert len(fit_task(Scripted(_LOSSES), tmp_path / "d", resume=True,
                            config={**base, "max_epochs": 4, "min_epochs": 6})) == 4
    assert "it goes on" not in log.text and "max_epochs (4) is reached" in log.text
    # under settings that would have stopped it there anyway, a resumed run stays stopped
    assert len(fit_task(Scripted(_LOSSES), tmp_path / "c", config=base)) == 4
    assert len(fit_task(Scripted(_LOSSES), tmp_path / "c", resume=True,
                        config={**base, "min_epochs": 4})) == 4


@pytest.mark.parametrize("first, then, kwargs", [
    # early stopping fired at the max_epochs-th epoch: more epochs alone do not undo it
    (dict(max_epochs=4, patience=2), dict(max_epochs=8, patience=2), {}),
    # ... a longer patience does (a straight run with it stops at 5)
    (dict(max_epochs=4, patience=2), dict(max_epochs=8, patience=3), {}),
    # a run that reached max_epochs without stopping trains on
    (dict(max_epochs=3, patience=2), dict(max_epochs=8, patience=2), {}),
    # a new phase starts at the resumed epoch: its memory restarts as in a straight run
    (dict(max_epochs=8, patience=2), dict(max_epochs=8, patience=2, min_epochs=6),
     {"phase_from": 4}),
])
def test_a_resumed_run_ends_as_a_straight_run_with_its_settings(tmp_path, first, then, kwargs):
    fit_task(Scripted(_LOSSES, **kwargs), tmp_path / "a", config=first)
    resumed = fit_task(Scripted(_LOSSES, **kwargs), tmp_path / "a", resume=True, config=then)
    straight = fit_task(Scripted(_LOSSES, **kwargs), tmp_path / "b", config=then)
    assert len(resumed) == len(straight)
    a, b = (_weights(tmp_path / run)[2]["trainer"] for run in "ab")
    for key in ("epoch", "best_val", "bad_epochs", "phase", "stopped"):
        assert a[key] == b[key], key


def test_loop_config_is_checked():
    with pytest.raises(ValueError, match="'max_epoch' \\(did you mean 'max_epochs'\\?\\)"):
        LoopConfig.from_dict({"max_epoch": 3})
    with pytest.raises(ValueError, match="LoopConfig.patience"):
        LoopConfig(patience=0)
    with pytest.raises(ValueError, match="LoopConfig.min_epochs"):
        LoopConfig(min_epochs=-1)
    with pytest.raises(ValueError, match="LoopConfig.grad_clip"):
        LoopConfig(grad_clip=-1.0)


class _Broken(Regression):
    """The regression with one defect: NaN inputs, an infinite gradient, NaN validation
    targets, or no batches at all."""

    def __init__(self, defect):
        super().__init__(optimizers=("all",))
        self.defect = defect
        if defect == "nan_input":
            self.x[5, 1] = float("nan")
        elif defect == "nan_val":
            self.y_val[0] = float("nan")
        elif defect == "inf_grad":  # one batch an epoch: no later loss sees the broken weight
            self.batch_size = len(self.x)

    def setup(self, ctx):
        model = super().setup(ctx)
        if self.defect == "inf_grad":  # finite loss, infinite gradient on the bias
            model[1].bias.register_hook(lambda g: g * float("inf"))
        return model

    def train_batches(self, epoch):
        if self.defect == "no_batches":
            return iter(())
        return super().train_batches(epoch)


@pytest.mark.parametrize("defect, match", [
    ("nan_input", r"loss of optimizer 'all' is nan at epoch 1, batch \d"),
    ("inf_grad", r"after epoch 1 the weights 1.bias hold NaN or Inf"),
    ("nan_val", r"watches is nan after epoch 1.*validation data"),
])
def test_training_never_ends_silently_wrong(tmp_path, defect, match):
    """A non-finite loss, weight or validation number stops training with an error that says
    where; no model is saved from the broken epoch."""
    from neurofuse.training import TrainingDivergedError

    out = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match=match):
        fit_task(_Broken(defect), out, config={"max_epochs": 3, "patience": None})
    assert not (out / "model").exists()  # the first epoch broke: nothing was good to save
    # the same task without its defect trains
    assert len(fit_task(Regression(optimizers=("all",)), tmp_path / "ok",
                        config={"max_epochs": 1})) == 1


def test_an_epoch_without_batches_is_an_error(tmp_path):
    task = _Broken("no_batches")
    task.no_batches_hint = "Your stories are too short."
    with pytest.raises(ValueError, match="no training batch in epoch 1.*too short"):
        fit_task(task, tmp_path / "run", config={"max_epochs": 2})
