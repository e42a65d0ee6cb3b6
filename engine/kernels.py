"""3×3 kernels: presets, parsing, applying (cross-correlation, as CNN layers do), explaining one
pixel, stacking layers, turning signed responses into pictures, and learning a hidden kernel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from engine.numbers import (MAX_EXPONENT, MAX_NUMBER_CHARS, NumberError, check_length,
                            excerpt, read_decimal)

_f = np.float32
#: name -> 3×3 float32 kernel. Cross-correlation: row 0 weighs the row *above* the pixel.
PRESETS: dict[str, np.ndarray] = {
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], _f),
    "blur": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], _f) / 16,
    "box blur": np.ones((3, 3), _f) / 9,
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], _f),
    "outline": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], _f),
    "emboss": np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], _f),
    "top sobel": np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], _f),
    "bottom sobel": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], _f),
    "left sobel": np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], _f),
    "right sobel": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], _f),
}
#: How each preset's numbers were written, so the grid shows "1/16" rather than 0.0625.
PRESET_TEXT: dict[str, list[str]] = {
    "blur": ["1/16", "2/16", "1/16", "2/16", "4/16", "2/16", "1/16", "2/16", "1/16"],
    "box blur": ["1/9"] * 9,
}

BORDERS = ("zero", "reflect", "replicate")
BORDER_HELP = {
    "zero": "pixels outside the photo count as 0 (black), so edges darken or light up",
    "reflect": "the photo is mirrored at its edge (the edge pixel itself is not repeated)",
    "replicate": "the edge pixel is repeated outwards",
}
DISPLAY_MODES = ("clip", "abs", "diverging")
MAX_ABS_WEIGHT = 1e6  # a cell larger than this is almost surely a typo and makes the picture meaningless


class KernelError(ValueError):
    """A kernel cell that is not a usable number; the message is a sentence for the user."""


def _check_border(border: str) -> None:
    if border not in BORDERS:
        raise ValueError(f"Unknown border {border!r}; choose one of {', '.join(BORDERS)}.")


def parse_cell(text: str) -> float:
    """Read one kernel cell: a number such as `-1`, `0.25`, `1e-2`, or a fraction such as `1/16`.

    The text's length and each part's exponent are checked (engine.numbers) before any exact
    arithmetic, so a cell such as "1e999999999/3" from a link is refused at once instead of
    building a billion-digit integer while the whole server waits.
    """
    if text is None:
        raise KernelError("A kernel cell is empty: type a number such as 0, -1 or 1/16.")
    try:
        raw = check_length(text, limit=2 * MAX_NUMBER_CHARS + 1)   # two numbers and a slash
    except NumberError:
        raise KernelError(f"“{excerpt(str(text).strip())}” is too long: type a number of at most "
                          f"{MAX_NUMBER_CHARS} characters, such as 0, -1, 0.5 or 1/16.") from None
    raw = raw.replace("−", "-").replace(",", ".")
    if not raw:
        raise KernelError("A kernel cell is empty: type a number such as 0, -1 or 1/16.")
    parts = [p.strip() for p in raw.split("/")]
    if len(parts) > 2:
        raise KernelError(f"“{raw}” is not a number: type a number such as 0, -1, 0.5 or 1/16.")
    try:
        exact = [read_decimal(p) for p in parts]
    except NumberError as exc:
        if exc.reason == "exponent":
            raise KernelError(f"“{raw}” has a power of ten beyond ±{MAX_EXPONENT}: keep each "
                              f"weight between -{MAX_ABS_WEIGHT:g} and {MAX_ABS_WEIGHT:g}.") from None
        if exc.reason == "length":
            raise KernelError(f"“{raw}” is too long: type a number of at most "
                              f"{MAX_NUMBER_CHARS} characters, such as 0, -1, 0.5 or 1/16.") from None
        raise KernelError(f"“{raw}” is not a number: type a number such as 0, -1, 0.5 or 1/16.") \
            from None
    if len(exact) == 2 and exact[1] == 0:
        raise KernelError(f"“{raw}” divides by zero: use a non-zero denominator.")
    try:
        value = float(exact[0] / exact[1]) if len(exact) == 2 else float(exact[0])
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or abs(value) > MAX_ABS_WEIGHT:
        raise KernelError(f"“{raw}” is too large: keep each weight between "
                          f"-{MAX_ABS_WEIGHT:g} and {MAX_ABS_WEIGHT:g}.")
    return value


def parse_kernel(cells: Sequence[str]) -> np.ndarray:
    """Nine cell texts, row by row -> 3×3 float32 kernel; raises KernelError naming the bad cell."""
    if len(cells) != 9:
        raise KernelError("A kernel needs exactly nine numbers (three rows of three).")
    values = []
    for i, text in enumerate(cells):
        try:
            values.append(parse_cell(text))
        except KernelError as exc:
            raise KernelError(f"Row {i // 3 + 1}, column {i % 3 + 1}: {exc}") from None
    return np.array(values, np.float32).reshape(3, 3)


def format_weight(value: float) -> str:
    """Short text for a weight: integers without decimals, others to 4 significant digits."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def kernel_to_text(kernel: np.ndarray) -> list[str]:
    return [format_weight(v) for v in np.asarray(kernel, np.float64).ravel()]


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise ValueError(f"Expected an (H, W) or (H, W, 3) image, got shape {image.shape}.")
    return image


