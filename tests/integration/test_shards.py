"""Tar shards: make-shards (index, resume), streaming (exactly once over 2 ranks x 2 workers, the per-file items,
exact mid-epoch positions, http on 127.0.0.1, broken members and shards) and training from shards."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from maedfer.apps.shards import main as make_shards
from maedfer.apps.train import main as train_main
from maedfer.checkpoint import read_checkpoint
from maedfer.data.annotations import AnnotationRow, read_annotations
from maedfer.data.pretrain_datasets import MaskSpec, PretrainAudioConfig, PretrainClipDataset, collate_pretrain
from maedfer.data.shards import ShardClipDataset, ShardLoader, resolve_shards
from maedfer.data.video_datasets import SkippedSample
from maedfer.synthetic import make_synthetic_world

from test_train import _finetune_args, _pretrain_args

PLACEHOLDER = [AnnotationRow(path="<shard clip>", label=None)]
DECODER_ARGS = dict(num_frames=8, sampling_rate=2, input_size=32, mask=MaskSpec(kind="tube", ratio=0.5, patch_size=8),
                    seed=5)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shard_world") / "synthetic"
    make_synthetic_world(root, num_identities=6, clips_per_class=2, num_frames=16, size=32, preview=False)
    return root


@pytest.fixture(scope="module")
def shards(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 14 pre-training clips (mp4 + wav) in 7 shards of 2."""
    out = tmp_path_factory.mktemp("shards")
    assert make_shards(["--annotations", str(world / "pretrain" / "train.csv"), "--out", str(out),
                        "--clips-per-shard", "2", "--workers", "2", "--with-audio",
                        "--audio-replace", "/videos/", "/audio/", "--audio-replace", ".mp4", ".wav"]) == 0
    return out / "train-index.json"


def _dataset(spec: str | Path, rank: int = 0, world_size: int = 1, **kwargs) -> ShardClipDataset:
    infos, _ = resolve_shards(str(spec))
    return ShardClipDataset(infos, PretrainClipDataset(PLACEHOLDER, **DECODER_ARGS), rank=rank,
                            world_size=world_size, seed=5, shuffle_buffer=kwargs.pop("shuffle_buffer", 3), **kwargs)


def _loader(dataset: ShardClipDataset, batch_size: int, workers: int) -> ShardLoader:
    return ShardLoader(dataset, batch_size=batch_size, collate=collate_pretrain, num_workers=workers,
                       batches_per_epoch=100)


def _indices(loader: ShardLoader) -> list[tuple[int, ...]]:
    """Clip indices of every batch (skipped clips included)."""
    return [tuple(batch["index"].tolist() if "index" in batch else []) + tuple(r.index for r in batch["skipped"])
            for batch in loader]


def _index_of(item: dict | SkippedSample) -> int:
    return item.index if isinstance(item, SkippedSample) else item["index"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_make_shards_writes_a_verified_index_and_resumes(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    args = ["--annotations", str(world / "classification" / "train.csv"), "--kind", "classification",
            "--out", str(out), "--clips-per-shard", "4", "--workers", "2"]
    assert make_shards(args) == 0
    index = json.loads((out / "train-index.json").read_text())
    assert index["complete"] and index["total"] == 14 and index["num_shards"] == 4
    assert [(s["start"], s["stop"], s["count"]) for s in index["shards"]] == [(0, 4, 4), (4, 8, 4), (8, 12, 4),
                                                                            (12, 14, 2)]
    rows = read_annotations(world / "classification" / "train.csv", kind="classification")
    for entry in index["shards"]:
        assert entry["sha256"] == _sha256(out / entry["name"])
    with tarfile.open(out / "train-000001.tar") as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile("000000005.json").read())
        first_frame = tar.extractfile("000000005.frame.000000.jpg").read()
    assert meta["index"] == 5 and meta["label"] == rows[5].label and meta["path"] == rows[5].path
    frames = sorted(Path(rows[5].path).glob("*.jpg"))
    assert first_frame == frames[0].read_bytes()
    assert sum(n.startswith("000000005.frame.") for n in names) == len(frames)

    # resume: intact shards are kept, a damaged and a deleted one are written again (identical bytes)
    stamps = {name: (out / name).stat().st_mtime_ns for name in ("train-000000.tar", "train-000003.tar")}
    with open(out / "train-000001.tar", "ab") as handle:
        handle.write(b"garbage")
    (out / "train-000002.tar").unlink()
    assert make_shards(args) == 0
    assert {name: (out / name).stat().st_mtime_ns for name in stamps} == stamps
    again = json.loads((out / "train-index.json").read_text())
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in index["shards"]]
    # another shard size with the same output: refused, nothing replaced
    assert make_shards([*args[:-4], "--clips-per-shard", "3", "--workers", "1"]) == 2
    assert json.loads((out / "train-index.json").read_text()) == again


