"""Cortex-M4 cycle estimate for the kws C core: cross-compile, emulate, count instructions.

    python bench/bench_m4_cycles.py [--models ds_cnn_s tds_resnet] [--opt O2 Os] [--profile]

The core (device/cmodule/kws) is built with arm-none-eabi-gcc for a Cortex-M4F
(`-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard`) into a bare-metal
program (bench/m4/: vector table, .data/.bss start-up, a harness) with the model,
one input and one clip of PCM linked in as const arrays and the arena in .bss.
The flash image runs under the unicorn engine (Cortex-M4 CPU model, Thumb-2,
VFP enabled through CPACR by the start-up code) from the reset vector.

Counting: a block hook adds the instructions of each executed translation block
(instruction boundaries from the ELF's objdump, so IT-block instructions whose
condition fails count too: the M4 spends a cycle on them). An empty out-of-line
`bench_mark(id)` splits the run into segments: model load, inference 1 and 2,
front end (first frame, then one frame per 320-sample hop), int8 quantisation.
The emulated int8 scores must equal the host -O2 build's (ctypes) bit for bit,
and the emulated front end's int8 features the host C front end's, or the
script fails.

Cycles: instructions x CPI 1.0-1.5, and a per-class model from the Cortex-M4
TRM's timings with zero flash wait states (see CYCLE_MODEL below): low = every
load pipelined (1 cycle), taken branches 1+1, divides 2; high = loads 2 cycles,
taken branches 1+3, divides 12, VDIV/VSQRT 14. Real silicon adds flash wait
states not hidden by the ART cache, and interrupt load.

Skips (exit 0 with a message) when arm-none-eabi-gcc or unicorn is missing.
"""

from __future__ import annotations

import argparse
import bisect
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "m4"
sys.path.insert(0, str(REPO / "tests"))
import cmodule_build as cb  # noqa: E402

M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]
FLASH_BASE, FLASH_SIZE = 0x08000000, 2 << 20
RAM_BASE, RAM_SIZE = 0x20000000, 640 << 10
SCS_BASE = 0xE000E000  # system control space: the start-up writes CPACR here

# (ldr-class extra cycles low, high), taken-branch refill (low, high), divide (low, high)
CYCLE_MODEL = {
    "load": (1, 2),        # LDR/VLDR: 2 cycles, 1 when pipelined behind another load/store
    "store": (1, 1),       # STR through the write buffer
    "multi": (1, 1),       # LDM/STM/PUSH/POP/VLDM/VPUSH: 1 + registers (per register below)
    "mac": (1, 1),         # MUL/MLA/SMLAD/SMULL/SMLAL...: single cycle on the M4
    "div": (2, 12),        # SDIV/UDIV: 2-12 (early termination)
    "fp": (1, 1),          # VADD/VMUL/VCVT/VMOV...
    "fp_mac": (3, 3),      # VMLA/VMLS/VFMA...: 3
    "fp_div": (14, 14),    # VDIV/VSQRT: 14
    "branch": (1, 1),      # plus the refill below when taken
    "alu": (1, 1),
}
TAKEN_REFILL = (1, 3)      # a taken branch costs 1 + P, P = 1..3


def missing_tools() -> str | None:
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-objdump", "arm-none-eabi-nm", "arm-none-eabi-objcopy"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install gcc-arm-none-eabi)"
    try:
        import unicorn  # noqa: F401
    except ImportError:
        return "unicorn not installed (pip install unicorn, or pip install -e '.[bench]')"
    return None


# -- building ----------------------------------------------------------------------------------------------


def _c_bytes(name: str, data: bytes, ctype: str = "unsigned char", align: int = 16) -> str:
    body = ",".join(str(b) for b in data)
    return f"const {ctype} {name}[] __attribute__((aligned({align}))) = {{{body}}};\n"


def _c_floats(values) -> str:
    return ",".join(float(np.float32(v)).hex() + "f" for v in values) or "0.0f"


