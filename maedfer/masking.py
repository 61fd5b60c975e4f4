"""Mask generators for masked autoencoding.

Details: ``docs/modules.md``, section ``maedfer/masking.py``.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from .utils import check_int

__all__ = [
    "MASK_KINDS",
    "MaskGenerator",
    "PartWindowMaskGenerator",
    "RandomMaskGenerator",
    "TubeMaskGenerator",
    "build_mask_generator",
    "check_mask",
    "is_part_window_mask",
    "is_tube_mask",
    "visible_first_order",
]

logger = logging.getLogger(__name__)

#: Valid ``kind`` values of :func:`build_mask_generator`.
MASK_KINDS: tuple[str, ...] = ("tube", "part_window", "random")


def _as_positive_int_tuple(value: int | Sequence[int], name: str, length: int | None = None) -> tuple[int, ...]:
    """Validate an int or a sequence of ints and return it as a tuple of positive ints.

    Args:
        value: An ``int`` or a sequence of ``int``.
        name: Argument name, used in error messages.
        length: Required number of entries, or ``None`` for any non-zero length.

    Returns:
        The values as a tuple.

    Raises:
        ValueError: If an entry is not a positive integer or the length is wrong.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        items: tuple[object, ...] = (value,)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = tuple(value)
    else:
        raise ValueError(f"{name} must be an int or a sequence of ints, got {value!r}")
    if not items:
        raise ValueError(f"{name} must not be empty")
    if length is not None and len(items) != length:
        raise ValueError(f"{name} must have {length} entries, got {len(items)}: {value!r}")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
            raise ValueError(f"{name} must contain positive integers, got {value!r}")
        out.append(int(item))
    return tuple(out)


def _check_ratio(mask_ratio: float) -> float:
    """Validate a mask ratio.

    Args:
        mask_ratio: Fraction of tokens to mask.

    Returns:
        The ratio as a Python float.

    Raises:
        ValueError: If the ratio is not a number in ``[0, 1)``.
    """
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)):
        raise ValueError(f"mask_ratio must be a float in [0, 1), got {mask_ratio!r}")
    ratio = float(mask_ratio)
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1) so that some tokens stay visible, got {mask_ratio!r}")
    return ratio


