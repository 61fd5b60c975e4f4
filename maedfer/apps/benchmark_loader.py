"""Data-loader throughput per item: the official dataset code vs maedfer's exact and fast pipelines, side by side.

    maedfer benchmark-loader                                    # maedfer only (exact vs fast)
    maedfer benchmark-loader --official-root DIR                # + the official dataset classes
    maedfer benchmark-loader --official-root DIR --workers 1 2  # + DataLoader scaling of the fast pipeline

Cases (the recipes of the papers, on generated files: 256-px JPEG frame folders, 224-px H.264 mp4 with a key frame
every 25 frames, 16 kHz wav):

* ``dfew_train``: 16 frames at stride 4, resize 160, RandAugment m7 n4, random resized crop, flip, erasing 0.25;
* ``dfew_test``: one test view (16 frames, stride rule, resize 160, normalise);
* ``voxceleb2_pretrain``: mp4, 16 frames at stride 4, multi-scale crop 160, tube mask 0.9;
* ``cremad_av_train``: frames as ``dfew_train`` plus the wav cut -> 128-bin fbank with the random gain.

``--official-root`` is a folder holding checkouts of MAE-DFER and HiCMAE; their dataset classes are imported from
there at run time. Every variant reads the same files. Each column (official, exact, fast) lives in its own process
with one torch thread, as one DataLoader worker does; the processes take turns pass after pass (one runs at a time,
so machine drift hits all alike) and the median over ``--repeats`` passes is reported. maedfer's processes keep freed
memory as its loader workers do (:mod:`maedfer.data.allocator`, ``data.retain_freed_memory``); the official one runs
with the C library's defaults, as the official loader does, unless ``--official-retains-memory`` gives it the same
setting (then only the pipelines differ).
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import torch

from maedfer.apps.profiling import device_description
from maedfer.data.allocator import loader_worker_init, retain_freed_memory
from maedfer.data.augment import FinetuneTrainTransform
from maedfer.data.fast_pipeline import FastFinetuneTrainTransform
from maedfer.data.pretrain_datasets import MaskSpec, PretrainClipDataset
from maedfer.synthetic import make_synthetic_world
from maedfer.data.video_datasets import AudioConfig, VideoClipDataset

logger = logging.getLogger("benchmark_loader")

AUDIOSET_STATS = (-4.2677393, 4.5689974)
CASES = ("dfew_train", "dfew_test", "voxceleb2_pretrain", "cremad_av_train")


def import_official(root: Path, repo: str, module: str) -> ModuleType:
    """Import ``root/repo/module.py`` under a private name; its plain-named siblings are dropped afterwards so that
    another repository's modules of the same names can be imported next."""
    folder = root / repo
    path = folder / f"{module}.py"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found: --official-root must hold checkouts of MAE-DFER and HiCMAE")
    _numpy_shims()
    before = set(sys.modules)
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(f"_official_{repo.replace('-', '_')}_{module}", path)
        loaded = importlib.util.module_from_spec(spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec.loader.exec_module(loaded)
    except ModuleNotFoundError as error:
        from .benchmark_official import official_dependency_message

        raise SystemExit(official_dependency_message(error, path)) from None
    finally:
        sys.path.remove(str(folder))
        for name in set(sys.modules) - before:
            source = getattr(sys.modules[name], "__file__", None) or ""
            if source.startswith(str(folder)):
                del sys.modules[name]
    return loaded


def _numpy_shims() -> None:
    """What the official code imports but this environment may lack: ``numpy.lib.function_base.disp`` (NumPy < 2)
    and ``pandas.read_csv`` (used only on space-separated annotation files without header: a stand-in that splits
    the lines gives the same ``.values``)."""
    try:
        import numpy.lib.function_base  # noqa: F401
    except ImportError:
        shim = ModuleType("numpy.lib.function_base")
        shim.disp = print  # type: ignore[attr-defined]
        sys.modules["numpy.lib.function_base"] = shim
    try:
        import pandas  # noqa: F401
    except ImportError:
        logger.info("pandas is not installed; the official annotation reader gets a line-splitting stand-in")

        def read_csv(path: str, header: None = None, delimiter: str = " ") -> SimpleNamespace:
            rows = [line.split(delimiter) for line in Path(path).read_text().splitlines() if line.strip()]
            values = np.array([[int(v) if v.lstrip("-").isdigit() else v for v in row] for row in rows], dtype=object)
            return SimpleNamespace(values=values)

        stand_in = ModuleType("pandas")
        stand_in.__spec__ = importlib.machinery.ModuleSpec("pandas", None)
        stand_in.read_csv = read_csv  # type: ignore[attr-defined]
        sys.modules["pandas"] = stand_in


def _torchaudio_load_stand_in(module: ModuleType) -> None:
    """torchaudio >= 2.9 reads files only through torchcodec (which needs FFmpeg's shared libraries); when that fails,
    the official code's ``torchaudio.load`` of a wav is replaced by maedfer's ``read_wav``, which returns the same
    samples (int16 / 32768, float32)."""
    audio = getattr(module, "torchaudio", None)
    if audio is None:
        return
    try:
        import torchcodec.decoders  # noqa: F401
    except (ImportError, RuntimeError, OSError):
        from maedfer.data.readers import read_wav

        logger.info("torchaudio.load cannot read files here (no torchcodec); the official code uses read_wav")

        def load(path: str, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, int]:
            samples, rate = read_wav(path)
            return torch.from_numpy(samples), rate

        audio.load = load


def official_variants(root: Path, files: dict[str, Path]) -> dict[str, Callable[[int], Any]]:
    """``case -> item loader`` for the official dataset classes."""
    args = SimpleNamespace(
        aa="rand-m7-n4-mstd0.5-inc1", train_interpolation="bicubic", reprob=0.25, remode="pixel", recount=1,
        num_sample=1, data_set="DFEW", input_size=160, roll_mag_aug=True, mask_type="tube", window_size=(8, 10, 10),
        mask_ratio=0.9, no_augmentation=False,
    )
    common = dict(data_path="/", clip_len=16, frame_sample_rate=4, num_segment=1, test_num_segment=2,
                  test_num_crop=2, keep_aspect_ratio=True, crop_size=160, short_side_size=160, args=args)
    kinetics = import_official(root, "MAE-DFER", "kinetics")
    out: dict[str, Callable[[int], Any]] = {}
    out["dfew_train"] = kinetics.VideoClsDatasetFrame(files["frames_train"], mode="train", num_crop=1, **common)
    out["dfew_test"] = kinetics.VideoClsDatasetFrame(files["frames_test"], mode="test", num_crop=3, **common)
    datasets = import_official(root, "MAE-DFER", "datasets")
    out["voxceleb2_pretrain"] = datasets.VideoMAE(
        root=None, setting=str(files["pretrain"]), video_ext="mp4", is_color=True, modality="rgb", new_length=16,
        new_step=4, transform=datasets.DataAugmentationForVideoMAE(args), temporal_jitter=False, video_loader=True,
        use_decord=True, lazy_init=False,
    )
    conf = {"num_mel_bins": 128, "target_length": 256, "freqm": 0, "timem": 0, "mean": AUDIOSET_STATS[0],
            "std": AUDIOSET_STATS[1], "noise": False}
    args.audio_conf = {"train": conf, "validation": conf, "test": conf}
    kinetics_av = import_official(root, "HiCMAE", "kinetics_av")
    _torchaudio_load_stand_in(kinetics_av)
    out["cremad_av_train"] = kinetics_av.VideoClsDatasetFrame(files["av_train"], mode="train", num_crop=1, **common)
    return {name: _cycling(dataset) for name, dataset in out.items()}


def maedfer_variants(files: dict[str, Path], pipeline: str) -> dict[str, Callable[[int], Any]]:
    """``case -> item loader`` for maedfer with ``data.pipeline`` = ``pipeline``."""
    transform = FastFinetuneTrainTransform() if pipeline == "fast" else FinetuneTrainTransform()
    common = dict(num_frames=16, sampling_rate=4, input_size=160, short_side_size=160, pipeline=pipeline)
    audio = AudioConfig(random_gain=True)
    datasets: dict[str, Any] = {
        "dfew_train": VideoClipDataset(files["frames_train"], "train", train_transform=transform, **common),
        "dfew_test": VideoClipDataset(files["frames_test"], "test", **common),
        "voxceleb2_pretrain": PretrainClipDataset(
            [line.split()[0] for line in files["pretrain"].read_text().splitlines() if line.strip()],
            mask=MaskSpec(kind="tube", ratio=0.9), pipeline=pipeline,
        ),
        "cremad_av_train": VideoClipDataset(files["av_train"], "train", train_transform=transform, audio=audio,
                                            **common),
    }
    return {name: _cycling(dataset) for name, dataset in datasets.items()}


def _cycling(dataset: Any) -> Callable[[int], Any]:
    """Item ``i % len(dataset)``."""
    return lambda index: dataset[index % len(dataset)]


def make_files(world: Path | None) -> dict[str, Path]:
    """Generate (or reuse) the benchmark files: 256-px frame folders and wavs, 224-px mp4s."""
    if world is None:
        world = Path(tempfile.mkdtemp(prefix="maedfer_loader_"))
    big, video = world / "frames256", world / "video224"
    for root, size in ((big, 256), (video, 224)):
        if not (root / "info.json").is_file():
            logger.info("generating a %d-px synthetic world in %s", size, root)
            make_synthetic_world(root, num_identities=3, clips_per_class=1, num_frames=80, size=size, preview=False)
    return {
        "frames_train": big / "classification" / "train.csv",
        "frames_test": big / "classification" / "test.csv",
        "av_train": big / "audio_visual" / "train.csv",
        "pretrain": video / "pretrain" / "train.csv",
    }


def _column_process(connection: Any, column: str, official_root: Path | None, files: dict[str, Path],
                    retain: bool) -> None:
    """One column's loaders in this process: answers ``(case, items, seed)`` with ms per item, ``None`` ends it."""
    torch.set_num_threads(1)
    if retain:
        retain_freed_memory()
    if column == "official":
        assert official_root is not None
        variants = official_variants(official_root, files)
    else:
        variants = maedfer_variants(files, "fast" if column == "fast" else "official")
    connection.send("ready")
    while (request := connection.recv()) is not None:
        case, items, seed = request
        np.random.seed(seed)  # the official classes draw from the global generators
        start = time.perf_counter()
        for index in range(items):
            variants[case](index)
        connection.send((time.perf_counter() - start) * 1000 / items)


class ColumnProcesses:
    """The columns' processes; :meth:`time_case` lets them take turns on one case."""

    def __init__(self, columns: list[str], official_root: Path | None, files: dict[str, Path],
                 official_retains_memory: bool) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.connections: dict[str, Any] = {}
        self.processes = []
        for column in columns:
            parent, child = context.Pipe()
            retain = column != "official" or official_retains_memory
            process = context.Process(target=_column_process, args=(child, column, official_root, files, retain),
                                      daemon=True)
            process.start()
            self.connections[column] = parent
            self.processes.append(process)
        for column, connection in self.connections.items():
            if connection.recv() != "ready":
                raise RuntimeError(f"the {column} process did not start")

    def time_case(self, case: str, items: int, repeats: int) -> dict[str, float]:
        """Median ms per item of each column on ``case``, the columns taking turns pass after pass."""
        samples: dict[str, list[float]] = {column: [] for column in self.connections}
        for repeat in range(-1, repeats):  # pass -1 warms up (first opens, imports)
            for column, connection in self.connections.items():
                connection.send((case, items if repeat >= 0 else 1, max(repeat, 0)))
                elapsed = connection.recv()
                if repeat >= 0:
                    samples[column].append(elapsed)
        return {column: statistics.median(values) for column, values in samples.items()}

    def close(self) -> None:
        for connection in self.connections.values():
            connection.send(None)
        for process in self.processes:
            process.join(timeout=30)


def _scaling_worker_init(worker_id: int) -> None:
    """A DataLoader worker as maedfer's loaders set it up (:func:`loader_worker_init`), with one torch thread."""
    torch.set_num_threads(1)
    loader_worker_init(worker_id)


def worker_scaling(files: dict[str, Path], workers: list[int], items: int) -> list[tuple[int, float]]:
    """Items/s of the fast ``dfew_train`` dataset through a DataLoader with each worker count."""
    from torch.utils.data import DataLoader

    from maedfer.data.video_datasets import skip_bad_samples_collate

    dataset = VideoClipDataset(files["frames_train"], "train", num_frames=16, sampling_rate=4, pipeline="fast",
                               train_transform=FastFinetuneTrainTransform())
    indices = [i % len(dataset) for i in range(items)]
    rows = []
    for count in workers:
        loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=4, num_workers=count,
                            collate_fn=skip_bad_samples_collate, prefetch_factor=4 if count else None,
                            worker_init_fn=_scaling_worker_init)
        next(iter(loader))  # start-up excluded from the rate below? no: measure a full pass after a warm one
        start = time.perf_counter()
        for _ in loader:
            pass
        rows.append((count, items / (time.perf_counter() - start)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-root", type=Path, default=None, help="folder with MAE-DFER and HiCMAE checkouts")
    parser.add_argument("--world", type=Path, default=None, help="folder for (or with) the generated files")
    parser.add_argument("--items", type=int, default=12, help="items per timed pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="*", default=None, choices=CASES, help="subset of the cases")
    parser.add_argument("--workers", type=int, nargs="*", default=[], help="DataLoader worker counts to scale over")
    parser.add_argument("--official-retains-memory", action="store_true",
                        help="give the official process maedfer's allocator setting too (compare pipelines only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    files = make_files(args.world)
    columns = (["official"] if args.official_root is not None else []) + ["exact", "fast"]
    cases = args.cases or list(CASES)
    header = f"{'case':<20}" + "".join(f"{name + ' ms':>12}" for name in columns)
    if "official" in columns:
        header += f"{'official/exact':>16}{'official/fast':>15}"
    official_memory = "kept like maedfer's" if args.official_retains_memory else "C library defaults"
    print(f"# ms per item, one process per column, 1 torch thread, {args.items} items x {args.repeats} passes "
          f"(median); {device_description(torch.device('cpu'))}; official process: freed memory {official_memory}")
    print(header)
    processes = ColumnProcesses(columns, args.official_root, files, args.official_retains_memory)
    try:
        for case in cases:
            timings = processes.time_case(case, args.items, args.repeats)
            line = f"{case:<20}" + "".join(f"{timings[name]:>12.1f}" for name in columns)
            if "official" in columns:
                line += (f"{timings['official'] / timings['exact']:>15.2f}x"
                         f"{timings['official'] / timings['fast']:>14.2f}x")
            print(line, flush=True)
    finally:
        processes.close()
    if args.workers:
        print("\n# fast dfew_train through a DataLoader (batch 4): items/s and items/s per worker")
        for count, rate in worker_scaling(files, args.workers, max(32, args.items * 4)):
            print(f"workers={count:<3} {rate:8.1f} items/s  {rate / max(count, 1):8.1f} per worker")
    return 0


if __name__ == "__main__":
    sys.exit(main())