def _check_kernel(kernel: np.ndarray) -> np.ndarray:
    k = np.asarray(kernel, dtype=np.float32)
    if k.shape != (3, 3):
        raise KernelError(f"A kernel must be 3×3, got {k.shape}.")
    if not np.all(np.isfinite(k)):
        raise KernelError("A kernel weight is not a finite number.")
    return k


def apply_kernel(image: np.ndarray, kernel: np.ndarray, *, border: str = "zero",
                 relu: bool = False) -> np.ndarray:
    """Cross-correlate each channel with a 3×3 kernel (no flip, as in CNN layers).

    out[y, x] = Σ_i Σ_j k[i, j] · img[y+i−1, x+j−1], with pixels outside the image given by `border`
    ("zero", "reflect" without repeating the edge, or "replicate"). image: uint8 or float, (H, W) or
    (H, W, 3). Returns float32 of the same shape: the raw signed response, ReLU'd if `relu`.
    """
    import cv2

    image = _check_image(image)
    _check_border(border)
    k = _check_kernel(kernel)
    src = np.ascontiguousarray(image)
    if src.dtype not in (np.uint8, np.float32):
        src = src.astype(np.float32)
    cv_border = {"zero": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101,
                 "replicate": cv2.BORDER_REPLICATE}[border]
    # filter2D and sepFilter2D compute exactly this correlation; with ddepth=CV_32F they read uint8
    # directly and write float32, so no float copy of the input is made.
    separable = _separable(k)
    if separable is not None:  # blur, box blur, the sobels: two 1-D passes, about twice as fast
        out = cv2.sepFilter2D(src, cv2.CV_32F, separable[1], separable[0], borderType=cv_border)
    else:
        out = cv2.filter2D(src, cv2.CV_32F, k, anchor=(-1, -1), delta=0, borderType=cv_border)
    if out.shape != image.shape:  # OpenCV drops a trailing channel axis of size 1
        out = out.reshape(image.shape)
    if relu:
        np.maximum(out, 0, out=out)
    return out


