"""Audiovisual speech recognition with Dense Multimodal Fusion: lips and voice, robust to noise.

    import avsr
    model = avsr.load_model()  # the bundled DMF models, voting
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


def load_model(name: str | Path | None = None, device: str | None = None) -> Recognizer:
    """A bundled model by name (dmf, early, late, audio, video, dmf-ensemble), a checkpoint file or
    an ensemble of them ("a+b+c"), ready to transcribe; on `device` ("cpu" or "cuda"; default: CUDA
    if available). None: `avsr.transcribe.DEFAULT_MODEL`, five DMF models voting."""
    from avsr.transcribe import DEFAULT_MODEL, Recognizer

    return Recognizer.load(DEFAULT_MODEL if name is None else name, device)
