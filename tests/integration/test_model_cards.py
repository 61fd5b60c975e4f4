"""The model zoo: cards of the released official checkpoints, the zoo table, and ``convert_checkpoint.py --card``.

Expected facts (ids, label orders, key counts, README numbers) are written out here from the official READMEs,
preprocessing scripts and the reference specs, not taken from the code under test.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import re
import shutil
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml

import maedfer
from maedfer.checkpoint import load_safetensors
from maedfer.data.registry import dataset_info
from maedfer.apps.model_cards import (
    ZOO_TABLE_END,
    ZOO_TABLE_START,
    ModelCardError,
    card_for_converted,
    find_card,
    load_model_cards,
    parse_model_card,
    read_model_card,
    zoo_table_markdown,
)
from maedfer.registry import OFFICIAL_BEHAVIOUR

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"

# Every file the three READMEs link (pre-training + one per fold / split).
EXPECTED_IDS = {
    "mae_dfer_voxceleb2_pretrain", "mae_dfer_ferv39k", "svfap_voxceleb2_pretrain", "svfap_ferv39k",
    "hicmae_voxceleb2_pretrain",
    *(f"mae_dfer_dfew_fold{k}" for k in range(1, 6)), *(f"mae_dfer_mafw_fold{k}" for k in range(1, 6)),
    *(f"svfap_dfew_fold{k}" for k in range(1, 6)), *(f"svfap_mafw_fold{k}" for k in range(1, 6)),
    *(f"hicmae_crema_d_fold{k}" for k in range(1, 6)), *(f"hicmae_mafw_fold{k}" for k in range(1, 6)),
}
REQUIRED_KEYS = {
    "id", "system", "title", "kind", "task", "modality", "trained_on", "split", "pretrained_from", "model",
    "model_kwargs", "num_classes", "label_names", "input", "metrics", "provenance", "file_name", "source_urls",
    "repository", "readme_url", "paper", "licence", "code_licence", "code_licence_url", "sha256",
}
# State-dict sizes of the official models in their released configuration (reference specs, key tables).
KEY_COUNTS = {
    ("mae_dfer", "pretrain"): 575, ("mae_dfer", "finetune"): 519,
    ("svfap", "pretrain"): 441, ("svfap", "finetune"): 385,
    ("hicmae", "pretrain"): 540, ("hicmae", "finetune"): 370,
}
# Label orders of the official preprocessing scripts.
LABELS = {
    "DFEW": ["Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear"],
    "FERV39k": ["Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear"],
    "MAFW": ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety",
             "helplessness", "disappointment"],
    "CREMA-D": ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"],
}
# A few rows of the README tables, written out by hand.
README_ROWS = {
    "mae_dfer_dfew_fold1": (62.59, 74.88),
    "mae_dfer_ferv39k": (43.29, 52.50),
    "mae_dfer_mafw_fold4": (45.42, 59.50),
    "svfap_dfew_fold5": (68.39, 77.44),
    "svfap_ferv39k": (43.05, 52.86),
    "hicmae_crema_d_fold3": (87.23, 87.19),
    "hicmae_mafw_fold2": (41.57, 55.10),
}
DOWNLOAD_HOSTS = ("https://drive.google.com/file/d/", "https://unioulu-my.sharepoint.com/")


def front_matter(text: str) -> dict:
    """The YAML between the first two '---' lines, parsed here without the module under test."""
    lines = text.splitlines()
    assert lines[0] == "---"
    end = lines.index("---", 1)
    return yaml.safe_load("\n".join(lines[1:end]))


def card_files() -> list[Path]:
    return sorted(path for path in MODELS.rglob("*.md") if path.name != "README.md")


@pytest.fixture(scope="module")
def cards():
    return load_model_cards(MODELS)


# --------------------------------------------------------------------------------------------------- the cards


def test_one_card_per_released_file(cards) -> None:
    files = card_files()
    assert {path.stem for path in files} == EXPECTED_IDS
    assert len(cards) == len(files) == len(EXPECTED_IDS) == 35
    assert len({card.id for card in cards}) == len(cards)
    for card in cards:
        assert card.path is not None and card.path.parent.name == card.system and card.path.stem == card.id


def test_front_matter_has_the_required_keys() -> None:
    for path in card_files():
        data = front_matter(path.read_text(encoding="utf-8"))
        assert REQUIRED_KEYS <= set(data), (path, REQUIRED_KEYS - set(data))
        assert data["sha256"] is None, path  # nothing could be downloaded while writing the cards


def test_registry_models_exist_and_match(cards) -> None:
    clean = maedfer.list_models()
    everything = maedfer.list_models(include_official=True)
    for card in cards:
        assert card.model in clean, card.id
        assert card.official_model in everything, card.id
        for name in (card.model, card.official_model):
            entry = maedfer.model_entry(name)
            assert (entry.system, entry.kind) == (card.system, card.kind), (card.id, name)


def test_card_models_have_the_released_layout(cards) -> None:
    """Built on the meta device: the key count of the official file and the head size of the card."""
    for card in cards:
        with torch.device("meta"):
            model = maedfer.create_model(card.model, **card.model_kwargs)
            official = maedfer.create_model(card.official_model, **card.official_kwargs)
        state, official_state = model.state_dict(), official.state_dict()
        assert len(state) == KEY_COUNTS[(card.system, card.kind)], card.id
        assert list(state) == list(official_state), card.id
        if not card.width_from_checkpoint:
            assert all(state[k].shape == official_state[k].shape for k in state), card.id
        if card.kind == "finetune":
            assert state["head.weight"].shape[0] == card.num_classes, card.id
        else:
            assert card.num_classes == 0 and card.label_names == [] and card.metrics == {}


def test_labels_splits_and_geometry_match_the_datasets(cards) -> None:
    for card in cards:
        info = dataset_info(card.trained_on)
        assert card.split in info.folds, card.id
        assert card.input["num_frames"] == 16 and card.input["input_size"] == 160, card.id
        assert card.input["sampling_rate"] == (1 if card.trained_on == "FERV39k" else 4), card.id
        assert ("audio" in card.input) == (card.system == "hicmae"), card.id
        if card.kind == "finetune":
            assert card.label_names == LABELS[card.trained_on] == list(info.label_names), card.id
            assert card.num_classes == len(LABELS[card.trained_on])
            assert card.pretrained_from == f"{card.system}_voxceleb2_pretrain"
        else:
            assert card.trained_on == "VoxCeleb2" and card.pretrained_from is None


def test_pretraining_cards_reproduce_the_official_behaviour(cards) -> None:
    for card in cards:
        if card.kind == "pretrain":
            for key, value in OFFICIAL_BEHAVIOUR.get(card.system, {}).items():
                assert card.model_kwargs.get(key) == value, card.id
    # Only SVFAP's pre-training width is unknown (768 registered, 512 used by fine-tuning).
    assert {card.id for card in cards if card.width_from_checkpoint} == {"svfap_voxceleb2_pretrain"}


def test_links_are_https() -> None:
    url = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s)>'\"|]+", re.IGNORECASE)
    for path in card_files():
        text = path.read_text(encoding="utf-8")
        links = url.findall(text)
        assert links, path
        assert all(link.startswith("https://") for link in links), (path, [u for u in links if "https" not in u])
        data = front_matter(text)
        assert data["source_urls"] and all(u.startswith(DOWNLOAD_HOSTS) for u in data["source_urls"]), path
        assert re.fullmatch(r"https://github\.com/sunlicai/[\w-]+/blob/[0-9a-f]{40}/README\.md", data["readme_url"])
        assert re.fullmatch(r"https://github\.com/sunlicai/[\w-]+/blob/[0-9a-f]{40}/LICENSE", data["code_licence_url"])
        if data["kind"] == "finetune":
            assert data["log_url"].startswith(DOWNLOAD_HOSTS), path


def test_readme_numbers(cards) -> None:
    by_id = {card.id: card for card in cards}
    for card_id, (uar, war) in README_ROWS.items():
        assert by_id[card_id].metrics == {"UAR": uar, "WAR": war}
    # The README's per-fold rows average to its summary row (WAR is pooled, hence the tolerance).
    groups: dict[tuple[str, str], list] = {}
    for card in cards:
        if card.split.startswith("split"):
            groups.setdefault((card.system, card.trained_on), []).append(card)
    assert len(groups) == 6
    for group in groups.values():
        assert len(group) == 5
        summary = [ref for ref in group[0].reference_metrics if ref.kind == "released_mean"]
        assert len(summary) == 1
        for name in ("UAR", "WAR"):
            mean = sum(card.metrics[name] for card in group) / 5
            assert mean == pytest.approx(summary[0].values[name], abs=0.05), (group[0].id, name)


def test_licences_are_stated_honestly(cards) -> None:
    for card in cards:
        assert card.code_licence == "MIT"
        assert card.licence.startswith("Not stated separately"), card.id
        assert "MIT License" in card.licence


def test_zoo_readme_table_is_in_sync(cards) -> None:
    text = (MODELS / "README.md").read_text(encoding="utf-8")
    start, end = text.index(ZOO_TABLE_START), text.index(ZOO_TABLE_END)
    table = text[start + len(ZOO_TABLE_START):end].strip("\n") + "\n"
    assert table == zoo_table_markdown(cards, base=MODELS)
    rows = [line for line in table.splitlines()[2:] if line.startswith("| [")]
    assert len(rows) == len(EXPECTED_IDS)
    for card in cards:
        assert sum(f"[{card.id}]({card.system}/{card.id}.md)" in row for row in rows) == 1


def test_find_card() -> None:
    card = find_card("mae_dfer_dfew_fold3", MODELS)
    assert (card.model, card.num_classes, card.split) == ("mae_dfer_base", 7, "split03")
    with pytest.raises(KeyError, match="mae_dfer_dfew_fold3"):
        find_card("mae_dfer_dfew_fold6", MODELS)


# -------------------------------------------------------------------------------------------------- bad cards


def _card_text(card_id: str = "mae_dfer_dfew_fold1") -> str:
    return (MODELS / "mae_dfer" / f"{card_id}.md").read_text(encoding="utf-8")


def _line_of(text: str, prefix: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if line.startswith(prefix))


def test_parse_errors_name_the_file_and_line(tmp_path: Path) -> None:
    good = _card_text()

    bad_yaml = good.replace("kind: finetune", "kind: [finetune", 1)
    path = tmp_path / "bad_yaml.md"
    path.write_text(bad_yaml, encoding="utf-8")
    with pytest.raises(ModelCardError, match=rf"^{re.escape(str(path))}:\d+: invalid YAML"):
        read_model_card(path)

    http = good.replace("paper: https://", "paper: http://", 1)
    path = tmp_path / "http.md"
    path.write_text(http, encoding="utf-8")
    with pytest.raises(ModelCardError, match=rf"^{re.escape(str(path))}:{_line_of(http, 'paper:')}: paper: .*https"):
        read_model_card(path)

    wrong_type = good.replace("\nnum_classes: 7\n", "\nnum_classes: seven\n", 1)
    path = tmp_path / "wrong_type.md"
    path.write_text(wrong_type, encoding="utf-8")
    with pytest.raises(ModelCardError, match=rf":{_line_of(wrong_type, 'num_classes:')}: num_classes: must be int"):
        read_model_card(path)

    missing = "\n".join(line for line in good.splitlines() if not line.startswith("model: "))
    with pytest.raises(ModelCardError, match=r"^card\.md:1: .*'model'"):
        parse_model_card(missing, source="card.md")
    with pytest.raises(ModelCardError, match=r"^card\.md:1: .*front matter"):
        parse_model_card("# no front matter\n", source="card.md")
    with pytest.raises(ModelCardError, match="unknown key"):
        parse_model_card(good.replace("sha256: null", "sha256: null\nsha265: null", 1))
    with pytest.raises(ModelCardError, match="label_names"):
        parse_model_card(good.replace("\nnum_classes: 7\n", "\nnum_classes: 8\n", 1))


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "zoo"
    (folder / "mae_dfer").mkdir(parents=True)
    (folder / "mae_dfer" / "mae_dfer_dfew_fold1.md").write_text(_card_text(), encoding="utf-8")
    (folder / "mae_dfer" / "copy.md").write_text(_card_text(), encoding="utf-8")
    with pytest.raises(ModelCardError, match="file name must be the card id"):
        load_model_cards(folder)


# ----------------------------------------------------------------------------------------------- conversion


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("convert_checkpoint_tool", ROOT / "tools" / "convert_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _plain(value):
    """Tuples -> lists, so that yaml.safe_dump can write the value."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tiny_release(tmp_path: Path, card_id: str, drop: tuple[str, ...] = ()) -> tuple[Path, Path, dict, dict]:
    """A tiny randomly initialised model of the card's architecture, saved like an official release, and a copy of
    the card whose model_kwargs build that tiny model (minus the ``drop`` keys)."""
    card_path = next(MODELS.rglob(f"{card_id}.md"))
    text = card_path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    end = lines.index("---\n", 1)
    data = yaml.safe_load("".join(lines[1:end]))
    tiny = {**_plain(maedfer.model_entry(data["model"]).tiny_overrides), **data["model_kwargs"]}
    torch.manual_seed(0)
    model = maedfer.create_model(data["model"], **tiny)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    source = tmp_path / "release.pth"
    torch.save({"model": state, "epoch": 99, "args": argparse.Namespace(model=data["official_model"])}, source)
    data["model_kwargs"] = {k: v for k, v in tiny.items() if k not in drop}
    card_copy = tmp_path / "cards" / data["system"] / f"{card_id}.md"
    card_copy.parent.mkdir(parents=True)
    card_copy.write_text("---\n" + yaml.safe_dump(data, sort_keys=False) + "---\n" + "".join(lines[end + 1:]))
    return source, card_copy, state, tiny