def _separable(k: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(column, row) vectors whose outer product is k, when k has rank 1; else None."""
    u, sv, vt = np.linalg.svd(k.astype(np.float64))
    if sv[0] == 0 or sv[1] > 1e-7 * sv[0]:
        return None
    col, row = u[:, 0] * np.sqrt(sv[0]), vt[0] * np.sqrt(sv[0])
    if not np.allclose(np.outer(col, row), k, atol=1e-6):
        return None
    return col.astype(np.float32), row.astype(np.float32)


def pad3(image: np.ndarray, border: str = "zero") -> np.ndarray:
    """Pad one pixel on each side the way apply_kernel sees the outside of the image."""
    _check_border(border)
    mode = {"zero": "constant", "reflect": "reflect", "replicate": "edge"}[border]
    pad = ((1, 1), (1, 1)) + (((0, 0),) if image.ndim == 3 else ())
    return np.pad(image, pad, mode=mode)


@dataclass(frozen=True)
class PixelExplanation:
    """One output pixel worked by hand. For a colour image each array has a trailing channel axis."""

    y: int
    x: int
    patch: np.ndarray      # (3, 3[, C]) input values around (y, x), border included
    kernel: np.ndarray     # (3, 3)
    products: np.ndarray   # (3, 3[, C]) patch * kernel, element by element
    total: np.ndarray      # ([C]) sum of the nine products = the output value at (y, x)


def explain_pixel(image: np.ndarray, kernel: np.ndarray, y: int, x: int, *,
                  border: str = "zero") -> PixelExplanation:
    """The 3×3 patch around (y, x), the kernel, their nine element-wise products and their sum."""
    image = _check_image(image)
    k = _check_kernel(kernel).astype(np.float64)
    h, w = image.shape[:2]
    if not (0 <= y < h and 0 <= x < w):
        raise ValueError(f"Pixel (x={x}, y={y}) is outside the {w}×{h} image.")
    # Index only the 3×3 window (borders by index arithmetic) instead of padding the image.
    _check_border(border)
    patch = _patch_with_border(image, y, x, border).astype(np.float64)
    kk = k[:, :, None] if patch.ndim == 3 else k
    products = patch * kk
    total = products.sum(axis=(0, 1))
    return PixelExplanation(y=y, x=x, patch=patch, kernel=k, products=products, total=total)


def _patch_with_border(image: np.ndarray, y: int, x: int, border: str) -> np.ndarray:
    h, w = image.shape[:2]
    rows, cols = np.arange(y - 1, y + 2), np.arange(x - 1, x + 2)
    if border == "zero":
        inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
        patch = image[np.clip(rows, 0, h - 1)][:, np.clip(cols, 0, w - 1)]
        mask = inside if image.ndim == 2 else inside[:, :, None]
        return np.where(mask, patch, 0.0)
    if border == "replicate":
        return image[np.clip(rows, 0, h - 1)][:, np.clip(cols, 0, w - 1)]

    def mirror(idx: np.ndarray, n: int) -> np.ndarray:  # reflect without repeating the edge
        if n == 1:
            return np.zeros_like(idx)
        idx = np.abs(idx)
        return np.where(idx >= n, 2 * (n - 1) - idx, idx)

    return image[mirror(rows, h)][:, mirror(cols, w)]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^−x) as float32: every number squeezed into 0…1 (0 → 0.5), written so that a
    large |x| never overflows."""
    v = np.asarray(x, np.float64)
    e = np.exp(-np.abs(v))
    return np.where(v >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


@dataclass(frozen=True)
class Layer:
    """One stage of a stack: a kernel, then optionally a ReLU or a sigmoid."""

    kernel: np.ndarray
    relu: bool = False
    sigmoid: bool = False


def apply_layers(image: np.ndarray, layers: Sequence[Layer], *, border: str = "zero") -> list[np.ndarray]:
    """Run the image through each layer in turn; returns every intermediate map (float32)."""
    maps = []
    current: np.ndarray = image
    for layer in layers:
        current = apply_kernel(current, layer.kernel, border=border, relu=layer.relu)
        if layer.sigmoid:
            current = sigmoid(current)
        maps.append(current)
    return maps


def compose_linear(k1: np.ndarray, k2: np.ndarray) -> np.ndarray:
    """The single 5×5 kernel equal to k1 followed by k2 (both linear, zero border, away from edges).

    Shows why layers without a non-linearity collapse into one linear map.
    """
    a, b = _check_kernel(k1).astype(np.float64), _check_kernel(k2).astype(np.float64)
    out = np.zeros((5, 5))
    for i in range(3):
        for j in range(3):
            out[i:i + 3, j:j + 3] += b[i, j] * a
    return out


# ---------------------------------------------------------------------------------------------
# Turning a signed response into a picture

def _diverging_lut() -> np.ndarray:
    """255×3 blue–white–orange lookup table: odd length, so 0 falls exactly on white; blue and
    orange stay distinct for red-green colour blindness."""
    anchors = np.array([[0.0, 33, 102, 172], [0.25, 103, 169, 207], [0.5, 247, 247, 247],
                        [0.75, 244, 165, 94], [1.0, 179, 88, 6]])
    t = np.linspace(0, 1, 255)
    lut = np.stack([np.interp(t, anchors[:, 0], anchors[:, c]) for c in (1, 2, 3)], axis=1)
    return np.clip(np.rint(lut), 0, 255).astype(np.uint8)


DIVERGING_LUT = _diverging_lut()


@dataclass(frozen=True)
class Rendered:
    """A response made visible, and what one step of its colour scale means."""

    image: np.ndarray   # uint8, (H, W) or (H, W, 3)
    scale: float        # the response value drawn at full intensity (or at each end when diverging)
    note: str


def render_response(response: np.ndarray, mode: str = "clip", *, scale: float | None = None) -> Rendered:
    """Show a signed float response as uint8.

    clip: values clipped to 0–255, as classic photo filters do (negatives become black).
    abs: |value|, scaled so the largest magnitude is white (edges of either sign light up).
    diverging: negative blue, zero white, positive orange, symmetric around zero; a colour image is
    shown by the mean of its channels. `scale` overrides the magnitude drawn at full intensity (so a
    shrunken copy for display keeps the colours of the full-size response).
    """
    if mode not in DISPLAY_MODES:
        raise ValueError(f"Unknown display mode {mode!r}; choose one of {', '.join(DISPLAY_MODES)}.")
    r = np.asarray(response, np.float32)
    if mode == "clip":
        return Rendered(np.clip(r, 0, 255).astype(np.uint8), 255.0, "values clipped to 0–255")
    if mode == "abs":
        m = scale or float(np.abs(r).max()) or 1.0
        img = np.abs(r) * (255.0 / m)
        return Rendered(np.clip(img, 0, 255).astype(np.uint8), m,
                        f"white = |response| of {m:.4g} or more")
    signed = r.mean(axis=2) if r.ndim == 3 else r
    m = scale or float(np.abs(signed).max()) or 1.0
    idx = np.clip(signed * (127.0 / m) + 127.5, 0, 254).astype(np.uint8)  # +0.5 then floor = round
    return Rendered(np.take(DIVERGING_LUT, idx, axis=0), m, f"blue ≤ −{m:.4g}, white = 0, orange ≥ +{m:.4g}")


# ---------------------------------------------------------------------------------------------
# Learning a hidden kernel by gradient descent

@dataclass
class LearnConfig:
    """Settings of a kernel-learning run (seeded, so a run can be repeated exactly)."""

    steps: int = 300          # gradient-descent steps
    lr: float | None = None   # learning rate; None = lr_scale × (1/λmax of the loss's curvature)
    lr_scale: float = 1.0     # multiplies the automatic rate: plain descent diverges above 2,
                              # with momentum 0.9 above 3.8 (= 2·(1+0.9))
    momentum: float = 0.9     # heavy-ball momentum (0 = plain gradient descent)
    init: str = "zero"        # "zero" or "random" starting kernel
    seed: int = 0             # seeds the random start
    size: int = 96            # the image is shrunk to this long side: learning needs few pixels
    border: str = "zero"


@dataclass
class LearnStep:
    step: int
    loss: float
    kernel: np.ndarray        # (3, 3) weights after this step


@dataclass
class LearnResult:
    target_kernel: np.ndarray
    lr: float
    history: list[LearnStep] = field(default_factory=list)


def response_scale(response: np.ndarray, mode: str, *, percentile: float = 98.0) -> float:
    """The magnitude drawn at full intensity: a high percentile of |response|, not the maximum.

    A few extreme pixels (a bright edge) would otherwise squash everything else into near-white.
    Estimated on about 65k pixels, so it stays cheap on a 12-megapixel photo.
    """
    r = np.asarray(response)
    step = max(1, int(np.sqrt(r.shape[0] * r.shape[1] / 65_536)))
    r = r[::step, ::step]  # subsample first: the channel mean below then costs ~nothing
    if mode == "diverging" and r.ndim == 3:
        r = r.mean(axis=2)
    sample = np.abs(r).ravel()
    return float(np.percentile(sample, percentile)) or float(sample.max()) or 1.0


def _learning_image(image: np.ndarray, size: int) -> np.ndarray:
    from engine.images import resize_to_fit, to_grey
    grey = to_grey(image) if image.ndim == 3 else image
    x = resize_to_fit(grey, size).astype(np.float32)
    # Centred and scaled: a photo's large average brightness would otherwise dominate the curvature,
    # so one learning rate would be far too small for the weights that encode edges.
    return (x - x.mean()) / (x.std() + 1e-6)  # (H, W), mean 0, std 1


def safe_learning_rate(x: np.ndarray) -> float:
    """1/λmax of the MSE's Hessian in the nine weights: half the rate at which descent diverges."""
    from numpy.lib.stride_tricks import sliding_window_view
    patches = sliding_window_view(pad3(x.astype(np.float64), "zero"), (3, 3)).reshape(-1, 9)
    hessian = 2.0 * patches.T @ patches / len(patches)
    return float(1.0 / np.linalg.eigvalsh(hessian)[-1])


def learn_kernel(image: np.ndarray, target_kernel: np.ndarray, config: LearnConfig | None = None,
                 *, report_every: int = 1,
                 should_stop: Callable[[], bool] | None = None) -> Iterator[LearnStep]:
    """Gradient descent on nine weights so that kernel(image) matches target_kernel(image).

    Uses torch autograd, exactly as a network layer would learn: predict, MSE loss, backward, step.
    Yields a LearnStep every `report_every` steps (and for the start and the last step).
    """
    import torch
    from torch.nn import functional

    cfg = config or LearnConfig()
    if cfg.init not in ("zero", "random"):
        raise ValueError(f"Unknown init {cfg.init!r}; choose 'zero' or 'random'.")
    x_np = _learning_image(image, cfg.size)
    target_np = apply_kernel(x_np, _check_kernel(target_kernel), border=cfg.border)
    lr = cfg.lr if cfg.lr is not None else cfg.lr_scale * safe_learning_rate(x_np)
    mode = {"zero": "constant", "reflect": "reflect", "replicate": "replicate"}[cfg.border]
    x = functional.pad(torch.from_numpy(x_np)[None, None], (1, 1, 1, 1), mode=mode)  # (1, 1, H+2, W+2)
    target = torch.from_numpy(target_np)[None, None]                          # (1, 1, H, W)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = torch.zeros(1, 1, 3, 3) if cfg.init == "zero" else torch.randn(1, 1, 3, 3, generator=gen) * 0.5
    weights = start.clone().requires_grad_(True)
    opt = torch.optim.SGD([weights], lr=lr, momentum=cfg.momentum)

    def loss_now() -> torch.Tensor:
        # conv2d is cross-correlation, like ours
        return functional.mse_loss(functional.conv2d(x, weights), target)

    with torch.no_grad():
        first = float(loss_now())
        yield LearnStep(0, first, weights[0, 0].detach().numpy().copy())
    for step in range(1, cfg.steps + 1):
        if should_stop is not None and should_stop():
            return
        loss = loss_now()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            now = float(loss_now())
        diverged = not math.isfinite(now) or now > 1e6 * max(first, 1e-12)
        if diverged or step % report_every == 0 or step == cfg.steps:
            yield LearnStep(step, now, weights[0, 0].detach().numpy().copy())
        if diverged:  # the rate is too large: stop cleanly instead of filling the chart with inf
            return