def test_every_clip_exactly_once_across_2_ranks_x_2_workers(world: Path, shards: Path) -> None:
    seen: list[int] = []
    per_rank = []
    for rank in (0, 1):
        batches = _indices(_loader(_dataset(shards, rank, 2), batch_size=1, workers=2))
        per_rank.append([i for batch in batches for i in batch])
        seen += per_rank[-1]
    assert sorted(seen) == list(range(14))  # all 14, none twice
    assert all(per_rank)  # both ranks read


def test_streamed_items_are_the_per_file_items(world: Path, shards: Path) -> None:
    rows = read_annotations(world / "pretrain" / "train.csv", kind="pretrain")
    reference = PretrainClipDataset(rows, **DECODER_ARGS)
    dataset = _dataset(shards)
    for epoch in (0, 3):
        dataset.set_epoch(epoch)
        reference.set_epoch(epoch)
        items = list(dataset)
        assert sorted(item["index"] for item in items) == list(range(14))
        for item in items[:5]:
            expected = reference[(epoch, item["index"])]
            assert torch.equal(item["video"], expected["video"]) and torch.equal(item["mask"], expected["mask"])


def test_streamed_audio_visual_items_are_the_per_file_items(world: Path, shards: Path) -> None:
    """HiCMAE pre-training items: the wav member of the shard gives the per-file item's filter bank and masks."""
    audio = PretrainAudioConfig(path_replacements=(("/videos/", "/audio/"), (".mp4", ".wav")))
    rows = read_annotations(world / "pretrain" / "train.csv", kind="pretrain")
    reference = PretrainClipDataset(rows, audio=audio, **DECODER_ARGS)
    infos, index = resolve_shards(str(shards))
    assert index["has_audio"]
    decoder = PretrainClipDataset([AnnotationRow(path="<clip>", label=None, audio_path="<audio>")], audio=audio,
                                  **DECODER_ARGS)
    items = list(ShardClipDataset(infos[:2], decoder, seed=5, shuffle_buffer=1))
    assert [item["index"] for item in items] == [0, 1, 2, 3]
    for item in items:
        expected = reference[item["index"]]
        for key in ("video", "mask", "audio", "mask_audio"):
            assert torch.equal(item[key], expected[key]), key


def test_resumed_epochs_continue_exactly(shards: Path) -> None:
    loader = _loader(_dataset(shards), batch_size=2, workers=2)
    loader.set_epoch(1)
    full = _indices(loader)
    assert len(full) == 7 and sorted(i for b in full for i in b) == list(range(14))
    for done in (1, 4, 6):  # 4: one stream's last batch is next; 6: only the longer stream is left
        loader.set_epoch(1)
        loader.start_index = done * 2
        assert _indices(loader) == full[done:], done
    loader.set_epoch(2)
    assert _indices(loader) != full  # another epoch, another order
    assert loader.state_dict()["num_workers"] == 2
    with pytest.raises(ValueError, match="num_workers"):
        _loader(_dataset(shards), batch_size=2, workers=1).load_state_dict(loader.state_dict())


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_shards_and_broken_members_are_skipped_and_counted(world: Path, shards: Path,
                                                                 http_root: tuple[Path, str]) -> None:
    root, url = http_root
    for path in shards.parent.iterdir():
        shutil.copy(path, root / path.name)
    items = list(_dataset(f"{url}/train-index.json"))
    assert sorted(item["index"] for item in items) == list(range(14))
    assert not any(isinstance(item, SkippedSample) for item in items)
    # a shard pattern served over http picks a subset of the index next to it
    subset = list(_dataset(url + "/train-{000001..000002}.tar"))
    assert sorted(item["index"] for item in subset) == [2, 3, 4, 5]

    # a shard that differs from its index (a changed member): verified -> all its clips skipped, with the reason
    index = json.loads((root / "train-index.json").read_text())
    broken = root / index["shards"][1]["name"]
    data = bytearray(broken.read_bytes())
    data[3000:3400] = bytes(400)  # inside the first clip's mp4
    broken.write_bytes(bytes(data))
    items = list(_dataset(f"{url}/train-index.json"))
    skipped = {item.index: item.reason for item in items if isinstance(item, SkippedSample)}
    assert sorted(skipped) == [2, 3] and all("sha256" in reason for reason in skipped.values())
    assert sorted(_index_of(item) for item in items) == list(range(14))  # in their places: positions stay exact
    # unverified: the damaged clip is decoded, fails or not, but never stops the stream
    items = list(_dataset(f"{url}/train-index.json", verify=False))
    assert sorted(_index_of(item) for item in items) == list(range(14))
    # a truncated shard: the clips after the cut are skipped (counted), the rest of the epoch goes on
    broken.write_bytes(bytes(data[:5000]))
    items = list(_dataset(f"{url}/train-index.json", verify=False))
    assert sorted(_index_of(item) for item in items) == list(range(14))
    assert 3 in [item.index for item in items if isinstance(item, SkippedSample)]