@pytest.mark.parametrize(
    ("card_id", "drop"),
    [
        ("mae_dfer_dfew_fold1", ()),
        ("svfap_voxceleb2_pretrain", ("embed_dim", "num_heads")),  # the width is read from the file
        ("hicmae_crema_d_fold1", ()),
    ],
)
def test_convert_with_card(tmp_path: Path, capsys: pytest.CaptureFixture[str], card_id: str, drop: tuple) -> None:
    source, card_copy, state, tiny = _tiny_release(tmp_path, card_id, drop)
    target = tmp_path / "out" / f"{card_id}.safetensors"
    target.parent.mkdir()
    assert _tool().main([str(source), str(target), "--card", str(card_copy)]) == 0
    out = capsys.readouterr().out
    assert "missing keys (not in checkpoint, left as initialised): 0" in out

    written_card = target.with_suffix(".md")
    data = front_matter(written_card.read_text(encoding="utf-8"))
    assert data["id"] == card_id
    assert data["sha256"] == _sha256(source)
    assert data["converted"]["sha256"] == _sha256(target)
    assert data["converted"]["source_sha256"] == _sha256(source)
    assert data["converted"]["file"] == target.name
    assert data["converted"]["maedfer_version"] == maedfer.__version__
    assert "--card" in data["converted"]["command"]
    assert data["converted"]["load_check"]["missing_keys"] == []
    assert data["converted"]["load_check"]["unexpected_keys"] == []
    assert data["converted"]["load_check"]["loaded_tensors"] == len(state)
    width = next(value.shape[0] for key, value in state.items() if key.endswith("patch_embed.proj.weight"))
    assert data["converted"]["load_check"]["encoder_width"] == width
    assert read_model_card(written_card).converted.sha256 == _sha256(target)

    weights = load_safetensors(target)
    assert set(weights) == set(state)
    assert all(torch.equal(weights[key], state[key]) for key in state)
    loaded = maedfer.create_model(data["model"], checkpoint=str(target), **tiny).state_dict()
    assert all(torch.equal(loaded[key], state[key]) for key in state)


