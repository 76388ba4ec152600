"""A side branch of the network trained on a second CPU thread, beside the GRU: forward and backward overlap.

On the CPU the recipe trains small batches on one thread (``--threads``), and a training step is two
independent pieces of about equal cost: the GRU (a Python loop of small operations) and the FCN branch
(a few convolutions that keep a core busy). With a spare core, :func:`start` runs the branch's forward
on a worker thread while the caller runs the GRU; the branch's output enters the caller's graph as a
leaf whose gradient hook hands the branch's backward to the worker, and the autograd engine's
end-of-pass callback (what ``DistributedDataParallel`` uses to wait for its reductions) waits for it,
so ``loss.backward()`` returns with every gradient in place. torch releases the GIL inside its
operations, so the two threads run at once.

The values are those of running the branch in line: the same operations on the same tensors (tested
in ``tests/test_model.py``). Used only where it pays and is safe (:func:`applies`): CPU training with
gradients on, a spare core beside torch's threads, no autocast, tracing, compiling or scripting, and
no process group (``DistributedDataParallel`` reduces gradients as one backward pass produces them).
"""

# No ``from __future__ import annotations``: TorchScript reads the signatures of the
# ``@torch.jit.unused`` functions (see gru_scan.py).
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional

import torch
from torch import nn

_pool: Optional[ThreadPoolExecutor] = None  # noqa: UP045
_pool_lock = threading.Lock()
_pending: dict[int, "Future[torch.Tensor]"] = {}
_next_ticket = [0]


@torch.jit.unused
def applies(x: torch.Tensor) -> bool:
    """Whether a branch on ``x`` should run on the worker: CPU training, gradients on, a core to spare."""
    return (
        x.device.type == "cpu"
        and torch.is_grad_enabled()
        and not torch.is_inference_mode_enabled()
        and not torch.is_autocast_enabled("cpu")
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and torch.get_num_threads() < _usable_cores()
        and not (torch.distributed.is_available() and torch.distributed.is_initialized())
    )


@torch.jit.unused
def start(branch: nn.Module, x: torch.Tensor, lengths: Optional[torch.Tensor]) -> int:  # noqa: UP045
    """Start ``branch(x, lengths)`` on the worker thread; return the ticket :func:`finish` takes."""
    threads = torch.get_num_threads()

    def forward() -> torch.Tensor:
        if torch.get_num_threads() != threads:  # torch's thread count is per OS thread under OpenMP
            torch.set_num_threads(threads)
        with torch.enable_grad():
            return branch(x, lengths)

    ticket = _next_ticket[0]
    _next_ticket[0] += 1
    _pending[ticket] = _worker().submit(forward)
    return ticket


@torch.jit.unused
def finish(ticket: int) -> torch.Tensor:
    """The branch's output, as a leaf of the caller's graph whose backward runs on the worker."""
    output = _pending.pop(ticket).result()
    if not output.requires_grad:
        return output
    leaf = output.detach().requires_grad_()
    leaf.register_hook(_backward_on_worker(output))
    return leaf


def _backward_on_worker(output: torch.Tensor) -> Callable[[torch.Tensor], None]:
    """The leaf's gradient hook: the branch's backward on the worker, awaited at the end of the pass."""

    def hook(grad: torch.Tensor) -> None:
        done = _worker().submit(torch.autograd.backward, output, grad)
        torch.autograd.Variable._execution_engine.queue_callback(done.result)

    return hook


def _worker() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bigru-branch")
        return _pool


def _forget_worker() -> None:
    """In a forked child: the parent's worker thread is not there; the next branch starts a new one."""
    global _pool
    _pool = None
    _pending.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_worker)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