def data_source(model: bytes, x: np.ndarray, pcm: np.ndarray, fe_spec: dict, scale: float, zp: int) -> str:
    tables = fe_spec["tables"]
    starts = [int(s) for s in tables["mel_starts"]]
    lengths = [len(w) for w in tables["mel_weights"]]
    weights = [v for band in tables["mel_weights"] for v in band]
    n_frames = 1 + (fe_spec["clip_samples"] - fe_spec["window_length"]) // fe_spec["hop_length"]
    logmel = int(fe_spec["kind"] == "logmel")
    return "".join([
        "#include <stdint.h>\n#include \"kws_frontend.h\"\n",
        _c_bytes("bench_model", model),
        f"const uint32_t bench_model_len = {len(model)}u;\n",
        "const int8_t bench_input[] = {" + ",".join(str(int(v)) for v in x.reshape(-1)) + "};\n",
        "const int16_t bench_pcm[] = {" + ",".join(str(int(v)) for v in pcm.reshape(-1)) + "};\n",
        "static const int32_t mel_starts[] = {" + ",".join(map(str, starts)) + "};\n",
        "static const int32_t mel_lengths[] = {" + ",".join(map(str, lengths)) + "};\n",
        "static const float mel_weights[] = {" + _c_floats(weights) + "};\n",
        "const kws_frontend_config bench_fe_cfg = {"
        f"{fe_spec['window_length']}, {fe_spec['hop_length']}, {fe_spec['n_fft']}, {fe_spec['n_mels']}, "
        f"{fe_spec['n_coeffs']}, {n_frames}, {logmel}, {_c_floats([fe_spec['pcm_scale']])}, "
        f"{_c_floats([fe_spec['log_floor']])}, mel_starts, mel_lengths, mel_weights}};\n",
        f"const float bench_q_scale = {_c_floats([scale])};\n",
        f"const int32_t bench_q_zero_point = {int(zp)};\n",
    ])


def build_elf(work: Path, opt: str, data_c: str) -> Path:
    (work / "bench_data.c").write_text(data_c)
    elf = work / f"bench-{opt}.elf"
    sources = [HERE / "startup.c", HERE / "harness.c", work / "bench_data.c", *(cb.SRC / n for n in cb.CORE)]
    cmd = ["arm-none-eabi-gcc", *M4_FLAGS, f"-{opt}", "-std=c99", "-ffp-contract=off", "-ffunction-sections",
           "-fdata-sections", "-Wall", "-Wextra", f"-I{cb.SRC}", *map(str, sources), "-nostartfiles",
           "--specs=nano.specs", "--specs=nosys.specs", f"-T{HERE / 'link.ld'}", "-Wl,--gc-sections", "-lm",
           "-o", str(elf)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"cross build failed: {' '.join(cmd)}\n{proc.stderr}")
    return elf


# -- the ELF: symbols, instructions, flash image -------------------------------------------------------------

