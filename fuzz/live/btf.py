"""Struct member offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux).

The format (Documentation/bpf/btf.rst, include/uapi/linux/btf.h): a 24-byte header
{magic 0xeB9F, version, flags, hdr_len, type_off, type_len, str_off, str_len}, then `struct btf_type`
records {name_off, info, size_or_type} (info: vlen in bits 0-15, kind in 24-28, kind_flag in 31),
each followed by a kind-specific tail. Only STRUCT/UNION members are read; every other kind is
skipped by its tail size. Type ids start at 1 (0 is void). No library: the parser is these lines.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")
BTF_MAGIC = 0xEB9F

(KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_FWD, KIND_TYPEDEF, KIND_VOLATILE,
 KIND_CONST, KIND_RESTRICT, KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_FLOAT, KIND_DECL_TAG,
 KIND_TYPE_TAG, KIND_ENUM64) = range(1, 20)  # fmt: skip

# Bytes that follow a btf_type, per kind (vlen = number of records).
_TAIL = {
    KIND_INT: lambda vlen: 4,
    KIND_ARRAY: lambda vlen: 12,
    KIND_STRUCT: lambda vlen: 12 * vlen,
    KIND_UNION: lambda vlen: 12 * vlen,
    KIND_ENUM: lambda vlen: 8 * vlen,
    KIND_FUNC_PROTO: lambda vlen: 8 * vlen,
    KIND_VAR: lambda vlen: 4,
    KIND_DATASEC: lambda vlen: 12 * vlen,
    KIND_DECL_TAG: lambda vlen: 4,
    KIND_ENUM64: lambda vlen: 12 * vlen,
}


class BtfError(LookupError):
    pass


@dataclass(frozen=True)
class Member:
    name: str
    type_id: int
    bit_offset: int


class Btf:
    def __init__(self, data: bytes) -> None:
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", data)
        if magic != BTF_MAGIC:
            raise BtfError(f"not BTF (magic {magic:#x})")
        self._strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
        self.kinds: list[int] = [0]
        self.names: list[str] = [""]
        self.members: list[tuple[Member, ...]] = [()]
        self.ref: list[int] = [0]  # size_or_type: the referenced type for modifiers and typedefs
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        while pos < end:
            name_off, info, size_or_type = struct.unpack_from("<III", data, pos)
            kind, vlen, kind_flag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            pos += 12
            members: tuple[Member, ...] = ()
            if kind in (KIND_STRUCT, KIND_UNION):
                records = struct.iter_unpack("<III", data[pos : pos + 12 * vlen])
                # with kind_flag the offset holds bitfield size << 24 | bit offset
                members = tuple(Member(self.string(n), t, o & 0xFFFFFF if kind_flag else o) for n, t, o in records)
            pos += _TAIL.get(kind, lambda vlen: 0)(vlen)
            self.kinds.append(kind)
            self.names.append(self.string(name_off))
            self.members.append(members)
            self.ref.append(size_or_type)

    @classmethod
    def vmlinux(cls, path: Path = VMLINUX) -> Btf:
        return cls(path.read_bytes())

    def string(self, off: int) -> str:
        return self._strings[off : self._strings.index(b"\0", off)].decode()

    def struct_id(self, name: str) -> int:
        for type_id, (kind, type_name) in enumerate(zip(self.kinds, self.names, strict=True)):
            if kind == KIND_STRUCT and type_name == name:
                return type_id
        raise BtfError(f"struct {name} not in BTF")

    def _resolve(self, type_id: int) -> int:
        while self.kinds[type_id] in (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG):
            type_id = self.ref[type_id]
        return type_id

    def _find(self, type_id: int, name: str) -> tuple[int, int] | None:
        """(bit offset, type id) of member `name`, looking through anonymous structs/unions."""
        for m in self.members[self._resolve(type_id)]:
            if m.name == name:
                return m.bit_offset, m.type_id
            if not m.name:
                inner = self._find(m.type_id, name)
                if inner is not None:
                    return m.bit_offset + inner[0], inner[1]
        return None

    def offsetof(self, struct_name: str, path: str) -> int:
        """offsetof(struct struct_name, a.b.c) in bytes."""
        type_id, bits = self.struct_id(struct_name), 0
        for part in path.split("."):
            found = self._find(type_id, part)
            if found is None:
                raise BtfError(f"struct {struct_name} has no member {path}")
            bits += found[0]
            type_id = found[1]
        if bits % 8:
            raise BtfError(f"{struct_name}.{path} is a bitfield")
        return bits // 8


def func_btf(n_functions: int) -> bytes:
    """A BTF blob for BPF_BTF_LOAD with one static FUNC per function (`int f(int ctx)`), and the
    type ids 3.. that `func_info()` gives the functions: the verifier refuses a tail call in a
    subprogram without BTF ("tail_call is not allowed in subprogs without BTF")."""
    strings = b"\0int\0ctx\0f\0"
    s_int, s_ctx, s_f = 1, 5, 9
    types = struct.pack("<IIII", s_int, KIND_INT << 24, 4, (1 << 24) | 32)  # [1] int: signed, 32 bits
    types += struct.pack("<III", 0, KIND_FUNC_PROTO << 24 | 1, 1) + struct.pack("<II", s_ctx, 1)  # [2] int (int ctx)
    for _ in range(n_functions):  # [3..] static int f(int ctx)
        types += struct.pack("<III", s_f, KIND_FUNC << 24 | 0, 2)
    header = struct.pack("<HBBIIIII", BTF_MAGIC, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def func_info(starts: list[int]) -> bytes:
    """struct bpf_func_info records for functions starting at these insn offsets (type ids 3..)."""
    return b"".join(struct.pack("<II", start, 3 + i) for i, start in enumerate(starts))
