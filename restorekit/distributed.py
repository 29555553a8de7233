"""Process group set-up for `torchrun`, shared by training (DDP on gloo / NCCL) and sharded batch inference.

Nothing here is global state beyond what torch.distributed itself keeps: `setup()` reads torchrun's
environment (RANK, WORLD_SIZE, LOCAL_RANK) and returns a `Dist` value the trainer passes around.
A plain `restorekit train` or `restore` (no torchrun) is world size 1 and never touches torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from restorekit.infer import pick_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Rank 0 writes logs, checkpoints and the final weights."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup(device: str = "auto") -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not tdist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        tdist.init_process_group(backend=backend)
    if dev.type == "cuda" and world == 1 and dev.index is not None:
        torch.cuda.set_device(dev)
    return Dist(rank, world, local_rank, dev)


def teardown(dist: Dist) -> None:
    if dist.active and tdist.is_initialized():
        tdist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor, dist: Dist) -> torch.Tensor:
    """Mean over ranks (a copy); identity for one process."""
    if not dist.active:
        return value
    out = value.detach().clone()
    tdist.all_reduce(out, op=tdist.ReduceOp.SUM)
    return out / dist.world


def average_gradients(params, dist: Dist) -> None:
    """All-reduce (mean) the gradients of parameters DDP does not manage (uncertainty log-variances)."""
    if not dist.active:
        return
    for p in params:
        if p.grad is not None:
            tdist.all_reduce(p.grad, op=tdist.ReduceOp.SUM)
            p.grad /= dist.world


def broadcast_object(obj, dist: Dist):
    """Rank 0's object on every rank (validation results that steer sampling)."""
    if not dist.active:
        return obj
    holder = [obj]
    tdist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_objects(obj, dist: Dist) -> list:
    """Every rank's object, in rank order, on every rank."""
    if not dist.active:
        return [obj]
    out = [None] * dist.world
    tdist.all_gather_object(out, obj)
    return out


def barrier(dist: Dist) -> None:
    if dist.active:
        tdist.barrier()
