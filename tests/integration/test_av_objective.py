"""Tests of the spectrogram targets and the HiCMAE audio-visual pre-training objective.

Expected values come from element-by-element references written here from the definitions
(float64 Python arithmetic), from the official HiCMAE fixture (targets and every loss component
computed by the official engine), and, for negatives gathered across processes, from a
single-process computation over the whole global batch.
"""

from __future__ import annotations

import math
import os
import socket
import types
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from maedfer.targets import patchify_spectrogram, spectrogram_reconstruction_targets, unpatchify_spectrogram
from maedfer.tasks.base import Task
from maedfer.tasks.pretrain import (
    AudioVisualPretrainOutputLike,
    AudioVisualReconstructionObjective,
    MaskedAudioVisualPretrainTask,
    VideoReconstructionObjective,
    contrastive_logits,
    hierarchical_contrastive_loss,
)

OFFICIAL = Path(__file__).resolve().parents[1] / "fixtures" / "official"


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return torch.randn(*shape, generator=gen)


def unit_rows(*shape: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(randn(*shape, seed=seed), dim=-1)


# ----------------------------------------------------------------------------------------------
# Spectrogram targets
# ----------------------------------------------------------------------------------------------


def reference_spectrogram_targets(spec: torch.Tensor, p: int, normalize: bool, eps: float = 1e-6) -> torch.Tensor:
    """Targets built value by value from the written definition (time-major tokens, channel fastest)."""
    batch, channels, frames, bins = spec.shape
    grid_t, grid_f = frames // p, bins // p
    out = torch.zeros(batch, grid_t * grid_f, p * p * channels, dtype=torch.float64)
    for b in range(batch):
        for t in range(grid_t):
            for f in range(grid_f):
                n = t * grid_f + f
                for c in range(channels):
                    values = [float(spec[b, c, t * p + i, f * p + j]) for i in range(p) for j in range(p)]
                    if normalize:
                        mean = sum(values) / len(values)
                        var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
                        values = [(v - mean) / (math.sqrt(var) + eps) for v in values]
                    for pixel, value in enumerate(values):
                        out[b, n, pixel * channels + c] = value
    return out


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("shape,p", [((1, 1, 8, 4), 2), ((2, 2, 6, 9), 3)])
def test_spectrogram_targets_match_loop_reference(shape: tuple[int, ...], p: int, normalize: bool) -> None:
    spec = randn(*shape, seed=3) * 4.0 - 2.0
    got = spectrogram_reconstruction_targets(spec, patch_size=p, normalize=normalize)
    expected = reference_spectrogram_targets(spec, p, normalize)
    assert got.dtype == torch.float32
    assert not got.requires_grad
    assert got.shape == expected.shape
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)


def test_spectrogram_targets_use_input_as_is_and_no_grad() -> None:
    spec = randn(2, 1, 4, 4, seed=1).requires_grad_(True)
    got = spectrogram_reconstruction_targets(spec, patch_size=2, normalize=False)
    assert not got.requires_grad
    # Token 0 holds spec[:, 0, 0:2, 0:2] row by row, unchanged (no un-normalisation).
    torch.testing.assert_close(got[:, 0], spec.detach()[:, 0, 0:2, 0:2].reshape(2, 4))
    half = spectrogram_reconstruction_targets(spec.detach().half(), patch_size=2)
    assert half.dtype == torch.float32


