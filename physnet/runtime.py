"""How many CPU threads torch uses, chosen on purpose, and a check that a run got the CPU it needs.

torch starts one intra-op thread per core. Its OpenMP threads wait for each other at every
operation, so when another process holds a core the whole step waits for the slowest thread:
on a 2-core machine under other load torch's default of 2 threads trains and runs MD many times
slower than on an idle machine (issue 32's figures: docs/bad_input.md). physnet's user-facing commands
therefore choose: ``--threads N`` is taken as given; ``--threads 0`` (the default) picks
:func:`auto_threads`.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["auto_threads", "set_threads", "CpuShare"]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_threads(cores: int | None = None, load: float | None = None) -> int:
    """Threads for a run: 1 on a machine with at most 2 cores or with other load (a 1-minute
    load average of 0.5 or more: half a core busy before the run starts), else ``min(cores, 4)``.

    One thread loses little on the small molecules and batches physnet's commands run (their
    kernels are too short to split well), and it cannot be slowed by threads waiting for a core
    another process holds; on an idle machine with more cores a few threads help larger systems.

    Args:
        cores: usable cores (default: this process's CPU affinity).
        load: the 1-minute load average (default: ``os.getloadavg()``).
    """
    cores = _cores() if cores is None else int(cores)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
    if cores <= 2 or load >= 0.5:
        return 1
    return min(cores, 4)


def set_threads(requested: int) -> int:
    """Set torch's intra-op threads to ``requested`` (> 0) or :func:`auto_threads` (0); returns
    the number set. ``UserError`` for a negative number."""
    import torch

    from physnet.errors import UserError

    if requested < 0:
        raise UserError(f"--threads must be >= 0 (0 picks a number for this machine), got {requested}")
    n = int(requested) or auto_threads()
    cores = os.cpu_count() or 1
    if n > cores:
        print(
            f"physnet: warning: --threads {n} is more than the {cores} CPU core(s) here: the extra threads "
            "only wait for each other (0 picks a number for this machine)",
            file=sys.stderr,
        )
    torch.set_num_threads(n)
    return n


class CpuShare:
    """Measures the share of CPU time a run got: process CPU seconds over wall seconds times
    threads. :meth:`warning` is a sentence when it is below ``threshold`` (other processes held
    the cores, so the run went far slower than this machine can go), else ``None``."""

    def __init__(self, threads: int) -> None:
        self.threads = max(int(threads), 1)
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def share(self) -> float:
        wall = time.perf_counter() - self.wall
        return (time.process_time() - self.cpu) / max(wall * self.threads, 1e-9)

    def warning(self, threshold: float = 0.5, min_seconds: float = 5.0) -> str | None:
        if time.perf_counter() - self.wall < min_seconds:
            return None
        share = self.share()
        if share >= threshold:
            return None
        try:
            load = f"load average {os.getloadavg()[0]:.1f} on {_cores()} core(s)"
        except OSError:
            load = f"{_cores()} core(s)"
        hint = "; --threads 1 suffers least from a busy machine" if self.threads > 1 else ""
        return (
            f"this run got {100 * share:.0f}% of the CPU time its {self.threads} thread(s) could use "
            f"({load}): other processes held the cores, so it ran far slower than this machine can{hint}"
        )

    def report(self, command: str) -> None:
        """Print :meth:`warning` to stderr as ``physnet <command>: warning: ...`` if there is one."""
        message = self.warning()
        if message:
            print(f"physnet {command}: warning: {message}", file=sys.stderr, flush=True)