def _random_rows(
    rows: int, length: int, num_true: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Draw ``rows`` independent boolean rows with exactly ``num_true`` True entries each.

    Positions are uniformly random: a uniform score per entry, the ``num_true`` smallest scores
    are set to True.

    Args:
        rows: Number of independent rows.
        length: Entries per row.
        num_true: True entries per row (``0 <= num_true <= length``).
        generator: Torch RNG to draw from; ``None`` uses the global torch RNG.

    Returns:
        ``(rows, length)`` bool tensor on the generator's device (CPU by default).
    """
    device = generator.device if generator is not None else torch.device("cpu")
    scores = torch.rand(rows, length, generator=generator, device=device)
    chosen = scores.argsort(dim=1)[:, :num_true]
    out = torch.zeros(rows, length, dtype=torch.bool, device=device)
    out.scatter_(1, chosen, True)
    return out


class MaskGenerator(ABC):
    """Base class of the mask generators.

    Subclasses implement :meth:`_sample`; ``__call__`` and :meth:`batch` are built on it.

    Attributes:
        mask_ratio: Requested fraction of masked tokens.
    """

    mask_ratio: float

    @property
    @abstractmethod
    def num_tokens(self) -> int:
        """Total number of tokens N of one mask."""

    @property
    @abstractmethod
    def num_masked(self) -> int:
        """Number of masked (True) tokens in every mask."""

    @property
    def num_visible(self) -> int:
        """Number of visible (False) tokens in every mask: ``num_tokens - num_masked``."""
        return self.num_tokens - self.num_masked

    @abstractmethod
    def _sample(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        """Draw ``batch_size`` independent masks.

        Args:
            batch_size: Number of masks B.
            generator: Torch RNG; ``None`` uses the global torch RNG.

        Returns:
            ``(B, N)`` bool, True = masked.
        """

    def __call__(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw one mask.

        Args:
            generator: Torch RNG; ``None`` uses the global torch RNG (seeded per DataLoader worker).

        Returns:
            ``(N,)`` bool, True = masked, in raster token order.
        """
        return self._sample(1, generator)[0]

    def batch(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw a batch of independent masks.

        Args:
            batch_size: Number of masks B.
            generator: Torch RNG; ``None`` uses the global torch RNG.

        Returns:
            ``(B, N)`` bool, True = masked; every row has exactly :attr:`num_masked` True entries.
        """
        return self._sample(check_int(batch_size, "batch_size"), generator)


class TubeMaskGenerator(MaskGenerator):
    """Tube masking: one random spatial mask shared by all temporal slices.

    Every slice has exactly ``int(mask_ratio * H' * W')`` masked cells at the same positions.

    Args:
        grid: Token grid ``(T', H', W')``.
        mask_ratio: Fraction of cells to mask in each slice, in ``[0, 1)``.

    Example:
        >>> gen = TubeMaskGenerator((8, 10, 10), 0.9)
        >>> gen.num_masked, gen().shape
        (720, torch.Size([800]))
    """

    def __init__(self, grid: tuple[int, int, int], mask_ratio: float) -> None:
        self.grid: tuple[int, int, int] = _as_positive_int_tuple(grid, "grid", length=3)  # type: ignore[assignment]
        self.mask_ratio = _check_ratio(mask_ratio)
        _, height, width = self.grid
        self.num_masked_per_slice: int = int(self.mask_ratio * height * width)
        logger.debug("built %r", self)

    @property
    def num_tokens(self) -> int:
        """Total number of tokens ``T' * H' * W'``."""
        return math.prod(self.grid)

    @property
    def num_masked(self) -> int:
        """Masked tokens per mask: ``T' * int(mask_ratio * H' * W')``."""
        return self.grid[0] * self.num_masked_per_slice

    def _sample(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        """Draw ``(B, N)`` tube masks; see :meth:`MaskGenerator._sample`."""
        frames, height, width = self.grid
        spatial = _random_rows(batch_size, height * width, self.num_masked_per_slice, generator)
        return spatial.unsqueeze(1).expand(batch_size, frames, height * width).reshape(batch_size, -1)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(grid={self.grid}, mask_ratio={self.mask_ratio}, "
            f"masked_per_slice={self.num_masked_per_slice}, masked={self.num_masked}/{self.num_tokens})"
        )


class PartWindowMaskGenerator(MaskGenerator):
    """Part-window tube masking (MAE-DFER ``part_window``).

    The ``H' x W'`` frame is tiled by non-overlapping windows of ``(h_w, w_w)`` cells. Each window
    independently gets exactly ``int(mask_ratio * h_w * w_w)`` masked cells at random positions, and
    the resulting spatial mask is shared by all temporal slices. Cells sit at their true raster
    positions, so for full-width windows the spatial mask is the windows concatenated top to
    bottom. Every window of every slice therefore keeps the same number of visible tokens, which
    the LGI-Former pre-training encoder relies on (its region size must equal the window).

    Args:
        grid: Token grid ``(T', H', W')``.
        mask_ratio: Fraction of cells to mask in each window, in ``[0, 1)``.
        window: Window size ``(h_w, w_w)`` in token cells; must divide ``(H', W')``.

    Raises:
        ValueError: If the window does not tile the frame or an argument is malformed.
    """

    def __init__(self, grid: tuple[int, int, int], mask_ratio: float, window: tuple[int, int]) -> None:
        self.grid: tuple[int, int, int] = _as_positive_int_tuple(grid, "grid", length=3)  # type: ignore[assignment]
        self.window: tuple[int, int] = _as_positive_int_tuple(window, "window", length=2)  # type: ignore[assignment]
        self.mask_ratio = _check_ratio(mask_ratio)
        _, height, width = self.grid
        win_h, win_w = self.window
        if height % win_h or width % win_w:
            raise ValueError(
                f"window {self.window} must divide the spatial token grid ({height}, {width}) "
                f"of grid {self.grid}"
            )
        self.num_windows: tuple[int, int] = (height // win_h, width // win_w)
        self.num_masked_per_window: int = int(self.mask_ratio * win_h * win_w)
        logger.debug("built %r", self)

    @property
    def num_tokens(self) -> int:
        """Total number of tokens ``T' * H' * W'``."""
        return math.prod(self.grid)

    @property
    def num_masked_per_slice(self) -> int:
        """Masked cells per temporal slice: windows per frame times masked cells per window."""
        return self.num_windows[0] * self.num_windows[1] * self.num_masked_per_window

    @property
    def num_masked(self) -> int:
        """Masked tokens per mask: ``T' * num_masked_per_slice``."""
        return self.grid[0] * self.num_masked_per_slice

    def _sample(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        """Draw ``(B, N)`` part-window masks; see :meth:`MaskGenerator._sample`."""
        frames, height, width = self.grid
        win_h, win_w = self.window
        rows, cols = self.num_windows
        per_window = _random_rows(batch_size * rows * cols, win_h * win_w, self.num_masked_per_window, generator)
        # (B, rows, cols, win_h, win_w) -> (B, rows, win_h, cols, win_w) == (B, H', W') in raster order.
        spatial = (
            per_window.view(batch_size, rows, cols, win_h, win_w)
            .permute(0, 1, 3, 2, 4)
            .reshape(batch_size, 1, height * width)
        )
        return spatial.expand(batch_size, frames, height * width).reshape(batch_size, -1)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(grid={self.grid}, mask_ratio={self.mask_ratio}, window={self.window}, "
            f"masked_per_window={self.num_masked_per_window}, masked={self.num_masked}/{self.num_tokens})"
        )


class RandomMaskGenerator(MaskGenerator):
    """Uniform random masking of exactly ``int(mask_ratio * N)`` tokens out of N.

    Used for HiCMAE audio spectrogram tokens (grid ``(T_a', F')``, row-major).

    Args:
        num_tokens: N, or a token grid whose product is N.
        mask_ratio: Fraction of tokens to mask, in ``[0, 1)``.
    """

    def __init__(self, num_tokens: int | tuple[int, ...], mask_ratio: float) -> None:
        self.shape: tuple[int, ...] = _as_positive_int_tuple(num_tokens, "num_tokens")
        self.mask_ratio = _check_ratio(mask_ratio)
        self._num_tokens = math.prod(self.shape)
        self._num_masked = int(self.mask_ratio * self._num_tokens)
        logger.debug("built %r", self)

    @property
    def num_tokens(self) -> int:
        """Total number of tokens N."""
        return self._num_tokens

    @property
    def num_masked(self) -> int:
        """Masked tokens per mask: ``int(mask_ratio * N)``."""
        return self._num_masked

    def _sample(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        """Draw ``(B, N)`` random masks; see :meth:`MaskGenerator._sample`."""
        return _random_rows(batch_size, self._num_tokens, self._num_masked, generator)

    def __repr__(self) -> str:
        shape = self.shape[0] if len(self.shape) == 1 else self.shape
        return (
            f"{type(self).__name__}(num_tokens={shape}, mask_ratio={self.mask_ratio}, "
            f"masked={self.num_masked}/{self.num_tokens})"
        )


def build_mask_generator(
    kind: str,
    grid: int | tuple[int, ...],
    mask_ratio: float,
    window: tuple[int, int] | None = None,
) -> MaskGenerator:
    """Build a mask generator by name.

    Args:
        kind: ``"tube"``, ``"part_window"`` or ``"random"``.
        grid: Token grid. ``(T', H', W')`` for ``tube`` and ``part_window``; an int N or any grid
            for ``random``.
        mask_ratio: Fraction of tokens to mask, in ``[0, 1)``.
        window: ``(h_w, w_w)`` window in token cells; required by ``part_window`` and rejected
            by the other kinds.

    Returns:
        The generator.

    Raises:
        ValueError: If ``kind`` is unknown or ``window`` does not fit ``kind``.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; valid kinds are {', '.join(repr(k) for k in MASK_KINDS)}")
    if kind == "part_window":
        if window is None:
            raise ValueError("mask kind 'part_window' needs a window=(h_w, w_w)")
        return PartWindowMaskGenerator(grid, mask_ratio, window)  # type: ignore[arg-type]
    if window is not None:
        raise ValueError(f"window is only used by mask kind 'part_window', not {kind!r} (got window={window!r})")
    if kind == "tube":
        return TubeMaskGenerator(grid, mask_ratio)  # type: ignore[arg-type]
    return RandomMaskGenerator(grid, mask_ratio)


def _as_batch(mask: torch.Tensor) -> torch.Tensor:
    """Validate a mask tensor and return it as ``(B, N)``.

    Args:
        mask: ``(N,)`` or ``(B, N)`` bool.

    Returns:
        ``(B, N)`` bool.

    Raises:
        ValueError: If it is not a 1-D or 2-D bool tensor.
    """
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must have dtype torch.bool (True = masked), got {mask.dtype}")
    if mask.dim() == 1:
        return mask.unsqueeze(0)
    if mask.dim() != 2:
        raise ValueError(f"mask must have shape (B, N) or (N,), got {tuple(mask.shape)}")
    return mask


def _check_grid_matches(mask: torch.Tensor, grid: int | Sequence[int]) -> tuple[int, ...]:
    """Check that a ``(B, N)`` mask has ``N == prod(grid)``.

    Args:
        mask: ``(B, N)`` bool.
        grid: Token grid.

    Returns:
        The grid as a tuple.

    Raises:
        ValueError: On mismatch.
    """
    grid_t = _as_positive_int_tuple(grid, "grid")
    if mask.shape[1] != math.prod(grid_t):
        raise ValueError(
            f"mask has {mask.shape[1]} tokens per sample but grid {grid_t} has {math.prod(grid_t)}"
        )
    return grid_t


def check_mask(mask: torch.Tensor, grid: int | Sequence[int] | None = None) -> None:
    """Validate a batch of masks for the encoders.

    The encoders gather visible tokens with ``x[~mask].reshape(B, -1, D)``, which needs the same
    number of visible tokens in every sample.

    Args:
        mask: ``(B, N)`` bool, True = masked.
        grid: Optional token grid; if given, ``N`` must equal its product.

    Raises:
        ValueError: If ``mask`` is not a 2-D bool tensor, does not match ``grid``, has samples with
            different numbers of visible tokens, or has a sample with no visible token.
    """
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a (B, N) bool tensor, got {shape}")
    mask = _as_batch(mask)
    if grid is not None:
        _check_grid_matches(mask, grid)
    visible = (~mask).sum(dim=1)
    if visible.numel() and bool((visible != visible[0]).any()):
        counts = visible.tolist()
        raise ValueError(
            f"every sample in a batch must have the same number of visible tokens; got visible counts "
            f"{counts if len(counts) <= 16 else counts[:16] + ['...']}"
        )
    if visible.numel() and int(visible[0]) == 0:
        raise ValueError("mask hides every token; at least one token per sample must stay visible")


def is_tube_mask(mask: torch.Tensor, grid: Sequence[int]) -> bool:
    """Whether every temporal slice of each mask has the same spatial mask.

    Args:
        mask: ``(B, N)`` (or ``(N,)``) bool with ``N = T' * H' * W'``.
        grid: Token grid ``(T', H', W')``.

    Returns:
        True if, for every sample, all ``T'`` slices are identical.

    Raises:
        ValueError: If the mask is malformed or does not match the grid.
    """
    mask = _as_batch(mask)
    frames, height, width = _check_grid_matches(mask, _as_positive_int_tuple(grid, "grid", length=3))
    slices = mask.reshape(mask.shape[0], frames, height * width)
    return bool((slices == slices[:, :1]).all())


def is_part_window_mask(mask: torch.Tensor, grid: Sequence[int], window: Sequence[int]) -> bool:
    """Whether masks are tube masks with the same number of masked cells in every window.

    This is the property the LGI-Former pre-training encoder needs: the same count in every
    window, of every slice, of every sample.

    Args:
        mask: ``(B, N)`` (or ``(N,)``) bool with ``N = T' * H' * W'``.
        grid: Token grid ``(T', H', W')``.
        window: Window ``(h_w, w_w)`` in token cells; must divide ``(H', W')``.

    Returns:
        True if the masks are tube masks and all window counts are equal.

    Raises:
        ValueError: If the mask is malformed, does not match the grid, or the window does not tile
            the frame.
    """
    mask = _as_batch(mask)
    frames, height, width = _check_grid_matches(mask, _as_positive_int_tuple(grid, "grid", length=3))
    win_h, win_w = _as_positive_int_tuple(window, "window", length=2)
    if height % win_h or width % win_w:
        raise ValueError(f"window {(win_h, win_w)} must divide the spatial token grid ({height}, {width})")
    if not is_tube_mask(mask, (frames, height, width)):
        return False
    counts = (
        mask.reshape(mask.shape[0], frames, height // win_h, win_h, width // win_w, win_w)
        .sum(dim=(3, 5))
        .flatten()
    )
    return bool((counts == counts[0]).all())


def visible_first_order(mask: torch.Tensor) -> torch.Tensor:
    """Token indices of each row, visible ones first: ``(B, N)`` bool mask -> ``(B, N)`` long.

    Row ``b`` lists the raster indices of its visible tokens in raster order, then those of its masked tokens in
    raster order (a stable sort of the mask). With ``N_visible`` visible tokens per row, ``order[:, :N_visible]``
    equals ``(~mask).nonzero()[:, 1].reshape(B, -1)`` and ``order[:, N_visible:]`` equals
    ``mask.nonzero()[:, 1].reshape(B, -1)``, but the output shape does not depend on the data, so ``torch.compile``
    traces it without a graph break.
    """
    return torch.argsort(mask.to(torch.uint8), dim=1, stable=True)
