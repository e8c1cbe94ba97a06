"""A world loaded into the running kernel: its maps and programs, owned by one context manager.

    with LiveWorld(world) as live:      # maps created, programs loaded, world slots filled
        live.info(prog_id)              # JITed image, per-function addresses
        live.map_op(op)                 # bpf_map_update_elem / bpf_map_delete_elem
        live.run(run)                   # ctx inputs written, BPF_PROG_TEST_RUN, counts read back
                                        # every fd closed here, on every path

The prog arrays and the programs reference each other (a slot holds a program, a program holds
its maps), but the kernel clears a prog array when its last user fd closes
(prog_array_map_clear()), so closing the fds frees them all. The same happens when the process
dies: an interrupted run leaves nothing loaded.
"""

from __future__ import annotations

import errno
import struct
from contextlib import ExitStack
from dataclasses import dataclass

from tcfuzz.live import bpf
from tcfuzz.live.btf import func_btf, func_info
from tcfuzz.live.lower import (
    COUNTS,
    COUNTS_SIZE,
    DRIVER,
    DRIVER_ARRAY,
    INPUTS,
    INPUTS_SIZE,
    KFunction,
    MapSymbol,
    driver_program,
    encode,
    input_offset,
    lower_program,
)
from tcfuzz.model.world import MapOp, RunSpec, World

KEY0 = bytes(4)
PACKET = bytes(64)  # an Ethernet frame's worth of zeros: test_run wants at least ETH_HLEN


MAX_LIVE_MAP_BYTES = 64 << 20  # a prog array's ptrs[] this large is refused here, not allocated


class MapTooLarge(Exception):
    """A prog array too large to allocate on a shared machine (the kernel could, or fail -ENOMEM)."""


class KernelRefused(Exception):
    """The kernel's verifier refused a program of the world; the message is the verifier's reason."""

    def __init__(self, prog: int, error: bpf.BpfError) -> None:
        super().__init__(f"prog {prog}: {error.reason}")
        self.prog = prog
        self.error = error


@dataclass(frozen=True)
class KernelRun:
    retval: int
    runs: tuple[tuple[int, int], ...]  # (program id, times its glue ran)


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