_INSN = re.compile(r"^\s*([0-9a-f]+):\s+(?:[0-9a-f]{4}(?: [0-9a-f]{4})?\s+)?([a-z][\w.]*)\s*(.*)$")
_COND = ("eq", "ne", "cs", "cc", "hs", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le", "al")


def _regs_in(operands: str) -> int:
    m = re.search(r"\{([^}]*)\}", operands)
    if not m:
        return 2  # LDRD/STRD: two words
    n = 0
    for part in m.group(1).split(","):
        part = part.strip()
        scale = 2 if part.startswith("d") else 1  # a double register moves two words
        if "-" in part:
            a, b = (int(re.sub(r"\D", "", p)) for p in part.split("-"))
            n += (b - a + 1) * scale
        elif part:
            n += scale
    return n


def classify(mnemonic: str, operands: str) -> str:
    base = mnemonic.split(".")[0]
    if base.startswith("v"):
        for cond in _COND:  # vaddeq.f32 -> vadd
            if len(base) > 4 and base.endswith(cond):
                base = base[: -len(cond)]
                break
        if base in ("vldm", "vstm", "vpush", "vpop", "vldmia", "vstmia", "vstmdb", "vldmdb"):
            return "multi"
        if base in ("vldr",):
            return "load"
        if base in ("vstr",):
            return "store"
        if base in ("vmla", "vmls", "vfma", "vfms", "vnmla", "vnmls", "vfnma", "vfnms"):
            return "fp_mac"
        if base in ("vdiv", "vsqrt"):
            return "fp_div"
        return "fp"
    stem = base
    if stem not in ("b", "bl", "bx", "blx", "cbz", "cbnz", "tbb", "tbh", "it", "bic", "bics", "bfi", "bfc"):
        for cond in _COND:  # ldrne -> ldr, bgt -> b, moveq -> mov (the mnemonics below are not ambiguous)
            if stem.endswith(cond) and len(stem) > len(cond):
                cand = stem[: -len(cond)]
                if cand in ("b", "mov", "movs", "ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "str", "strb", "strh",
                            "add", "adds", "sub", "subs", "cmp", "cmn", "orr", "and", "eor", "mvn", "rsb", "rsbs",
                            "lsl", "lsls", "lsr", "lsrs", "asr", "asrs", "it", "bx", "pop", "push", "ldrd", "strd",
                            "mul", "mla", "neg", "negs", "orrs", "ands", "ssat", "usat", "sxth", "sxtb", "uxtb"):
                    stem = cand
                    break
    if stem in ("b", "bl", "bx", "blx", "cbz", "cbnz", "tbb", "tbh"):
        return "branch"
    if stem in ("pop", "push", "ldm", "ldmia", "ldmdb", "stm", "stmia", "stmdb", "ldmfd", "stmfd"):
        return "multi"
    if stem in ("ldrd", "strd"):
        return "multi"
    if stem.startswith("ldr") or stem in ("ldrex",):
        return "load"
    if stem.startswith("str"):
        return "store"
    if stem in ("sdiv", "udiv"):
        return "div"
    if stem in ("mul", "muls", "mla", "mls", "smull", "umull", "smlal", "umlal", "smlad", "smladx", "smlsd",
                "smuad", "smusd", "smmul", "smmla", "smmls", "smmulr", "smlalbb", "smlald", "smulbb", "smulbt",
                "smultb", "smultt", "smlabb", "smlabt", "smlatb", "smlatt", "smlawb", "smlawt", "smulwb",
                "smulwt", "umaal", "smlaldx", "smlsld"):
        return "mac"
    return "alu"


CLASSES = list(CYCLE_MODEL)


@dataclass
class Elf:
    path: Path
    image: bytes
    symbols: dict[str, tuple[int, int]]          # name -> (address, size)
    insn_addr: np.ndarray                        # sorted instruction addresses
    insn_class: np.ndarray                       # index into CLASSES
    insn_regs: np.ndarray                        # registers moved (multi) else 0
    funcs: list[tuple[int, str]] = field(default_factory=list)  # sorted (start, name)


def read_elf(elf: Path) -> Elf:
    binary = elf.with_suffix(".bin")
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(elf), str(binary)], check=True)
    nm = subprocess.run(["arm-none-eabi-nm", "-S", "--defined-only", str(elf)], capture_output=True, text=True,
                        check=True).stdout
    symbols, funcs = {}, []
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 4:
            addr, size, kind, name = int(parts[0], 16), int(parts[1], 16), parts[2], parts[3]
        elif len(parts) == 3:
            addr, size, kind, name = int(parts[0], 16), 0, parts[1], parts[2]
        else:
            continue
        symbols[name] = (addr & ~1, size)
        if kind in "tTwW" and FLASH_BASE <= addr < FLASH_BASE + FLASH_SIZE:
            funcs.append((addr & ~1, name))
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", "--no-show-raw-insn", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    addrs, classes, regs = [], [], []
    for line in dis.splitlines():
        m = _INSN.match(line)
        if not m or m.group(2).startswith("."):
            continue  # labels, literal pools (.word)
        addr, mnem, ops = int(m.group(1), 16), m.group(2), m.group(3)
        cls = classify(mnem, ops)
        addrs.append(addr)
        classes.append(CLASSES.index(cls))
        regs.append(_regs_in(ops) if cls == "multi" else 0)
    order = np.argsort(addrs)
    return Elf(elf, binary.read_bytes(), symbols, np.asarray(addrs, np.int64)[order],
               np.asarray(classes, np.int8)[order], np.asarray(regs, np.int32)[order], sorted(funcs))


# -- emulation -------------------------------------------------------------------------------------------------


@dataclass
class Segment:
    blocks: dict                 # (address, size) -> executions
    taken: int                   # control transfers to a block other than the next one
    code_hook_count: int = 0     # instructions seen by the per-instruction hook (when enabled)


@dataclass
class Run:
    segments: dict[tuple[int, int], Segment]   # (mark from, mark to) -> counts between the two marks
    exit_code: int
    memory: object               # the Uc, for reading results


