"""Check maedfer against golden outputs recorded from the official MAE-DFER / SVFAP / HiCMAE code.

Each fixture file (format: ``tests/fixtures/official/README.md``) names an official model and its constructor
arguments, stores the official state dict, inputs and outputs. :func:`check_fixture` rebuilds the model through the
public API (:func:`maedfer.create_model`, :func:`maedfer.load_checkpoint`), runs the call the fixture describes and
compares every stored tensor with the fixture's ``atol`` / ``rtol``. ``tools/check_parity.py`` is the command line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..registry import OFFICIAL_BEHAVIOUR, create_model

__all__ = [
    "ParityResult",
    "check_fixture",
    "collect_fixture_files",
    "SUPPORTED",
]

logger = logging.getLogger(__name__)



class ParityFailure(AssertionError):
    """A fixture comparison failed; the message says what differed."""


@dataclass
class ParityResult:
    """Outcome of one fixture.

    Attributes:
        file: Fixture path.
        passed: Whether every comparison held.
        max_abs_err: Largest absolute difference over every compared float tensor.
        reason: Why it failed (empty when passed).
        checked: Names of the compared quantities.
    """

    file: Path
    passed: bool
    max_abs_err: float = 0.0
    reason: str = ""
    checked: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The one-line report printed by ``tools/check_parity.py``."""
        if self.passed:
            return f"PASS {self.file} max_abs_err={self.max_abs_err:.3g}"
        return f"FAIL {self.file} {self.reason}"


