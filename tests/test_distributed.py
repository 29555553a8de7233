"""restorekit.distributed: leaving the process group without an abort at exit (docs/RELIABILITY.md section 3).

The whole path (torchrun, 2 gloo processes, exit status 0) runs in test_recipes, test_elastic_training and
test_sharded_restore; these pin the property that removed the abort: the final barrier outlives the process.
"""

from __future__ import annotations

import gc
import weakref

import pytest

from restorekit import distributed
from restorekit.distributed import Dist


class FakeWork:
    """Stands for gloo's barrier Work: it records the wait, and a weak reference tells whether it was freed."""

    def __init__(self) -> None:
        self.waited = False

    def wait(self) -> bool:
        self.waited = True
        return True


def test_an_object_kept_until_exit_is_never_freed():
    obj = FakeWork()
    alive = weakref.ref(obj)
    distributed.keep_until_exit(obj)
    del obj
    gc.collect()
    assert alive() is not None


@pytest.fixture
def fake_group(monkeypatch):
    """A joined two-process group, as torch.distributed reports it, with the calls teardown makes recorded."""
    calls: list[str] = []
    works: list[weakref.ref] = []

    def barrier(async_op: bool = False):
        calls.append("barrier")
        work = FakeWork()
        works.append(weakref.ref(work))
        return work if async_op else work.wait()

    monkeypatch.setattr(distributed.tdist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.tdist, "barrier", barrier)
    monkeypatch.setattr(distributed.tdist, "destroy_process_group", lambda: calls.append("destroy"))
    return calls, works


def test_teardown_waits_on_a_final_barrier_then_destroys_the_group_and_keeps_the_barrier(fake_group):
    """The final barrier is never freed: freed by a gloo thread after Python began exiting, it aborted a
    finished worker (SIGABRT, "terminate called without an active exception") and torchrun failed the job."""
    calls, works = fake_group
    distributed.teardown(Dist(rank=1, world=2))
    gc.collect()
    assert calls == ["barrier", "destroy"]
    assert len(works) == 1 and works[0]() is not None and works[0]().waited


def test_one_process_has_no_group_to_leave(fake_group):
    calls, _ = fake_group
    distributed.teardown(Dist())
    assert calls == []
