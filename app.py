"""The web demo: record yourself or upload a video, add noise, and watch the lips rescue the words.

    python app.py [--host 127.0.0.1] [--port 7860] [--model dmf|CKPT] [--device cpu|cuda]

The page shows the audiovisual, audio-only and video-only transcripts of the clip side by side
(`avsr.compare`), their word error rates if you type what you said, the video with the
audiovisual transcript as subtitles, the mouth crops the model saw and the noisy sound it heard.
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from avsr import load_model
from avsr.compare import compare
from avsr.output import HEAD_LABELS, to_vtt
from avsr.transcribe import DEFAULT_MODEL, TranscribeOptions, babble_pool
from data.grid import MANIFEST_NAME, grid_dir
from data.noise import BABBLE, BUILTIN_KINDS
from models.decoding import DEFAULT_BEAM_SIZE
from models.ensemble import BUNDLED_NAMES, installed
from preprocessing.audio import SAMPLE_RATE
from preprocessing.errors import InputError
from preprocessing.mouth import crop_grid
from preprocessing.video import FRAME_SECONDS

DEFAULT_HOST = "127.0.0.1"  # this machine only; --host 0.0.0.0 serves the network
DEFAULT_PORT = 7860  # Gradio's usual port
NO_NOISE = "none"
NOISES = (NO_NOISE, *BUILTIN_KINDS)  # white, pink, babble
SNR_RANGE = (-10, 20)  # dB on the slider
DEFAULT_SNR = 0  # dB: speech and noise equally loud
# The browser's media constraints for recordings: VGA is plenty for the lips (GRID is 360x288)
# and keeps the upload and face tracking fast; the sound as the microphone hears it, since the
# browser's noise suppression, echo cancelling and gain control distort speech the model learnt raw.
WEBCAM = {
    "video": {"width": {"ideal": 640}, "height": {"ideal": 480}},
    "audio": {"echoCancellation": False, "noiseSuppression": False, "autoGainControl": False},
}
CACHE_SECONDS = 3600  # uploads, recordings and subtitles older than this are deleted, checked as often
PCM_SCALE = 32767  # float samples in [-1, 1] to 16-bit ones, as the page plays them


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The demo's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to serve on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|CKPT",
                        help="the model selected at first: a bundled one, a checkpoint file, or several "
                        "joined with '+' (default: %(default)s)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available")
    grid = grid_dir()
    parser.add_argument("--babble-pool", type=Path, metavar="MANIFEST",
                        default=None if grid is None else grid / MANIFEST_NAME,
                        help="babble noise's talkers: a manifest's utterances (default: GRID's, if found)")
    return parser.parse_args(argv)


def model_choices(model: str) -> list[str]:
    """The bundled models that are installed, and `model` (a name or a checkpoint) first."""
    return [model, *(name for name in BUNDLED_NAMES if installed(name) and name != model)]


def _named(message: str, video: str) -> str:
    """`message` with the clip called by its file's name, not the path of Gradio's copy of it."""
    return message.replace(video, Path(video).name)


def build_demo(
    models: Sequence[str], device: str | None, babble_manifest: Path | None, workdir: Path
) -> gr.Blocks:
    """The page, with `models` to choose from (the first selected); subtitles are written to `workdir`."""
    recognizer = lru_cache(maxsize=len(BUNDLED_NAMES) + 1)(lambda name: load_model(name, device))
    recognizer(models[0])  # loaded before the first visitor comes, and checked
    babble = None if babble_manifest is None else babble_pool(babble_manifest)

    def recognise(
        video: str | None, noise: str, snr: float, model: str, use_lm: bool, said: str
    ) -> list[Any]:
        """Every output of the page for one clip; a problem with it becomes a message."""
        boxes = [gr.Textbox(value="", label=label) for label in HEAD_LABELS.values()]
        if video is None:
            return [None, *boxes, None, None, "Record or upload a video first."]
        if noise == BABBLE and babble is None:
            return [video, *boxes, None, None,
                    "Babble noise needs talkers: start the demo with `--babble-pool MANIFEST`."]
        options = TranscribeOptions(beam=DEFAULT_BEAM_SIZE if use_lm else 1, lm=use_lm,
                                    noise=None if noise == NO_NOISE else noise,
                                    snr=None if noise == NO_NOISE else snr)
        try:
            result = compare(recognizer(model), video, options, said, babble)
        except (InputError, ValueError, FileNotFoundError) as error:  # the clip's or the options' fault
            return [video, *boxes, None, None, f"**{_named(str(error), video)}**"]
        for index, modality in enumerate(HEAD_LABELS):
            transcript = result.transcripts.get(modality)
            wer = f" (WER {result.wers[modality]:.0%})" if modality in result.wers else ""
            boxes[index] = gr.Textbox(value="—" if transcript is None else transcript.text,
                                      label=HEAD_LABELS[modality] + wer)
        main = next(iter(result.transcripts.values()), None)
        playback = gr.Video(value=video)
        if main is not None:
            subtitles = workdir / f"{uuid.uuid4().hex}.vtt"
            subtitles.write_text(to_vtt(main), encoding="utf-8")
            playback = gr.Video(value=video, subtitles=str(subtitles))
        heard = (SAMPLE_RATE, (np.clip(result.waveform, -1, 1) * PCM_SCALE).astype(np.int16))
        seconds = len(result.crops) * FRAME_SECONDS
        status = [f"Recognised {seconds:.1f} s of video in {result.seconds:.2f} s.", *result.notes]
        return [playback, *boxes, crop_grid(result.crops, result.detected), heard,
                _named("  \n".join(status), video)]

    with gr.Blocks(title="Lips and voice", delete_cache=(CACHE_SECONDS, CACHE_SECONDS),
                   analytics_enabled=False) as demo:  # no calls home
        gr.Markdown("# Lips and voice\nRecord yourself saying something (or upload a video), choose a noise, "
                    "and compare what the model understands from the sound alone, the lips alone, and both.")
        with gr.Row():
            with gr.Column():
                clip = gr.Video(sources=["webcam", "upload"], include_audio=True, label="your clip",
                                webcam_options=gr.WebcamOptions(constraints=WEBCAM), elem_id="clip")
                noise = gr.Radio(list(NOISES), value=NO_NOISE, label="noise", elem_id="noise")
                snr = gr.Slider(*SNR_RANGE, value=DEFAULT_SNR, step=1, label="SNR (dB)", elem_id="snr")
                model = gr.Dropdown(list(models), value=models[0], label="model", elem_id="model")
                use_lm = gr.Checkbox(value=True, label="beam search with the language model", elem_id="lm")
                said = gr.Textbox(label="what you said (optional: gives each transcript's WER)",
                                  elem_id="said")
                run = gr.Button("Recognise", variant="primary", elem_id="run")
            with gr.Column():
                playback = gr.Video(label="playback with subtitles", interactive=False, elem_id="playback")
                with gr.Row():
                    boxes = [gr.Textbox(label=label, interactive=False, elem_id=f"transcript-{modality}")
                             for modality, label in HEAD_LABELS.items()]
                strip = gr.Image(label="the mouth crops the model saw", interactive=False, elem_id="strip")
                heard = gr.Audio(label="what the model heard", interactive=False, elem_id="heard")
                status = gr.Markdown(elem_id="status")
        inputs = [clip, noise, snr, model, use_lm, said]
        outputs = [playback, *boxes, strip, heard, status]
        run.click(recognise, inputs, outputs, api_name="recognise")
        for event in (clip.upload, clip.stop_recording):  # a new clip is recognised at once
            event(recognise, inputs, outputs, api_name=False)
    return demo


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the demo until interrupted."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="avsr-demo-") as workdir:
        try:
            demo = build_demo(model_choices(args.model), args.device, args.babble_pool, Path(workdir))
        except FileNotFoundError as error:  # a model that is not installed
            raise SystemExit(f"app.py: error: {error}") from None
        demo.launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
