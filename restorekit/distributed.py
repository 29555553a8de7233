"""Process group set-up for `torchrun`, shared by training (DDP on gloo / NCCL) and sharded batch inference.

Nothing here is global state beyond what torch.distributed itself keeps: `setup()` reads torchrun's
environment (RANK, WORLD_SIZE, LOCAL_RANK) and returns a `Dist` value the trainer passes around.
A plain `restorekit train` or `restore` (no torchrun) is world size 1 and never touches torch.distributed.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as tdist

from restorekit.errors import RestorekitError
from restorekit.infer import pick_device

T = TypeVar("T")


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


def launched_world() -> int:
    """How many processes torchrun started this one with (WORLD_SIZE); 1 outside torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str = "auto", timeout: timedelta | None = None) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a single process.

    timeout: how long a collective waits for the slowest rank (torch's default, 30 min, when None).
    A group that cannot be joined is one line (RestorekitError) naming the rank and torch's reason.
    """
    world = launched_world()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not tdist.is_initialized():
        _join(dev, rank, world, timeout)
    if dev.type == "cuda" and world == 1 and dev.index is not None:
        torch.cuda.set_device(dev)
    return Dist(rank, world, local_rank, dev)


def _join(dev: torch.device, rank: int, world: int, timeout: timedelta | None) -> None:
    backend = "nccl" if dev.type == "cuda" else "gloo"
    extra = {"timeout": timeout} if timeout is not None else {}
    try:
        if not tdist.is_available():
            raise RuntimeError("this PyTorch build has no torch.distributed")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        store = attempt_store(world, timeout)
        if store is None:
            tdist.init_process_group(backend=backend, **extra)
        else:
            tdist.init_process_group(backend=backend, store=store, rank=rank, world_size=world, **extra)
    except (RuntimeError, ValueError, AssertionError, TimeoutError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise RestorekitError(f"rank {rank} of {world} cannot join the {backend} process group ({reason}); "
                              "launch with torchrun, or unset WORLD_SIZE for one process") from None


def attempt_store(world: int, timeout: timedelta | None) -> tdist.Store | None:
    """torchrun's shared store, with keys private to this restart attempt; None outside torchrun's agent store.

    Since torch 2.5 the workers use torchrun's own rendezvous store, which outlives a restart
    (`--max-restarts`); the default group's keys are the same in every attempt, so a restarted worker could
    read a killed peer's address and fail to connect (pytorch/pytorch#135712). Prefixing the keys with the
    attempt number (TORCHELASTIC_RESTART_COUNT) gives every attempt a clean namespace on the same server.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    client = tdist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, is_master=False,
                            timeout=timeout or timedelta(minutes=30))
    return tdist.PrefixStore(f"restorekit/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", client)


def shard(items: Sequence[T], dist: Dist) -> list[T]:
    """This rank's share of `items`: every world-th one from its rank on (round-robin).

    Deterministic for a given list, each item on exactly one rank, and shares differ by at most one item
    however the list was filtered (a rerun that skips finished files stays balanced).
    """
    return list(items[dist.rank::dist.world])


def teardown(dist: Dist) -> None:
    """Leave the group together, and leave nothing for gloo's worker threads to free once Python is exiting.

    A gloo barrier keeps (weak) references to every collective still in its worker threads' hands, and the
    worker that finishes a barrier frees that chain; freeing a collective's tensors takes the GIL. When the
    last barrier before exit was freed by a worker after the interpreter had begun finalising, the worker
    could not take the GIL, was made to exit inside a C++ destructor, and the finished process aborted
    ("terminate called without an active exception", SIGABRT; torchrun then fails the job: seen in CI after a
    sharded restore and after DDP training, about 1 run in 80 under load; docs/RELIABILITY.md section 3).
    So the final barrier is kept for the life of the process: what it references is never freed by a worker,
    and everything gloo held before it is in it or was freed before it was queued.
    """
    if dist.active and tdist.is_initialized():
        try:
            final = tdist.barrier(async_op=True)
            final.wait()
            keep_until_exit(final)
        except RuntimeError:  # a peer died: nothing to wait for
            pass
        tdist.destroy_process_group()


def keep_until_exit(obj: object) -> None:
    """Never free `obj`, not even in the interpreter's finalisation (one extra reference, never returned)."""
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


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
