"""Tests of maedfer.masking: mask counts, layout, RNG behaviour, errors and official statistics."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from maedfer.masking import (
    MASK_KINDS,
    PartWindowMaskGenerator,
    RandomMaskGenerator,
    TubeMaskGenerator,
    build_mask_generator,
    check_mask,
    is_part_window_mask,
    is_tube_mask,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "mask_generators.pt"


def seeded(seed: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


# ----------------------------------------------------------------------------------------------
# Independent helpers (explicit loops over the raster index n = (t * H + h) * W + w)
# ----------------------------------------------------------------------------------------------


def cell(mask_row: torch.Tensor, grid: tuple[int, int, int], t: int, h: int, w: int) -> bool:
    _, height, width = grid
    return bool(mask_row[(t * height + h) * width + w])


def slice_counts(mask_row: torch.Tensor, grid: tuple[int, int, int]) -> list[int]:
    frames, height, width = grid
    return [sum(cell(mask_row, grid, t, h, w) for h in range(height) for w in range(width)) for t in range(frames)]


def slices_identical(mask_row: torch.Tensor, grid: tuple[int, int, int]) -> bool:
    frames, height, width = grid
    for t in range(1, frames):
        for h in range(height):
            for w in range(width):
                if cell(mask_row, grid, t, h, w) != cell(mask_row, grid, 0, h, w):
                    return False
    return True


def window_counts(mask_row: torch.Tensor, grid: tuple[int, int, int], window: tuple[int, int]) -> list[int]:
    frames, height, width = grid
    win_h, win_w = window
    counts = []
    for t in range(frames):
        for top in range(0, height, win_h):
            for left in range(0, width, win_w):
                counts.append(
                    sum(
                        cell(mask_row, grid, t, h, w)
                        for h in range(top, top + win_h)
                        for w in range(left, left + win_w)
                    )
                )
    return counts


# ----------------------------------------------------------------------------------------------
# Tube
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grid", "ratio", "per_slice"),
    [((8, 10, 10), 0.9, 90), ((8, 4, 4), 0.75, 12), ((2, 3, 5), 0.5, 7), ((4, 2, 2), 0.0, 0)],
)
def test_tube_counts_and_layout(grid: tuple[int, int, int], ratio: float, per_slice: int) -> None:
    gen = TubeMaskGenerator(grid, ratio)
    n = grid[0] * grid[1] * grid[2]
    assert gen.num_tokens == n
    assert gen.num_masked == grid[0] * per_slice
    assert gen.num_visible == n - grid[0] * per_slice

    one = gen(seeded(0))
    assert one.shape == (n,) and one.dtype == torch.bool
    masks = gen.batch(5, generator=seeded(1))
    assert masks.shape == (5, n) and masks.dtype == torch.bool
    for row in [one, *masks]:
        assert int(row.sum()) == grid[0] * per_slice
        assert slice_counts(row, grid) == [per_slice] * grid[0]
        assert slices_identical(row, grid)
    assert is_tube_mask(masks, grid)
    check_mask(masks, grid)


def test_tube_samples_differ_within_batch() -> None:
    masks = TubeMaskGenerator((8, 10, 10), 0.9).batch(4, generator=seeded(3))
    assert len({tuple(row.tolist()) for row in masks}) == 4


def test_tube_facts() -> None:
    gen = TubeMaskGenerator((8, 10, 10), 0.9)
    assert (gen.num_masked_per_slice, gen.num_masked, gen.num_visible) == (90, 720, 80)
    gen = TubeMaskGenerator((8, 4, 4), 0.75)
    assert (gen.num_masked_per_slice, gen.num_masked) == (12, 96)


# ----------------------------------------------------------------------------------------------
# Part window
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grid", "ratio", "window", "per_window"),
    [
        ((8, 10, 10), 0.9, (5, 10), 45),
        ((8, 4, 4), 0.75, (2, 4), 6),
        ((2, 4, 6), 0.5, (2, 3), 3),  # windows narrower than the frame
        ((3, 6, 4), 0.6, (3, 2), 3),
    ],
)
def test_part_window_counts_and_layout(
    grid: tuple[int, int, int], ratio: float, window: tuple[int, int], per_window: int
) -> None:
    gen = PartWindowMaskGenerator(grid, ratio, window)
    windows_per_slice = (grid[1] // window[0]) * (grid[2] // window[1])
    assert gen.num_masked_per_window == per_window
    assert gen.num_masked_per_slice == per_window * windows_per_slice
    assert gen.num_masked == grid[0] * per_window * windows_per_slice

    masks = gen.batch(4, generator=seeded(2))
    assert masks.shape == (4, grid[0] * grid[1] * grid[2]) and masks.dtype == torch.bool
    for row in masks:
        assert window_counts(row, grid, window) == [per_window] * (grid[0] * windows_per_slice)
        assert slices_identical(row, grid)
        assert int(row.sum()) == gen.num_masked
    assert is_tube_mask(masks, grid)
    assert is_part_window_mask(masks, grid, window)


def test_part_window_facts() -> None:
    gen = PartWindowMaskGenerator((8, 10, 10), 0.9, (5, 10))
    assert (gen.num_masked_per_window, gen.num_masked_per_slice, gen.num_masked) == (45, 90, 720)


def test_part_window_positions_are_not_confined() -> None:
    """Within a window, every cell gets masked in some draw and stays visible in another."""
    grid, window = (1, 4, 6), (2, 3)
    masks = PartWindowMaskGenerator(grid, 0.5, window).batch(400, generator=seeded(5))
    freq = masks.float().mean(dim=0)
    assert bool((freq > 0.35).all()) and bool((freq < 0.65).all())


def test_part_window_rejects_bad_window() -> None:
    with pytest.raises(ValueError, match="divide"):
        PartWindowMaskGenerator((8, 10, 10), 0.9, (3, 10))
    with pytest.raises(ValueError, match="divide"):
        PartWindowMaskGenerator((8, 10, 10), 0.9, (5, 4))
    with pytest.raises(ValueError, match="window"):
        PartWindowMaskGenerator((8, 10, 10), 0.9, (5,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window"):
        PartWindowMaskGenerator((8, 10, 10), 0.9, (0, 10))


def test_is_part_window_mask_detects_unbalanced_windows() -> None:
    grid, window = (2, 2, 4), (1, 4)
    # Slice: row 0 has 3 masked, row 1 has 1 masked; same in both slices (a tube, but unbalanced).
    spatial = torch.tensor([1, 1, 1, 0, 0, 0, 0, 1], dtype=torch.bool)
    mask = spatial.repeat(2).unsqueeze(0)
    assert is_tube_mask(mask, grid)
    assert not is_part_window_mask(mask, grid, window)
    balanced = torch.tensor([1, 0, 1, 0, 0, 1, 0, 1], dtype=torch.bool).repeat(2).unsqueeze(0)
    assert is_part_window_mask(balanced, grid, window)


# ----------------------------------------------------------------------------------------------
# Random
# ----------------------------------------------------------------------------------------------


def test_random_counts() -> None:
    gen = RandomMaskGenerator((16, 8), 0.8)
    assert (gen.num_tokens, gen.num_masked, gen.num_visible) == (128, 102, 26)
    masks = gen.batch(6, generator=seeded(0))
    assert masks.shape == (6, 128) and masks.dtype == torch.bool
    assert masks.sum(dim=1).tolist() == [102] * 6
    check_mask(masks, (16, 8))

    flat = RandomMaskGenerator(50, 0.3)
    assert (flat.num_tokens, flat.num_masked) == (50, 15)
    assert flat().shape == (50,)


def test_random_is_roughly_uniform() -> None:
    masks = RandomMaskGenerator((16, 8), 0.8).batch(3000, generator=seeded(11))
    freq = masks.float().mean(dim=0)
    # Expected 102 / 128 = 0.797 everywhere; binomial std over 3000 draws is about 0.007.
    assert float((freq - 102 / 128).abs().max()) < 0.04


def test_random_not_tube() -> None:
    masks = RandomMaskGenerator((4, 2, 8), 0.5).batch(8, generator=seeded(0))
    assert not is_tube_mask(masks, (4, 2, 8))


# ----------------------------------------------------------------------------------------------
# RNG behaviour
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gen",
    [
        TubeMaskGenerator((8, 4, 4), 0.75),
        PartWindowMaskGenerator((8, 4, 4), 0.75, (2, 4)),
        RandomMaskGenerator((16, 8), 0.8),
    ],
    ids=["tube", "part_window", "random"],
)
def test_seeding(gen: TubeMaskGenerator | PartWindowMaskGenerator | RandomMaskGenerator) -> None:
    assert torch.equal(gen(seeded(7)), gen(seeded(7)))
    assert torch.equal(gen.batch(3, seeded(7)), gen.batch(3, generator=seeded(7)))
    assert not torch.equal(gen.batch(3, seeded(7)), gen.batch(3, seeded(8)))

    # Without an explicit generator the global torch RNG is used (what DataLoader workers seed).
    torch.manual_seed(123)
    first = gen.batch(2)
    torch.manual_seed(123)
    assert torch.equal(first, gen.batch(2))
    torch.manual_seed(124)
    assert not torch.equal(first, gen.batch(2))

    # Picklable, for DataLoader workers.
    clone = pickle.loads(pickle.dumps(gen))
    assert torch.equal(clone(seeded(3)), gen(seeded(3)))


def test_repr_is_informative() -> None:
    text = repr(PartWindowMaskGenerator((8, 10, 10), 0.9, (5, 10)))
    assert "PartWindowMaskGenerator" in text and "0.9" in text and "(5, 10)" in text and "720" in text
    assert "TubeMaskGenerator" in repr(TubeMaskGenerator((8, 4, 4), 0.75))
    assert "102" in repr(RandomMaskGenerator((16, 8), 0.8))


# ----------------------------------------------------------------------------------------------
# Factory and argument errors
# ----------------------------------------------------------------------------------------------


def test_build_mask_generator() -> None:
    assert MASK_KINDS == ("tube", "part_window", "random")
    tube = build_mask_generator("tube", (8, 4, 4), 0.75)
    assert isinstance(tube, TubeMaskGenerator) and tube.num_masked == 96
    part = build_mask_generator("part_window", (8, 4, 4), 0.75, window=(2, 4))
    assert isinstance(part, PartWindowMaskGenerator) and part.num_masked_per_window == 6
    rand = build_mask_generator("random", (16, 8), 0.8)
    assert isinstance(rand, RandomMaskGenerator) and rand.num_masked == 102


def test_build_mask_generator_errors() -> None:
    with pytest.raises(ValueError, match="tube.*part_window.*random"):
        build_mask_generator("block", (8, 4, 4), 0.75)
    with pytest.raises(ValueError, match="window"):
        build_mask_generator("part_window", (8, 4, 4), 0.75)
    with pytest.raises(ValueError, match="window"):
        build_mask_generator("tube", (8, 4, 4), 0.75, window=(2, 4))


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, "0.5", True])
def test_bad_ratio(ratio: object) -> None:
    with pytest.raises(ValueError, match="mask_ratio"):
        TubeMaskGenerator((8, 4, 4), ratio)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mask_ratio"):
        RandomMaskGenerator(16, ratio)  # type: ignore[arg-type]


@pytest.mark.parametrize("grid", [(8, 4), (8, 4, 4, 1), (8, 0, 4), (8, 4.0, 4), "844"])
def test_bad_grid(grid: object) -> None:
    with pytest.raises(ValueError, match="grid"):
        TubeMaskGenerator(grid, 0.5)  # type: ignore[arg-type]


def test_bad_batch_size() -> None:
    gen = RandomMaskGenerator(16, 0.5)
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match="batch_size"):
            gen.batch(bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# check_mask / is_tube_mask
# ----------------------------------------------------------------------------------------------


def test_check_mask_errors() -> None:
    good = torch.tensor([[True, False, True, False], [False, True, True, False]])
    check_mask(good)
    check_mask(good, grid=(2, 2))
    with pytest.raises(ValueError, match="same number of visible"):
        check_mask(torch.tensor([[True, False, True, False], [False, False, True, False]]))
    with pytest.raises(ValueError, match="grid"):
        check_mask(good, grid=(2, 3))
    with pytest.raises(ValueError, match="bool"):
        check_mask(good.long())
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        check_mask(good[0])
    with pytest.raises(ValueError, match="visible"):
        check_mask(torch.ones(2, 4, dtype=torch.bool))


def test_is_tube_mask_explicit() -> None:
    grid = (3, 1, 2)
    tube = torch.tensor([[True, False, True, False, True, False]])
    not_tube = torch.tensor([[True, False, False, True, True, False]])
    assert is_tube_mask(tube, grid)
    assert is_tube_mask(tube[0], grid)
    assert not is_tube_mask(not_tube, grid)
    assert not is_tube_mask(torch.cat([tube, not_tube]), grid)
    with pytest.raises(ValueError, match="grid"):
        is_tube_mask(tube, (2, 1, 2))


# ----------------------------------------------------------------------------------------------
# Official statistics
# ----------------------------------------------------------------------------------------------


def _ours(entry: dict) -> TubeMaskGenerator | PartWindowMaskGenerator | RandomMaskGenerator:
    args = entry["args"]
    kind = {
        "TubeMaskingGenerator": "tube",
        "TubeWindowMaskingGenerator": "part_window",
        "RandomMaskingGenerator2D": "random",
    }[entry["class"]]
    window = tuple(args["win_size"]) if "win_size" in args else None
    gen = build_mask_generator(kind, tuple(args["input_size"]), args["mask_ratio"], window=window)
    assert isinstance(gen, (TubeMaskGenerator, PartWindowMaskGenerator, RandomMaskGenerator))
    return gen


@pytest.fixture(scope="module")
def official() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def test_official_fixture_covers_all_classes(official: dict) -> None:
    classes = {entry["class"] for entry in official["generators"]}
    assert classes == {"TubeMaskingGenerator", "TubeWindowMaskingGenerator", "RandomMaskingGenerator2D"}


def test_official_statistics_match_ours(official: dict) -> None:
    for index, entry in enumerate(official["generators"]):
        gen = _ours(entry)
        grid = tuple(entry["args"]["input_size"])
        masks = gen.batch(8, generator=seeded(index))
        assert masks.shape == (8, entry["output_shape"][0]), entry["class"]
        expected_total = entry["num_masked_per_sample"][0]
        assert set(entry["num_masked_per_sample"]) == {expected_total}
        assert masks.sum(dim=1).tolist() == [expected_total] * 8, entry["class"]
        assert gen.num_masked == expected_total
        if "num_masked_per_frame" in entry:
            (per_frame,) = entry["num_masked_per_frame"]
            assert per_frame == entry["expected_num_masked_per_frame"]
            assert entry["tube"] is True
            for row in masks:
                assert slice_counts(row, grid) == [per_frame] * grid[0]
                assert slices_identical(row, grid)
        if "num_masked_per_window" in entry:
            (per_window,) = entry["num_masked_per_window"]
            assert per_window == entry["expected_num_masked_per_window"]
            window = tuple(entry["args"]["win_size"])
            assert gen.num_masked_per_window == per_window  # type: ignore[union-attr]
            for row in masks:
                assert set(window_counts(row, grid, window)) == {per_window}


def test_official_examples_pass_our_checks(official: dict) -> None:
    for entry in official["generators"]:
        examples = entry["examples"]
        grid = tuple(entry["args"]["input_size"])
        assert examples.dtype == torch.bool and examples.shape[1] == entry["output_shape"][0]
        check_mask(examples, grid)
        assert examples.sum(dim=1).tolist() == entry["num_masked_per_sample"]
        if entry.get("tube"):
            assert is_tube_mask(examples, grid)
            for row in examples:
                assert slices_identical(row, grid)
                assert slice_counts(row, grid) == entry["num_masked_per_frame"] * grid[0]
        if "win_size" in entry["args"]:
            window = tuple(entry["args"]["win_size"])
            assert is_part_window_mask(examples, grid, window)
            for row in examples:
                assert set(window_counts(row, grid, window)) == set(entry["num_masked_per_window"])
        if entry["class"] == "RandomMaskingGenerator2D":
            # The official random masks are not tube-shaped over the (16, 8) audio grid.
            assert not is_tube_mask(examples, (grid[0], 1, grid[1]))