class _Comparer:
    """Accumulates tensor comparisons with the fixture's tolerances."""

    def __init__(self, atol: float, rtol: float) -> None:
        self.atol = atol
        self.rtol = rtol
        self.max_abs_err = 0.0
        self.checked: list[str] = []

    def close(self, name: str, actual: torch.Tensor, expected: torch.Tensor) -> None:
        actual = actual.detach().to("cpu")
        if actual.shape != expected.shape:
            raise ParityFailure(f"{name}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
        if expected.dtype in (torch.bool, torch.int64, torch.int32):
            if not torch.equal(actual.to(expected.dtype), expected):
                raise ParityFailure(f"{name}: values differ")
        else:
            err = (actual.float() - expected.float()).abs().max().item() if expected.numel() else 0.0
            self.max_abs_err = max(self.max_abs_err, err)
            try:
                torch.testing.assert_close(actual.float(), expected.float(), atol=self.atol, rtol=self.rtol)
            except AssertionError:
                raise ParityFailure(
                    f"{name}: max_abs_err={err:.3g} exceeds atol={self.atol:g} / rtol={self.rtol:g}"
                ) from None
        self.checked.append(name)

    def equal(self, name: str, actual: Any, expected: Any) -> None:
        if actual != expected:
            raise ParityFailure(f"{name}: {actual!r} != expected {expected!r}")
        self.checked.append(name)


def _load_strict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    from ..checkpoint import load_checkpoint

    load_checkpoint(model, state_dict, strict=True)


def _check_finetune(fx: dict[str, Any], cmp: _Comparer) -> None:
    model = create_model(fx["official_name"], **fx["overrides"]).eval()
    _load_strict(model, fx["state_dict"])
    _compare_classifier_outputs(model, fx, cmp)


def _run_classifier(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        features = model.forward_features(*inputs.values())
        return model.forward_head(features), features


def _compare_classifier_outputs(model: torch.nn.Module, fx: dict[str, Any], cmp: _Comparer) -> None:
    logits, features = _run_classifier(model, fx["inputs"])
    cmp.close("features", features, fx["outputs"]["features"])
    cmp.close("logits", logits, fx["outputs"]["logits"])


def _official_pretrain_model(fx: dict[str, Any]) -> torch.nn.Module:
    flags = OFFICIAL_BEHAVIOUR.get(fx["system"], {})
    model = create_model(fx["official_name"], **fx["overrides"], **flags).eval()
    _load_strict(model, fx["state_dict"])
    return model


def _video_objective(engine_kwargs: dict[str, Any]):
    from ..tasks.pretrain import VideoReconstructionObjective

    return VideoReconstructionObjective(
        patch_size=int(engine_kwargs["patch_size"]),
        normalize_target=bool(engine_kwargs.get("normlize_target", True)),
        frame_diff_group_size=(
            int(engine_kwargs.get("frame_diff_group_size", 2)) if engine_kwargs.get("use_frame_diff_as_target") else None
        ),
        target_diff_weight=engine_kwargs.get("target_diff_weight"),
    )


def _check_video_pretrain(fx: dict[str, Any], cmp: _Comparer) -> None:
    model = _official_pretrain_model(fx)
    video, mask = fx["inputs"]["video"], fx["inputs"]["mask"]
    with torch.no_grad():
        pred = model(video, mask)
        encoded = model.encoder.forward_encoder(video, mask)
    cmp.close("pred", pred, fx["outputs"]["pred"])
    cmp.close("encoder", encoded.tokens, fx["outputs"]["encoder"])
    for entry in fx["losses"]:
        objective = _video_objective(entry["engine_kwargs"])
        targets = objective.targets(video, mask)
        if "targets" in entry:
            cmp.close(f"{entry['label']}.targets", targets, entry["targets"])
        losses = objective.loss(pred, targets)
        for key in ("loss", "loss_org", "loss_diff"):
            if key in entry:
                cmp.close(f"{entry['label']}.{key}", losses[key], entry[key])


def _check_audio_visual_pretrain(fx: dict[str, Any], cmp: _Comparer) -> None:
    from ..tasks.pretrain import AudioVisualReconstructionObjective

    model = _official_pretrain_model(fx)
    inputs, outputs = fx["inputs"], fx["outputs"]
    video, mask, audio, mask_audio = inputs["video"], inputs["mask"], inputs["audio"], inputs["mask_audio"]
    with torch.no_grad():
        out = model(video, mask, audio, mask_audio)
        video_enc, audio_enc = model.forward_encoders(video, mask, audio, mask_audio)
        fusion_video, fusion_audio = model.encoder_fusion(video_enc.output.tokens, audio_enc.output.tokens)
    cmp.close("pred_video", out.pred_video, outputs["pred_video"])
    cmp.close("pred_audio", out.pred_audio, outputs["pred_audio"])
    for name, ours, theirs in (
        ("logits_per_video", out.logits_per_video, outputs["logits_per_video"]),
        ("logits_per_audio", out.logits_per_audio, outputs["logits_per_audio"]),
        ("encoder_video_intermediate", video_enc.tokens, outputs["encoder_video_intermediate"]),
        ("encoder_audio_intermediate", audio_enc.tokens, outputs["encoder_audio_intermediate"]),
    ):
        cmp.equal(f"{name}.levels", len(ours), len(theirs))
        for level, (a, b) in enumerate(zip(ours, theirs)):
            cmp.close(f"{name}[{level}]", a, b)
    cmp.close("encoder_video", video_enc.output.tokens, outputs["encoder_video"])
    cmp.close("encoder_audio", audio_enc.output.tokens, outputs["encoder_audio"])
    cmp.close("fusion_video", fusion_video, outputs["fusion_video"])
    cmp.close("fusion_audio", fusion_audio, outputs["fusion_audio"])
    for entry in fx["losses"]:
        kwargs = entry["engine_kwargs"]
        objective = AudioVisualReconstructionObjective(
            video=_video_objective(kwargs),
            audio_patch_size=int(kwargs["patch_size_audio"]),
            normalize_audio_target=bool(kwargs.get("normlize_target_audio", True)),
            contrastive_weight=float(kwargs["loss_weight"]),
            temperature=model.temperature,
        )
        video_targets, audio_targets = objective.targets(video, mask, audio, mask_audio)
        if "targets_video" in entry:
            cmp.close(f"{entry['label']}.targets_video", video_targets, entry["targets_video"])
            cmp.close(f"{entry['label']}.targets_audio", audio_targets, entry["targets_audio"])
        losses = objective.loss(out, video_targets, audio_targets)
        for ours, theirs in (("loss", "loss"), ("loss_video", "loss_video"), ("loss_audio", "loss_audio"),
                             ("loss_contrastive", "loss_hcmcl")):
            if theirs in entry:
                cmp.close(f"{entry['label']}.{theirs}", losses[ours], entry[theirs])


def _check_audio_fbank(fx: dict[str, Any], cmp: _Comparer) -> None:
    from ..audio import FbankConfig, num_fbank_frames, wav_to_fbank

    params = fx["params"]
    config = FbankConfig(
        sample_rate=int(params["sample_rate"]),
        num_mel_bins=int(params["num_mel_bins"]),
        target_length=int(params["target_length"]),
        mean=float(params["mean"]),
        std=float(params["std"]),
        freq_mask=int(params.get("freqm", 0)),
        time_mask=int(params.get("timem", 0)),
    )
    waveform = fx["inputs"]["waveform"]
    for index, case in enumerate(fx["cases"]):
        start, end = int(case["audio_start_idx"]), int(case["audio_end_idx"])
        name = f"cases[{index}]({case['name']})"
        cmp.equal(f"{name}.frames", num_fbank_frames(end - start, config.sample_rate), case["num_fbank_frames_before_pad_or_cut"])
        fbank = wav_to_fbank(waveform[:, start:end], config, gain=float(case.get("gain", 1.0)))
        cmp.close(f"{name}.fbank", fbank, case["fbank"])


def _check_pretrain_to_finetune(fx: dict[str, Any], cmp: _Comparer) -> None:
    from ..checkpoint import load_checkpoint

    model = create_model(fx["official_name"], **fx["overrides"]).eval()
    report = load_checkpoint(model, fx["checkpoint"])
    cmp.equal("model_key_used", report.model_key_used, fx["model_key_used"])
    cmp.equal("removed_head_keys", sorted(report.removed_head_keys), sorted(fx["removed_head_keys"]))
    cmp.equal("missing_keys", sorted(report.missing_keys), sorted(fx["missing_keys"]))
    cmp.equal("unexpected_keys", sorted(report.unexpected_keys), sorted(fx["unexpected_keys"]))
    # Features depend only on the checkpoint and deterministic initialisation (fc_norm = 1/0).
    _, features = _run_classifier(model, fx["inputs"])
    cmp.close("features", features, fx["outputs"]["features"])
    model.load_state_dict(fx["finetune_init_state"], strict=False)
    _compare_classifier_outputs(model, fx, cmp)


def _mask_statistics(masks: torch.Tensor, gen_fx: dict[str, Any]) -> dict[str, list[int] | bool]:
    """Statistics of a batch of flat masks ``(n, N)`` in the vocabulary of the fixture."""
    args = gen_fx["args"]
    stats: dict[str, list[int] | bool] = {"num_masked_per_sample": sorted(set(masks.sum(1).tolist()))}
    if gen_fx["class"] in ("TubeMaskingGenerator", "TubeWindowMaskingGenerator"):
        frames, height, width = args["input_size"]
        grid = masks.reshape(masks.shape[0], frames, height, width)
        stats["tube"] = bool((grid == grid[:, :1]).all())
        stats["num_masked_per_frame"] = sorted(set(grid.sum((2, 3)).flatten().tolist()))
        if "win_size" in args:
            win_h, win_w = args["win_size"]
            windows = grid.reshape(masks.shape[0], frames, height // win_h, win_h, width // win_w, win_w)
            stats["num_masked_per_window"] = sorted(set(windows.sum((3, 5)).flatten().tolist()))
    return stats


def _check_mask_generators(fx: dict[str, Any], cmp: _Comparer) -> None:
    from ..masking import PartWindowMaskGenerator, RandomMaskGenerator, TubeMaskGenerator

    generator = torch.Generator().manual_seed(int(fx.get("seed", 0)))
    for index, gen_fx in enumerate(fx["generators"]):
        args = gen_fx["args"]
        name = f"generators[{index}]({gen_fx['class']})"
        if gen_fx["class"] == "TubeMaskingGenerator":
            ours = TubeMaskGenerator(tuple(args["input_size"]), args["mask_ratio"])
        elif gen_fx["class"] == "TubeWindowMaskingGenerator":
            ours = PartWindowMaskGenerator(tuple(args["input_size"]), args["mask_ratio"], tuple(args["win_size"]))
        elif gen_fx["class"] == "RandomMaskingGenerator2D":
            ours = RandomMaskGenerator(tuple(args["input_size"]), args["mask_ratio"])
        else:
            raise ParityFailure(f"{name}: unsupported generator class")
        masks = ours.batch(64, generator=generator)
        cmp.equal(f"{name}.shape", list(masks.shape[1:]), list(gen_fx["output_shape"]))
        cmp.equal(f"{name}.dtype", masks.dtype, torch.bool)
        expected = _mask_statistics(gen_fx["examples"], gen_fx)
        expected_keys = {"num_masked_per_sample", "tube", "num_masked_per_frame", "num_masked_per_window"}
        for key in expected_keys & set(gen_fx):
            want = gen_fx[key]
            cmp.equal(f"{name}.{key} (official examples)", expected[key], sorted(set(want)) if isinstance(want, list) else want)
        actual = _mask_statistics(masks, gen_fx)
        for key, value in expected.items():
            cmp.equal(f"{name}.{key}", actual[key], value)
        # Random masks must actually vary between samples.
        if len({tuple(m.nonzero().flatten().tolist()) for m in masks}) < 2:
            raise ParityFailure(f"{name}: 64 draws gave one mask")


_Checker = Callable[[dict[str, Any], _Comparer], None]

SUPPORTED: dict[tuple[str, str], _Checker] = {
    ("mae_dfer", "finetune"): _check_finetune,
    ("mae_dfer", "pretrain"): _check_video_pretrain,
    ("mae_dfer", "pretrain_to_finetune"): _check_pretrain_to_finetune,
    ("mae_dfer", "mask_generator"): _check_mask_generators,
    ("svfap", "finetune"): _check_finetune,
    ("svfap", "pretrain"): _check_video_pretrain,
    ("svfap", "pretrain_to_finetune"): _check_pretrain_to_finetune,
    ("hicmae", "finetune"): _check_finetune,
    ("hicmae", "pretrain"): _check_audio_visual_pretrain,
    ("hicmae", "pretrain_to_finetune"): _check_pretrain_to_finetune,
    ("hicmae", "audio_fbank"): _check_audio_fbank,
}


def read_fixture_header(path: Path) -> dict[str, Any]:
    """Load a fixture file (``weights_only=True``)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def collect_fixture_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders into the sorted list of ``*.pt`` fixture files."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.glob("*.pt")))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no fixture file or folder at {path}")
    return files


def check_fixture(path: str | Path, fixture: dict[str, Any] | None = None) -> ParityResult:
    """Run one fixture and compare every stored output.

    Args:
        path: The fixture file.
        fixture: Already loaded content (to avoid loading twice).

    Returns:
        A :class:`ParityResult`; unsupported system/kind combinations fail with a reason.
    """
    path = Path(path)
    try:
        fx = fixture if fixture is not None else read_fixture_header(path)
        key = (fx.get("system"), fx.get("kind"))
        checker = SUPPORTED.get(key)  # type: ignore[arg-type]
        if checker is None:
            return ParityResult(path, False, reason=f"unsupported system/kind {key[0]}/{key[1]}")
        cmp = _Comparer(float(fx.get("atol", 1e-5)), float(fx.get("rtol", 1e-4)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(fx.get("seed", 0)))
            checker(fx, cmp)
    except ParityFailure as err:
        return ParityResult(path, False, reason=str(err))
    except Exception as err:  # a crash is a failure of that fixture, reported on its line
        logger.debug("fixture %s raised", path, exc_info=True)
        return ParityResult(path, False, reason=f"{type(err).__name__}: {err}")
    return ParityResult(path, True, max_abs_err=cmp.max_abs_err, checked=cmp.checked)


# Kinds of the data-pipeline fixtures (``tests/fixtures/official_data``); their system is "data".
DATA_KINDS = {"inputs", "frame_resize", "finetune_dataset", "av_dataset", "pretrain_dataset"}


def fixture_system(fx: dict[str, Any]) -> str | None:
    """``"data"`` for data-pipeline fixtures, else the fixture's ``system``."""
    return "data" if fx.get("kind") in DATA_KINDS else fx.get("system")


def check_data_fixture_groups(path: Path, fx: dict[str, Any]) -> list[ParityResult]:
    """One :class:`ParityResult` per record group of a data-pipeline fixture (named ``<file>:<group>``)."""
    from .data import check_data_fixture

    try:
        groups = check_data_fixture(path, fixture=fx)
    except Exception as err:  # a crash fails the whole file, reported on its line
        logger.debug("data fixture %s raised", path, exc_info=True)
        return [ParityResult(path, False, reason=f"{type(err).__name__}: {err}")]
    return [
        ParityResult(Path(f"{path}:{name}"), bool(ok), max_abs_err=float(err or 0.0), reason=reason)
        for name, ok, err, reason in groups
    ]


def run_parity(paths: Sequence[str | Path], systems: Sequence[str] | None = None) -> list[ParityResult]:
    """Check every fixture under ``paths`` whose system is in ``systems`` (all when ``None``).

    Model fixtures give one result per file; data-pipeline fixtures (system ``"data"``) one per record group.
    """
    results = []
    for path in collect_fixture_files(paths):
        fx = read_fixture_header(path)
        system = fixture_system(fx)
        if systems is not None and system not in systems:
            continue
        if system == "data":
            results.extend(check_data_fixture_groups(path, fx))
        else:
            results.append(check_fixture(path, fx))
    return results