def test_convert_with_card_id(tmp_path: Path) -> None:
    source, card_copy, state, _ = _tiny_release(tmp_path, "mae_dfer_mafw_fold2")
    target = tmp_path / "mafw2.safetensors"
    card_out = tmp_path / "cards_out" / "mafw2.md"
    argv = [str(source), str(target), "--card-id", "mae_dfer_mafw_fold2", "--cards-folder",
            str(tmp_path / "cards"), "--card-out", str(card_out)]
    assert _tool().main(argv) == 0
    data = front_matter(card_out.read_text(encoding="utf-8"))
    assert (data["sha256"], data["converted"]["sha256"]) == (_sha256(source), _sha256(target))
    assert data["num_classes"] == 11 and len(load_safetensors(target)) == len(state)


def test_convert_refuses_a_download_with_another_sha256(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, card_copy, _, _ = _tiny_release(tmp_path, "mae_dfer_dfew_fold1")
    text = card_copy.read_text(encoding="utf-8").replace("sha256: null", f"sha256: {'0' * 64}", 1)
    card_copy.write_text(text, encoding="utf-8")
    target = tmp_path / "x.safetensors"
    assert _tool().main([str(source), str(target), "--card", str(card_copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "sha256" in err and len(err.splitlines()) == 1
    assert not target.exists()


def test_convert_reports_a_checkpoint_that_does_not_fit_the_card(tmp_path: Path, capsys) -> None:
    source, card_copy, _, tiny = _tiny_release(tmp_path, "mae_dfer_dfew_fold1")
    text = card_copy.read_text(encoding="utf-8").replace(f"embed_dim: {tiny['embed_dim']}", "embed_dim: 64", 1)
    card_copy.write_text(text, encoding="utf-8")
    target = tmp_path / "y.safetensors"
    assert _tool().main([str(source), str(target), "--card", str(card_copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "does not load into the card's model" in err[0]
    assert not target.with_suffix(".md").exists()


def test_convert_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tool = _tool()
    assert tool.main([str(tmp_path / "missing.pth"), str(tmp_path / "o.safetensors")]) == 2
    source, _, _, _ = _tiny_release(tmp_path, "hicmae_mafw_fold1")
    assert tool.main([str(source), str(tmp_path / "o.safetensors"), "--card-id", "no_such_card"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert "no model card with id 'no_such_card'" in err[1]


def test_card_for_converted_round_trip(tmp_path: Path) -> None:
    card = read_model_card(MODELS / "hicmae" / "hicmae_voxceleb2_pretrain.md")
    source_digest, out_digest = hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()
    text = card_for_converted(card, out_digest, tmp_path / "hicmae.safetensors", source_sha256=source_digest,
                              source_name="checkpoint-99.pth", command="python tools/convert_checkpoint.py ...")
    converted = parse_model_card(text)
    assert converted.sha256 == source_digest and converted.converted is not None
    assert (converted.converted.sha256, converted.converted.file) == (out_digest, "hicmae.safetensors")
    assert converted.source_urls == card.source_urls and converted.former_urls == card.former_urls
    assert converted.model_kwargs == card.model_kwargs and card.body.strip() in converted.body
    with pytest.raises(ModelCardError):
        card_for_converted(card, "not-a-digest", tmp_path / "x.safetensors", source_sha256=source_digest,
                           source_name="x", command="x")


def test_write_zoo_readme_fills_the_table(tmp_path: Path) -> None:
    from maedfer.apps.model_cards import write_zoo_readme

    folder = tmp_path / "zoo"
    shutil.copytree(MODELS / "svfap", folder / "svfap")
    readme = folder / "README.md"
    readme.write_text(f"intro\n\n{ZOO_TABLE_START}\nSTALE ROW\n{ZOO_TABLE_END}\nend\n", encoding="utf-8")
    assert write_zoo_readme(readme) is True
    text = readme.read_text(encoding="utf-8")
    assert "STALE ROW" not in text and text.startswith("intro") and text.endswith(f"{ZOO_TABLE_END}\nend\n")
    assert text.count("| [svfap_") == 12  # pre-training + 5 DFEW + FERV39k + 5 MAFW
    assert write_zoo_readme(readme) is False
