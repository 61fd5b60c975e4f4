"""Weights by name (``maedfer.hub``) end to end against local servers on 127.0.0.1.

A plain HTTP server (also answering the Hugging Face Hub's ``/{repo}/resolve/{revision}/{file}`` routes, so
``huggingface_hub.hf_hub_download`` runs unchanged against it through ``HF_ENDPOINT``) and an HTTPS server with a
self-signed certificate (model cards accept only https links) serve files made here; every request is counted.
Expected digests are computed here with hashlib, expected weights are the tensors the test saved.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import numpy as np
import torch
import yaml
from safetensors import safe_open

import maedfer
from maedfer import hub
from maedfer.cards import ModelCardError, parse_model_card

ROOT = Path(__file__).resolve().parents[2]
REAL_CARD = ROOT / "models" / "mae_dfer" / "mae_dfer_dfew_fold1.md"
CARD_ID = "mae_dfer_tiny_test"
HUB_REPO = "maedfer-test/tiny-dfew"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY = maedfer.model_entry("mae_dfer_base").tiny_overrides
LABELS = ["Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileServer:
    """Files by URL path, a request log, and switches that break a response (truncate, corrupt)."""

    def __init__(self, tls_context: ssl.SSLContext | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.truncated: set[str] = set()
        state = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _body(self) -> tuple[str, bytes | None]:
                path = self.path.split("?")[0].lstrip("/")
                state.requests.append((self.command, path))
                hub_route = re.fullmatch(r"([^/]+/[^/]+)/resolve/[^/]+/(.+)", path)
                key = f"{hub_route.group(1)}/{hub_route.group(2)}" if hub_route else path
                return key, state.files.get(key)

            def _headers(self, key: str, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{sha256(body)}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.end_headers()

            def do_HEAD(self) -> None:  # noqa: N802
                key, body = self._body()
                if body is None:
                    self.send_error(404)
                    return
                self._headers(key, body)

            def do_GET(self) -> None:  # noqa: N802
                key, body = self._body()
                if body is None:
                    self.send_error(404)
                    return
                self._headers(key, body)
                self.wfile.write(body[: len(body) // 2] if key in state.truncated else body)
                if key in state.truncated:
                    self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls_context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def count(self, path: str) -> int:
        return sum(1 for _method, requested in self.requests if requested.endswith(path))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"), "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return folder


@pytest.fixture()
def server() -> Iterator[FileServer]:
    running = FileServer()
    yield running
    running.close()


@pytest.fixture()
def tls_server(certificate: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate / "cert.pem", certificate / "key.pem")
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate / "cert.pem"))  # the client trusts this certificate only
    running = FileServer(context)
    yield running
    running.close()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cache"
    monkeypatch.setenv("MAEDFER_HOME", str(home))
    for name in ("MAEDFER_OFFLINE", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return home


def cached_files(home: Path) -> list[Path]:
    """Every file and empty folder in the cache except its record, lock and the downloads folder itself."""
    return sorted(p for p in home.rglob("*") if (p.is_file() and p.name not in (hub.HASHES_FILE, ".lock"))
                  or (p.is_dir() and not any(p.iterdir()) and p != home / "downloads"))


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return maedfer.create_model("mae_dfer_base", num_classes=7, **TINY)


def official_pth(model: torch.nn.Module, path: Path) -> bytes:
    """A checkpoint in the official scripts' format: weights under ``model`` next to optimizer state and args."""
    torch.save({"model": model.state_dict(), "epoch": 49, "args": argparse.Namespace(lr=1e-3, model="vit")}, path)
    return path.read_bytes()


def write_card(folder: Path, source_url: str, *, digest: str | None, mirrors: list | None = None) -> Path:
    """A card for the tiny model, made from a real zoo card with its links and sizes replaced."""
    text = REAL_CARD.read_text(encoding="utf-8")
    front = yaml.safe_load(text.split("---")[1])
    front.update(id=CARD_ID, model_kwargs={**TINY, "num_classes": 7, "region_size": list(TINY["region_size"])},
                 source_urls=[source_url], sha256=digest, official_model=None, official_kwargs={})
    if mirrors is not None:
        front["mirrors"] = mirrors
    path = folder / "mae_dfer" / f"{CARD_ID}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n# Tiny test card\n", encoding="utf-8")
    return folder


