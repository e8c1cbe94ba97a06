"""Kernel profiles: the build-time facts a tail-call emitter depends on.

A profile fixes everything the x86-64 JIT reads from the kernel configuration or from struct
layouts (include/linux/bpf.h struct bpf_map/bpf_array/bpf_prog; arch/x86/net/bpf_jit_comp.c
emit_indirect_jump(), X86_TAIL_CALL_OFFSET): IBT, the indirect-jump flavour, the offsets of
`bpf_array.map.max_entries`, `bpf_array.ptrs` and `bpf_prog.bpf_func`,
and the verifier/JIT limits. Every limit can be overridden, because the overflow hunter runs
the emitters past the kernel's limits on purpose.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from tcfuzz.model.text import shown


class JumpVariant(str, enum.Enum):
    """How `emit_indirect_jump()` spells `jmp *%rcx` (kernel branch order: ITS, LFENCE, RETPOLINE, plain)."""

    PLAIN = "plain"  # ff e1
    PLAIN_INT3 = "plain-int3"  # ff e1 cc   (CONFIG_MITIGATION_RETPOLINE or _SLS without the feature)
    RETPOLINE = "retpoline"  # e9 rel32 -> __x86_indirect_thunk_array[rcx]
    LFENCE = "lfence"  # 0f ae e8 ff e1   (X86_FEATURE_RETPOLINE_LFENCE)


MAX_TAIL_CALL_CNT = 33  # include/linux/bpf.h
MAX_USED_MAPS = 64  # include/linux/bpf_verifier.h
POKE_TAB_MAX = 1024  # kernel/bpf/core.c: bpf_jit_add_poke_descriptor()

# offsetof(struct bpf_array, map.max_entries): 32-byte sha, ops, inner_map_meta, [security],
# map_type, key_size, value_size, max_entries (checked with a gcc replica of S6's struct bpf_map).
MAX_ENTRIES_OFF_SECURITY = 0x44
MAX_ENTRIES_OFF_NO_SECURITY = 0x3C
# offsetof(struct bpf_array, ptrs) = sizeof(struct bpf_map) + 16 depends on MEMCG, lockdep and
# friends; no concrete value is verified. 0x160 matches the reference's worked example; any value
# that fits a disp32 is a consistent kernel. Without CONFIG_SECURITY the map loses one pointer.
PTRS_OFF_SECURITY = 0x160
PTRS_OFF_NO_SECURITY = 0x158
BPF_FUNC_OFF = 0x48  # offsetof(struct bpf_prog, bpf_func), after the SHA256 digest


# A struct offset left for __post_init__ to derive from config_security: every built profile holds
# real offsets, so the field's type is a plain int.
DERIVED = -1
ARCHES = ("x86_64", "arm64")
# arch/arm64/net/bpf_jit_comp.c: PROLOGUE_OFFSET = BTI_INSNS + 2 + PAC_INSNS + 4 instructions
# (bti jc; mov x9, lr; nop; paciasp; stp x29, lr; mov x29, sp; stp xzr, x26; mov x26, sp).
A64_PROLOGUE_BASE_INSNS = 6


class ProfileError(ValueError):
    """A profile field holds a value no kernel build could have."""


@dataclass(frozen=True)
class KernelProfile:
    name: str = "default"
    arch: str = "x86_64"  # the JIT the world runs on: "x86_64" or "arm64"
    ibt: bool = False  # CONFIG_X86_KERNEL_IBT (cfi_mode default: plain ENDBR)
    config_security: bool = True  # CONFIG_SECURITY: struct bpf_map grows by one pointer
    jump: JumpVariant = JumpVariant.PLAIN
    sls: bool = False  # CONFIG_MITIGATION_SLS: `ret` is followed by int3
    # cpu_wants_rethunk(): every `ret` is `jmp x86_return_thunk` (retbleed/SRSO/ITS mitigations;
    # emit_return() since d77cfe594ad5 "x86/bpf: Use alternative RET encoding", the thunk a
    # variable since "x86/returnthunk: Allow different return thunks", v6.5).
    rethunk: bool = False
    kernel: str = ""  # the running kernel a detected profile was read from (uname -r); "" for presets
    max_entries_off: int = DERIVED  # DERIVED: from config_security, in __post_init__
    ptrs_off: int = DERIVED  # DERIVED: from config_security, in __post_init__
    bpf_func_off: int = BPF_FUNC_OFF
    max_tail_call_cnt: int = MAX_TAIL_CALL_CNT
    max_used_maps: int = MAX_USED_MAPS
    poke_tab_max: int = POKE_TAB_MAX
    bti: bool = False  # arm64 CONFIG_ARM64_BTI_KERNEL: `bti jc` at entry, `bti j` at the tail-call entry
    pac: bool = False  # arm64 CONFIG_ARM64_PTR_AUTH_KERNEL: paciasp / autiasp around the frame record

    def __post_init__(self) -> None:
        self._check_types()
        object.__setattr__(self, "jump", JumpVariant(self.jump))
        if self.arch not in ARCHES:
            raise ProfileError(f"profile {shown(self.name)}: arch={shown(self.arch)} is not one of {', '.join(ARCHES)}")
        if self.arch == "arm64" and (self.ibt or self.sls or self.jump is not JumpVariant.PLAIN):
            raise ProfileError(f"profile {shown(self.name)}: ibt, sls and jump are x86-64 options; arm64 has bti and pac")
        if self.arch == "x86_64" and (self.bti or self.pac):
            raise ProfileError(f"profile {shown(self.name)}: bti and pac are arm64 options")
        if self.max_entries_off in (DERIVED, None):  # None: JSON null, same as absent
            object.__setattr__(
                self, "max_entries_off", MAX_ENTRIES_OFF_SECURITY if self.config_security else MAX_ENTRIES_OFF_NO_SECURITY
            )
        if self.ptrs_off in (DERIVED, None):
            object.__setattr__(self, "ptrs_off", PTRS_OFF_SECURITY if self.config_security else PTRS_OFF_NO_SECURITY)
        # The JIT encodes these two as disp8 (`39 56 d8`, `48 8b 49 d8`); a layout that put them
        # past 127 would break the unpatched kernel too, so it is not a configuration.
        for field in ("max_entries_off", "bpf_func_off"):
            value = getattr(self, field)
            if not 0 <= value <= 0x7F:
                raise ProfileError(f"profile {shown(self.name)}: {field}={value:#x} does not fit the JIT's disp8 (0..0x7f)")
        if not 0 <= self.ptrs_off < 2**31 or self.ptrs_off % 8:
            raise ProfileError(f"profile {shown(self.name)}: ptrs_off={self.ptrs_off:#x} must be 8-aligned and fit a disp32")
        if self.ptrs_off < self.max_entries_off + 4:
            raise ProfileError(f"profile {shown(self.name)}: ptrs_off={self.ptrs_off:#x} overlaps struct bpf_map")
        if not 0 <= self.max_tail_call_cnt <= 0x7F:
            raise ProfileError(
                f"profile {shown(self.name)}: max_tail_call_cnt={self.max_tail_call_cnt} is emitted as imm8 (0..127)"
            )
        for field in ("max_used_maps", "poke_tab_max"):
            if getattr(self, field) < 1:
                raise ProfileError(f"profile {shown(self.name)}: {field} must be >= 1")

    def _check_types(self) -> None:
        """Every field has its declared type, before any of it is used: a bool is true/false (not
        "yes", not 1), an int is an integer (not 64.5, not true), a string a string."""
        if not isinstance(self.name, str):
            raise ProfileError(f"profile name: expected a string, got {shown(self.name)}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise ProfileError(f"profile {shown(self.name)}: {f.name} must be true or false, got {shown(value)}")
            if f.type == "int" and (value is None and f.default == DERIVED):
                continue
            if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ProfileError(f"profile {shown(self.name)}: {f.name} must be an integer, got {shown(value)}")
            if f.type == "str" and not isinstance(value, str):
                raise ProfileError(f"profile {shown(self.name)}: {f.name} must be a string, got {shown(value)}")
        if not isinstance(self.jump, JumpVariant) and self.jump not in {v.value for v in JumpVariant}:
            raise ProfileError(
                f"profile {shown(self.name)}: jump={shown(self.jump)} is not one of {', '.join(v.value for v in JumpVariant)}"
            )

    @property
    def endbr_size(self) -> int:
        """ENDBR_INSN_SIZE: 4 with IBT, else 0."""
        return 4 if self.ibt else 0

    @property
    def prologue_offset(self) -> int:
        """arm64 PROLOGUE_OFFSET, in instructions (BTI_INSNS + 2 + PAC_INSNS + 4)."""
        return A64_PROLOGUE_BASE_INSNS + int(self.bti) + int(self.pac)

    @property
    def tail_call_offset(self) -> int:
        """Bytes a tail call skips of the callee's prologue: bpf_arch_tail_call_prologue_offset() of
        patch 1/4. x86-64: X86_TAIL_CALL_OFFSET = 12 + ENDBR_INSN_SIZE; arm64: PROLOGUE_OFFSET * 4."""
        if self.arch == "arm64":
            return self.prologue_offset * 4
        return 12 + self.endbr_size

    def replace(self, **changes) -> KernelProfile:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        """Every field, expanded (what a report shows)."""
        d = dataclasses.asdict(self)
        d["jump"] = self.jump.value
        return d

    def to_world_json(self) -> str | dict:
        """What a world file holds: a preset's name, or only the fields that differ from the default
        profile (derived offsets included only where they differ from what they derive to)."""
        if PRESETS.get(self.name) == self:
            return self.name
        full, d = self.to_json(), {"name": self.name}
        for f in dataclasses.fields(self):
            if f.name != "name" and getattr(KernelProfile.from_json(d), f.name) != getattr(self, f.name):
                d[f.name] = full[f.name]
        return d

    @classmethod
    def from_json(cls, d: dict) -> KernelProfile:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ProfileError(f"unknown profile field(s): {shown(', '.join(unknown))}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as e:
            raise ProfileError(str(e)) from None


def profile_for_arch(profile: KernelProfile, arch: str) -> KernelProfile:
    """The same kernel built for another architecture: struct layout and limits kept, the landing
    pads carried over (IBT <-> BTI), the x86-only jump/return flavours and arm64-only PAC dropped."""
    if arch == profile.arch:
        return profile
    if arch == "arm64":
        return profile.replace(
            name=f"{profile.name}-arm64", arch=arch, ibt=False, jump=JumpVariant.PLAIN, sls=False, bti=profile.ibt
        )
    if arch == "x86_64":
        return profile.replace(name=f"{profile.name}-x86_64", arch=arch, bti=False, pac=False, ibt=profile.bti)
    raise ProfileError(f"arch={arch!r} is not one of {', '.join(ARCHES)}")


PRESETS: dict[str, KernelProfile] = {
    p.name: p
    for p in (
        KernelProfile(name="default"),
        KernelProfile(name="no-security", config_security=False),
        KernelProfile(name="ibt", ibt=True),
        KernelProfile(name="retpoline", jump=JumpVariant.RETPOLINE),
        KernelProfile(name="lfence", jump=JumpVariant.LFENCE),
        KernelProfile(name="sls", jump=JumpVariant.PLAIN_INT3, sls=True),
        KernelProfile(name="ibt-sls", ibt=True, jump=JumpVariant.PLAIN_INT3, sls=True),
        KernelProfile(name="arm64", arch="arm64"),
        KernelProfile(name="arm64-bti", arch="arm64", bti=True),
        KernelProfile(name="arm64-pac", arch="arm64", pac=True),
        KernelProfile(name="arm64-bti-pac", arch="arm64", bti=True, pac=True),
    )
}


def preset(name: str) -> KernelProfile:
    try:
        return PRESETS[name]
    except KeyError:
        raise ProfileError(f"unknown profile {shown(name)}; presets: {', '.join(PRESETS)}") from None
