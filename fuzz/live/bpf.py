"""A small bpf(2) layer over ctypes: the syscall, the uapi structs tcfuzz needs, fds that close.

Every struct is written once, field by field, with the offsets of include/uapi/linux/bpf.h
(x86-64). `union bpf_attr` is passed as a zero-filled buffer of the command's struct; the kernel
accepts a shorter attr than its own as long as the bytes past what it knows are zero
(bpf_check_uarg_tail_zero), so each command only lays out the prefix it uses.

Every object is an `Fd`: a context manager that closes on every path. A program or map lives only
as long as an fd (or a prog array slot held by a live map) refers to it, so closing every fd is
what "nothing left loaded" means.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import struct
from dataclasses import dataclass

# include/uapi/linux/bpf.h: enum bpf_cmd
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_NEXT_ID = 11
BPF_MAP_GET_NEXT_ID = 12
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_BTF_LOAD = 18

# enum bpf_map_type, enum bpf_prog_type
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PROG_ARRAY = 3
BPF_PROG_TYPE_SCHED_CLS = 3

BPF_ANY = 0
BPF_F_TEST_RUN_ON_CPU = 1 << 0

# ld_imm64 src_reg values (BPF_PSEUDO_MAP_FD: imm = map fd; BPF_PSEUDO_MAP_VALUE: imm = map fd,
# next imm = offset into the value of key 0)
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2

SYS_BPF = {"x86_64": 321, "aarch64": 280}

LOG_SIZE = 1 << 20


class BpfError(OSError):
    """A bpf() command failed: errno, the command and, for a refused load, the verifier's log."""

    def __init__(self, err: int, what: str, log: str = "") -> None:
        super().__init__(err, f"{what}: {os.strerror(err)}")
        self.what = what
        self.log = log

    @property
    def reason(self) -> str:
        """The verifier's own words: the last non-empty line of its log (or the errno)."""
        lines = [line for line in self.log.splitlines() if line.strip() and not line.startswith("processed ")]
        return lines[-1].strip() if lines else self.strerror or ""


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def sys_bpf(cmd: int, attr: ctypes.Array, what: str) -> int:
    nr = SYS_BPF.get(platform.machine())
    if nr is None:
        raise BpfError(errno.ENOSYS, f"bpf() on {platform.machine()}")
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if ret < 0:
        raise BpfError(ctypes.get_errno(), what)
    return ret


def attr(size: int, *fields: tuple[int, str, int]) -> ctypes.Array:
    """A zeroed bpf_attr prefix with (offset, struct format, value) fields packed in."""
    buf = ctypes.create_string_buffer(size)
    for offset, fmt, value in fields:
        struct.pack_into("<" + fmt, buf, offset, value)
    return buf


def addr(buf) -> int:
    return ctypes.addressof(buf)


class Fd:
    """An owned file descriptor: closed by `close()`, `with`, or garbage collection."""

    def __init__(self, fd: int, kind: str) -> None:
        self.fd = fd
        self.kind = kind

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __int__(self) -> int:
        if self.fd < 0:
            raise ValueError(f"{self.kind} fd is closed")
        return self.fd


# --- maps -------------------------------------------------------------------------------------------


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, name: str = "") -> Fd:
    """BPF_MAP_CREATE: map_type@0 key_size@4 value_size@8 max_entries@12 map_flags@16
    inner_map_fd@20 numa_node@24 map_name[16]@28."""
    a = attr(72, (0, "I", map_type), (4, "I", key_size), (8, "I", value_size), (12, "I", max_entries))
    struct.pack_into("<15s", a, 28, name.encode()[:15])
    return Fd(sys_bpf(BPF_MAP_CREATE, a, f"map create ({name or map_type})"), "map")


def _elem_attr(map_fd: Fd, key: bytes, value: bytes | None, flags: int = 0) -> tuple[ctypes.Array, list]:
    """BPF_MAP_*_ELEM: map_fd@0 key@8 value@16 flags@24."""
    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(value, len(value)) if value is not None else None
    a = attr(32, (0, "I", int(map_fd)), (8, "Q", addr(kbuf)), (16, "Q", addr(vbuf) if vbuf else 0), (24, "Q", flags))
    return a, [kbuf, vbuf]