def emulate(elf: Elf, max_instructions: int = 2_000_000_000, per_instruction_check: bool = False,
            stop_at_mark: int | None = None) -> Run:
    """Run from the reset vector to bench_done (or to bench_mark(stop_at_mark)).
    per_instruction_check also counts with a per-instruction hook (slow), to cross-check the block sums."""
    from unicorn import UC_ARCH_ARM, UC_HOOK_BLOCK, UC_HOOK_CODE, UC_MODE_MCLASS, UC_MODE_THUMB, Uc
    from unicorn.arm_const import UC_ARM_REG_PC, UC_ARM_REG_R0, UC_ARM_REG_SP, UC_CPU_ARM_CORTEX_M4

    uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M4)
    uc.mem_map(FLASH_BASE, FLASH_SIZE)
    uc.mem_map(RAM_BASE, RAM_SIZE)
    uc.mem_map(SCS_BASE, 0x1000)
    uc.mem_write(FLASH_BASE, elf.image)
    sp, reset = struct.unpack_from("<II", elf.image, 0)
    uc.reg_write(UC_ARM_REG_SP, sp)
    mark_addr = elf.symbols["bench_mark"][0]
    done_addr = elf.symbols["bench_done"][0]

    state = {"blocks": {}, "taken": 0, "last_end": -1, "mark": 0, "code": 0}
    segments: dict[tuple[int, int], Segment] = {}

    def on_block(uc_, address, size, _user):
        if address == mark_addr:  # the mark's own block starts the next segment
            mark = uc_.reg_read(UC_ARM_REG_R0)
            segments[state["mark"], mark] = Segment(state["blocks"], state["taken"], state["code"])
            state.update(blocks={}, taken=0, mark=mark, code=0)
            if mark == stop_at_mark:
                uc_.emu_stop()
                return
        key = (address, size)
        blocks = state["blocks"]
        blocks[key] = blocks.get(key, 0) + 1
        if address != state["last_end"]:
            state["taken"] += 1
        state["last_end"] = address + size

    def on_code(_uc, _address, _size, _user):
        state["code"] += 1

    uc.hook_add(UC_HOOK_BLOCK, on_block)
    if per_instruction_check:
        uc.hook_add(UC_HOOK_CODE, on_code)
    uc.emu_start(reset | 1, done_addr, count=max_instructions)
    if stop_at_mark is not None:
        if state["mark"] != stop_at_mark:
            raise RuntimeError(f"emulation ended before bench_mark({stop_at_mark})")
        return Run(segments, 0, uc)
    if uc.reg_read(UC_ARM_REG_PC) & ~1 != done_addr:
        raise RuntimeError(f"emulation stopped at {uc.reg_read(UC_ARM_REG_PC):#x} before bench_done")
    segments[state["mark"], -1] = Segment(state["blocks"], state["taken"], state["code"])
    exit_code = struct.unpack("<i", uc.mem_read(elf.symbols["bench_exit_code"][0], 4))[0]
    return Run(segments, exit_code, uc)


def read_symbol(run: Run, elf: Elf, name: str, dtype, count: int) -> np.ndarray:
    addr = elf.symbols[name][0]
    return np.frombuffer(bytes(run.memory.mem_read(addr, count * np.dtype(dtype).itemsize)), dtype=dtype)


@dataclass
class Counts:
    instructions: int
    by_class: dict[str, int]
    multi_regs: int
    taken: int
    by_function: dict[str, int]

    def cycles(self) -> tuple[float, float]:
        low = high = 0.0
        for cls, n in self.by_class.items():
            lo, hi = CYCLE_MODEL[cls]
            low += lo * n
            high += hi * n
        low += self.multi_regs + TAKEN_REFILL[0] * self.taken
        high += self.multi_regs + TAKEN_REFILL[1] * self.taken
        return low, high


def count(elf: Elf, segment: Segment) -> Counts:
    by_class = np.zeros(len(CLASSES), np.int64)
    per_func: dict[str, int] = {}
    total = regs = 0
    starts = [f[0] for f in elf.funcs]
    for (address, size), n in segment.blocks.items():
        lo = bisect.bisect_left(elf.insn_addr, address)
        hi = bisect.bisect_left(elf.insn_addr, address + size)
        if hi <= lo:
            raise RuntimeError(f"no instructions known at {address:#x}")
        k = hi - lo
        total += k * n
        by_class += np.bincount(elf.insn_class[lo:hi], minlength=len(CLASSES)) * n
        regs += int(elf.insn_regs[lo:hi].sum()) * n
        f = bisect.bisect_right(starts, address) - 1
        name = elf.funcs[f][1] if f >= 0 else "?"
        per_func[name] = per_func.get(name, 0) + k * n
    return Counts(total, {c: int(v) for c, v in zip(CLASSES, by_class)}, regs, segment.taken, per_func)


def merge(*parts: Counts) -> Counts:
    by_class = {c: sum(p.by_class[c] for p in parts) for c in CLASSES}
    funcs: dict[str, int] = {}
    for p in parts:
        for k, v in p.by_function.items():
            funcs[k] = funcs.get(k, 0) + v
    return Counts(sum(p.instructions for p in parts), by_class, sum(p.multi_regs for p in parts),
                  sum(p.taken for p in parts), funcs)


