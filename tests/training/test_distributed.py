"""Joining the process group torchrun describes: none alone, a real 2-process gloo group."""

import torch

from neurofuse.training.distributed import DistributedContext, cleanup_distributed, init_distributed

from _ranks import run_ranks

WORKER = """
import json, torch
from neurofuse.training.distributed import cleanup_distributed, init_distributed
ctx = init_distributed("cpu")
total = torch.tensor([float(ctx.rank + 1)])
torch.distributed.all_reduce(total)
cleanup_distributed()
print(json.dumps({"distributed": ctx.distributed, "rank": ctx.rank, "world": ctx.world_size,
                  "device": str(ctx.device), "total": float(total),
                  "left": torch.distributed.is_initialized()}))
"""


def test_without_torchrun_nothing_is_initialised(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert init_distributed("cpu") == DistributedContext(False, 0, 1, torch.device("cpu"))
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    ctx = init_distributed()
    want = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert ctx == (False, 0, 1, want)  # the device fit() would choose itself
    assert not torch.distributed.is_initialized()
    cleanup_distributed()  # nothing to leave: no error


def test_two_processes_join_one_group(tmp_path):
    outs = run_ranks(WORKER)
    assert [(o["distributed"], o["rank"], o["world"]) for o in outs] == [(True, 0, 2),
                                                                         (True, 1, 2)]
    assert all(o["total"] == 3.0 and o["device"] == "cpu" and not o["left"] for o in outs)
