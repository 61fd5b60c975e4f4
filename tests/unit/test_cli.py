"""The ``maedfer`` command (maedfer.cli), the thin tools/ wrappers and the resolution of configs and cards by name
(maedfer.resources)."""

from __future__ import annotations

import ast
import contextlib
import io
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from maedfer import cli, resources
from maedfer.apps.model_cards import find_card, load_model_cards
from maedfer.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "maedfer"


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``maedfer argv...`` in-process: (exit status, stdout, stderr); argparse's SystemExit is an exit status."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------------ the command table


def test_every_tool_and_launcher_is_a_subcommand_and_a_thin_wrapper() -> None:
    by_tool = {spec.tool: (name, spec) for name, spec in cli.COMMANDS.items()}
    scripts = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tools").glob("*.py"))
    scripts += ["pretrain/pretrain.py", "finetune/finetune.py"]
    for script in scripts:
        assert script in by_tool, f"{script} has no maedfer subcommand"
        name, spec = by_tool[script]
        tree = ast.parse((ROOT / script).read_text())
        imports = [node for node in tree.body if isinstance(node, ast.ImportFrom) and node.module == spec.module]
        assert imports and spec.function in {alias.name for alias in imports[0].names}, (
            f"{script} must import {spec.module}.{spec.function} (the code of maedfer {name})")
        # thin: a docstring, imports and the __main__ call; no definitions of its own
        assert not [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))], script
    for name, spec in cli.COMMANDS.items():
        assert (ROOT / spec.tool).is_file(), f"maedfer {name}: its checkout script {spec.tool} is missing"
        entry = cli.resolve_command(name)
        assert callable(entry) and entry.__module__ == spec.module


def test_no_script_shadows_the_standard_library() -> None:
    stdlib = set(sys.stdlib_module_names)
    for folder in ("tools", "pretrain", "finetune"):
        clashes = [p.name for p in (ROOT / folder).glob("*.py") if p.stem in stdlib]
        assert not clashes, f"{folder}/{clashes} shadow standard-library modules when run as scripts"
    clashes = [p.name for p in (PACKAGE / "apps").glob("*.py") if p.stem in stdlib]
    assert not clashes


def test_readme_commands_table_lists_every_subcommand() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Commands"):]
    section = section[: section.index("\n## ", 1)]
    rows = dict(re.findall(r"^\| `maedfer ([a-z-]+)` \| `([^`]+)` \|", section, flags=re.M))
    assert rows == {name: spec.tool for name, spec in cli.COMMANDS.items()}


def test_setup_registers_the_console_scripts() -> None:
    text = (ROOT / "setup.py").read_text()
    for script in ("maedfer = maedfer.cli:main", "maedfer-pretrain = maedfer.cli:pretrain_main",
                   "maedfer-finetune = maedfer.cli:finetune_main"):
        assert f'"{script}"' in text


# ------------------------------------------------------------------------------------------ the dispatcher


def test_usage_lists_every_command() -> None:
    code, out, _ = run_cli("--help")
    assert code == 0
    listed = re.findall(r"^  ([a-z][a-z-]+)  ", out, flags=re.M)
    assert listed == list(cli.COMMANDS)
    code, out, _ = run_cli()
    assert code == 2 and "usage: maedfer <command>" in out


def test_version_and_unknown_command() -> None:
    import maedfer

    assert run_cli("--version")[:2] == (0, f"maedfer {maedfer.__version__}\n")
    code, _, err = run_cli("pretrian")
    assert code == 2 and "unknown command 'pretrian'" in err and "did you mean pretrain" in err


def test_subcommand_help_is_named_after_the_subcommand() -> None:
    code, out, _ = run_cli("check-parity", "--help")
    assert code == 0 and out.startswith("usage: maedfer check-parity")
    code, out, _ = run_cli("help", "make-synthetic")
    assert code == 0 and out.startswith("usage: maedfer make-synthetic")


def test_exit_status_of_an_application_passes_through() -> None:
    code, _, err = run_cli("check-parity", "/nonexistent/fixtures")
    assert code == 2 and err == "error: no fixture file or folder at /nonexistent/fixtures\n"


def _fake_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str) -> None:
    (tmp_path / "maedfer_fake_app.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "maedfer_fake_app", raising=False)
    monkeypatch.setitem(cli.COMMANDS, "fake", cli.Command("maedfer_fake_app", "main", "a test command", "tools/x.py"))


def test_missing_application_module_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli.COMMANDS, "gone", cli.Command("maedfer.apps.no_such_app", "main", "missing", "tools/x.py"))
    code, out, err = run_cli("gone")
    assert code == 2 and out == ""
    assert err.startswith("error: maedfer gone: this installation of maedfer has no module maedfer.apps.no_such_app")
    assert "Traceback" not in err


def test_missing_optional_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # at import time of the application
    _fake_command(monkeypatch, tmp_path, "import webdataset\n\ndef main(argv=None):\n    return 0\n")
    monkeypatch.setitem(sys.modules, "webdataset", None)  # import webdataset -> ModuleNotFoundError
    code, _, err = run_cli("fake")
    assert code == 2 and 'pip install "maedfer[shards]"' in err and "'webdataset'" in err


