"""The FCN branch on a second CPU thread in training: the values of running it in line, and only where it applies."""

from __future__ import annotations

import copy
import os
import signal
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from bigru_lightning.model import BiGRU, branch_worker


@pytest.fixture
def one_thread_and_a_spare_core(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """torch on one thread, two usable cores (whatever the machine has): the worker applies."""
    monkeypatch.setattr(branch_worker, "_usable_cores", lambda: 2)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _recipe_like_net() -> BiGRU:
    torch.manual_seed(5)
    net = BiGRU(
        input_size=2,
        hidden_size=8,
        num_classes=3,
        conv_channels=[6, 10, 6],
        downsample=2,
        rocket_features=168,
        rocket_max_dilation=2,
    )
    assert net.rocket is not None
    net.rocket.fit(torch.randn(12, 20, 2, generator=torch.Generator().manual_seed(9)))
    return net


def _steps(net: BiGRU, lengths: torch.Tensor | None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Three SGD steps on one batch: each step's logits, then every gradient, parameter and buffer."""
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(5, 20, 2, generator=generator)
    target = torch.tensor([0, 1, 2, 1, 0])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    logits = []
    for _ in range(3):
        optimizer.zero_grad()
        out = net(x, lengths)
        nn.functional.cross_entropy(out, target).backward()
        optimizer.step()
        logits.append(out.detach())
    grads = [p.grad.clone() for p in net.parameters() if p.grad is not None]
    return logits, [*grads, *(t.detach().clone() for t in net.state_dict().values())]


@pytest.mark.parametrize("variable", [False, True])
def test_the_worker_computes_what_running_in_line_computes(
    variable: bool, one_thread_and_a_spare_core: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bit for bit: logits, gradients, weights after three steps and the batch-norm statistics."""
    lengths = torch.tensor([20, 3, 11, 1, 20]) if variable else None
    started: list[int] = []
    original = branch_worker.start
    monkeypatch.setattr(branch_worker, "start", lambda *args: started.append(1) or original(*args))
    net = _recipe_like_net()
    in_line = copy.deepcopy(net)
    on_worker = _steps(net, lengths)
    assert len(started) == 3  # every step's branch ran on the worker
    monkeypatch.setattr(branch_worker, "applies", lambda _: False)
    reference = _steps(in_line, lengths)
    assert len(started) == 3
    for ours, theirs in zip([*on_worker[0], *on_worker[1]], [*reference[0], *reference[1]], strict=True):
        assert torch.equal(ours, theirs)


def test_the_worker_is_for_cpu_training_with_a_spare_core_only(one_thread_and_a_spare_core: None) -> None:
    x = torch.randn(3, 5, 2)
    assert branch_worker.applies(x)
    with torch.no_grad():
        assert not branch_worker.applies(x)
    with torch.inference_mode():
        assert not branch_worker.applies(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not branch_worker.applies(x)
    torch.set_num_threads(2)  # torch's threads already take every core
    assert not branch_worker.applies(x)


def test_a_failing_branch_raises_in_the_caller(one_thread_and_a_spare_core: None) -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
            raise RuntimeError("the branch failed")

    ticket = branch_worker.start(Broken(), torch.randn(2, 3, 1), None)
    with pytest.raises(RuntimeError, match="the branch failed"):
        branch_worker.finish(ticket)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_trains_with_a_worker_of_its_own(one_thread_and_a_spare_core: None) -> None:
    """The parent's worker thread does not exist in a child: the child must not wait for it forever."""
    net = _recipe_like_net()
    _steps(net, None)  # the parent's worker thread exists now
    pid = os.fork()
    if pid == 0:  # the child: train a step through the worker; killed by the alarm if it hangs
        signal.alarm(60)
        code = 1
        try:
            _steps(net, None)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