# -- the benchmark ------------------------------------------------------------------------------------------------


@dataclass
class ModelResult:
    name: str
    opt: str
    macs: int
    load: Counts
    invoke: Counts
    invoke_again: Counts
    frame_first: Counts
    frames: Counts
    n_hops: int
    quantize: Counts
    arena_used: int
    text_bytes: int
    fe_max_abs: float


def host_reference(model: bytes, x: np.ndarray, fe_spec: dict, pcm: np.ndarray, scale: float, zp: int):
    lib = cb.KwsLib()
    m = lib.load(model, 400_000)
    out = m(x.reshape(1, -1))[0]
    import ctypes

    lib.lib.kws_model_macs.argtypes = [ctypes.c_void_p]
    lib.lib.kws_model_macs.restype = ctypes.c_uint64
    fe = cb.CFrontend(lib, fe_spec)
    feats = fe.clip_features(pcm)
    return out, int(lib.lib.kws_model_macs(m.handle)), feats, fe.features_int8(scale, zp)


def measure(name: str, model: bytes, x: np.ndarray, fe_spec: dict, pcm: np.ndarray, opt: str, work: Path) -> ModelResult:
    from kws_kit.tflite_info import inspect_tflite

    info = inspect_tflite(model)
    scale, zp = info.input_scale, info.input_zero_point
    elf = read_elf(build_elf(work, opt, data_source(model, x, pcm, fe_spec, scale, zp)))
    run = emulate(elf)
    if run.exit_code != 1:
        raise RuntimeError(f"{name} -{opt}: the emulated program returned {run.exit_code}")
    ref_out, macs, ref_feats, ref_q = host_reference(model, x, fe_spec, pcm, scale, zp)
    out_size = int(read_symbol(run, elf, "bench_out_size", np.uint32, 1)[0])
    outs = read_symbol(run, elf, "bench_output", np.int8, 2 * 64).reshape(2, 64)[:, :out_size]
    for k in range(2):
        if not np.array_equal(outs[k], ref_out):
            raise RuntimeError(f"{name} -{opt}: emulated scores {outs[k].tolist()} != host {ref_out.tolist()}")
    n_feat = ref_q.size
    q = read_symbol(run, elf, "bench_features_q", np.int8, n_feat).reshape(ref_q.shape)
    if not np.array_equal(q, ref_q):
        raise RuntimeError(f"{name} -{opt}: emulated int8 features differ from the host in {int((q != ref_q).sum())} places")
    feats = read_symbol(run, elf, "bench_features", np.float32, n_feat).reshape(ref_feats.shape)
    seg = {k[0]: v for k, v in run.segments.items()}
    size = subprocess.run(["arm-none-eabi-size", str(elf.path)], capture_output=True, text=True, check=True)
    n_frames = ref_feats.shape[0]
    return ModelResult(
        name, opt, macs,
        load=count(elf, seg[1]), invoke=count(elf, seg[3]), invoke_again=count(elf, seg[4]),
        frame_first=count(elf, seg[6]), frames=count(elf, seg[7]), n_hops=n_frames - 1, quantize=count(elf, seg[8]),
        arena_used=int(read_symbol(run, elf, "bench_arena_used", np.uint32, 1)[0]),
        text_bytes=int(size.stdout.splitlines()[1].split()[0]),
        fe_max_abs=float(np.abs(feats - ref_feats).max()),
    )


def test_input(model: bytes, seed: int = 0) -> np.ndarray:
    """One real int8 feature input (MFCC of a generated sweep), the kind the device sees."""
    return cb.test_inputs(model, n_real=1, n_random=0, seed=seed)[0]


def golden_pcm_and_spec(preset: str = "mfcc10") -> tuple[np.ndarray, dict]:
    from kws_kit import golden

    arrays, _ = golden.load(REPO / "tests" / "golden")
    spec = json.loads((REPO / "tests" / "golden" / f"frontend_{preset}.json").read_text())
    return np.asarray(arrays["chirps_noise.pcm"], np.int16), spec


def _m(v: float) -> str:
    return f"{v / 1e6:.2f} M"