def map_update(map_fd: Fd, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
    a, _keep = _elem_attr(map_fd, key, value, flags)
    sys_bpf(BPF_MAP_UPDATE_ELEM, a, "map update")


def map_delete(map_fd: Fd, key: bytes) -> None:
    a, _keep = _elem_attr(map_fd, key, None)
    sys_bpf(BPF_MAP_DELETE_ELEM, a, "map delete")


def map_lookup(map_fd: Fd, key: bytes, value_size: int) -> bytes:
    a, (_kbuf, vbuf) = _elem_attr(map_fd, key, bytes(value_size))
    sys_bpf(BPF_MAP_LOOKUP_ELEM, a, "map lookup")
    return vbuf.raw


# --- programs ---------------------------------------------------------------------------------------


def btf_load(blob: bytes) -> Fd:
    """BPF_BTF_LOAD: btf@0 btf_log_buf@8 btf_size@16 btf_log_size@20 btf_log_level@24."""
    buf = ctypes.create_string_buffer(blob, len(blob))
    log = ctypes.create_string_buffer(1 << 16)
    a = attr(32, (0, "Q", addr(buf)), (8, "Q", addr(log)), (16, "I", len(blob)), (20, "I", len(log)), (24, "I", 1))
    try:
        return Fd(sys_bpf(BPF_BTF_LOAD, a, "btf load"), "btf")
    except BpfError as e:
        raise BpfError(e.errno or errno.EIO, e.what, log.value.decode(errors="replace")) from None


def prog_load(
    prog_type: int, insns: bytes, name: str = "", btf: Fd | None = None, func_info: bytes = b"", license: str = "GPL"
) -> Fd:
    """BPF_PROG_LOAD: prog_type@0 insn_cnt@4 insns@8 license@16 log_level@24 log_size@28 log_buf@32
    kern_version@40 prog_flags@44 prog_name[16]@48 prog_ifindex@64 expected_attach_type@68
    prog_btf_fd@72 func_info_rec_size@76 func_info@80 func_info_cnt@88. `func_info` is
    struct bpf_func_info {u32 insn_off; u32 type_id} per function (needed for a subprogram that
    tail-calls). The verifier log is only requested after a refusal: it changes nothing the JIT
    emits, but costs time."""
    ibuf = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    fibuf = ctypes.create_string_buffer(func_info, len(func_info)) if func_info else None

    def load(log: ctypes.Array | None) -> int:
        a = attr(
            96,
            (0, "I", prog_type),
            (4, "I", len(insns) // 8),
            (8, "Q", addr(ibuf)),
            (16, "Q", addr(lic)),
            (24, "I", 1 if log is not None else 0),
            (28, "I", len(log) if log is not None else 0),
            (32, "Q", addr(log) if log is not None else 0),
        )
        struct.pack_into("<15s", a, 48, name.encode()[:15])
        if btf is not None and fibuf is not None:
            for offset, fmt, value in ((72, "I", int(btf)), (76, "I", 8), (80, "Q", addr(fibuf)), (88, "I", len(func_info) // 8)):
                struct.pack_into("<" + fmt, a, offset, value)
        return sys_bpf(BPF_PROG_LOAD, a, f"prog load ({name})")

    try:
        return Fd(load(None), "prog")
    except BpfError as first:
        if first.errno not in (errno.EACCES, errno.EINVAL, errno.E2BIG, errno.ENOSPC, errno.EPERM):
            raise
        log = ctypes.create_string_buffer(LOG_SIZE)
        try:
            fd = load(log)
        except BpfError as again:
            raise BpfError(again.errno or errno.EIO, again.what, log.value.decode(errors="replace")) from None
        return Fd(fd, "prog")  # refused once, accepted with a log: keep it (should not happen)


# struct bpf_prog_info (the prefix tcfuzz reads)
PROG_INFO_SIZE = 232
INFO_JITED_PROG_LEN = 16
INFO_XLATED_PROG_LEN = 20
INFO_JITED_PROG_INSNS = 24
INFO_XLATED_PROG_INSNS = 32
INFO_NR_JITED_KSYMS = 104
INFO_NR_JITED_FUNC_LENS = 108
INFO_JITED_KSYMS = 112
INFO_JITED_FUNC_LENS = 120


@dataclass(frozen=True)
class ProgInfo:
    id: int
    jited: bytes  # every function's image, in jited_ksyms order, concatenated
    xlated: bytes  # the translated insns as bpf_insn_prepare_dump() shows them
    ksyms: tuple[int, ...]  # each function's address (bpf_func), main first
    func_lens: tuple[int, ...]

    def functions(self) -> list[tuple[int, bytes]]:
        """(address, image) of each function, main first."""
        out, pos = [], 0
        for address, length in zip(self.ksyms, self.func_lens, strict=True):
            out.append((address, self.jited[pos : pos + length]))
            pos += length
        return out


def _get_info(fd: Fd, info: ctypes.Array) -> None:
    """BPF_OBJ_GET_INFO_BY_FD: bpf_fd@0 info_len@4 info@8."""
    a = attr(16, (0, "I", int(fd)), (4, "I", len(info)), (8, "Q", addr(info)))
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, a, "get info")


def prog_info(fd: Fd) -> ProgInfo:
    """Two calls, as bpftool does: lengths first, then the buffers sized from them."""
    info = ctypes.create_string_buffer(PROG_INFO_SIZE)
    _get_info(fd, info)
    prog_id = struct.unpack_from("<I", info, 4)[0]
    jlen, xlen = struct.unpack_from("<II", info, INFO_JITED_PROG_LEN)
    nksyms, nlens = struct.unpack_from("<II", info, INFO_NR_JITED_KSYMS)
    jbuf = ctypes.create_string_buffer(jlen)
    xbuf = ctypes.create_string_buffer(xlen)
    kbuf = ctypes.create_string_buffer(8 * nksyms)
    lbuf = ctypes.create_string_buffer(4 * nlens)
    info = ctypes.create_string_buffer(PROG_INFO_SIZE)
    for offset, fmt, value in (
        (INFO_JITED_PROG_LEN, "I", jlen),
        (INFO_XLATED_PROG_LEN, "I", xlen),
        (INFO_JITED_PROG_INSNS, "Q", addr(jbuf)),
        (INFO_XLATED_PROG_INSNS, "Q", addr(xbuf)),
        (INFO_NR_JITED_KSYMS, "I", nksyms),
        (INFO_NR_JITED_FUNC_LENS, "I", nlens),
        (INFO_JITED_KSYMS, "Q", addr(kbuf)),
        (INFO_JITED_FUNC_LENS, "Q", addr(lbuf)),
    ):
        struct.pack_into("<" + fmt, info, offset, value)
    _get_info(fd, info)
    return ProgInfo(
        prog_id,
        jbuf.raw,
        xbuf.raw,
        struct.unpack(f"<{nksyms}Q", kbuf.raw),
        struct.unpack(f"<{nlens}I", lbuf.raw),
    )


@dataclass(frozen=True)
class TestRun:
    retval: int
    ctx_out: bytes


def prog_test_run(fd: Fd, data: bytes, ctx: bytes = b"") -> TestRun:
    """BPF_PROG_TEST_RUN: prog_fd@0 retval@4 data_size_in@8 data_size_out@12 data_in@16 data_out@24
    repeat@32 duration@36 ctx_size_in@40 ctx_size_out@44 ctx_in@48 ctx_out@56 flags@64 cpu@68."""
    din = ctypes.create_string_buffer(data, len(data))
    dout = ctypes.create_string_buffer(len(data) + 256)
    cin = ctypes.create_string_buffer(ctx, len(ctx)) if ctx else None
    cout = ctypes.create_string_buffer(len(ctx)) if ctx else None
    a = attr(
        80,
        (0, "I", int(fd)),
        (8, "I", len(data)),
        (12, "I", len(dout)),
        (16, "Q", addr(din)),
        (24, "Q", addr(dout)),
        (32, "I", 1),
        (40, "I", len(ctx)),
        (44, "I", len(ctx)),
        (48, "Q", addr(cin) if cin else 0),
        (56, "Q", addr(cout) if cout else 0),
    )
    sys_bpf(BPF_PROG_TEST_RUN, a, "test run")
    return TestRun(struct.unpack_from("<I", a, 4)[0], cout.raw if cout else b"")


def next_ids(cmd: int) -> list[int]:
    """BPF_{PROG,MAP}_GET_NEXT_ID: start_id@0 next_id@4. Every id the kernel has, in order."""
    ids: list[int] = []
    start = 0
    while True:
        a = attr(12, (0, "I", start))
        try:
            sys_bpf(cmd, a, "get next id")
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return ids
            raise
        start = struct.unpack_from("<I", a, 4)[0]
        ids.append(start)


def loaded_ids() -> tuple[frozenset[int], frozenset[int]]:
    """(program ids, map ids) currently in the kernel."""
    return frozenset(next_ids(BPF_PROG_GET_NEXT_ID)), frozenset(next_ids(BPF_MAP_GET_NEXT_ID))


# --- maps created without CAP_PERFMON ------------------------------------------------------------------

SYS_CAPGET, SYS_CAPSET = 125, 126  # x86-64
LINUX_CAPABILITY_VERSION_3 = 0x20080522
CAP_SYS_ADMIN, CAP_PERFMON = 21, 38


def _drop_effective(*caps: int) -> None:
    """capset(): clear these capabilities from this process's effective set (it keeps CAP_BPF)."""
    header = ctypes.create_string_buffer(struct.pack("<Ii", LINUX_CAPABILITY_VERSION_3, 0))
    data = ctypes.create_string_buffer(24)  # struct __user_cap_data_struct[2]: effective, permitted, inheritable
    if _libc.syscall(ctypes.c_long(SYS_CAPGET), header, data) < 0:
        raise BpfError(ctypes.get_errno(), "capget")
    for cap in caps:
        off = 12 * (cap // 32)  # the effective word of data[cap / 32]
        struct.pack_into("<I", data, off, struct.unpack_from("<I", data, off)[0] & ~(1 << cap % 32))
    if _libc.syscall(ctypes.c_long(SYS_CAPSET), header, data) < 0:
        raise BpfError(ctypes.get_errno(), "capset")


def map_create_unpriv(map_type: int, key_size: int, value_size: int, max_entries: int, name: str = "") -> Fd:
    """A map whose creator lacked CAP_PERFMON and CAP_SYS_ADMIN: the kernel records
    !map->bypass_spec_v1, so array_map_alloc() rounds the allocation to index_mask + 1 and the
    verifier masks the tail-call index (do_misc_fixups()). A forked child drops the two
    capabilities, creates the map and passes the fd back over a unix socket (SCM_RIGHTS); this
    process keeps its own."""
    import socket

    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with parent, child:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's result arrives through the socket
            status = 0
            try:
                parent.close()
                _drop_effective(CAP_PERFMON, CAP_SYS_ADMIN)
                fd = map_create(map_type, key_size, value_size, max_entries, name)
                socket.send_fds(child, [b"\0"], [int(fd)])
            except BaseException as e:  # every failure goes back as an errno
                child.send(bytes([getattr(e, "errno", None) or errno.EIO]))
                status = 1
            os._exit(status)
        try:
            msg, fds, _, _ = socket.recv_fds(parent, 1, 1)
        finally:
            os.waitpid(pid, 0)
    if not fds:
        raise BpfError(msg[0] if msg else errno.EIO, f"map create without CAP_PERFMON ({name})")
    return Fd(fds[0], "map")
