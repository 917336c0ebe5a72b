"""Shared fixtures: tiny random models of several families, saved as ordinary local folders (so they also exercise
the 'local folder' model path). Their builders live in helpers.py. No hub access."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from helpers import FAMILIES, make_tokenizer, save_tiny_model  # noqa: E402  (after the environment is set)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {f: save_tiny_model(root / f, f) for f in FAMILIES}


@pytest.fixture(scope="session")
def tiny_llama(tiny_model_dirs) -> Path:
    return tiny_model_dirs["llama"]


@pytest.fixture
def tokenizer():
    return make_tokenizer()
