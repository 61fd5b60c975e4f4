"""The encoder contract: every registered encoder answers ``forward_intermediates`` with raster-ordered block tokens,
their positions and grids, and its summary tokens (LGI-Former messengers, TPSBT bottleneck tokens)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import maedfer
from maedfer.masking import PartWindowMaskGenerator, RandomMaskGenerator, TubeMaskGenerator
from maedfer.models import TPSBT, LGIFormer, TokenEncoder
from maedfer.models.utils import unwrap_model, video_encoder


def _encoders() -> list[tuple[str, TokenEncoder]]:
    """``(label, encoder)`` for every token encoder inside every registered tiny model."""
    found = []
    for name in maedfer.list_models():
        model = maedfer.create_model(name, **maedfer.model_entry(name).tiny_overrides).eval()
        candidates = {"": model, ".encoder": getattr(model, "encoder", None), ".audio": getattr(model, "encoder_audio", None)}
        found += [(name + part, enc) for part, enc in candidates.items() if isinstance(enc, TokenEncoder)]
    return found


ENCODERS = _encoders()
IDS = [label for label, _ in ENCODERS]


def _input(encoder: TokenEncoder, batch: int = 2) -> torch.Tensor:
    embed = encoder.patch_embed
    channels = embed.proj.in_channels
    if hasattr(embed, "tubelet_size"):
        t, h, w = encoder.grid_size
        return torch.randn(batch, channels, t * embed.tubelet_size, h * embed.patch_size, w * embed.patch_size)
    return torch.randn(batch, channels, *(g * embed.patch_size for g in encoder.grid_size))


def _mask(encoder: TokenEncoder, batch: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    if isinstance(encoder, LGIFormer):
        return PartWindowMaskGenerator(encoder.grid_size, 0.5, encoder.region_size[1:]).batch(batch, generator)
    if len(encoder.grid_size) == 3:
        return TubeMaskGenerator(encoder.grid_size, 0.5).batch(batch, generator)
    return RandomMaskGenerator(encoder.grid_size, 0.5).batch(batch, generator)


def _sorted_rows(tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(positions, dim=1)
    return torch.stack([t[o] for t, o in zip(tokens, order)])


def _stage_grid(encoder: TokenEncoder, index: int) -> tuple[int, ...]:
    """The grid block ``index`` works on (TPSBT: its stage's temporally down-sampled grid)."""
    if not isinstance(encoder, TPSBT):
        return tuple(encoder.grid_size)
    stage = next(s for s in range(len(encoder.stage_depths)) if index < sum(encoder.stage_depths[: s + 1]))
    t, h, w = encoder.grid_size
    return (t // encoder.temporal_kernel_size**stage, h, w)


def _expected_positions(mask: torch.Tensor | None, grid: tuple[int, ...], full_grid: tuple[int, ...]) -> torch.Tensor:
    """Visible raster positions on ``grid`` (tube masks: the visible cells of the first frame in every frame)."""
    if mask is None:
        return torch.arange(int(torch.tensor(grid).prod()))[None]
    if grid == tuple(full_grid):
        return torch.stack([row.nonzero()[:, 0] for row in ~mask])
    per_frame = grid[1] * grid[2]
    cells = [(~row[:per_frame]).nonzero()[:, 0] for row in mask]
    return torch.stack([torch.cat([t * per_frame + c for t in range(grid[0])]) for c in cells])


@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize("label,encoder", ENCODERS, ids=IDS)
def test_every_block_raster_ordered_with_positions_grid_and_summary(label: str, encoder: TokenEncoder, masked: bool) -> None:
    torch.manual_seed(0)
    x = _input(encoder)
    mask = _mask(encoder) if masked else None
    with torch.no_grad():
        found = encoder.forward_intermediates(x, mask)
        reference = encoder.forward_encoder(x, mask)
    depth = len(encoder.blocks)
    assert found.indices == list(range(depth))
    assert len(found.tokens) == len(found.positions) == len(found.grids) == len(found.summary) == depth
    for index, (tokens, positions, grid, summary) in enumerate(
        zip(found.tokens, found.positions, found.grids, found.summary)
    ):
        assert grid == _stage_grid(encoder, index)
        expected = _expected_positions(mask, grid, encoder.grid_size).expand(x.shape[0], -1)
        assert torch.equal(positions, expected), f"block {index}"
        assert tokens.shape == (x.shape[0], expected.shape[1], encoder.embed_dim)
        if isinstance(encoder, LGIFormer):
            assert summary is not None and summary.shape == (x.shape[0], encoder.num_regions, encoder.embed_dim)
        elif isinstance(encoder, TPSBT) and index >= encoder.stage_depths[0]:
            frames = grid[0] * encoder.num_bottleneck_tokens[0]
            assert summary is not None and summary.shape == (x.shape[0], frames, encoder.embed_dim)
        else:
            assert summary is None
    # The last block is what forward_encoder returns (unless SVFAP pre-training sums all stages).
    assert torch.equal(found.output.tokens, reference.tokens)
    if not (isinstance(encoder, TPSBT) and encoder.output == "multiscale"):
        torch.testing.assert_close(found.tokens[-1], _sorted_rows(reference.tokens, reference.positions), rtol=0, atol=0)
    if isinstance(encoder, LGIFormer):  # messengers: forward_encoder normalises them only when pooling
        messengers = reference.summary_tokens if encoder.global_pool else encoder.norm(reference.summary_tokens)
        torch.testing.assert_close(found.summary[-1], messengers, rtol=0, atol=0)


@pytest.mark.parametrize("label,encoder", [(l, e) for l, e in ENCODERS if not isinstance(e, TPSBT)],
                         ids=[l for l, e in ENCODERS if not isinstance(e, TPSBT)])
def test_block_tokens_equal_a_truncated_encoder(label: str, encoder: TokenEncoder) -> None:
    """Block ``i``'s tokens are the final tokens of the same encoder cut after block ``i`` (ViT, LGI-Former)."""
    x = _input(encoder)
    mask = _mask(encoder)
    with torch.no_grad():
        found = encoder.forward_intermediates(x, mask, indices=[0])
        cut = copy.deepcopy(encoder)
        cut.blocks = cut.blocks[:1]
        cut.skip_unused = False
        reference = cut.forward_encoder(x, mask)
    torch.testing.assert_close(found.tokens[0], _sorted_rows(reference.tokens, reference.positions), rtol=0, atol=0)


def test_tpsbt_stage_zero_block_matches_plain_blocks() -> None:
    encoder = dict(ENCODERS)["svfap_base"]
    x = _input(encoder)
    with torch.no_grad():
        found = encoder.forward_intermediates(x, indices=[0], norm=False)
        expected = encoder.blocks[0](encoder.embed(x))
    torch.testing.assert_close(found.tokens[0], expected, rtol=0, atol=0)


def test_indices_semantics_and_errors() -> None:
    encoder = dict(ENCODERS)["videomae_base_160"]
    depth = len(encoder.blocks)
    x = _input(encoder, batch=1)
    with torch.no_grad():
        assert encoder.forward_intermediates(x, indices=2).indices == [depth - 2, depth - 1]
        assert encoder.forward_intermediates(x, indices=[0, -1]).indices == [0, depth - 1]
        every = encoder.forward_intermediates(x, norm=False)
        raw = [every.tokens[0]]
        normed = encoder.forward_intermediates(x, indices=[0]).tokens
    assert isinstance(encoder.norm, nn.Identity) or not torch.equal(raw[0], normed[0])
    for bad in ([depth], [-depth - 1], 0, depth + 1, []):
        with pytest.raises(ValueError):
            encoder.forward_intermediates(x, indices=bad)


def test_unwrap_and_find_video_encoder() -> None:
    model = maedfer.create_model("hicmae_base", **maedfer.model_entry("hicmae_base").tiny_overrides)
    wrapped = nn.DataParallel(model)
    wrapped._orig_mod = None  # not a module: ignored
    assert unwrap_model(wrapped) is model
    compiled = torch.compile(nn.DataParallel(model))
    assert unwrap_model(compiled) is model
    assert video_encoder(compiled) is model.encoder
    lone = dict(ENCODERS)["videomae_base_160"]
    assert video_encoder(lone) is lone
    assert video_encoder(model.encoder_audio) is None
