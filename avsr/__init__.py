"""Audiovisual speech recognition with Dense Multimodal Fusion: lips and voice, robust to noise.

    import avsr
    model = avsr.load_model()  # the bundled DMF model
    result = model.transcribe("clip.mp4")
    print(result.text, [(word.word, word.start, word.end) for word in result.words])

`import avsr` is light: torch and MediaPipe are imported by `load_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avsr.transcribe import Recognizer

__all__ = ["load_model"]


def load_model(name: str | Path = "dmf", device: str | None = None) -> Recognizer:
    """A bundled model by name (dmf, early, late, audio, video) or a checkpoint file, ready to
    transcribe; on `device` ("cpu" or "cuda"; default: CUDA if available)."""
    from avsr.transcribe import Recognizer

    return Recognizer.load(name, device)