def report(results: list[ModelResult], mhz: float, profile: bool) -> str:
    lines = [
        "| model | opt | MACs | instructions / inference | CPI 1.0-1.5 | class model (low-high) | "
        f"ms @ {mhz:g} MHz (class model) | instr / MAC | arena |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        c = r.invoke
        lo, hi = c.cycles()
        lines.append(
            f"| {r.name} | -{r.opt} | {r.macs:,} | {c.instructions:,} | {_m(c.instructions)}-{_m(1.5 * c.instructions)} | "
            f"{_m(lo)}-{_m(hi)} | {lo / mhz / 1e3:.1f}-{hi / mhz / 1e3:.1f} | {c.instructions / r.macs:.2f} | "
            f"{r.arena_used:,} B |")
    lines += ["", "Per inference, by instruction class (share of instructions):", "",
              "| model | opt | " + " | ".join(CLASSES) + " | taken branches |",
              "|---|---|" + "---:|" * (len(CLASSES) + 1)]
    for r in results:
        c = r.invoke
        lines.append(f"| {r.name} | -{r.opt} | " + " | ".join(
            f"{c.by_class[k] / c.instructions:.1%}" for k in CLASSES) + f" | {c.taken / c.instructions:.1%} |")
    lines += ["", "Front end (mfcc10, one 20 ms hop = 320 samples -> one frame), model load:", "",
              "| opt | instructions / frame | class model cycles / frame | first frame (480 samples) | "
              "int8 quantise 49x10 | model load |", "|---|---:|---:|---:|---:|---|"]
    seen = set()
    for r in results:
        if r.opt in seen:
            continue
        seen.add(r.opt)
        per = r.frames.instructions / r.n_hops
        lo, hi = r.frames.cycles()
        loads = ", ".join(f"{x.name} {_m(x.load.instructions)}" for x in results if x.opt == r.opt)
        lines.append(f"| -{r.opt} | {per:,.0f} | {lo / r.n_hops:,.0f}-{hi / r.n_hops:,.0f} | "
                     f"{r.frame_first.instructions:,} | {r.quantize.instructions:,} | {loads} |")
    if profile:
        for r in results:
            c = r.invoke
            top = sorted(c.by_function.items(), key=lambda kv: -kv[1])[:8]
            lines += ["", f"{r.name} -{r.opt}: instructions by function", ""]
            lines += [f"- {name}: {n:,} ({n / c.instructions:.1%})" for name, n in top]
        r = results[0]
        top = sorted(r.frames.by_function.items(), key=lambda kv: -kv[1])[:8]
        lines += ["", f"front end -{r.opt}: instructions per frame by function", ""]
        lines += [f"- {name}: {n / r.n_hops:,.0f} ({n / r.frames.instructions:.1%})" for name, n in top]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["ds_cnn_s", "tds_resnet"])
    ap.add_argument("--opt", nargs="+", default=["O2", "Os"])
    ap.add_argument("--mhz", type=float, default=120.0, help="clock for the ms column (STM32L4R5: 120)")
    ap.add_argument("--profile", action="store_true", help="also list instructions per function")
    ap.add_argument("--json", type=Path, help="write the raw counts here")
    args = ap.parse_args(argv)
    why = missing_tools()
    if why:
        print(f"skipped: {why}")
        return 0
    models = cb.zoo_models(Path(tempfile.gettempdir()) / "kws-bench-models")
    pcm, spec = golden_pcm_and_spec("mfcc10")
    results = []
    with tempfile.TemporaryDirectory(prefix="kws-m4-") as tmp:
        for name in args.models:
            x = test_input(models[name])
            for opt in args.opt:
                r = measure(name, models[name], x, spec, pcm, opt, Path(tmp))
                if r.invoke.instructions != r.invoke_again.instructions:
                    print(f"note: {name} -{opt}: second inference {r.invoke_again.instructions:,} instructions")
                results.append(r)
                print(f"{name} -{opt}: {r.invoke.instructions:,} instructions, output bit-identical to the host "
                      f"build, front end int8 identical (float max |diff| {r.fe_max_abs:.2e})", file=sys.stderr)
    print(report(results, args.mhz, args.profile))
    if args.json:
        args.json.write_text(json.dumps([{
            "model": r.name, "opt": r.opt, "macs": r.macs, "instructions": r.invoke.instructions,
            "by_class": r.invoke.by_class, "taken": r.invoke.taken, "cycles_model": r.invoke.cycles(),
            "frame_instructions": r.frames.instructions / r.n_hops, "frame_cycles_model": [
                v / r.n_hops for v in r.frames.cycles()], "load_instructions": r.load.instructions,
            "arena_used": r.arena_used, "by_function": r.invoke.by_function} for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
