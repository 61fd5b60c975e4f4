"""Weights by name: released checkpoints downloaded, verified, cached and converted, and models saved and loaded in
the Hugging Face Hub layout (``config.json`` + ``model.safetensors`` + ``README.md``).

A checkpoint "spec" is a local file, a model card id (``mae_dfer_dfew_fold1``), a Hub file
(``hf://owner/repo[@revision]/path``) or an ``https://`` / ``http://`` link (Google Drive links through the optional
``gdown``). Downloads go to ``$MAEDFER_HOME`` (default ``~/.cache/maedfer``), are hashed while they are written,
checked against a known sha256 and renamed into place only when complete. Details: ``docs/modules.md``, section
``maedfer/hub.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .registry import create_model as _build_registered
from .registry import is_model, list_models, model_entry
from .utils import atomic_write, atomic_write_text, sha256_file
from .version import __version__

if TYPE_CHECKING:
    from torch import nn

    from .cards import ModelCard

__all__ = [
    "CONFIG_FILE",
    "HOME_ENV",
    "HubError",
    "HashMismatchError",
    "NotCachedError",
    "OFFLINE_ENV",
    "README_FILE",
    "WEIGHTS_FILE",
    "cache_home",
    "card_id_of",
    "create_model",
    "download_card_weights",
    "download_hub_file",
    "download_url",
    "from_pretrained",
    "is_offline",
    "pretrained_folder",
    "recorded_hashes",
    "resolve_checkpoint",
    "save_pretrained",
    "sha256_file",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the cache folder (default ``~/.cache/maedfer``).
HOME_ENV = "MAEDFER_HOME"
#: Environment variable that, set to ``1``/``true``/``yes``/``on``, forbids downloads (``HF_HUB_OFFLINE`` does too).
OFFLINE_ENV = "MAEDFER_OFFLINE"
#: Files of a model folder in the Hub layout.
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
README_FILE = "README.md"
#: The JSON record of every file downloaded into the cache, with its sha256 (``$MAEDFER_HOME/hashes.json``).
HASHES_FILE = "hashes.json"

_CHUNK = 1 << 20
_TRUE = ("1", "true", "yes", "on")
_HF_PREFIX = "hf://"
_URL_SCHEMES = ("https://", "http://")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_GDRIVE_HOSTS = ("drive.google.com", "docs.google.com")
_SHAREPOINT_SUFFIX = ".sharepoint.com"


class HubError(RuntimeError):
    """A download failed, a downloaded file is not what was expected, or a Hub-layout folder is malformed."""


class HashMismatchError(HubError):
    """A download's sha256 differs from the expected one (nothing is kept in the cache)."""


class NotCachedError(HubError, FileNotFoundError):
    """Offline mode is on and the requested file is not in the cache."""


# ------------------------------------------------------------------------------------------------ the cache


