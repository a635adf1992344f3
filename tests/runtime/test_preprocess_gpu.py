"""GPU letterbox kernel vs the CPU path (preprocess.letterbox + to_tensor).

Host-side checks run everywhere: the kernel's arguments, and a numpy emulation of the kernel's integer
arithmetic fed with the same tables, compared with cv2 (this pins the resize arithmetic to OpenCV's).
The kernel itself is compiled with whatever CUDA compiler is at hand (CuPy's NVRTC or pycuda) and run
on random frames; those tests skip with the reason where neither is usable.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from typing import Any, Tuple

import numpy as np
import pytest

from edgevision.runtime.preprocess import letterbox, letterbox_geometry, to_tensor
from edgevision.runtime.preprocess_gpu import (
    KERNELS,
    SCALAR_NAMES,
    LetterboxLaunch,
    kernel_source,
    plan_letterbox,
)

cv2 = pytest.importorskip("cv2")

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
PLAIN = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
# (src h, w) -> (model h, w): no resize, HD downscale, exact 2x (OpenCV's INTER_AREA shortcut), upscale,
# odd sizes, non-square input, 1-pixel image
CASES = [
    ((480, 640), (640, 640)),
    ((1080, 1920), (640, 640)),
    ((1280, 1280), (640, 640)),
    ((100, 50), (64, 64)),
    ((333, 517), (320, 320)),
    ((720, 1280), (384, 640)),
    ((37, 1001), (96, 128)),
    ((1, 1), (8, 8)),
]
PARAMS = [  # mean/std, rgb, pad, dtype
    (PLAIN, True, 114, "float32"),
    (IMAGENET, True, 0, "float32"),
    (PLAIN, False, 114, "float16"),
    (IMAGENET, True, 114, "float16"),
    (PLAIN, True, 114, "uint8"),
]


def _launch(src: tuple[int, int], dst: tuple[int, int], norm: Any, rgb: bool, pad: int, dtype: str) -> LetterboxLaunch:
    return plan_letterbox(*src, *dst, pad, norm[0], norm[1], rgb, dtype=dtype)


def _cpu(img: np.ndarray, dst: tuple[int, int], norm: Any, rgb: bool, pad: int, dtype: str) -> np.ndarray:
    lb_img, _ = letterbox(img, dst, pad_value=pad)
    return to_tensor(lb_img, mean=norm[0], std=norm[1], rgb=rgb, dtype=dtype)[0]


def _emulate(img: np.ndarray, lc: LetterboxLaunch) -> np.ndarray:
    """The kernel's arithmetic in numpy (int64), from the launch's own tables and scalars."""
    args = dict(zip(SCALAR_NAMES, lc.scalars))
    x, y = lc.xtab.astype(np.int64), lc.ytab.astype(np.int64)
    im = img.astype(np.int64)

    def row(r: np.ndarray) -> np.ndarray:  # horizontal pass for source rows r -> [len(r), new_w, 3]
        return im[r][:, x[:, 0]] * x[:, 2][None, :, None] + im[r][:, x[:, 1]] * x[:, 3][None, :, None]

    h0, h1 = row(y[:, 0]), row(y[:, 1])
    v = (((y[:, 2, None, None] * (h0 >> 4)) >> 16) + ((y[:, 3, None, None] * (h1 >> 4)) >> 16) + 2) >> 2
    canvas = np.full((lc.out_h, lc.out_w, 3), int(args["pad"]), np.int64)
    top, left, nh, nw = (int(args[k]) for k in ("top", "left", "new_h", "new_w"))
    canvas[top : top + nh, left : left + nw] = np.clip(v, 0, 255)
    chw = canvas.transpose(2, 0, 1)[::-1] if args["swap_rb"] else canvas.transpose(2, 0, 1)
    if lc.dtype == "uint8":
        return chw.astype(np.uint8)
    k = np.array([args["k0"], args["k1"], args["k2"]], np.float32)[:, None, None]
    b = np.array([args["b0"], args["b1"], args["b2"]], np.float32)[:, None, None]
    return (chw.astype(np.float32) * k + b).astype(lc.dtype)


def _max_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def _tolerance(norm: Any, dtype: str) -> float:
    """Brief's bar: 2/255 after normalisation for plain scaling, i.e. two pixel levels; float16 adds its
    rounding (half an ulp of values up to ~2.7)."""
    if dtype == "uint8":
        return 0.0
    tol = 2 / 255 / min(norm[1])
    return tol + (2e-3 if dtype == "float16" else 0.0)


def test_kernel_source_and_signature() -> None:
    src = kernel_source()
    for name in KERNELS.values():
        assert f"EV_LETTERBOX_ENTRY({name}," in src
    assert "#include" not in src  # NVRTC and nvcc take it without include paths
    macro = re.search(r"void NAME\((.*?)\)", src, re.S)
    assert macro is not None
    params = [p.strip().split()[-1].lstrip("*") for p in macro.group(1).replace("\\", " ").split(",")]
    assert params[:4] == ["src", "dst", "xtab", "ytab"]
    assert tuple(params[4:]) == SCALAR_NAMES


def test_launch_arguments() -> None:
    lc = plan_letterbox(1080, 1920, 640, 640, 114, IMAGENET[0], IMAGENET[1], True, dtype="float16")
    assert lc.letterbox == letterbox_geometry(1080, 1920, 640, 640)
    assert lc.kernel == "letterbox_f16" and lc.dst_nbytes == 3 * 640 * 640 * 2 and lc.src_nbytes == 1080 * 1920 * 3
    args = dict(zip(SCALAR_NAMES, lc.scalars))
    assert [type(args[n]) for n in SCALAR_NAMES] == [np.int32] * 9 + [np.float32] * 6
    assert (args["top"], args["left"], args["new_h"], args["new_w"], args["src_pitch"]) == (140, 0, 360, 640, 5760)
    assert args["k0"] == np.float32(1 / 255 / 0.229) and args["b2"] == np.float32(-0.406 / 0.225)
    assert lc.xtab.shape == (640, 4) and lc.ytab.shape == (360, 4) and lc.xtab.dtype == np.int32
    assert lc.grid[0] * lc.block[0] >= 640 and lc.grid[1] * lc.block[1] >= 640


def test_launch_rejects_bad_parameters() -> None:
    from edgevision.runtime.errors import UserError

    with pytest.raises(UserError, match="dtype"):
        plan_letterbox(10, 10, 8, 8, dtype="int8")
    with pytest.raises(UserError, match="non-zero"):
        plan_letterbox(10, 10, 8, 8, std=(1, 0, 1))
    with pytest.raises(UserError, match="pad value"):
        plan_letterbox(10, 10, 8, 8, pad=300)
    with pytest.raises(UserError, match="cannot map"):
        plan_letterbox(0, 10, 8, 8)


@pytest.mark.parametrize(("src", "dst"), CASES)
def test_emulated_kernel_matches_opencv(src: tuple[int, int], dst: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(src) + sum(dst))
    img = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    for norm, rgb, pad, dtype in PARAMS:
        lc = _launch(src, dst, norm, rgb, pad, dtype)
        ref = _cpu(img, dst, norm, rgb, pad, dtype)
        got = _emulate(img, lc)
        assert got.shape == ref.shape and got.dtype == ref.dtype
        if dtype == "uint8":
            assert np.array_equal(got, ref)  # the resize is OpenCV's, bit for bit
        else:
            assert _max_err(got, ref) <= (1e-5 if dtype == "float32" else 2e-3)


def test_emulated_kernel_random_sizes() -> None:
    rng = np.random.default_rng(7)
    for _ in range(40):
        src = (int(rng.integers(1, 400)), int(rng.integers(1, 400)))
        dst = (int(rng.integers(8, 400)), int(rng.integers(8, 400)))
        img = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
        lc = _launch(src, dst, PLAIN, True, 114, "uint8")
        assert np.array_equal(_emulate(img, lc), _cpu(img, dst, PLAIN, True, 114, "uint8")), (src, dst)


# ---- the real kernel, on a GPU -------------------------------------------------------------------

Runner = typing.Callable[[np.ndarray, Tuple[int, int], Any, bool, int, str], np.ndarray]  # 3.8: typing's


def _cupy_runner() -> tuple[Runner, Callable[[], None]]:
    cp = pytest.importorskip("cupy", reason="CuPy not installed")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA GPU")
    except Exception as exc:  # no driver
        pytest.skip(f"no CUDA GPU ({type(exc).__name__})")
    module = cp.RawModule(code=kernel_source())

    def run(img: np.ndarray, dst: tuple[int, int], norm: Any, rgb: bool, pad: int, dtype: str) -> np.ndarray:
        lc = plan_letterbox(*img.shape[:2], *dst, pad, norm[0], norm[1], rgb, dtype=dtype)
        fn = module.get_function(lc.kernel)
        src, xt, yt = cp.asarray(img), cp.asarray(lc.xtab), cp.asarray(lc.ytab)
        out = cp.empty((3, lc.out_h, lc.out_w), dtype=lc.dtype)
        fn(lc.grid, lc.block, (src, out, xt, yt, *lc.scalars))
        return cp.asnumpy(out)

    return run, lambda: None


def _pycuda_runner() -> tuple[Runner, Callable[[], None]]:
    cuda = pytest.importorskip("pycuda.driver", reason="pycuda not installed")
    try:
        cuda.init()
        if cuda.Device.count() < 1:
            pytest.skip("no CUDA GPU")
    except cuda.Error as exc:
        pytest.skip(f"no CUDA GPU ({exc})")
    from edgevision.runtime.preprocess_gpu import GpuLetterbox, compile_module

    ctx = cuda.Device(0).make_context()
    module = compile_module()
    stream = cuda.Stream()

    def run(img: np.ndarray, dst: tuple[int, int], norm: Any, rgb: bool, pad: int, dtype: str) -> np.ndarray:
        pre = GpuLetterbox(*img.shape[:2], *dst, pad, norm[0], norm[1], rgb, dtype=dtype, module=module)
        src, out_dev = cuda.to_device(np.ascontiguousarray(img)), cuda.mem_alloc(pre.launch.dst_nbytes)
        pre.run(int(src), int(out_dev), stream)
        stream.synchronize()
        out = np.empty((3, *dst), dtype=dtype)
        cuda.memcpy_dtoh(out, out_dev)
        pre.close()
        src.free()
        out_dev.free()
        return out

    return run, ctx.pop


@pytest.mark.gpu
@pytest.mark.parametrize("compiler", ["cupy", "pycuda"])
def test_gpu_kernel_matches_cpu_letterbox(compiler: str) -> None:
    run, cleanup = _cupy_runner() if compiler == "cupy" else _pycuda_runner()
    rng = np.random.default_rng(2024)
    worst: dict[str, float] = {}
    exact = total = 0
    cases = CASES + [((int(rng.integers(1, 720)), int(rng.integers(1, 1280))), (640, 640)) for _ in range(6)]
    try:
        for src, dst in cases:
            img = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
            for norm, rgb, pad, dtype in PARAMS:
                got, ref = run(img, dst, norm, rgb, pad, dtype), _cpu(img, dst, norm, rgb, pad, dtype)
                assert got.shape == ref.shape == (3, *dst) and got.dtype == ref.dtype
                err = _max_err(got, ref)
                assert err <= _tolerance(norm, dtype), (src, dst, norm, rgb, pad, dtype, err)
                key = f"{dtype}{'-imagenet' if norm is IMAGENET else ''}"
                worst[key] = max(worst.get(key, 0.0), err)
                if dtype == "uint8":  # pixel levels straight from the resize: compare with cv2 exactly
                    exact += int(np.array_equal(got, ref))
                    total += 1
    finally:
        cleanup()
    summary = ", ".join(f"{k} {v:.3g}" for k, v in sorted(worst.items()))
    print(f"\n[{compiler}] {len(cases)} frame sizes x {len(PARAMS)} settings; max abs error vs CPU "
          f"letterbox+to_tensor: {summary}; uint8 output identical to cv2 in {exact}/{total} frames")  # fmt: skip
