"""Fixtures shared by the test packages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from data import grid
from preprocessing.video import VIDEO_FPS
from tests.media import astronaut_frames, tone, write_video


@pytest.fixture(scope="session")
def grid_dir() -> Path:
    """The GRID corpus folder; tests that need it are skipped, saying why, when it is absent."""
    folder = grid.grid_dir()
    if folder is None:
        where = os.environ.get(grid.GRID_DIR_ENV) or grid.DEFAULT_GRID_DIR
        pytest.skip(f"GRID corpus not found at {where} (set ${grid.GRID_DIR_ENV} to its folder)")
    return folder


SHORT_CLIP_FRAMES = 12  # 0.48 s at 25 fps: enough for preprocessing, quick to track (~4 ms/frame)


@pytest.fixture(scope="session")
def talking_videos(tmp_path_factory) -> list[Path]:
    """Three short videos of a real face with a tone; the tones differ, so each file does."""
    folder = tmp_path_factory.mktemp("talking")
    frames = astronaut_frames(SHORT_CLIP_FRAMES)
    seconds = SHORT_CLIP_FRAMES / VIDEO_FPS
    return [
        write_video(folder / f"talk{index}.mp4", frames, audio=tone(seconds, 0.1, 0.2, frequency))
        for index, frequency in enumerate((500.0, 1000.0, 2000.0))
    ]


@pytest.fixture(scope="session")
def tiny_dmf(tmp_path_factory) -> Path:
    """An untrained DMF model of the real structure at a fraction of the size, as a checkpoint file."""
    import torch

    from models.checkpoint import save_checkpoint
    from models.dmf import build_model
    from tests.models.helpers import tiny_config

    torch.manual_seed(0)
    config = tiny_config(kind="dmf")
    path = tmp_path_factory.mktemp("tiny") / "dmf.pt"
    save_checkpoint(path, build_model(config), config, data="synthetic")
    return path