def cache_home(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$MAEDFER_HOME``, else ``~/.cache/maedfer``."""
    if cache_dir is not None:
        return Path(os.fspath(cache_dir)).expanduser()
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser() if env else Path("~/.cache/maedfer").expanduser()


def is_offline(offline: bool | None = None) -> bool:
    """Whether downloads are forbidden: ``offline`` if given, else ``$MAEDFER_OFFLINE`` or ``$HF_HUB_OFFLINE``."""
    if offline is not None:
        return bool(offline)
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in (OFFLINE_ENV, "HF_HUB_OFFLINE"))


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """An exclusive lock on the cache's record (``fcntl`` where it exists; processes of one job share a cache)."""
    home.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: the record is still written atomically
        yield
        return
    with open(home / ".lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def recorded_hashes(cache_dir: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """The cache's record: source (URL, ``hf://`` file or ``card:<id>``) -> ``{"sha256", "size", "file", ...}``.

    ``file`` is relative to the cache folder. An unreadable record is reported and treated as empty (the files are
    then downloaded again).
    """
    path = cache_home(cache_dir) / HASHES_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("%s is unreadable (%s); it is ignored and rewritten", path, exc)
        return {}
    entries = data.get("entries") if isinstance(data, dict) else None
    return dict(entries) if isinstance(entries, dict) else {}


def _record(home: Path, source: str, **fields: Any) -> dict[str, Any]:
    """Stores ``fields`` for ``source`` in the cache's record (read-modify-write under the lock)."""
    with _locked(home):
        entries = recorded_hashes(home)
        entry = {**fields, "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        entries[source] = entry
        atomic_write_text(home / HASHES_FILE, json.dumps({"version": 1, "entries": entries}, indent=1, sort_keys=True))
    return entry


def _cached(home: Path, source: str, sha256: str | None) -> Path | None:
    """The cached file of ``source`` if its record fits it (present, same size, same digest as ``sha256``)."""
    entry = recorded_hashes(home).get(source)
    if not entry or not isinstance(entry.get("file"), str):
        return None
    path = home / entry["file"]
    if not path.is_file() or path.stat().st_size != entry.get("size"):
        return None
    if sha256 is not None and entry.get("sha256") != sha256:
        logger.warning("the cached %s has sha256 %s, not the expected %s: downloading again", path,
                       entry.get("sha256"), sha256)
        return None
    return path


def _expected_digest(home: Path, source: str, sha256: str | None) -> tuple[str | None, bool]:
    """``(digest to check, whether it was only recorded here)``: the given one, else the one recorded at the first
    download of ``source`` (trust on first use), else ``None``."""
    if sha256 is not None:
        if not _SHA256.match(sha256):
            raise ValueError(f"sha256 must be 64 lower-case hex digits, got {sha256!r}")
        return sha256, False
    recorded = recorded_hashes(home).get(source, {}).get("sha256")
    return (recorded, True) if isinstance(recorded, str) and _SHA256.match(recorded) else (None, False)


def _check_digest(source: str, actual: str, expected: str | None, recorded_only: bool, home: Path) -> None:
    """Raises :class:`HashMismatchError` if ``actual`` is not ``expected``."""
    if expected is None or actual == expected:
        return
    origin = (f"the digest recorded at its first download ({home / HASHES_FILE}; delete that entry if the file "
              "changed on purpose)") if recorded_only else "the expected digest"
    raise HashMismatchError(
        f"{source}: the download has sha256 {actual}, but {origin} is {expected}; nothing was kept in the cache"
    )


def _note_unverified(source: str, digest: str, home: Path) -> None:
    """Warns that a download had no known digest and says where its digest was recorded."""
    message = (f"{source} has no known sha256; the download's sha256 {digest} is recorded in {home / HASHES_FILE} "
               "and checked on later downloads (add it to the model card once you trust the file)")
    logger.warning(message)
    warnings.warn(message, stacklevel=3)


def _offline_error(what: str, home: Path) -> NotCachedError:
    return NotCachedError(
        f"{what} is not in the cache {home} and downloads are off (offline=True, {OFFLINE_ENV}=1 or "
        "HF_HUB_OFFLINE=1): download it once while online, or pass a local file"
    )


# --------------------------------------------------------------------------------------------------- sources


def _download_name(url: str, fallback: str = "download") -> str:
    """A safe file name for a download: the last part of the URL's path (``gdrive-<id>`` for a Google Drive file),
    else ``fallback``."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    drive = re.search(r"/file/d/([\w-]+)", path) if _is_gdrive(url) else None
    name = f"gdrive-{drive.group(1)}" if drive else Path(path).name
    name = re.sub(r"[^\w.+-]", "_", name).lstrip(".")
    return name or fallback


def _download_folder(home: Path, source: str) -> Path:
    """``<home>/downloads/<first 16 hex digits of sha256(source)>``: one folder per source."""
    return home / "downloads" / hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def _is_gdrive(url: str) -> bool:
    return urllib.parse.urlsplit(url).hostname in _GDRIVE_HOSTS


def _direct_link(url: str) -> str:
    """A SharePoint/OneDrive share link asks for the file itself with ``download=1``; other links stay as given."""
    parts = urllib.parse.urlsplit(url)
    if (parts.hostname or "").endswith(_SHAREPOINT_SUFFIX) and "download=1" not in parts.query:
        query = f"{parts.query}&download=1" if parts.query else "download=1"
        return urllib.parse.urlunsplit(parts._replace(query=query))
    return url


def _stream_response(url: str, handle: IO[bytes], digest: Any, timeout: float, progress: bool) -> int:
    """Writes the body of ``GET url`` to ``handle``, updating ``digest``; returns the byte count.

    Raises:
        HubError: On an HTTP or network error, or a body shorter than its ``Content-Length``.
    """
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": f"maedfer/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            total = int(expected) if expected is not None and expected.isdigit() else None
            size = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=_download_name(url), disable=not progress) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise HubError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HubError(f"{url}: download failed ({reason})") from exc
    if expected is not None and expected.isdigit() and int(expected) != size:
        raise HubError(f"{url}: the download stopped after {size} of {expected} bytes")
    return size


def _fetch_gdrive(url: str, tmp: Path, progress: bool) -> None:
    """Downloads a Google Drive file onto ``tmp`` with ``gdown`` (the ``gdrive`` extra).

    gdown works in a private folder next to ``tmp`` that is removed afterwards, so its own partial files never stay.
    """
    try:
        import gdown
    except ImportError as exc:
        raise ImportError(
            f"{url} is a Google Drive link; downloading it needs gdown: pip install 'maedfer[gdrive]' "
            "(or download it in a browser and pass the file)"
        ) from exc
    with tempfile.TemporaryDirectory(prefix=".gdown-", dir=tmp.parent) as work:
        out = Path(work) / "file"
        try:
            # gdown < 6 finds the file id in a share link only with fuzzy=True; gdown 6 always does and dropped it.
            fuzzy = {"fuzzy": True} if "fuzzy" in inspect.signature(gdown.download).parameters else {}
            result = gdown.download(url, output=os.fspath(out), quiet=not progress, **fuzzy)
        except Exception as exc:  # gdown raises its own FileURLRetrievalError, requests errors ...
            raise HubError(f"{url}: gdown could not download the file: {exc}") from exc
        if result is None or not out.is_file() or out.stat().st_size == 0:
            raise HubError(f"{url}: gdown could not download the file (is it shared publicly? quota exceeded?)")
        os.replace(out, tmp)


def _refuse_web_page(url: str, tmp: Path) -> None:
    """A file-sharing service that answers a checkpoint request with a web page (sign-in, quota, virus-scan notice)."""
    with open(tmp, "rb") as handle:
        start = handle.read(256).lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html")):
        raise HubError(f"{url}: the server sent a web page, not the file (sign-in, quota or a share link that needs a "
                       "browser): download it by hand and pass the file")


def download_url(
    url: str,
    *,
    sha256: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    force_download: bool = False,
    timeout: float = 60.0,
    progress: bool | None = None,
) -> Path:
    """Downloads ``url`` into the cache (once) and returns the cached file.

    The body is streamed to a temporary file in the cache folder and hashed while it is written; it is renamed into
    place only when complete and its sha256 matches ``sha256`` (or, without one, the digest recorded at the first
    download of the same URL). Without a known digest the new digest is recorded and a warning says so. Google
    Drive links go through ``gdown`` (``pip install 'maedfer[gdrive]'``).

    Args:
        url: An ``https://`` or ``http://`` link.
        sha256: Expected hex sha256, or ``None``.
        cache_dir: Cache folder (default :func:`cache_home`).
        offline: Use only the cache (default: :func:`is_offline`).
        force_download: Download again even when cached.
        timeout: Socket timeout in seconds.
        progress: Show a progress bar on stderr (default: when stderr is a terminal).

    Returns:
        The cached file, ``<cache>/downloads/<hash of the URL>/<file name>``.

    Raises:
        HashMismatchError: The download's sha256 is not the expected one (nothing is kept).
        NotCachedError: Offline and not cached.
        HubError: HTTP or network error, truncated body, a web page from a file-sharing service.
        ImportError: A Google Drive link without ``gdown``.
    """
    if not url.startswith(_URL_SCHEMES):
        raise ValueError(f"not an http(s) link: {url!r}")
    home = cache_home(cache_dir)
    if not force_download and (hit := _cached(home, url, sha256)) is not None:
        logger.info("using the cached %s for %s", hit, url)
        return hit
    if is_offline(offline):
        raise _offline_error(url, home)
    expected, recorded_only = _expected_digest(home, url, sha256)
    target = _download_folder(home, url) / _download_name(url)
    logger.info("downloading %s to %s", url, target)
    show = sys.stderr.isatty() if progress is None else progress
    result: dict[str, str] = {}

    def write(handle: IO[bytes], tmp: Path) -> None:
        # Runs inside atomic_write: an exception here removes the temporary file, so nothing half-written stays.
        if _is_gdrive(url):
            _fetch_gdrive(url, tmp, show)
            actual = sha256_file(tmp)
        else:
            digest = hashlib.sha256()
            _stream_response(_direct_link(url), handle, digest, timeout, show)
            handle.flush()
            actual = digest.hexdigest()
        if _is_gdrive(url) or _direct_link(url) != url:
            _refuse_web_page(url, tmp)
        _check_digest(url, actual, expected, recorded_only, home)
        result["sha256"] = actual

    try:
        atomic_write(target, write)
    except BaseException:
        with contextlib.suppress(OSError):
            target.parent.rmdir()  # the source's folder, if this download was its only content
        raise
    actual = result["sha256"]
    _record(home, url, sha256=actual, size=target.stat().st_size, file=target.relative_to(home).as_posix(),
            verified=expected is not None)
    if expected is None:
        _note_unverified(url, actual, home)
    return target


@dataclass(frozen=True)
class HubFile:
    """A file of a Hugging Face Hub repository: ``hf://<repo_id>[@<revision>]/<filename>``."""

    repo_id: str
    filename: str
    revision: str | None = None

    @classmethod
    def parse(cls, spec: str) -> HubFile:
        """Parses ``hf://owner/repo[@revision]/path/to/file``; ``ValueError`` if malformed."""
        body = spec[len(_HF_PREFIX):] if spec.startswith(_HF_PREFIX) else spec
        parts = body.split("/")
        if len(parts) < 3 or not all(parts):
            raise ValueError(f"a Hub file is hf://<owner>/<repo>[@<revision>]/<file>, got {spec!r}")
        repo, _, revision = parts[1].partition("@")
        return cls(repo_id=f"{parts[0]}/{repo}", filename="/".join(parts[2:]), revision=revision or None)

    def __str__(self) -> str:
        at = f"@{self.revision}" if self.revision else ""
        return f"{_HF_PREFIX}{self.repo_id}{at}/{self.filename}"


def _huggingface_hub() -> Any:
    try:
        import huggingface_hub
    except ImportError as exc:
        raise ImportError("Hugging Face Hub downloads need huggingface_hub: pip install 'maedfer[hub]'") from exc
    return huggingface_hub


def download_hub_file(
    spec: str | HubFile,
    *,
    sha256: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    force_download: bool = False,
    warn_unverified: bool = True,
) -> Path:
    """Downloads a Hugging Face Hub file through ``huggingface_hub`` (which honours ``HF_ENDPOINT``).

    Files go to ``<cache>/huggingface`` in huggingface_hub's own layout. The digest is checked against ``sha256``
    (or the one recorded at the first download) and recorded, as for :func:`download_url`.

    Args:
        spec: ``hf://owner/repo[@revision]/path`` or a :class:`HubFile`.
        sha256, cache_dir, offline, force_download: As :func:`download_url`.
        warn_unverified: Warn when no digest was known (off for whole repositories: :func:`from_pretrained`).

    Returns:
        The file in huggingface_hub's cache.

    Raises:
        HashMismatchError: The file's sha256 is not the expected one (the file is removed).
        NotCachedError: Offline and not cached.
        HubError: The repository or file does not exist, or the endpoint cannot be reached.
        ImportError: huggingface_hub is not installed.
    """
    hub_file = spec if isinstance(spec, HubFile) else HubFile.parse(spec)
    source, home = str(hub_file), cache_home(cache_dir)
    hf = _huggingface_hub()
    offline = is_offline(offline)
    expected, recorded_only = _expected_digest(home, source, sha256)
    try:
        path = Path(hf.hf_hub_download(
            hub_file.repo_id, hub_file.filename, revision=hub_file.revision, cache_dir=home / "huggingface",
            local_files_only=offline, force_download=force_download, endpoint=os.environ.get("HF_ENDPOINT") or None,
        ))
    except Exception as exc:
        if offline:
            raise _offline_error(source, home) from exc
        raise HubError(f"{source}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}") \
            from exc
    known = recorded_hashes(home).get(source, {})
    if not force_download and known.get("file") == os.fspath(path) and known.get("size") == path.stat().st_size:
        actual = known["sha256"]  # hashed when it was downloaded
    else:
        actual = sha256_file(path)
    try:
        _check_digest(source, actual, expected, recorded_only, home)
    except HashMismatchError:
        for file in {path.resolve(), path}:  # huggingface_hub's blob and the snapshot's link to it
            with contextlib.suppress(OSError):
                file.unlink()
        raise
    if known.get("sha256") != actual or known.get("file") != os.fspath(path):
        _record(home, source, sha256=actual, size=path.stat().st_size, file=os.fspath(path),
                verified=expected is not None)
        if expected is None and warn_unverified:
            _note_unverified(source, actual, home)
    return path


# ---------------------------------------------------------------------------------------------- model cards


def _find_card(card_id: str, cards_folder: str | os.PathLike[str] | None) -> ModelCard:
    from .cards import CARDS_FOLDER, find_card

    return find_card(card_id, CARDS_FOLDER if cards_folder is None else cards_folder)


def _card_ids(cards_folder: str | os.PathLike[str] | None) -> list[str]:
    from .cards import CARDS_FOLDER, load_model_cards

    folder = CARDS_FOLDER if cards_folder is None else cards_folder
    with contextlib.suppress(FileNotFoundError):
        return [card.id for card in load_model_cards(folder)]
    return []


def _fetch(url: str, sha256: str | None, **options: Any) -> Path:
    """Downloads one source (Hub file or link)."""
    if url.startswith(_HF_PREFIX):
        return download_hub_file(url, sha256=sha256, **options)
    return download_url(url, sha256=sha256, **options)


def download_card_weights(
    card: str | ModelCard,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    force_download: bool = False,
    keep_original: bool = False,
    cards_folder: str | os.PathLike[str] | None = None,
) -> Path:
    """The weights of a model card as a safetensors file in the cache, downloaded and converted once.

    The card's ``mirrors`` are tried first, then its ``source_urls``; each download is checked against the sha256
    the card gives for it (recorded, with a warning, when the card has none). An official ``.pth`` is converted to
    ``<cache>/cards/<id>/<id>.safetensors`` (its weights under their own keys, as ``tools/convert_checkpoint.py``
    writes them; the header records the source name, its sha256 and the card id) and, unless ``keep_original``, the
    ``.pth`` is removed. Later calls return the converted file without any request.

    Args:
        card: A card id or a :class:`maedfer.cards.ModelCard`.
        cache_dir, offline, force_download: As :func:`download_url`.
        keep_original: Keep the downloaded ``.pth`` next to the converted file.
        cards_folder: Where card ids are looked up (default: the zoo, ``maedfer.cards.CARDS_FOLDER``).

    Returns:
        The safetensors file.

    Raises:
        KeyError: Unknown card id.
        HubError: Every source failed (the message lists each failure); see :func:`download_url`.
    """
    from .checkpoint import extract_state_dict, read_checkpoint, save_safetensors

    card = _find_card(card, cards_folder) if isinstance(card, str) else card
    home, source = cache_home(cache_dir), f"card:{card.id}"
    if not force_download and (hit := _cached(home, source, None)) is not None:
        logger.info("using the cached weights of %s: %s", card.id, hit)
        return hit
    options = {"cache_dir": home, "offline": offline, "force_download": force_download}
    candidates = [(mirror.url, mirror.sha256) for mirror in card.mirrors]
    candidates += [(url, card.sha256) for url in card.source_urls]
    failures: list[str] = []
    downloaded: tuple[str, Path] | None = None
    for url, digest in candidates:
        try:
            downloaded = (url, _fetch(url, digest, **options))
            break
        except ImportError as exc:
            failures.append(str(exc))
        except HubError as exc:
            if isinstance(exc, HashMismatchError) and len(candidates) == 1:
                raise
            failures.append(str(exc))
    if downloaded is None:
        if is_offline(offline):
            raise _offline_error(f"the weights of the model card {card.id!r}", home)
        raise HubError(f"could not download the weights of the model card {card.id!r}:\n  " + "\n  ".join(failures))
    url, raw = downloaded
    raw_digest = recorded_hashes(home).get(url if not url.startswith(_HF_PREFIX) else str(HubFile.parse(url)), {})
    raw_sha256 = raw_digest.get("sha256") or sha256_file(raw)
    if _is_safetensors(raw):
        target = raw
    else:
        target = home / "cards" / card.id / f"{card.id}.safetensors"
        state_dict, _ = extract_state_dict(read_checkpoint(raw), source=str(raw))
        metadata = {"source": url, "source_sha256": raw_sha256, "format": "maedfer", "card_id": card.id}
        save_safetensors(state_dict, target, metadata=metadata, label_names=card.label_names or None)
        logger.info("converted %s (%d tensors) to %s", raw, len(state_dict), target)
        if not keep_original and raw.parent.is_relative_to(home / "downloads"):
            raw.unlink()
            with contextlib.suppress(OSError):
                raw.parent.rmdir()
    _record(home, source, sha256=sha256_file(target), size=target.stat().st_size,
            file=target.relative_to(home).as_posix() if target.is_relative_to(home) else os.fspath(target),
            source_url=url, source_sha256=raw_sha256, verified=bool(raw_digest.get("verified")))
    return target


def _is_safetensors(path: Path) -> bool:
    from .checkpoint import _looks_like_safetensors

    return path.suffix == ".safetensors" or _looks_like_safetensors(path)


# --------------------------------------------------------------------------------------------- the resolver


def _restore_scheme(spec: str) -> str:
    """``https:/host/x`` -> ``https://host/x``: a URL that went through :class:`pathlib.Path` (argparse
    ``type=Path``) lost one slash."""
    for scheme in ("https:", "http:", "hf:"):
        if spec.startswith(scheme + "/") and not spec.startswith(scheme + "//"):
            return scheme + "//" + spec[len(scheme) + 1:]
    return spec


def card_id_of(spec: str | os.PathLike[str], cards_folder: str | os.PathLike[str] | None = None) -> str | None:
    """``spec`` if it names a model card (and no local file), else ``None``."""
    text = os.fspath(spec)
    if Path(text).expanduser().exists() or not re.fullmatch(r"[a-z0-9][a-z0-9_]*", text):
        return None
    return text if text in _card_ids(cards_folder) else None


def resolve_checkpoint(
    spec: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    force_download: bool = False,
    cards_folder: str | os.PathLike[str] | None = None,
) -> Path:
    """A local checkpoint file for ``spec``, downloading it into the cache if needed.

    Args:
        spec: An existing file or folder (returned as is), ``hf://owner/repo[@revision]/path`` (a Hugging Face Hub
            file), an ``https://`` / ``http://`` link (Google Drive links need ``maedfer[gdrive]``), or a model card
            id (its weights, converted to safetensors: :func:`download_card_weights`). A URL whose ``//`` was
            collapsed by :class:`pathlib.Path` is accepted too.
        sha256: Expected sha256 of a downloaded file (links and Hub files).
        cache_dir, offline, force_download: As :func:`download_url`.
        cards_folder: Where card ids are looked up.

    Returns:
        The local file (or folder).

    Raises:
        FileNotFoundError: ``spec`` is neither a file, a link, a Hub file nor a card id (the message suggests close
            card ids).
        HubError, ImportError: See :func:`download_url`.
    """
    text = os.fspath(spec)
    local = Path(text).expanduser()
    if local.exists():
        return local
    text = _restore_scheme(text)
    options = {"cache_dir": cache_dir, "offline": offline, "force_download": force_download}
    if text.startswith(_HF_PREFIX):
        if text.count("/") == 3:  # hf://owner/repo[@revision]: a repository in the save_pretrained layout
            return _hub_folder(text, None, **options)
        return download_hub_file(text, sha256=sha256, **options)
    if text.startswith(_URL_SCHEMES):
        return download_url(text, sha256=sha256, **options)
    if re.fullmatch(r"[a-z0-9][a-z0-9_]*", text):
        try:
            card = _find_card(text, cards_folder)
        except KeyError as exc:
            raise FileNotFoundError(2, f"checkpoint {text!r} is not a file and {exc.args[0]}", text) from None
        return download_card_weights(card, cards_folder=cards_folder, **options)
    raise FileNotFoundError(
        2, f"checkpoint {text!r}: no such file (a checkpoint is a file, a model card id, hf://owner/repo/file or an "
        "https:// link)", text,
    )


# ----------------------------------------------------------------------------------------------- create_model


def _pretrained_cfg(card: ModelCard | None, weights: Path | None, name: str) -> dict[str, Any]:
    """What ``model.pretrained_cfg`` says about where the weights came from."""
    cfg: dict[str, Any] = {"model_name": name, "file": None if weights is None else os.fspath(weights)}
    if card is not None:
        cfg.update(card_id=card.id, label_names=list(card.label_names), input=dict(card.input),
                   metrics=dict(card.metrics), trained_on=card.trained_on, split=card.split, task=card.task,
                   source_urls=list(card.source_urls), sha256=card.sha256)
    return cfg


def create_model(
    name: str,
    *,
    pretrained: bool | str | os.PathLike[str] = False,
    checkpoint: Any = None,
    width_from_checkpoint: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    force_download: bool = False,
    cards_folder: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Builds a model by registry name or model card id, with released weights if asked (``maedfer.create_model``).

    Args:
        name: A registry name (:func:`maedfer.list_models`) or a model card id (``mae_dfer_dfew_fold1``: the card's
            registry model with its constructor arguments).
        pretrained: ``True``: the card's weights (downloaded, verified, converted and cached by
            :func:`download_card_weights`; a registry name needs exactly one card that uses it). A string: any
            checkpoint spec of :func:`resolve_checkpoint` (file, card id, ``hf://``, link).
        checkpoint: A checkpoint path or object, loaded as :func:`maedfer.registry.create_model` does (not with
            ``pretrained``).
        width_from_checkpoint: See :func:`maedfer.registry.create_model`.
        cache_dir, offline, force_download: As :func:`download_url`.
        cards_folder: Where card ids are looked up.
        **overrides: Constructor arguments (over the card's ``model_kwargs``).

    Returns:
        The model in training mode; ``model.pretrained_cfg`` records the card and file of the weights.

    Raises:
        KeyError: ``name`` is neither registered nor a card id, or ``pretrained=True`` for a registry name that no
            card (or several cards) use.
        maedfer.checkpoint.CheckpointError: The weights do not fit the model.
    """
    if pretrained is not False and checkpoint is not None:
        raise ValueError("pass pretrained= or checkpoint=, not both")
    card = None
    if not is_model(name):
        try:
            card = _find_card(name, cards_folder)
        except KeyError as exc:
            close = ", ".join(_close(name, list_models(include_official=True)))
            hint = f"; close registry names: {close}" if close else ""
            raise KeyError(f"{name!r} is neither a registered model nor a model card id: {exc.args[0]}{hint}") from None
    elif pretrained is True:
        card = _only_card_of(name, cards_folder)
    options = {"cache_dir": cache_dir, "offline": offline, "force_download": force_download}
    weights: Path | None = None
    if pretrained is True:
        assert card is not None
        weights = download_card_weights(card, cards_folder=cards_folder, **options)
    elif pretrained:
        weights = resolve_checkpoint(pretrained, cards_folder=cards_folder, **options)
        if (layout := pretrained_folder(weights)) is not None:  # a save_pretrained folder: its weights file
            weights = layout[0]
    if card is not None:
        kwargs = {**card.model_kwargs, **overrides}
        model_name, width = card.model, card.width_from_checkpoint and (weights is not None or checkpoint is not None)
    else:
        kwargs, model_name, width = overrides, name, width_from_checkpoint
    if weights is not None:
        model = _load_weights(model_name, weights, width, kwargs)
    else:
        model = _build_registered(model_name, checkpoint=checkpoint, width_from_checkpoint=width, **kwargs)
    model.pretrained_cfg = _pretrained_cfg(card, weights, model_name)  # type: ignore[attr-defined]
    return model


def _close(name: str, names: Sequence[str]) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, list(names), n=3, cutoff=0.6)


def _only_card_of(name: str, cards_folder: str | os.PathLike[str] | None) -> ModelCard:
    """The one card whose registry model (or official name) is ``name``."""
    from .cards import CARDS_FOLDER, load_model_cards

    cards = [card for card in load_model_cards(CARDS_FOLDER if cards_folder is None else cards_folder)
             if name in (card.model, card.official_model)]
    if len(cards) != 1:
        listed = ", ".join(card.id for card in cards) or "none"
        raise KeyError(
            f"pretrained=True needs a model card id for {name!r} (cards using it: {listed}); e.g. "
            f"maedfer.create_model({cards[0].id if cards else 'CARD_ID'!r}, pretrained=True)"
        )
    return cards[0]


def _load_weights(model_name: str, weights: Path, width: bool, kwargs: Mapping[str, Any]) -> nn.Module:
    """Builds ``model_name`` and loads ``weights`` into it; a fine-tuned model missing its head is an error."""
    from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint

    payload = read_checkpoint(weights)
    model = _build_registered(model_name, checkpoint=payload if width else None, width_from_checkpoint=width,
                              **kwargs)
    report = load_checkpoint(model, payload, source=os.fspath(weights))
    head_missing = [key for key in report.missing_keys if key.split(".")[0] == "head"]
    if model_entry(model_name).kind == "finetune" and head_missing:
        raise CheckpointError(f"{weights}: the head of {model_name} is not in the weights (missing "
                              f"{', '.join(head_missing)}); check num_classes")
    if report.missing_keys or report.unexpected_keys:
        logger.warning("%s into %s: %s", weights, model_name, report)
    return model


# ------------------------------------------------------------------------------------------ the Hub layout


def _json_ready(value: Any) -> Any:
    """Tuples -> lists, recursively; anything JSON cannot hold is an error naming it."""
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{value!r} ({type(value).__name__}) cannot be stored in {CONFIG_FILE}")


def _model_facts(inner: nn.Module) -> tuple[str, dict[str, Any]]:
    """``(registry name, constructor arguments)`` recorded on a model by :func:`maedfer.create_model`."""
    name = getattr(inner, "model_name", None)
    if not isinstance(name, str):
        raise ValueError("save_pretrained needs the registry name of the model: build it with maedfer.create_model, "
                         "or pass model_name= (and model_kwargs=)")
    return name, dict(getattr(inner, "model_kwargs", {}) or {})


def save_pretrained(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    model_name: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    label_names: Sequence[str] | None = None,
    card: str | ModelCard | None = None,
    license: str | None = None,
    datasets: Sequence[str] | None = None,
    metrics: Mapping[str, float] | None = None,
    dataset_split: str | None = None,
    tags: Sequence[str] = (),
    title: str | None = None,
    description: str = "",
    cards_folder: str | os.PathLike[str] | None = None,
) -> Path:
    """Writes ``model`` as a folder in the Hugging Face Hub layout, ready for ``hf upload``.

    ``config.json`` holds the registry name and constructor arguments that rebuild the model (plus task, label
    names, input geometry and where the weights came from), ``model.safetensors`` the weights, ``README.md`` a
    model card with the Hub's YAML front matter (``license``, ``library_name: maedfer``, ``tags``, ``datasets``,
    ``pipeline_tag``, ``model-index`` with UAR/WAR when known). Every file is written atomically.

    Args:
        model: The model (wrappers are looked through). Its registry name and arguments come from
            :func:`maedfer.create_model` unless ``model_name`` / ``model_kwargs`` are given.
        folder: Output folder (created).
        model_name, model_kwargs: Override what the model records.
        label_names: Class names in output order (default: the card's or ``model.pretrained_cfg``'s).
        card: A model card (id or object) whose facts fill the README (default: the card the model came from).
        license: A Hub licence id (``mit``, ``cc-by-nc-4.0`` ...); with a card and no licence: ``other`` with a
            link to the official README (the released weights state none).
        datasets, metrics, dataset_split: Training dataset names, test ``{"UAR": .., "WAR": ..}`` in percent and
            the split they were measured on (default: the card's).
        tags: Extra Hub tags.
        title, description: Heading and text of the README body.
        cards_folder: Where card ids are looked up.

    Returns:
        The folder.
    """
    from .checkpoint import save_safetensors
    from .models.wrappers import unwrap_model

    model = unwrap_model(model)  # DDP / DeepSpeed / torch.compile wrappers: the weights under their own names
    name, kwargs = _model_facts(model) if model_name is None else (model_name, {})
    kwargs.update(model_kwargs or {})
    entry = model_entry(name)
    pretrained = dict(getattr(model, "pretrained_cfg", {}) or {})
    if isinstance(card, str):
        card = _find_card(card, cards_folder)
    elif card is None and isinstance(pretrained.get("card_id"), str):
        with contextlib.suppress(KeyError, FileNotFoundError):
            card = _find_card(pretrained["card_id"], cards_folder)
    names = list(label_names) if label_names is not None else (
        list(card.label_names) if card is not None and card.label_names else pretrained.get("label_names") or None)
    num_outputs = int(getattr(model, "num_classes", 0) or 0)
    if names is not None and entry.kind == "finetune" and len(names) != num_outputs:
        raise ValueError(f"{len(names)} label names for a model with {num_outputs} outputs")
    task = card.task if card is not None else ("pretraining" if entry.kind == "pretrain" else "classification")
    config = {
        "library_name": "maedfer",
        "maedfer_version": __version__,
        "model_name": name,
        "model_kwargs": kwargs,
        "system": entry.system,
        "kind": entry.kind,
        "task": task,
        "num_classes": num_outputs,
        "label_names": names,
        "input": dict(card.input) if card is not None else pretrained.get("input"),
        "card_id": card.id if card is not None else None,
        "source_urls": list(card.source_urls) if card is not None else [],
    }
    out = Path(os.fspath(folder))
    out.mkdir(parents=True, exist_ok=True)
    save_safetensors(model, out / WEIGHTS_FILE, metadata={"format": "pt", "model_name": name}, label_names=names)
    atomic_write_text(out / CONFIG_FILE, json.dumps(_json_ready(config), indent=2) + "\n")
    if metrics is None and card is not None:
        metrics = card.metrics
    readme = _hub_readme(config, card, license=license, datasets=datasets, metrics=metrics or {},
                         split=dataset_split, tags=tags, title=title, description=description)
    atomic_write_text(out / README_FILE, readme)
    logger.info("saved %s in the Hub layout to %s", name, out)
    return out


_SYSTEM_TAGS = {"mae_dfer": "mae-dfer", "svfap": "svfap", "hicmae": "hicmae", "videomae": "videomae"}


def _hub_readme(
    config: Mapping[str, Any],
    card: ModelCard | None,
    *,
    license: str | None,
    datasets: Sequence[str] | None,
    metrics: Mapping[str, float],
    split: str | None,
    tags: Sequence[str],
    title: str | None,
    description: str,
) -> str:
    """The README of a Hub-layout folder: YAML front matter in the Hub's model-card schema and a short body."""
    import yaml

    name, task = config["model_name"], config["task"]
    front: dict[str, Any] = {}
    if license is not None:
        front["license"] = license
    elif card is not None:
        front.update({"license": "other", "license_name": "not-stated", "license_link": card.readme_url})
    else:
        logger.warning("save_pretrained: no license given; the Hub asks for one (license='mit', ...)")
    front["library_name"] = "maedfer"
    modality_tags = {"video": ["video"], "audio_visual": ["video", "audio"], "audio": ["audio"]}
    front["tags"] = list(dict.fromkeys([
        "maedfer", _SYSTEM_TAGS.get(config["system"], config["system"]), "facial-expression-recognition",
        *(modality_tags.get(card.modality, []) if card is not None else []), *tags,
    ]))
    dataset_names = list(datasets) if datasets is not None else ([card.trained_on] if card is not None else [])
    if dataset_names:
        front["datasets"] = dataset_names
    if task == "classification":
        front["pipeline_tag"] = "video-classification"
    if metrics and dataset_names and task != "pretraining":
        front["model-index"] = [{
            "name": card.id if card is not None else name,
            "results": [{
                "task": {"type": "video-classification" if task == "classification" else task,
                         "name": "Dynamic facial expression recognition"},
                "dataset": {"name": dataset_names[0], "type": dataset_names[0],
                            "split": split or (card.split if card is not None else "test")},
                "metrics": [{"type": key.lower(), "value": float(value), "name": key}
                            for key, value in metrics.items()],
            }],
        }]
    header = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=120)
    heading = title or (card.title if card is not None else f"{name} (maedfer)")
    lines = [f"# {heading}", ""]
    if description:
        lines += [description.strip(), ""]
    if card is not None:
        lines += [f"Converted from the released checkpoint described by the maedfer model card `{card.id}` "
                  f"({card.repository}, paper {card.paper}).", ""]
        if card.licence:
            lines += [f"Licence of the weights: {card.licence}", ""]
    labels = config.get("label_names")
    lines += [
        "## Use", "", "```python", "import maedfer", "",
        "model = maedfer.from_pretrained(\"<this folder or owner/repo>\")  # eval mode", "```", "",
        f"Registry model `{name}` with `{json.dumps(config['model_kwargs'])}`"
        + (f"; outputs in this order: {', '.join(labels)}." if labels else "."),
        "",
    ]
    return f"---\n{header}---\n\n" + "\n".join(lines)


def _read_config(path: Path) -> dict[str, Any]:
    """``config.json`` of a Hub-layout folder, checked; errors name the file (and line for bad JSON)."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise HubError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    except UnicodeDecodeError as exc:
        raise HubError(f"{path}: not UTF-8 text") from exc
    if not isinstance(config, dict) or not isinstance(config.get("model_name"), str):
        raise HubError(f"{path}: a maedfer config.json is a JSON object with a string 'model_name'")
    if not isinstance(config.get("model_kwargs", {}), dict):
        raise HubError(f"{path}: 'model_kwargs' must be a JSON object")
    if not is_model(config["model_name"]):
        raise HubError(f"{path}: unknown model {config['model_name']!r} (written by a newer maedfer?)")
    return config


def _hub_folder(spec: str, revision: str | None, *, cache_dir: Any, offline: bool | None,
                force_download: bool) -> Path:
    """The local folder of a Hub repository's ``config.json`` and ``model.safetensors`` (downloaded)."""
    repo = spec[len(_HF_PREFIX):] if spec.startswith(_HF_PREFIX) else spec
    repo, _, at = repo.partition("@")
    revision = revision or at or None
    if not _REPO_ID.match(repo):
        raise FileNotFoundError(2, f"{spec!r} is neither a folder nor a Hub repository id (owner/name)", spec)
    # A repository is trusted as a whole (like transformers' from_pretrained); the digests are still recorded and
    # checked on later downloads.
    options = {"cache_dir": cache_dir, "offline": offline, "force_download": force_download, "warn_unverified": False}
    config = download_hub_file(HubFile(repo, CONFIG_FILE, revision), **options)
    download_hub_file(HubFile(repo, WEIGHTS_FILE, revision), **options)
    return config.parent


def pretrained_folder(path: str | os.PathLike[str]) -> tuple[Path, str, dict[str, Any]] | None:
    """``(weights file, registry name, constructor arguments)`` of a folder in the :func:`save_pretrained` layout, or
    ``None`` for anything else."""
    folder = Path(os.fspath(path))
    if not (folder.is_dir() and (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()):
        return None
    config = _read_config(folder / CONFIG_FILE)
    return folder / WEIGHTS_FILE, config["model_name"], dict(config.get("model_kwargs") or {})


def from_pretrained(
    folder_or_repo: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    force_download: bool = False,
    strict: bool = True,
    **overrides: Any,
) -> nn.Module:
    """Loads a model saved by :func:`save_pretrained`, from a folder or a Hugging Face Hub repository.

    Args:
        folder_or_repo: A folder with ``config.json`` and ``model.safetensors``, or a Hub repository id
            (``owner/name``, ``hf://owner/name``, optionally ``@revision``), downloaded through huggingface_hub.
        revision: Hub branch, tag or commit.
        cache_dir, offline, force_download: As :func:`download_url`.
        strict: Fail on missing or unexpected keys.
        **overrides: Constructor arguments over the config's (``drop_path_rate`` ...).

    Returns:
        The model in eval mode; ``model.pretrained_cfg`` is the config (with ``label_names``).

    Raises:
        FileNotFoundError: Not a folder and not a repository id; the folder lacks a file.
        HubError: ``config.json`` is malformed; a download failed.
        maedfer.checkpoint.CheckpointError: The weights do not fit (``strict``: any key differs).
    """
    from .checkpoint import load_checkpoint

    text = _restore_scheme(os.fspath(folder_or_repo))
    folder = Path(text).expanduser()
    if not folder.is_dir():
        folder = _hub_folder(text, revision, cache_dir=cache_dir, offline=offline, force_download=force_download)
    for required in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / required).is_file():
            raise FileNotFoundError(2, f"{folder} is not a maedfer model folder: {required} is missing",
                                    os.fspath(folder / required))
    config = _read_config(folder / CONFIG_FILE)
    kwargs = {**config.get("model_kwargs", {}), **overrides}
    model = _build_registered(config["model_name"], **kwargs)
    report = load_checkpoint(model, folder / WEIGHTS_FILE, strict=strict)
    logger.info("loaded %s from %s (%s)", config["model_name"], folder, report)
    model.pretrained_cfg = {**config, "file": os.fspath(folder / WEIGHTS_FILE)}  # type: ignore[attr-defined]
    return model.eval()
