"""Execution: a world's runs in the running kernel, as Observations the oracle can compare.

The kernel shows, per run: whether the programs loaded (and the verifier's reason if not), the
retval of BPF_PROG_TEST_RUN (FALL_THROUGH + the id of the program that fell through) and each
program's run count (the `counts` map), which also shows the counter limit (33 tail calls = 34
runs). It does not show the trace order, faults, registers or the counter itself; those fields
are not compared (KERNEL_FIELDS).

A run that enters the entry program as a tail callee with count c (`tail_call_cnt`) starts a
driver program that tail-calls itself c - 1 times and then the entry (session.LiveWorld.entry_fd).
A world whose prog array is too large to allocate here is reported as not run (None), never guessed.
"""

from __future__ import annotations

import errno

from tcfuzz.live.bpf import BpfError
from tcfuzz.live.session import KernelRefused, LiveWorld, MapTooLarge
from tcfuzz.model.interfaces import Observation
from tcfuzz.model.world import World

KERNEL_FIELDS = ("load", "ret", "runs")


class KernelRunner:
    """Outcome of one world in the kernel: per-run Observations (None: not expressible) and why a
    load failed, in the kernel's words."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.reason = ""
        self.observations: list[Observation | None] = []

    def run(self) -> KernelRunner:
        try:
            with LiveWorld(self.world) as live:
                for run in self.world.runs:
                    result = live.run(run)
                    self.observations.append(Observation(ret=result.retval, runs=result.runs))
        except KernelRefused as e:
            self.reason = str(e)
            self.observations = [Observation.not_loaded("rejected") for _ in self.world.runs]
        except MapTooLarge as e:
            self.reason = str(e)
            self.observations = [None for _ in self.world.runs]
        except BpfError as e:
            if e.errno != errno.ENOMEM:
                raise
            self.reason = f"{e.what}: {e.strerror}"
            self.observations = [None for _ in self.world.runs]
        return self