def test_patchify_spectrogram_layout_is_time_major() -> None:
    frames, bins, p = 6, 4, 2
    spec = torch.zeros(1, 1, frames, bins)
    for t in range(frames):
        for f in range(bins):
            spec[0, 0, t, f] = 100 * t + f
    tokens = patchify_spectrogram(spec, p)
    assert tokens.shape == (1, (frames // p) * (bins // p), p * p, 1)
    grid_f = bins // p
    for tt in range(frames // p):
        for ff in range(grid_f):
            for i in range(p):
                for j in range(p):
                    expected = 100 * (tt * p + i) + (ff * p + j)
                    assert tokens[0, tt * grid_f + ff, i * p + j, 0].item() == expected


def test_patchify_unpatchify_round_trip() -> None:
    spec = randn(2, 3, 8, 12, seed=5)
    tokens = patchify_spectrogram(spec, 4)
    assert tokens.shape == (2, 6, 16, 3)
    assert torch.equal(unpatchify_spectrogram(tokens, (2, 3), 4, channels=3), spec)
    flat = tokens.reshape(2, 6, -1)
    assert torch.equal(unpatchify_spectrogram(flat, (2, 3), 4, channels=3), spec)
    # Flattened targets without normalisation invert to the input too (channel-fastest layout).
    targets = spectrogram_reconstruction_targets(spec, patch_size=4, normalize=False)
    assert torch.equal(unpatchify_spectrogram(targets, (2, 3), 4, channels=3), spec)


def test_spectrogram_shape_errors() -> None:
    with pytest.raises(ValueError, match="divisible"):
        patchify_spectrogram(torch.zeros(1, 1, 7, 4), 2)
    with pytest.raises(ValueError, match=r"\(B, C, T, F\)"):
        spectrogram_reconstruction_targets(torch.zeros(1, 8, 4), patch_size=2)
    with pytest.raises(ValueError, match="patch_size"):
        patchify_spectrogram(torch.zeros(1, 1, 8, 4), 0)
    with pytest.raises(ValueError, match="shape"):
        unpatchify_spectrogram(torch.zeros(1, 8, 4), (2, 3), 2)
    with pytest.raises(ValueError, match="grid"):
        unpatchify_spectrogram(torch.zeros(1, 8, 4), (8,), 2)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Official HiCMAE parity
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hicmae_fixture() -> dict:
    return torch.load(OFFICIAL / "hicmae_pretrain.pt", weights_only=True)


def objective_from_engine(kwargs: dict, temperature: float) -> AudioVisualReconstructionObjective:
    video = VideoReconstructionObjective(
        patch_size=kwargs["patch_size"],
        normalize_target=kwargs["normlize_target"],
        frame_diff_group_size=kwargs["frame_diff_group_size"] if kwargs["use_frame_diff_as_target"] else None,
    )
    return AudioVisualReconstructionObjective(
        video,
        audio_patch_size=kwargs["patch_size_audio"],
        normalize_audio_target=kwargs["normlize_target_audio"],
        contrastive_weight=kwargs["loss_weight"],
        temperature=temperature,
    )


def pooled_taps(taps: list[torch.Tensor]) -> list[torch.Tensor]:
    return [F.normalize(tap.mean(1), dim=-1) for tap in taps]


def test_official_contrastive_logits(hicmae_fixture: dict) -> None:
    fx = hicmae_fixture
    out = fx["outputs"]
    temperature = fx["overrides"]["inter_contrastive_temperature"]
    videos = pooled_taps(out["encoder_video_intermediate"])
    audios = pooled_taps(out["encoder_audio_intermediate"])
    assert len(videos) == len(out["logits_per_video"]) == 2
    for level, (v, a) in enumerate(zip(videos, audios)):
        logits = contrastive_logits(v, a, temperature)
        torch.testing.assert_close(logits, out["logits_per_video"][level], atol=fx["atol"], rtol=fx["rtol"])
        torch.testing.assert_close(logits.T, out["logits_per_audio"][level], atol=fx["atol"], rtol=fx["rtol"])


def test_official_targets_and_losses(hicmae_fixture: dict) -> None:
    fx = hicmae_fixture
    inputs, out = fx["inputs"], fx["outputs"]
    temperature = fx["overrides"]["inter_contrastive_temperature"]
    assert fx["losses"][0]["engine_kwargs_none"] == ["target_diff_weight"]
    assert {entry["label"] for entry in fx["losses"]} == {"official_script", "argparse_default"}
    prediction = types.SimpleNamespace(
        pred_video=out["pred_video"],
        pred_audio=out["pred_audio"],
        video_embeddings=pooled_taps(out["encoder_video_intermediate"]),
        audio_embeddings=pooled_taps(out["encoder_audio_intermediate"]),
    )
    assert isinstance(prediction, AudioVisualPretrainOutputLike)
    for entry in fx["losses"]:
        objective = objective_from_engine(entry["engine_kwargs"], temperature)
        video_targets, audio_targets = objective.targets(
            inputs["video"], inputs["mask"], inputs["audio"], inputs["mask_audio"]
        )
        assert video_targets.shape == out["pred_video"].shape
        assert audio_targets.shape == out["pred_audio"].shape
        if "targets_video" in entry:
            torch.testing.assert_close(video_targets, entry["targets_video"], atol=fx["atol"], rtol=fx["rtol"])
            torch.testing.assert_close(audio_targets, entry["targets_audio"], atol=fx["atol"], rtol=fx["rtol"])
        losses = objective.loss(prediction, video_targets, audio_targets)
        for ours, theirs in [
            ("loss", "loss"),
            ("loss_video", "loss_video"),
            ("loss_audio", "loss_audio"),
            ("loss_contrastive", "loss_hcmcl"),
        ]:
            assert losses[ours].dtype == torch.float32
            torch.testing.assert_close(
                losses[ours], entry[theirs], atol=fx["atol"], rtol=fx["rtol"], msg=f"{entry['label']}: {ours}"
            )


# ----------------------------------------------------------------------------------------------
# Hierarchical contrastive loss
# ----------------------------------------------------------------------------------------------


def reference_level_loss(v: torch.Tensor, a: torch.Tensor, temperature: float) -> float:
    """0.5 * (CE(v->a) + CE(a->v)), written with explicit sums in float64."""
    v64, a64 = v.detach().double(), a.detach().double()
    batch = v64.shape[0]
    sim = [[float(v64[i] @ a64[j]) / temperature for j in range(batch)] for i in range(batch)]
    v2a = sum(math.log(sum(math.exp(sim[i][j]) for j in range(batch))) - sim[i][i] for i in range(batch)) / batch
    a2v = sum(math.log(sum(math.exp(sim[j][i]) for j in range(batch))) - sim[i][i] for i in range(batch)) / batch
    return 0.5 * (v2a + a2v)


def test_hierarchical_loss_is_sum_over_levels() -> None:
    videos = [unit_rows(5, 8, seed=1), unit_rows(5, 6, seed=2), unit_rows(5, 8, seed=3)]
    audios = [unit_rows(5, 8, seed=4), unit_rows(5, 6, seed=5), unit_rows(5, 8, seed=6)]
    temperature = 0.2
    per_level = [reference_level_loss(v, a, temperature) for v, a in zip(videos, audios)]
    got = hierarchical_contrastive_loss(videos, audios, temperature)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(sum(per_level), rel=1e-5)
    # Not the mean over levels.
    assert got.item() != pytest.approx(sum(per_level) / 3, rel=1e-3)
    single = hierarchical_contrastive_loss(videos[1:2], audios[1:2], temperature)
    assert single.item() == pytest.approx(per_level[1], rel=1e-5)


def test_hierarchical_loss_is_symmetric() -> None:
    videos = [unit_rows(4, 8, seed=10), unit_rows(4, 8, seed=11)]
    audios = [unit_rows(4, 8, seed=12), unit_rows(4, 8, seed=13)]
    forward = hierarchical_contrastive_loss(videos, audios, 0.1)
    swapped = hierarchical_contrastive_loss(audios, videos, 0.1)
    torch.testing.assert_close(forward, swapped)


def test_hierarchical_loss_perfect_alignment_is_near_zero() -> None:
    emb = torch.eye(6, 16)  # orthonormal rows
    low = hierarchical_contrastive_loss([emb, emb], [emb.clone(), emb.clone()], 0.01)
    assert low.item() < 1e-6
    misaligned = hierarchical_contrastive_loss([emb], [emb.roll(1, dims=0)], 0.01)
    assert misaligned.item() > 10.0


def test_hierarchical_loss_gradient_flows() -> None:
    raw_v = [randn(4, 8, seed=20).requires_grad_(True), randn(4, 8, seed=21).requires_grad_(True)]
    raw_a = [randn(4, 8, seed=22).requires_grad_(True), randn(4, 8, seed=23).requires_grad_(True)]
    loss = hierarchical_contrastive_loss(
        [F.normalize(x, dim=-1) for x in raw_v], [F.normalize(x, dim=-1) for x in raw_a], 0.07
    )
    loss.backward()
    for tensor in raw_v + raw_a:
        assert tensor.grad is not None
        assert torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() > 0


def test_gather_without_process_group_equals_local() -> None:
    assert not dist.is_initialized()
    videos = [unit_rows(3, 8, seed=30)]
    audios = [unit_rows(3, 8, seed=31)]
    torch.testing.assert_close(
        hierarchical_contrastive_loss(videos, audios, 0.07, gather=True),
        hierarchical_contrastive_loss(videos, audios, 0.07),
    )


def test_hierarchical_loss_errors() -> None:
    v, a = unit_rows(3, 8), unit_rows(3, 8, seed=1)
    with pytest.raises(ValueError, match="at least one level"):
        hierarchical_contrastive_loss([], [], 0.07)
    with pytest.raises(ValueError, match="paired"):
        hierarchical_contrastive_loss([v, v], [a], 0.07)
    with pytest.raises(ValueError, match="same"):
        hierarchical_contrastive_loss([v], [unit_rows(3, 6)], 0.07)
    with pytest.raises(ValueError, match="temperature"):
        hierarchical_contrastive_loss([v], [a], 0.0)
    with pytest.raises(ValueError, match="width"):
        contrastive_logits(v, unit_rows(3, 6), 0.07)


# ----------------------------------------------------------------------------------------------
# Negatives gathered over two real processes (gloo, CPU)
# ----------------------------------------------------------------------------------------------

WORLD = 2
LOCAL_BATCH = 3
WIDTHS = (8, 6)  # two levels of different widths
TEMPERATURE = 0.1


def reference_global_rows(
    videos: list[torch.Tensor], audios: list[torch.Tensor], rows: range, temperature: float
) -> torch.Tensor:
    """Loss of this rank's rows against the whole global batch, from the definition (logsumexp)."""
    total = torch.zeros((), dtype=torch.float64)
    index = torch.tensor(list(rows))
    for v, a in zip(videos, audios):
        v64, a64 = v.double(), a.double()
        v2a = v64[index] @ a64.T / temperature  # (B, W*B)
        a2v = a64[index] @ v64.T / temperature
        pos = (v64[index] * a64[index]).sum(-1) / temperature
        ce_v = (torch.logsumexp(v2a, dim=1) - pos).mean()
        ce_a = (torch.logsumexp(a2v, dim=1) - pos).mean()
        total = total + 0.5 * (ce_v + ce_a)
    return total


def _gather_worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        glob_v = [unit_rows(WORLD * LOCAL_BATCH, d, seed=100 + k) for k, d in enumerate(WIDTHS)]
        glob_a = [unit_rows(WORLD * LOCAL_BATCH, d, seed=200 + k) for k, d in enumerate(WIDTHS)]
        rows = range(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        local_v = [g[rows.start : rows.stop].clone().requires_grad_(True) for g in glob_v]
        local_a = [g[rows.start : rows.stop].clone().requires_grad_(True) for g in glob_a]
        loss = hierarchical_contrastive_loss(local_v, local_a, TEMPERATURE, gather=True)
        loss.backward()
        local_loss = hierarchical_contrastive_loss(
            [x.detach() for x in local_v], [x.detach() for x in local_a], TEMPERATURE
        )

        # Single-process reference over the global batch; only this rank's rows are leaves.
        ref_v_leaf = [g[rows.start : rows.stop].clone().double().requires_grad_(True) for g in glob_v]
        ref_a_leaf = [g[rows.start : rows.stop].clone().double().requires_grad_(True) for g in glob_a]

        def splice(glob: list[torch.Tensor], leaves: list[torch.Tensor]) -> list[torch.Tensor]:
            return [
                torch.cat([g[: rows.start].double(), leaf, g[rows.stop :].double()]) for g, leaf in zip(glob, leaves)
            ]

        reference = reference_global_rows(splice(glob_v, ref_v_leaf), splice(glob_a, ref_a_leaf), rows, TEMPERATURE)
        reference.backward()

        # Unequal batch sizes across processes must fail clearly (symmetrically, so no hang).
        size = LOCAL_BATCH if rank == 0 else LOCAL_BATCH - 1
        try:
            hierarchical_contrastive_loss([unit_rows(size, 4)], [unit_rows(size, 4, seed=1)], 0.1, gather=True)
            unequal_error = ""
        except ValueError as err:
            unequal_error = str(err)

        torch.save(
            {
                "loss": loss.detach(),
                "local_loss": local_loss,
                "reference": reference.detach(),
                "grads_v": [x.grad for x in local_v],
                "grads_a": [x.grad for x in local_a],
                "ref_grads_v": [x.grad for x in ref_v_leaf],
                "ref_grads_a": [x.grad for x in ref_a_leaf],
                "unequal_error": unequal_error,
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_gathered_negatives_two_processes(tmp_path: Path) -> None:
    mp.spawn(_gather_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        res = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert res["loss"].item() == pytest.approx(res["reference"].item(), rel=1e-5, abs=1e-6)
        # The global negatives change the loss compared with the local batch.
        assert abs(res["loss"].item() - res["local_loss"].item()) > 1e-3
        for got, expected in zip(res["grads_v"] + res["grads_a"], res["ref_grads_v"] + res["ref_grads_a"]):
            assert got is not None and got.abs().sum() > 0
            torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-4)
        assert "same (B, D) on every process" in res["unequal_error"]


# ----------------------------------------------------------------------------------------------
# Objective and task
# ----------------------------------------------------------------------------------------------


def small_objective(**kwargs: object) -> AudioVisualReconstructionObjective:
    settings: dict[str, object] = {"audio_patch_size": 2, **kwargs}
    return AudioVisualReconstructionObjective(
        VideoReconstructionObjective(patch_size=4, frame_diff_group_size=2), **settings  # type: ignore[arg-type]
    )


def test_objective_defaults_and_validation() -> None:
    objective = AudioVisualReconstructionObjective(VideoReconstructionObjective(patch_size=16))
    assert objective.audio_patch_size == 16
    assert objective.normalize_audio_target is True
    assert objective.contrastive_weight == 0.0025
    assert objective.temperature == 0.07
    assert objective.gather_negatives is False
    assert objective.audio_target_dim == 256
    with pytest.raises(ValueError, match="VideoReconstructionObjective"):
        AudioVisualReconstructionObjective(video=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="audio_patch_size"):
        small_objective(audio_patch_size=0)
    with pytest.raises(ValueError, match="contrastive_weight"):
        small_objective(contrastive_weight=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        small_objective(temperature=0.0)


def test_objective_targets_and_mask_errors() -> None:
    objective = small_objective()
    video = randn(2, 3, 4, 8, 8, seed=1)
    audio = randn(2, 1, 8, 4, seed=2)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, ::2] = True
    mask_audio = torch.zeros(2, 8, dtype=torch.bool)
    mask_audio[0, [1, 6]] = True
    mask_audio[1, [0, 3]] = True
    video_targets, audio_targets = objective.targets(video, mask, audio, mask_audio)
    assert video_targets.shape == (2, 4, 2 * 16 * 3)
    assert audio_targets.shape == (2, 2, 4)
    reference = reference_spectrogram_targets(audio, 2, normalize=True)
    torch.testing.assert_close(audio_targets[0].double(), reference[0, [1, 6]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(audio_targets[1].double(), reference[1, [0, 3]], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="mask_audio"):
        objective.targets(video, mask, audio, torch.zeros(2, 7, dtype=torch.bool))


class TinyAudioVisualModel(nn.Module):
    """Predicts masked tokens and pooled embeddings with a few linear maps (enough to train)."""

    def __init__(self, video_dim: int, audio_dim: int, width: int = 8) -> None:
        super().__init__()
        self.video_head = nn.Linear(3, video_dim)
        self.audio_head = nn.Linear(1, audio_dim)
        self.video_proj = nn.ModuleList([nn.Linear(3, width) for _ in range(2)])
        self.audio_proj = nn.ModuleList([nn.Linear(1, width) for _ in range(2)])

    def forward(
        self, video: torch.Tensor, mask: torch.Tensor, audio: torch.Tensor, mask_audio: torch.Tensor
    ) -> types.SimpleNamespace:
        batch = video.shape[0]
        v_feat = video.mean(dim=(2, 3, 4))  # (B, 3)
        a_feat = audio.mean(dim=(2, 3))  # (B, 1)
        n_video = int(mask[0].sum())
        n_audio = int(mask_audio[0].sum())
        return types.SimpleNamespace(
            pred_video=self.video_head(v_feat)[:, None].expand(batch, n_video, -1),
            pred_audio=self.audio_head(a_feat)[:, None].expand(batch, n_audio, -1),
            video_embeddings=[F.normalize(proj(v_feat), dim=-1) for proj in self.video_proj],
            audio_embeddings=[F.normalize(proj(a_feat), dim=-1) for proj in self.audio_proj],
        )


def make_batch() -> dict[str, torch.Tensor]:
    mask = torch.zeros(3, 8, dtype=torch.bool)
    mask[:, 1::2] = True
    mask_audio = torch.zeros(3, 8, dtype=torch.bool)
    mask_audio[:, :6] = True
    return {
        "video": randn(3, 3, 4, 8, 8, seed=7),
        "mask": mask,
        "audio": randn(3, 1, 8, 4, seed=8),
        "mask_audio": mask_audio,
    }


def test_task_returns_attached_loss_and_detached_components() -> None:
    torch.manual_seed(0)
    objective = small_objective(contrastive_weight=0.5, temperature=0.2)
    model = TinyAudioVisualModel(video_dim=96, audio_dim=4)
    task = MaskedAudioVisualPretrainTask(model, objective)
    assert isinstance(task, Task)
    batch = make_batch()
    out = task(batch)
    assert set(out) == {"loss", "loss_video", "loss_audio", "loss_contrastive"}
    assert out["loss"].requires_grad
    for key in ("loss_video", "loss_audio", "loss_contrastive"):
        assert not out[key].requires_grad
        assert out[key].dtype == torch.float32
    expected = out["loss_video"] + out["loss_audio"] + 0.5 * out["loss_contrastive"]
    torch.testing.assert_close(out["loss"].detach(), expected)
    # The components against targets/embeddings computed here independently.
    with torch.no_grad():
        pred = model(batch["video"], batch["mask"], batch["audio"], batch["mask_audio"])
        audio_ref = reference_spectrogram_targets(batch["audio"], 2, normalize=True)
        audio_ref = audio_ref[batch["mask_audio"]].reshape(3, 6, 4)
        assert out["loss_audio"].item() == pytest.approx(
            ((pred.pred_audio.double() - audio_ref) ** 2).mean().item(), rel=1e-5
        )
        contrastive = sum(
            reference_level_loss(v, a, 0.2) for v, a in zip(pred.video_embeddings, pred.audio_embeddings)
        )
        assert out["loss_contrastive"].item() == pytest.approx(contrastive, rel=1e-5)
    out["loss"].backward()
    for param in model.parameters():
        assert param.grad is not None


def test_task_loss_decreases_with_sgd() -> None:
    torch.manual_seed(0)
    model = TinyAudioVisualModel(video_dim=96, audio_dim=4)
    task = MaskedAudioVisualPretrainTask(model, small_objective(contrastive_weight=0.1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = make_batch()
    first = task(batch)["loss"].item()
    for _ in range(20):
        optimizer.zero_grad()
        task(batch)["loss"].backward()
        optimizer.step()
    assert task(batch)["loss"].item() < first


def test_target_diff_weight_components_are_reported() -> None:
    objective = AudioVisualReconstructionObjective(
        VideoReconstructionObjective(patch_size=4, frame_diff_group_size=2, target_diff_weight=0.75),
        audio_patch_size=2,
    )
    task = MaskedAudioVisualPretrainTask(TinyAudioVisualModel(96, 4), objective)
    out = task(make_batch())
    assert {"loss_video_org", "loss_video_diff"} <= set(out)
    torch.testing.assert_close(out["loss_video"], 0.25 * out["loss_video_org"] + 0.75 * out["loss_video_diff"])


def test_task_errors() -> None:
    objective = small_objective()
    wrong_objective = VideoReconstructionObjective(patch_size=4)
    with pytest.raises(ValueError, match="AudioVisualReconstructionObjective"):
        MaskedAudioVisualPretrainTask(TinyAudioVisualModel(96, 4), wrong_objective)  # type: ignore[arg-type]
    task = MaskedAudioVisualPretrainTask(TinyAudioVisualModel(96, 4), objective)
    batch = make_batch()
    del batch["mask_audio"]
    with pytest.raises(ValueError, match="mask_audio"):
        task(batch)

    class NoEmbeddings(nn.Module):
        def forward(self, *args: torch.Tensor) -> types.SimpleNamespace:
            return types.SimpleNamespace(pred_video=torch.zeros(3, 4, 96), pred_audio=torch.zeros(3, 6, 4))

    with pytest.raises(ValueError, match="video_embeddings"):
        MaskedAudioVisualPretrainTask(NoEmbeddings(), objective)(make_batch())

    class WrongAudio(TinyAudioVisualModel):
        def forward(self, *args: torch.Tensor) -> types.SimpleNamespace:
            out = super().forward(*args)
            out.pred_audio = out.pred_audio[:, :-1]
            return out

    with pytest.raises(ValueError, match="pred_audio"):
        MaskedAudioVisualPretrainTask(WrongAudio(96, 4), objective)(make_batch())