def test_a_clip_that_cannot_be_decoded_is_skipped(world: Path, tmp_path: Path) -> None:
    rows = read_annotations(world / "pretrain" / "train.csv", kind="pretrain")[:3]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    listing = tmp_path / "list.csv"
    listing.write_text("".join(f"{p} 0\n" for p in (rows[0].path, str(bad), rows[2].path, tmp_path / "gone.mp4")))
    assert make_shards(["--annotations", str(listing), "--out", str(tmp_path / "s"), "--workers", "1"]) == 0
    index = json.loads((tmp_path / "s" / "train-index.json").read_text())
    assert index["total"] == 3 and index["shards"][0]["missing"] == [3]  # the missing file is left out, listed
    items = list(_dataset(tmp_path / "s" / "train-index.json"))
    assert sorted(i["index"] for i in items if not isinstance(i, SkippedSample)) == [0, 2]
    [skipped] = [i for i in items if isinstance(i, SkippedSample)]
    assert skipped.index == 1 and "#000000001" in skipped.path


def test_training_from_shards_resumes_mid_epoch_exactly(world: Path, shards: Path, tmp_path: Path) -> None:
    args = ["train.epochs=1", "data.format=shards", f"data.shards={shards}", "data.batch_size=2",
            "data.num_workers=2", "train.save_every_steps=2", "train.keep_checkpoints=0", "train.tensorboard=false",
            "model.kwargs.drop_path_rate=0.1"]
    full = train_main(_pretrain_args(world, tmp_path / "full", *args))
    assert full["steps"] == 7  # 7 shards of 2 over 2 streams: 8 + 6 clips -> 4 + 3 batches of 2
    # a run interrupted after its step-2 checkpoint (epoch 0, 2 of 7 batches) and resumed from it
    (tmp_path / "cut").mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-e0000-s0000002", tmp_path / "cut" / "checkpoint-e0000-s0000002")
    resumed = train_main(_pretrain_args(world, tmp_path / "cut", *args))
    assert resumed["steps"] == 7
    assert "resumed from" in (tmp_path / "cut" / "log.txt").read_text()
    ref = read_checkpoint(tmp_path / "full" / "checkpoint-last.pth")["model"]
    res = read_checkpoint(tmp_path / "cut" / "checkpoint-last.pth")["model"]
    assert ref.keys() == res.keys() and all(torch.equal(ref[k], res[k]) for k in ref)
    # another worker count cannot continue that mid-epoch position
    shutil.rmtree(tmp_path / "cut")
    (tmp_path / "cut").mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-e0000-s0000002", tmp_path / "cut" / "checkpoint-e0000-s0000002")
    with pytest.raises(ValueError, match="another layout"):
        train_main(_pretrain_args(world, tmp_path / "cut", *args, "data.num_workers=1"))


def test_finetuning_from_frame_folder_shards(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft_shards"
    assert make_shards(["--annotations", str(world / "classification" / "train.csv"), "--kind", "classification",
                        "--out", str(out), "--clips-per-shard", "7", "--workers", "1"]) == 0
    result = train_main(_finetune_args(world, tmp_path / "ft", None, "train.epochs=1", "data.format=shards",
                                       f"data.shards={out / 'train-index.json'}", "train.tensorboard=false",
                                       "data.labels_per_class=null"))
    assert result["steps"] == 14 // 4  # 2 shards of 7 in the one stream (no workers): 3 full batches of 4
    assert result["test"]["num_videos"] == 14