def test_missing_optional_dependency_while_running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_command(monkeypatch, tmp_path, "def main(argv=None):\n    import cv2\n    return 0\n")
    monkeypatch.setitem(sys.modules, "cv2", None)
    code, _, err = run_cli("fake")
    assert code == 2 and 'pip install "maedfer[face]"' in err


def test_an_unrelated_missing_module_is_not_hidden(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_command(monkeypatch, tmp_path, "def main(argv=None):\n    import maedfer_no_such_dependency\n")
    with pytest.raises(ModuleNotFoundError, match="maedfer_no_such_dependency"):
        cli.main(["fake"])


def test_arguments_and_return_values_reach_the_application(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_command(monkeypatch, tmp_path, "import sys\nSEEN = []\n\ndef main(argv=None):\n"
                                         "    SEEN.append((list(argv), sys.argv[0]))\n    return {'metrics': 1}\n")
    assert run_cli("fake", "--x", "1", "a.b=2")[0] == 0  # a non-int result (e.g. metrics) is success
    import maedfer_fake_app

    assert maedfer_fake_app.SEEN == [(["--x", "1", "a.b=2"], "maedfer fake")]


def test_aliases_run_the_launchers(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(cli, "main", lambda argv=None: calls.append(argv) or 0)
    assert cli.pretrain_main(["--config", "demo"]) == 0 and cli.finetune_main(["x=1"]) == 0
    assert calls == [["pretrain", "--config", "demo"], ["finetune", "x=1"]]


# ------------------------------------------------------------------------------------------ configs by name


def test_config_names_resolve_to_the_shipped_files() -> None:
    assert resources.config_path("mae_dfer_voxceleb2") == ROOT / "pretrain" / "configs" / "mae_dfer_voxceleb2.yaml"
    finetune_configs = ROOT / "finetune" / "configs"
    assert resources.config_path("dfew_mae_dfer.yaml", "finetune") == finetune_configs / "dfew_mae_dfer.yaml"
    assert resources.config_path("demo", "pretrain") == ROOT / "pretrain" / "configs" / "demo.yaml"
    assert resources.list_configs("pretrain") == sorted(p.stem for p in (ROOT / "pretrain" / "configs").glob("*.yaml"))
    with pytest.raises(resources.ResourceNotFoundError, match="both pre-training and fine-tuning"):
        resources.config_path("demo")
    with pytest.raises(resources.ResourceNotFoundError, match="did you mean mae_dfer_voxceleb2"):
        resources.config_path("mae_dfer_voxceleb", "pretrain")
    with pytest.raises(ValueError, match="pretrain, finetune"):
        resources.configs_folder("eval")


def test_load_config_takes_a_name_and_prefers_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    by_name = load_config("svfap_voxceleb2", ["train.epochs=2"])
    by_path = load_config(ROOT / "pretrain" / "configs" / "svfap_voxceleb2.yaml", ["train.epochs=2"])
    assert by_name == by_path and by_name.train.epochs == 2
    # a file of that name in the working directory wins over the shipped config
    data = yaml.safe_load((ROOT / "pretrain" / "configs" / "svfap_voxceleb2.yaml").read_text())
    data["train"]["epochs"] = 7
    (tmp_path / "svfap_voxceleb2.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    assert load_config("svfap_voxceleb2.yaml").train.epochs == 7
    with pytest.raises(ConfigError, match="not a shipped config name.*did you mean"):
        load_config("svfap_voxceleb")
    with pytest.raises(ConfigError, match=r"config file missing/svfap_voxceleb2.yaml does not exist$"):
        load_config("missing/svfap_voxceleb2.yaml")


def test_launchers_resolve_names_of_their_own_kind() -> None:
    code, _, err = run_cli("pretrain", "--config", "dfew_mae_dfer")  # a fine-tuning config: not a pretrain name
    assert code == 2 and "no pretrain config named 'dfew_mae_dfer'" in err
    code, _, err = run_cli("finetune", "--config", "dfew_mae_dfe")
    assert code == 2 and "did you mean dfew_mae_dfer" in err


def test_packaged_copies_win_over_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a wheel the files sit in maedfer/_bundled/<folder>; resources must read those, not a checkout's."""
    package = tmp_path / "site" / "maedfer"
    for key, source in resources.BUNDLED_FOLDERS.items():
        shutil.copytree(ROOT / source, package / "_bundled" / key)
    monkeypatch.setattr(resources, "_PACKAGE", package)
    monkeypatch.setattr(resources, "_CHECKOUT", tmp_path / "no_checkout")
    bundled = package / "_bundled"
    assert resources.config_path("hicmae_voxceleb2") == bundled / "pretrain_configs" / "hicmae_voxceleb2.yaml"
    assert resources.cards_folder() == bundled / "model_cards"
    card = find_card("mae_dfer_dfew_fold1", resources.cards_folder())
    assert card.path is not None and card.path.is_relative_to(package)
    assert len(load_model_cards(resources.cards_folder())) == len(load_model_cards())


def test_card_folder_is_the_resolvers() -> None:
    from maedfer.apps.model_cards import CARDS_FOLDER

    assert CARDS_FOLDER == resources.cards_folder() == ROOT / "models"
    assert find_card("mae_dfer_dfew_fold1").id == "mae_dfer_dfew_fold1"
