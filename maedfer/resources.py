"""Where the experiment configs and model cards are, in a repository checkout and in an installed wheel.

The repository keeps them beside the launchers (``pretrain/configs``, ``finetune/configs``) and in ``models/``; a
wheel ships copies inside the package (``maedfer/_bundled/...``, written by ``setup.py``'s build step). Everything
that looks up a config or a card by name goes through this module, so the same name works in a checkout, an
editable install and a wheel installed anywhere.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

__all__ = [
    "CONFIG_KINDS",
    "BUNDLED_FOLDERS",
    "ResourceNotFoundError",
    "bundle_root",
    "cards_folder",
    "config_path",
    "configs_folder",
    "is_config_name",
    "list_configs",
    "resolve_config",
]

#: The two families of experiment configs: pre-training and fine-tuning.
CONFIG_KINDS: tuple[str, ...] = ("pretrain", "finetune")

#: Folder inside the package (in a wheel) -> folder in the repository checkout it is copied from.
BUNDLED_FOLDERS: dict[str, str] = {
    "pretrain_configs": "pretrain/configs",
    "finetune_configs": "finetune/configs",
    "model_cards": "models",
}

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent
_CONFIG_SUFFIXES: tuple[str, ...] = (".yaml", ".yml")


class ResourceNotFoundError(FileNotFoundError):
    """A config or folder asked for by name is not shipped (the message lists what is)."""


def bundle_root() -> Path:
    """The folder holding the packaged copies (present in an installed wheel, absent in a checkout and an editable
    install)."""
    return _PACKAGE / "_bundled"


def _resource_folder(key: str) -> Path:
    """The packaged copy of a resource folder if there is one, else the checkout's folder (which may be missing:
    the readers then report the path they could not find)."""
    packaged = bundle_root() / key
    return packaged if packaged.is_dir() else _CHECKOUT / BUNDLED_FOLDERS[key]


def configs_folder(kind: str) -> Path:
    """The folder of the ``kind`` (``pretrain`` or ``finetune``) experiment configs."""
    if kind not in CONFIG_KINDS:
        raise ValueError(f"config kind must be one of {', '.join(CONFIG_KINDS)}, got {kind!r}")
    return _resource_folder(f"{kind}_configs")


def cards_folder() -> Path:
    """The model zoo folder (``<system>/<card id>.md`` and ``README.md``)."""
    return _resource_folder("model_cards")


def list_configs(kind: str) -> list[str]:
    """Names (file stems) of the shipped ``kind`` configs, sorted."""
    folder = configs_folder(kind)
    if not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.iterdir() if path.suffix in _CONFIG_SUFFIXES)


def is_config_name(text: str | os.PathLike[str]) -> bool:
    """True for a bare config name (``demo``, ``mae_dfer_voxceleb2.yaml``), false for anything with a folder part."""
    value = os.fspath(text)
    return bool(value) and "/" not in value and os.sep not in value and (os.altsep is None or os.altsep not in value)


def config_path(name: str, kind: str | None = None) -> Path:
    """The shipped config called ``name`` (with or without ``.yaml``).

    Args:
        name: A config name such as ``mae_dfer_voxceleb2`` or ``dfew_mae_dfer.yaml``.
        kind: ``pretrain`` or ``finetune``; None searches both and requires the name to be unambiguous
            (``demo`` exists in both).

    Raises:
        ResourceNotFoundError: If no shipped config has that name (the message lists close names), or the name is
            ambiguous without ``kind``.
    """
    kinds = CONFIG_KINDS if kind is None else (kind,)
    stem = name
    for suffix in _CONFIG_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    found: list[Path] = []
    available: list[str] = []
    for each in kinds:
        folder = configs_folder(each)
        for suffix in _CONFIG_SUFFIXES:
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                found.append(candidate)
                break
        available.extend(list_configs(each))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ResourceNotFoundError(
            f"config name {name!r} exists for both pre-training and fine-tuning ({', '.join(map(str, found))}); "
            "use the launcher of the one you mean (maedfer pretrain / maedfer finetune) or give the file path"
        )
    close = difflib.get_close_matches(stem, available, n=4, cutoff=0.5)
    which = " or ".join(kinds)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; the {which} configs are {', '.join(available)}"
    raise ResourceNotFoundError(f"no {which} config named {name!r}{hint}")


def resolve_config(value: str | os.PathLike[str], kind: str | None = None) -> Path:
    """What ``--config VALUE`` means: an existing file as given, else the shipped config of that name.

    Args:
        value: A path to a YAML file, or a bare config name (``demo``, ``dfew_mae_dfer``).
        kind: ``pretrain`` or ``finetune`` for a bare name (the launcher's own configs); None searches both.

    Raises:
        ResourceNotFoundError: If ``value`` is neither an existing file nor a shipped config name.
    """
    path = Path(os.fspath(value))
    if path.is_file():
        return path
    if not is_config_name(value):
        raise ResourceNotFoundError(f"config file {path} does not exist")
    try:
        return config_path(os.fspath(value), kind)
    except ResourceNotFoundError as err:
        raise ResourceNotFoundError(f"config file {path} does not exist, and it is not a shipped config name: "
                                    f"{err}") from None
