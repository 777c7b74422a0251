"""Response time of the web demo: a 3 s clip's three transcripts, uploaded or recorded in Chromium.

    .venv/bin/python -m avsr.bench.demo_speed --json runs/bench_demo.json

Serves `python app.py` with the bundled model and drives Debian's headless Chromium with
Playwright: uploads s1 dev clips one by one, then records some through Chromium's fake camera and
microphone, fed from the clips; each is timed from the upload (or the click that stops the
recording) to the three transcripts on the page, beside the time the server reports for itself.
The first clip pays for setting up the face tracker and decoder, so it is reported apart.
These helpers also serve the browser tests (tests/test_app.py). Run on an otherwise idle machine.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import av
import numpy as np
from playwright.sync_api import BrowserContext, Page, Playwright, sync_playwright

from avsr.bench import bench_parser
from avsr.train import split
from data.grid import DEV_SIZE, MANIFEST_NAME, grid_dir
from data.manifest import read_manifest
from preprocessing.audio import SAMPLE_RATE, decode_audio, fit_to_video
from preprocessing.video import VIDEO_FPS, iter_frames

ROOT = Path(__file__).resolve().parents[2]  # the repository, where app.py is
CHROMIUM = os.environ.get("AVSR_CHROMIUM", "/usr/bin/chromium")  # Debian's: Playwright downloads none
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_SECONDS = 90  # the app imports Gradio and loads a model: allow a busy machine
RESULT_MS = 60_000  # one clip's recognition, including the first call's set-up
LEAD_FRAMES = VIDEO_FPS  # 1 s of still face and silence before the clip in the fake camera and microphone
RECORD_MS = 4500  # a recording: the lead and a 3 s clip
PCM_SCALE = 32767  # float samples to 16-bit WAV
UPLOADS = 10
RECORDINGS = 3
SERVER_SECONDS = re.compile(r"Recognised [\d.]+ s of video in ([\d.]+) s")


@contextmanager
def serve(model: str, log: Path) -> Iterator[str]:
    """`python app.py --model MODEL` on a free port, its output to `log`, until the block ends: its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with log.open("w") as output:
        command = [sys.executable, "app.py", "--port", str(port), "--model", model, "--device", "cpu"]
        server = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the app did not start:\n{log.read_text()}") from None
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def chromium(playwright: Playwright, profile: Path, *args: str) -> BrowserContext:
    """Debian's Chromium, headless, with a fresh profile in `profile` and these extra `args`."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *args])


def fake_media_args(camera: Path, microphone: Path) -> list[str]:
    """Chromium's options that make `camera` (Y4M) and `microphone` (WAV) its webcam, allowed at once."""
    return ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}", f"--use-file-for-fake-audio-capture={microphone}"]


def fake_media(clip: Path, folder: Path) -> tuple[Path, Path]:
    """The clip as a fake camera (Y4M) and microphone (WAV) in `folder`, after LEAD_FRAMES of still
    face and silence, so that a recording started at once catches the whole sentence."""
    frames = [frame.rgb for frame in iter_frames(clip)]
    frames = [frames[0]] * LEAD_FRAMES + frames
    camera, microphone = folder / f"{clip.stem}.y4m", folder / f"{clip.stem}.wav"
    with av.open(str(camera), "w", format="yuv4mpegpipe") as container:
        stream = container.add_stream("rawvideo", rate=VIDEO_FPS)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for index, rgb in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            picture.pts, picture.time_base = index, Fraction(1, VIDEO_FPS)
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    sound = fit_to_video(decode_audio(clip), len(frames) - LEAD_FRAMES)
    sound = np.concatenate([np.zeros(LEAD_FRAMES * SAMPLE_RATE // VIDEO_FPS, np.float32), sound])
    with wave.open(str(microphone), "wb") as output:
        output.setnchannels(1)
        output.setsampwidth(2)
        output.setframerate(SAMPLE_RATE)
        output.writeframes((np.clip(sound, -1, 1) * PCM_SCALE).astype("<i2").tobytes())
    return camera, microphone


def upload(page: Page, video: Path, said: str = "") -> None:
    """Upload `video` on the demo's page, with what was `said`: it is recognised at once."""
    page.locator('#clip button[aria-label="Upload file"]').click()
    page.locator("#said textarea").fill(said)
    page.locator("#clip input[type=file]").set_input_files(str(video))


def record(page: Page, said: str = "") -> None:
    """Record RECORD_MS from the (fake) webcam on the demo's page; it is recognised once stopped."""
    page.locator("#said textarea").fill(said)
    page.get_by_text("Click to Access Webcam").click()
    page.locator('#clip button[aria-label="start recording"]').click()
    page.wait_for_timeout(RECORD_MS)
    page.locator('#clip button:has([title="stop recording"])').click()


def result(page: Page) -> dict[str, str]:
    """Wait for the page's answer: the transcripts by head ("av", "audio", "video"), their labels
    ("av label", ...), and the message under them ("status")."""
    page.wait_for_function("() => { const s = document.querySelector('#status'); "
                           "return s && (s.innerText.includes('Recognised') || s.querySelector('strong')); }",
                           timeout=RESULT_MS)
    found = {"status": page.locator("#status").inner_text()}
    for head in ("av", "audio", "video"):
        found[head] = page.locator(f"#transcript-{head} textarea").input_value()
        found[f"{head} label"] = page.locator(f"#transcript-{head} label").inner_text()
    return found


def _timed(page: Page, act: Any, *args: Any) -> tuple[float, float]:
    """(seconds from the end of `act` to the transcripts on the page, seconds the server took)."""
    act(page, *args)
    start = time.perf_counter()
    answer = result(page)
    seconds = time.perf_counter() - start
    page.reload(wait_until="domcontentloaded")  # a fresh page for the next clip
    return seconds, float(SERVER_SECONDS.search(answer["status"])[1])


def main() -> None:
    parser = bench_parser(__doc__)
    args = parser.parse_args()
    manifest = grid_dir() / MANIFEST_NAME
    clips = split(read_manifest(manifest), DEV_SIZE)[1][: UPLOADS + 1]
    report: dict[str, Any] = {"model": args.model, "cpus": os.cpu_count(), "clip_s": 3}
    with TemporaryDirectory() as folder, serve(args.model, Path(folder) / "app.log") as url, \
            sync_playwright() as playwright:
        browser = chromium(playwright, Path(folder) / "profile")
        page = browser.new_page()
        page.goto(url, wait_until="domcontentloaded")
        report["first_upload_s"] = _timed(page, upload, clips[0].video)
        report["uploads_s"] = [_timed(page, upload, clip.video) for clip in clips[1:]]
        browser.close()
        recordings = []
        for clip in clips[1 : RECORDINGS + 1]:
            browser = chromium(playwright, Path(folder) / f"profile-{clip.video.stem}",
                               *fake_media_args(*fake_media(clip.video, Path(folder))))
            page = browser.new_page()
            page.goto(url, wait_until="domcontentloaded")
            recordings.append(_timed(page, record))
            browser.close()
        report["recordings_s"] = recordings
    for name in ("uploads_s", "recordings_s"):
        page_s, server_s = zip(*report[name], strict=True)
        print(f"{name[:-2]}: on the page after {np.mean(page_s):.2f} s on average (max {max(page_s):.2f} s), "
              f"the server's part {np.mean(server_s):.2f} s")
    print(f"first upload: {report['first_upload_s'][0]:.2f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