class LiveWorld:
    def __init__(self, world: World, fill_slots: bool = True) -> None:
        self.world = world
        self.fill_slots = fill_slots
        self._stack = ExitStack()
        self.maps: dict[MapSymbol, bpf.Fd] = {}
        self.progs: dict[int, bpf.Fd] = {}
        self.driver: bpf.Fd | None = None

    def __enter__(self) -> LiveWorld:
        try:
            self._create_maps()
            self._load_programs()
            if self.fill_slots:
                for spec in self.world.maps:
                    for key, prog in sorted(spec.slots.items()):
                        bpf.map_update(self.maps[MapSymbol(map_id=spec.id)], u32(key), u32(int(self.progs[prog])))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _own(self, fd: bpf.Fd) -> bpf.Fd:
        self._stack.callback(fd.close)
        return fd

    def _create_maps(self) -> None:
        for glue, size in ((COUNTS, COUNTS_SIZE), (INPUTS, INPUTS_SIZE)):
            self.maps[MapSymbol(glue=glue)] = self._own(bpf.map_create(bpf.BPF_MAP_TYPE_ARRAY, 4, size, 1, f"tcfuzz_{glue}"))
        for spec in self.world.maps:
            size = 8 * spec.alloc_entries
            if spec.kind == "prog_array" and size > MAX_LIVE_MAP_BYTES:
                raise MapTooLarge(f"maps[{spec.id}]: max_entries {spec.max_entries} needs {size >> 20} MiB of ptrs[]")
        for spec in self.world.maps:
            if spec.kind == "prog_array":  # a filler only takes a used_maps[] index in the model
                create = bpf.map_create_unpriv if spec.unpriv else bpf.map_create
                fd = create(bpf.BPF_MAP_TYPE_PROG_ARRAY, 4, 4, spec.max_entries, f"tcfuzz_pa{spec.id}")
                self.maps[MapSymbol(map_id=spec.id)] = self._own(fd)

    def _load_programs(self) -> None:
        fds = {symbol: int(fd) for symbol, fd in self.maps.items()}
        for prog in self.world.programs:
            functions = lower_program(self.world, prog)
            btf, info = None, b""
            if len(functions) > 1:
                btf = self._own(bpf.btf_load(func_btf(len(functions))))
                info = func_info([0, len(functions[0].insns)])
            try:
                fd = bpf.prog_load(bpf.BPF_PROG_TYPE_SCHED_CLS, encode(functions, fds), f"tcfuzz_p{prog.id}", btf, info)
            except bpf.BpfError as e:
                if e.log:
                    raise KernelRefused(prog.id, e) from None
                raise
            self.progs[prog.id] = self._own(fd)

    def info(self, prog: int) -> bpf.ProgInfo:
        return bpf.prog_info(self.progs[prog])

    def map_op(self, op: MapOp) -> bool:
        """The syscall of a map operation; False when the kernel refuses it (-E2BIG past max_entries,
        -ENOENT deleting an empty slot), as the model's prog_array does."""
        fd = self.maps[MapSymbol(map_id=op.map)]
        try:
            if op.op == "update":
                assert op.prog is not None  # world validation: an update names its program
                bpf.map_update(fd, u32(op.index), u32(int(self.progs[op.prog])))
            else:
                bpf.map_delete(fd, u32(op.index))
        except bpf.BpfError as e:
            if e.errno in (errno.E2BIG, errno.ENOENT):
                return False
            raise
        return True

    def write_inputs(self, run: RunSpec) -> None:
        """Every site's run-time key and, for a poisoned site, the index of its map in site.maps."""
        value = bytearray(INPUTS_SIZE)
        for prog in self.world.programs:
            for j, site in enumerate(prog.sites):
                given = run.input_for(prog.id, j)
                choice = site.maps.index(given.map) if given.map in site.maps else len(site.maps) - 1
                struct.pack_into("<QQ", value, input_offset(prog.id, j), given.key, choice)
        bpf.map_update(self.maps[MapSymbol(glue=INPUTS)], KEY0, bytes(value))

    def _load_driver(self) -> bpf.Fd:
        """lower.driver_program() with its two maps, loaded on the first run that needs it."""
        if self.driver is None:
            value = bpf.map_create(bpf.BPF_MAP_TYPE_ARRAY, 4, 8, 1, "tcfuzz_driver")
            self.maps[MapSymbol(glue=DRIVER)] = self._own(value)
            self.maps[DRIVER_ARRAY] = self._own(bpf.map_create(bpf.BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 2, "tcfuzz_drv_pa"))
            fds = {symbol: int(fd) for symbol, fd in self.maps.items()}
            fn = KFunction(-1, driver_program(), False, 0, False, True)
            self.driver = self._own(bpf.prog_load(bpf.BPF_PROG_TYPE_SCHED_CLS, encode([fn], fds), "tcfuzz_driver"))
            bpf.map_update(self.maps[DRIVER_ARRAY], u32(0), u32(int(self.driver)))
        return self.driver

    def entry_fd(self, run: RunSpec) -> bpf.Fd:
        """The program BPF_PROG_TEST_RUN starts: the entry, or for `tail_call_cnt` c >= 1 the driver,
        which reaches the entry by c tail calls (so the entry's counter is c)."""
        if not run.tail_call_cnt:
            return self.progs[run.entry]
        driver = self._load_driver()
        bpf.map_update(self.maps[MapSymbol(glue=DRIVER)], KEY0, struct.pack("<Q", run.tail_call_cnt - 1))
        bpf.map_update(self.maps[DRIVER_ARRAY], u32(1), u32(int(self.progs[run.entry])))
        return driver

    def run(self, run: RunSpec) -> KernelRun:
        """Map operations through the syscall, then one BPF_PROG_TEST_RUN of the entry program."""
        for op in run.ops:
            self.map_op(op)
        self.write_inputs(run)
        counts = self.maps[MapSymbol(glue=COUNTS)]
        bpf.map_update(counts, KEY0, bytes(COUNTS_SIZE))
        result = bpf.prog_test_run(self.entry_fd(run), PACKET)
        raw = bpf.map_lookup(counts, KEY0, COUNTS_SIZE)
        runs = tuple((p.id, struct.unpack_from("<Q", raw, 8 * p.id)[0]) for p in sorted(self.world.programs, key=lambda p: p.id))
        return KernelRun(result.retval, runs)