def assert_same_weights(model: torch.nn.Module, reference: torch.nn.Module) -> None:
    got, want = model.state_dict(), reference.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key


# ----------------------------------------------------------------------------------------- plain links


def test_download_checks_the_hash_records_it_and_reuses_the_cache(server: FileServer, isolated_cache: Path) -> None:
    data = os.urandom(3 << 20)  # three read chunks
    server.files["weights/file.bin"] = data
    url = f"{server.url}/weights/file.bin"
    path = hub.download_url(url, sha256=sha256(data))
    assert path.read_bytes() == data and path.is_relative_to(isolated_cache)
    assert hub.recorded_hashes()[url]["sha256"] == sha256(data)
    assert server.count("weights/file.bin") == 1
    assert hub.download_url(url, sha256=sha256(data)) == path  # cache hit: no request
    assert hub.resolve_checkpoint(url) == path
    assert server.count("weights/file.bin") == 1


def test_a_wrong_hash_fails_and_leaves_nothing_in_the_cache(server: FileServer, isolated_cache: Path) -> None:
    server.files["w.pth"] = b"the real bytes" * 1000
    with pytest.raises(hub.HashMismatchError, match="nothing was kept"):
        hub.download_url(f"{server.url}/w.pth", sha256=sha256(b"other bytes"))
    assert cached_files(isolated_cache) == []
    assert f"{server.url}/w.pth" not in hub.recorded_hashes()


def test_a_truncated_download_fails_and_leaves_nothing(server: FileServer, isolated_cache: Path) -> None:
    server.files["w.pth"] = os.urandom(200_000)
    server.truncated.add("w.pth")
    with pytest.raises(hub.HubError, match="stopped after|download failed"):
        hub.download_url(f"{server.url}/w.pth")
    assert cached_files(isolated_cache) == []


def test_without_a_known_hash_it_warns_records_and_checks_later_downloads(server: FileServer) -> None:
    first = b"version one" * 100
    server.files["w.pth"] = first
    url = f"{server.url}/w.pth"
    with pytest.warns(UserWarning, match="no known sha256"):
        path = hub.download_url(url)
    assert hub.recorded_hashes()[url]["sha256"] == sha256(first)
    server.files["w.pth"] = b"changed upstream" * 100
    with pytest.raises(hub.HashMismatchError, match="recorded at its first download"):
        hub.download_url(url, force_download=True)
    assert path.read_bytes() == first  # the cached file is untouched


