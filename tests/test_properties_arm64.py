"""The property on arm64: for every generated world's arm64 twin, legacy = model, and the patched
codegen diverges only for a known cause (on arm64 only disp-wrap: there is no shared label)."""

from hypothesis import given

from tcfuzz import jit_new
from tcfuzz.codegens import for_arch
from tcfuzz.gen.worlds import worlds
from tcfuzz.verdict.oracle import judge, same
from tcfuzz.verdict.policy import Status, classify

PATCHED_ARM64 = for_arch(jit_new.CODEGEN, "arm64")


@given(worlds())
def test_arm64_legacy_patched_and_model_agree_except_known_causes(world):
    twin = world.for_arch("arm64")
    j = judge(twin)
    legacy, patched, model = (j.observations[v] for v in ("legacy", "patched", "model"))
    for run, (lo, mo) in enumerate(zip(legacy, model, strict=True)):
        assert same(lo, mo), f"legacy arm64 JIT differs from the reference in run {run}: {lo} vs {mo}"
    outcome = classify(j, PATCHED_ARM64)  # a cause counts only if its repaired codegen agrees on replay
    if j.verdict.diverges:
        assert outcome.status is Status.KNOWN and outcome.causes == ("disp-wrap",), f"arm64: {outcome.attribution}"
    else:
        assert all(same(p, m) for p, m in zip(patched, model, strict=True))