def test_offline_uses_only_the_cache(server: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"weights" * 100
    server.files["w.pth"] = data
    url = f"{server.url}/w.pth"
    with pytest.raises(hub.NotCachedError, match="not in the cache"):
        hub.download_url(url, offline=True)
    monkeypatch.setenv("MAEDFER_OFFLINE", "1")
    with pytest.raises(hub.NotCachedError, match="MAEDFER_OFFLINE"):
        hub.resolve_checkpoint(url)
    assert server.requests == []
    path = hub.download_url(url, sha256=sha256(data), offline=False)
    monkeypatch.delenv("MAEDFER_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.resolve_checkpoint(url) == path
    assert len(server.requests) == 1


def test_a_google_drive_link_without_gdown_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gdown", None)  # `import gdown` raises ImportError
    with pytest.raises(ImportError, match=r"maedfer\[gdrive\]"):
        hub.download_url("https://drive.google.com/file/d/abc/view?usp=sharing")


def test_gdown_fetches_onto_the_temporary_file_and_leaves_nothing_on_failure(server: FileServer, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    server.files["w.pth"] = data
    tmp = tmp_path / "cache" / ".w.pth.tmp"
    tmp.parent.mkdir(parents=True)
    hub._fetch_gdrive(f"{server.url}/w.pth", tmp, False)  # what download_url runs for a drive.google.com link
    assert tmp.read_bytes() == data
    with pytest.raises(hub.HubError, match="gdown could not download"):
        hub._fetch_gdrive(f"{server.url}/missing.pth", tmp_path / "cache" / ".x.tmp", False)
    assert sorted(p.name for p in tmp.parent.iterdir()) == [".w.pth.tmp"]  # gdown's work folder is gone


def test_an_unknown_checkpoint_spec_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="did you mean mae_dfer_dfew_fold1"):
        hub.resolve_checkpoint("mae_dfer_dfew_fold1x")
    with pytest.raises(FileNotFoundError, match="no such file"):
        hub.resolve_checkpoint(tmp_path / "missing.pth")


# ---------------------------------------------------------------------------------------------- model cards


def test_card_weights_download_convert_once_and_reuse(
    tls_server: FileServer, tmp_path: Path, isolated_cache: Path
) -> None:
    reference = tiny_model(1)
    pth = official_pth(reference, tmp_path / "checkpoint-49.pth")
    tls_server.files["release/checkpoint-49.pth"] = pth
    cards = write_card(tmp_path / "cards", f"{tls_server.url}/release/checkpoint-49.pth", digest=sha256(pth))

    model = maedfer.create_model(CARD_ID, pretrained=True, cards_folder=cards)
    assert_same_weights(model, reference)
    assert model.pretrained_cfg["label_names"] == LABELS and model.training
    converted = isolated_cache / "cards" / CARD_ID / f"{CARD_ID}.safetensors"
    assert cached_files(isolated_cache) == [converted]  # the .pth was converted and removed
    with safe_open(str(converted), "pt") as handle:
        assert handle.metadata()["source_sha256"] == sha256(pth)
        assert handle.metadata()["card_id"] == CARD_ID
        assert json.loads(handle.metadata()["label_names"]) == LABELS
    assert hub.recorded_hashes()[f"card:{CARD_ID}"]["sha256"] == sha256(converted.read_bytes())

    again = maedfer.create_model(CARD_ID, pretrained=True, cards_folder=cards, offline=True)
    assert_same_weights(again, reference)
    assert hub.resolve_checkpoint(CARD_ID, cards_folder=cards) == converted
    assert tls_server.count("checkpoint-49.pth") == 1


def test_a_corrupt_card_download_fails_the_hash_and_leaves_nothing(
    tls_server: FileServer, tmp_path: Path, isolated_cache: Path
) -> None:
    pth = official_pth(tiny_model(), tmp_path / "checkpoint.pth")
    corrupt = bytearray(pth)
    corrupt[len(corrupt) // 2] ^= 0xFF
    tls_server.files["checkpoint.pth"] = bytes(corrupt)
    cards = write_card(tmp_path / "cards", f"{tls_server.url}/checkpoint.pth", digest=sha256(pth))
    with pytest.raises(hub.HashMismatchError, match=sha256(pth)):
        maedfer.create_model(CARD_ID, pretrained=True, cards_folder=cards)
    assert cached_files(isolated_cache) == []


def test_a_card_without_a_hash_warns_and_records_it(tls_server: FileServer, tmp_path: Path) -> None:
    pth = official_pth(tiny_model(), tmp_path / "checkpoint.pth")
    tls_server.files["checkpoint.pth"] = pth
    url = f"{tls_server.url}/checkpoint.pth"
    cards = write_card(tmp_path / "cards", url, digest=None)
    with pytest.warns(UserWarning, match="no known sha256"):
        hub.download_card_weights(CARD_ID, cards_folder=cards)
    assert hub.recorded_hashes()[url]["sha256"] == sha256(pth)
    assert hub.recorded_hashes()[f"card:{CARD_ID}"]["source_sha256"] == sha256(pth)


def test_a_card_mirror_on_the_hub_is_tried_first(
    server: FileServer, tls_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = tiny_model(2)
    maedfer.save_safetensors(reference, tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    server.files[f"{HUB_REPO}/weights/w.safetensors"] = data
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    cards = write_card(tmp_path / "cards", f"{tls_server.url}/never-asked.pth", digest=None,
                       mirrors=[{"url": f"hf://{HUB_REPO}/weights/w.safetensors", "sha256": sha256(data)}])
    model = maedfer.create_model(CARD_ID, pretrained=True, cards_folder=cards)
    assert_same_weights(model, reference)
    assert tls_server.requests == []


def test_a_hub_file_with_the_wrong_hash_is_removed_from_the_cache(
    server: FileServer, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files[f"{HUB_REPO}/w.safetensors"] = b"not what the digest says" * 100
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    with pytest.raises(hub.HashMismatchError):
        hub.download_hub_file(f"hf://{HUB_REPO}/w.safetensors", sha256=sha256(b"expected"))
    hub_cache = isolated_cache / "huggingface"
    assert [p for p in hub_cache.rglob("*") if p.is_file() and not p.is_symlink() and "blobs" in p.parts] == []
    assert [p for p in hub_cache.rglob("w.safetensors")] == []


def test_the_card_parser_checks_mirrors_and_sha256() -> None:
    text = REAL_CARD.read_text(encoding="utf-8")
    with pytest.raises(ModelCardError, match=r":\d+: sha256: must be null or 64"):
        parse_model_card(text.replace("sha256: null", "sha256: ABC"), source="card.md")
    bad_mirror = text.replace("sha256: null", "sha256: null\nmirrors: [{url: 'ftp://host/x'}]")
    with pytest.raises(ModelCardError, match=r"card\.md:\d+: mirrors: url must be hf://"):
        parse_model_card(bad_mirror, source="card.md")
    good = text.replace("sha256: null", f"sha256: null\nmirrors: [{{url: 'hf://{HUB_REPO}@v1/w.safetensors'}}]")
    assert parse_model_card(good).mirrors[0].url == f"hf://{HUB_REPO}@v1/w.safetensors"


# ------------------------------------------------------------------------------------------- the Hub layout


def test_save_pretrained_then_from_pretrained_gives_the_same_model(tmp_path: Path) -> None:
    cards = write_card(tmp_path / "cards", "https://example.invalid/x.pth", digest=None)
    model = maedfer.create_model(CARD_ID, cards_folder=cards)  # architecture of the card, random weights
    folder = maedfer.save_pretrained(model, tmp_path / "export", card=CARD_ID, cards_folder=cards, license="mit")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_name"] == "mae_dfer_base" and config["label_names"] == LABELS
    readme = (folder / "README.md").read_text()
    front = yaml.safe_load(readme.split("---")[1])
    assert front["library_name"] == "maedfer" and front["license"] == "mit"
    assert front["datasets"] == ["DFEW"] and front["pipeline_tag"] == "video-classification"
    results = front["model-index"][0]["results"][0]
    assert {m["name"]: m["value"] for m in results["metrics"]} == {"UAR": 62.59, "WAR": 74.88}  # the real card's
    loaded = maedfer.from_pretrained(folder)
    assert_same_weights(loaded, model)
    assert not loaded.training and loaded.pretrained_cfg["label_names"] == LABELS
    x = torch.randn(1, 3, TINY["num_frames"], TINY["img_size"], TINY["img_size"])
    model.eval()
    assert torch.equal(loaded(x), model(x))


def test_from_pretrained_downloads_a_hub_repository(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_model(3)
    folder = hub.save_pretrained(torch.compile(model), tmp_path / "export", label_names=LABELS, license="mit",
                                 datasets=["DFEW"], metrics={"UAR": 50.0, "WAR": 60.0})
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        assert set(handle.keys()) == set(model.state_dict())  # the wrapper's _orig_mod. prefix is not saved
    for file in folder.iterdir():
        server.files[f"{HUB_REPO}/{file.name}"] = file.read_bytes()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a repository is trusted as a whole: no warning per file
        loaded = maedfer.from_pretrained(HUB_REPO)
    assert_same_weights(loaded, model)
    assert loaded.pretrained_cfg["label_names"] == LABELS
    # through the Hub's routes (huggingface_hub may also ask the endpoint's api/ for its own purposes)
    assert server.count(f"{HUB_REPO}/resolve/main/config.json") >= 1
    assert server.count(f"{HUB_REPO}/resolve/main/model.safetensors") >= 1
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(server.requests)
    assert_same_weights(maedfer.from_pretrained(f"hf://{HUB_REPO}"), model)
    assert len(server.requests) == before


def test_load_inference_model_takes_a_saved_folder_and_a_hub_repository(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maedfer.apps.inference import load_inference_model

    model = tiny_model(5)
    folder = hub.save_pretrained(model, tmp_path / "export", label_names=LABELS, license="mit")
    for file in folder.iterdir():
        server.files[f"{HUB_REPO}/{file.name}"] = file.read_bytes()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    for spec in (folder, f"hf://{HUB_REPO}"):
        loaded = load_inference_model(spec)  # no model name: config.json names it
        assert loaded.name == "mae_dfer_base" and loaded.label_names == LABELS
        assert_same_weights(loaded.model, model)


def test_a_malformed_config_names_the_file_and_line(tmp_path: Path) -> None:
    folder = hub.save_pretrained(tiny_model(), tmp_path / "export", license="mit")
    (folder / "config.json").write_text('{\n  "model_name": "mae_dfer_base",\n  oops\n}')
    with pytest.raises(hub.HubError, match=r"config\.json:3: invalid JSON"):
        hub.from_pretrained(folder)


# ------------------------------------------------------------------------------------ the inference loader


def test_load_inference_model_takes_a_link(server: FileServer, tmp_path: Path) -> None:
    from maedfer.apps.inference import load_inference_model

    reference = tiny_model(4)
    maedfer.save_safetensors(reference, tmp_path / "w.safetensors")
    server.files["w.safetensors"] = (tmp_path / "w.safetensors").read_bytes()
    # argparse's type=Path turns https://host/x into https:/host/x; the resolver restores it.
    spec = Path(f"{server.url}/w.safetensors")
    with pytest.warns(UserWarning, match="no known sha256"):
        loaded = load_inference_model(spec, model_name="mae_dfer_base", model_kwargs={**TINY, "num_classes": 7})
    assert_same_weights(loaded.model, reference)
    assert server.count("w.safetensors") == 1


def test_a_training_config_starts_from_a_card_by_id(tls_server: FileServer, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from maedfer.apps.train import build_model
    from maedfer.config import config_from_dict

    reference = tiny_model(6)
    pth = official_pth(reference, tmp_path / "checkpoint.pth")
    tls_server.files["checkpoint.pth"] = pth
    cards = write_card(tmp_path / "cards", f"{tls_server.url}/checkpoint.pth", digest=sha256(pth))
    monkeypatch.setattr("maedfer.cards.CARDS_FOLDER", cards)  # the zoo this config looks its card up in
    kwargs = {**TINY, "num_classes": 7}
    cfg = config_from_dict({"model": {"name": "mae_dfer_base", "kwargs": kwargs, "checkpoint": CARD_ID}})
    assert_same_weights(build_model(cfg), reference)


def test_the_tools_take_pretrained_card_ids_then_work_offline(
    tls_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from maedfer.apps import features
    from maedfer.synthetic import write_mp4

    reference = tiny_model(7)
    pth = official_pth(reference, tmp_path / "release.pth")
    tls_server.files["release.pth"] = pth
    cards = write_card(tmp_path / "cards", f"{tls_server.url}/release.pth", digest=sha256(pth))
    monkeypatch.setattr("maedfer.cards.CARDS_FOLDER", cards)
    frames = np.random.default_rng(0).integers(0, 255, (20, 48, 48, 3), dtype=np.uint8)
    video = tmp_path / "clip.mp4"
    write_mp4(video, frames, None, 25.0)
    common = [str(video), "--no-face-detect", "--no-progress", "--device", "cpu"]

    assert features.main([*common, "--pretrained", CARD_ID, "--out", str(tmp_path / "a")]) == 0
    assert features.main([*common, "--pretrained", CARD_ID, "--offline", "--out", str(tmp_path / "b")]) == 0
    assert tls_server.count("release.pth") == 1  # the second run read the cache only
    first, second = (np.load(tmp_path / d / "clip.pooled.npy") for d in ("a", "b"))
    assert np.array_equal(first, second) and np.isfinite(first).all()

    # Offline with an empty cache: one error naming the card, nothing fetched.
    monkeypatch.setenv("MAEDFER_HOME", str(tmp_path / "empty"))
    capsys.readouterr()
    assert features.main([*common, "--pretrained", CARD_ID, "--offline", "--out", str(tmp_path / "c")]) != 0
    assert CARD_ID in capsys.readouterr().err
    assert tls_server.count("release.pth") == 1
    with pytest.raises(SystemExit):  # --checkpoint and --pretrained name the same thing: one of them
        features.main([*common, "--pretrained", CARD_ID, "--checkpoint", "x.pth", "--out", str(tmp_path / "d")])
