"""Live captions: a camera and microphone, or a video file or stream paced in real time, in; captions out.

Frames come on the 25 fps grid (`preprocessing.video.resample`, on capture times for a camera),
and the face is tracked in each (`MouthTracker`). The sound is cut into utterances
(`Segmenter`): voice activity from its level over an adaptive noise floor, helped by lip motion.
When an utterance ends, its mouth crops (cut as `track_mouth` cuts a clip's) and waveform go to
a recognition thread, which runs the model once for all its heads (`Recognizer.transcribe_clip`),
so the audiovisual and the audio-only captions come together, shown side by side. Noise chosen by
key (or --noise/--snr) is mixed into each utterance at the chosen SNR by `data.noise`'s whole-clip
rule; voice activity reads the microphone as recorded.

The loop never queues behind the source: a frame that reaches it more than MAX_LAG_SECONDS late
is not face-tracked (its landmarks are interpolated, like a frame without a face) and counted as
dropped. Each frame is shown (or written to --out) with the captions below it and the mouth inset.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch

from avsr.output import HEAD_LABELS, to_srt
from avsr.transcribe import LIVE_MODEL, Recognizer, TranscribeOptions, Transcript, noise_spec
from data.manifest import atomic_write
from data.noise import BABBLE, BABBLE_TALKERS, CLEAN, NoiseSpec, add_noise
from models.config import Modality
from preprocessing.audio import SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME
from preprocessing.clip import MIN_FRAMES
from preprocessing.errors import NoAudioStreamError, NoFaceError, NoVideoStreamError
from preprocessing.media import is_url, open_container
from preprocessing.mouth import MOUTH_SIZE, MouthTracker, crop_mouths, mouth_opening
from preprocessing.native import native_stderr_silenced
from preprocessing.video import FRAME_SECONDS, VIDEO_FPS, VideoFrame, resample, timed_frames

MAX_LAG_SECONDS = 2 * FRAME_SECONDS  # a frame this late is not face-tracked, so the loop catches up
# torch threads of the recognition thread: a CPU is left to the loop and the face tracker, as
# threads that wait for a busy CPU make a forward pass many times slower (1.9 s instead of 0.05 s
# for 2 s of speech, 2 threads beside a busy process on 2 CPUs)
RECOGNITION_THREADS = max(1, (os.cpu_count() or 1) - 1)
AUDIO_HISTORY_SECONDS = 60  # sound kept for utterances still to be cut (longer than any utterance)

# Voice activity, per 40 ms frame. The noise floor drops at once to a quieter frame and rises by
# FLOOR_RISE_DB a frame, so it follows the room but not the speech.
VOICE_DB = 12.0  # dB over the noise floor: a voiced frame (GRID: floor ~-40 dBFS, speech -5 to -25)
LIPS_VOICE_DB = 6.0  # dB over the floor that keeps an utterance going while the lips move
FLOOR_RISE_DB = 2.0 / VIDEO_FPS  # 2 dB a second
MIN_FLOOR_DB = -70.0  # the quietest room a microphone hears: digital silence does not pull the floor
# so low that any hiss after it counts as speech
SILENCE_DB = -100.0  # level of digital silence, so the log stays finite
# Lip motion: the inner lips' gap (`mouth_opening`) varies by more than LIP_MOTION inter-ocular
# distances over LIP_WINDOW_FRAMES (0.4 s): ~0.01 at rest, 0.02-0.15 speaking on GRID.
LIP_MOTION = 0.02
LIP_WINDOW_FRAMES = 10
START_FRAMES = 2  # voiced frames in a row that start an utterance: a click is not speech
PRE_ROLL_FRAMES = 5  # frames (0.2 s) kept before the first voiced one: soft onsets
HANGOVER_FRAMES = 7  # unvoiced frames (0.28 s) that end an utterance (and stay in it); GRID's pauses
# within a sentence are < 0.15 s
MAX_UTTERANCE_FRAMES = 15 * VIDEO_FPS  # an utterance is cut after 15 s, so captions keep coming
HISTORY_FRAMES = MAX_UTTERANCE_FRAMES + PRE_ROLL_FRAMES + HANGOVER_FRAMES  # frames kept to cut from
FACE_LOST_FRAMES = VIDEO_FPS // 2  # 0.5 s without a face: say so, on screen and once on stderr

LIVE_TALKERS = 12  # babble talkers decoded at the start (`babble_talkers`): none is decoded per utterance
NOISE_KEYS = {"n": None, "w": "white", "p": "pink", "b": "babble"}  # key -> noise mixed in
SNR_KEYS = {"+": 5.0, "=": 5.0, "-": -5.0}  # key -> SNR change in dB ("=" is "+" unshifted)
QUIT_KEYS = {"q", "\x1b"}  # q or Esc
KEYS_HELP = "keys: n no noise, w white, p pink, b babble, +/- SNR by 5 dB, q quit"

WINDOW_TITLE = "avsr live"
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.5
LINE_PIXELS = 18  # text line height at FONT_SCALE
MARGIN = 6  # pixels around text
CAPTION_LINES = 3  # lines per caption column below the video
CAPTION_SECONDS = 6.0  # a caption stays this long after it appears, unless a new one replaces it
INSET_SCALE = 2  # the mouth inset is MOUTH_SIZE times this, top right
TEXT_COLOR = (255, 255, 255)  # RGB
LABEL_COLOR = (160, 160, 160)
WARNING_COLOR = (255, 80, 80)
PANEL_COLOR = (0, 0, 0)


class LiveError(Exception):
    """A camera, microphone, screen or source that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class LiveOptions:
    """What `run_live` reads, recognises with, and writes."""

    source: str = "0"  # a camera index, a video file or a stream URL
    model: str = LIVE_MODEL  # a bundled model or a checkpoint file
    device: str | None = None  # "cpu" or "cuda"; None: CUDA if available
    clip_norm: bool | None = None  # each window's own visual statistics (`Recognizer.load`); None: default
    decoding: TranscribeOptions = TranscribeOptions()  # beam and language model (noise: below)
    noise: str | None = None  # mixed in at first: white, pink or babble (keys change it)
    snr: float = 0.0  # dB
    babble: Mapping[str, np.ndarray] | None = None  # babble's talkers, e.g. `avsr.transcribe.babble_pool`
    headless: bool = False  # no window (and no keys)
    out: Path | None = None  # the annotated video, every frame, with the sound
    captions: Path | None = None  # SRT subtitles of the main head's captions
    stats: bool = False  # also print each caption's latency as it comes
    seed: int = 0  # of the noise


@dataclass(frozen=True)
class LiveFrame:
    """A frame on the 25 fps grid: `time` on the source's clock, `wall` when it was (or is due to be)
    on screen, by `time.monotonic`."""

    index: int
    time: float
    wall: float
    rgb: np.ndarray


class AudioBuffer:
    """A source's 16 kHz mono sound by time on its clock, written as it arrives (thread-safe).

    The first write fixes the time of its first sample; later ones follow on. The last
    AUDIO_HISTORY_SECONDS are kept in a ring; reads outside what is kept are silence.
    """

    def __init__(self) -> None:
        self._ring = np.zeros(AUDIO_HISTORY_SECONDS * SAMPLE_RATE, np.float32)
        self._written = 0  # samples written in all
        self._start: float | None = None  # time of sample 0
        self._lock = threading.Lock()
        self.closed = False  # no more sound will come

    def write(self, samples: np.ndarray, start: float) -> None:
        """Append `samples`; `start` is their first sample's time, used for the first write only."""
        with self._lock:
            if self._start is None:
                self._start = start
            np.put(self._ring, np.arange(self._written, self._written + len(samples)), samples, mode="wrap")
            self._written += len(samples)

    def close(self) -> None:
        """No more sound will come: reads wait for none."""
        self.closed = True

    def ready(self, until: float) -> bool:
        """Whether the sound up to time `until` has arrived (or never will)."""
        with self._lock:
            arrived = self._start is not None and self._start + self._written / SAMPLE_RATE >= until
            return arrived or self.closed

    def read(self, start: float, samples: int) -> np.ndarray:
        """`samples` samples from time `start`, silence where none were kept."""
        out = np.zeros(samples, np.float32)
        with self._lock:
            if self._start is None:
                return out
            first = round((start - self._start) * SAMPLE_RATE)
            low = max(first, self._written - len(self._ring), 0)
            high = min(first + samples, self._written)
            if low < high:
                out[low - first : high - first] = np.take(self._ring, np.arange(low, high), mode="wrap")
        return out


def level_db(samples: np.ndarray) -> float:
    """A frame's sound level in dB re full scale (mean square), at least SILENCE_DB."""
    return max(SILENCE_DB, 10 * float(np.log10(np.mean(np.square(samples)) + 10 ** (SILENCE_DB / 10))))


@dataclass
class Segmenter:
    """Utterances from each frame's sound level and lip motion, frame by frame.

    An utterance starts with START_FRAMES voiced frames in a row (louder than the noise floor by
    VOICE_DB), goes on while frames are voiced, or less loud but with moving lips, and ends after
    HANGOVER_FRAMES that are neither, or at MAX_UTTERANCE_FRAMES. It is dropped if a face was in
    view all along and its lips never moved: someone or something else made the sound. (Lip
    motion is judged over the utterance, not at its onset: "bin blue" barely parts the lips.)
    """

    floor: float | None = None  # noise floor, dBFS
    start: int | None = None  # first frame of the utterance under way
    last_voiced: int = 0  # its last voiced frame
    run: int = 0  # voiced frames in a row while no utterance is under way
    moved: bool = False  # the lips moved, or the face was out of view, during the utterance

    def push(self, index: int, level: float, lips: bool | None) -> tuple[int, int, int] | None:
        """Frame `index`'s level (dBFS) and whether its lips move (None: no face in view); returns
        (start, end, last voiced + 1), in frames, of an utterance this frame ends (as its last), if
        it does."""
        floor = level if self.floor is None else min(level, self.floor + FLOOR_RISE_DB)
        self.floor = max(floor, MIN_FLOOR_DB)
        over = level - self.floor
        if self.start is None:
            self.run = self.run + 1 if over > VOICE_DB else 0
            if self.run >= START_FRAMES:
                self.start, self.last_voiced = max(0, index + 1 - self.run - PRE_ROLL_FRAMES), index
                self.moved = False
            else:
                return None
        self.moved = self.moved or lips is not False
        if over > VOICE_DB or (lips and over > LIPS_VOICE_DB):
            self.last_voiced = index
        if index - self.last_voiced >= HANGOVER_FRAMES or index + 1 - self.start >= MAX_UTTERANCE_FRAMES:
            return self.flush(index + 1)
        return None

    def flush(self, frames: int) -> tuple[int, int, int] | None:
        """End the utterance under way, if any, with frame `frames` - 1 (the last seen); as `push`."""
        if self.start is None:
            return None
        span = (self.start, frames, self.last_voiced + 1)
        self.start, self.run = None, 0
        return span if self.moved and span[1] - span[0] >= MIN_FRAMES else None


@dataclass(frozen=True)
class Tracked:
    """What the loop keeps of a frame, to cut an utterance's mouth crops from."""

    gray: np.ndarray  # (height, width) uint8
    landmarks: np.ndarray | None  # (468, 2) float32 pixels; None: no face found, or not tracked
    opening: float | None  # `mouth_opening`; None: no face (a dropped frame keeps the one before)


def lips_moving(recent: list[Tracked]) -> bool | None:
    """Whether the lips moved over `recent` frames (see LIP_MOTION); None when the last shows no face."""
    if not recent or recent[-1].opening is None:
        return None
    openings = [frame.opening for frame in recent[-LIP_WINDOW_FRAMES:] if frame.opening is not None]
    return max(openings) - min(openings) > LIP_MOTION


@dataclass(frozen=True)
class Caption:
    """What was recognised in one utterance."""

    start: float  # s from the first frame: the utterance's first frame
    speech_end: float  # s from the first frame: the end of its last voiced frame
    transcripts: dict[Modality, Transcript]  # by head, the model's main head first; words timed from `start`
    noise: str  # the condition it was recognised under, e.g. "clean" or "babble@0dB"

    @property
    def main(self) -> Transcript | None:
        """The transcript of the model's main head among those that read it (audio alone without a face)."""
        return next(iter(self.transcripts.values()), None)


@dataclass
class LiveReport:
    """How a run went: frames read and dropped, and each caption's latency."""

    frames: int = 0  # frames read from the source
    dropped: int = 0  # of them, not face-tracked because they came late
    seconds: float = 0.0  # wall time from the first frame to the last
    busy: float = 0.0  # s of it the loop spent on frames (tracking, cutting, drawing, writing)
    max_lag: float = 0.0  # s: the latest a frame reached the loop
    captions: list[Caption] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # s from the end of speech to its caption

    def summary(self) -> str:
        """Frame rate and drops; caption latencies."""
        rate = (self.frames - 1) / self.seconds if self.seconds > 0 else 0.0
        busy = self.busy / self.seconds if self.seconds > 0 else 0.0
        text = (f"{self.frames} frames in {self.seconds:.1f} s ({rate:.1f} fps), {self.dropped} dropped "
                f"(not face-tracked), at most {self.max_lag:.2f} s late, loop busy {busy:.0%}; "
                f"{len(self.captions)} captions")
        if self.latencies:
            text += (f", latency after speech ends: mean {np.mean(self.latencies):.2f} s, "
                     f"max {max(self.latencies):.2f} s")
        return text


def _wrap(text: str, width: int, lines: int) -> list[str]:
    """The last `lines` lines of `text` broken at spaces to fit `width` pixels."""
    wrapped: list[str] = []
    for word in text.split():
        joined = f"{wrapped[-1]} {word}" if wrapped else word
        if wrapped and cv2.getTextSize(joined, FONT, FONT_SCALE, 1)[0][0] <= width:
            wrapped[-1] = joined
        else:
            wrapped.append(word)
    return wrapped[-lines:]


def annotate(
    rgb: np.ndarray, columns: Sequence[tuple[str, str]], status: str, warning: str, inset: np.ndarray | None
) -> np.ndarray:
    """The frame with the noise condition (`status`) and any `warning` over it, the mouth `inset`
    top right, and a panel below with a column per (label, caption) of `columns`."""
    height, width = rgb.shape[:2]
    panel = MARGIN * 2 + LINE_PIXELS * (CAPTION_LINES + 1)
    canvas = np.zeros((height + panel + (height + panel) % 2, width + width % 2, 3), np.uint8)
    canvas[:] = PANEL_COLOR
    canvas[:height, :width] = rgb
    for row, (text, color) in enumerate([(status, TEXT_COLOR), (warning, WARNING_COLOR)]):
        if text:
            baseline = MARGIN + LINE_PIXELS * (row + 1) - 4
            size = cv2.getTextSize(text, FONT, FONT_SCALE, 1)[0]
            cv2.rectangle(canvas, (0, baseline - LINE_PIXELS + 4), (size[0] + 2 * MARGIN, baseline + 5),
                          PANEL_COLOR, -1)
            cv2.putText(canvas, text, (MARGIN, baseline), FONT, FONT_SCALE, color, 1, cv2.LINE_AA)
    if inset is not None:
        side = MOUTH_SIZE * INSET_SCALE
        if side + 2 * MARGIN <= min(height, width):
            big = cv2.resize(inset, (side, side), interpolation=cv2.INTER_NEAREST)
            canvas[MARGIN : MARGIN + side, width - MARGIN - side : width - MARGIN] = big[:, :, None]
    column = width // max(1, len(columns))
    for slot, (label, caption) in enumerate(columns):
        left = slot * column + MARGIN
        wrapped = _wrap(caption, column - 2 * MARGIN, CAPTION_LINES)
        lines = [(label, LABEL_COLOR)] + [(line, TEXT_COLOR) for line in wrapped]
        for row, (text, color) in enumerate(lines):
            baseline = height + MARGIN + LINE_PIXELS * (row + 1) - 4
            cv2.putText(canvas, text, (left, baseline), FONT, FONT_SCALE, color, 1, cv2.LINE_AA)
    return canvas


class Source(ABC):
    """Frames and sound captured by a thread of their own; `frames` yields each frame when it is due."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.audio = AudioBuffer()
        self.origin: float | None = None  # the first frame's time on the source's clock
        self._frames: queue.Queue[LiveFrame | BaseException | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture {name}", daemon=True)

    def frames(self) -> Iterator[LiveFrame]:
        """The frames on the 25 fps grid as they come; raises what the capture raised."""
        self._thread.start()
        while (item := self._frames.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop capturing and free the devices or the file."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @abstractmethod
    def _capture(self) -> None:
        """Put the frames in `_put`, and the sound in `audio`, until the end or `_stop`."""

    def _run(self) -> None:
        try:
            self._capture()
        except BaseException as error:  # the loop raises it in the main thread
            self._frames.put(error)
        finally:
            self.audio.close()
            self._frames.put(None)

    def _timed(
        self, frames: Iterator[tuple[float, float, np.ndarray]]
    ) -> Iterator[tuple[float, float, np.ndarray]]:
        """`frames` as they come, noting the first one's time as `origin`."""
        for frame in frames:
            if self.origin is None:
                self.origin = frame[0]
            yield frame

    def _put(self, frame: VideoFrame, wall_origin: float) -> None:
        """Hand the frame to the loop once it is due: `wall_origin` is when frame 0 was."""
        wall = wall_origin + frame.time
        self._stop.wait(max(0.0, wall - time.monotonic()))
        self._frames.put(LiveFrame(frame.index, self.origin + frame.time, wall, frame.rgb))


class CameraSource(Source):
    """A camera (OpenCV) and the default microphone (sounddevice), timed by `time.monotonic`."""

    def __init__(self, index: int) -> None:
        super().__init__(f"camera {index}")
        with native_stderr_silenced():  # OpenCV logs each backend it fails to open the camera with
            self._camera = cv2.VideoCapture(index)
        if not self._camera.isOpened():
            raise LiveError(f"no camera: camera {index} cannot be opened (caption a video: --source FILE)")
        try:
            self._microphone = _open_microphone(self.audio)
        except LiveError:
            self._camera.release()
            raise

    def close(self) -> None:
        super().close()
        self._microphone.close()
        self._camera.release()

    def _capture(self) -> None:
        nominal = 1 / (self._camera.get(cv2.CAP_PROP_FPS) or VIDEO_FPS)

        def captured() -> Iterator[tuple[float, float, np.ndarray]]:
            while not self._stop.is_set():
                ok, bgr = self._camera.read()
                if not ok:
                    return
                yield time.monotonic(), nominal, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

        for frame in resample(self._timed(captured())):
            self._put(frame, self.origin)  # on the monotonic clock: the source's own


def _open_microphone(audio: AudioBuffer) -> Any:
    """A started sounddevice input stream writing 16 kHz mono to `audio`; LiveError if there is none."""
    try:
        import sounddevice
    except OSError as error:  # the PortAudio library is missing
        raise LiveError(f"no microphone: {error} (install PortAudio: libportaudio2)") from None

    def callback(samples: np.ndarray, frames: int, *_: object) -> None:
        audio.write(samples[:, 0].copy(), time.monotonic() - frames / SAMPLE_RATE)

    try:
        stream = sounddevice.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32",
                                         callback=callback)
        stream.start()
    except sounddevice.PortAudioError as error:
        raise LiveError(f"no microphone: {error}") from None
    return stream


class MediaSource(Source):
    """A video file or stream with sound, paced in real time from its first frame."""

    def _capture(self) -> None:
        with open_container(self.name) as container:
            if not container.streams.video:
                raise NoVideoStreamError(self.name)
            if not container.streams.audio:
                raise NoAudioStreamError(self.name, "live captions need the sound")
            video, sound = container.streams.video[0], container.streams.audio[0]
            video.thread_type = "AUTO"
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

            def pictures() -> Iterator[av.VideoFrame]:
                for decoded in container.decode(video, sound):
                    if self._stop.is_set():
                        return
                    if isinstance(decoded, av.AudioFrame):
                        for chunk in resampler.resample(decoded):
                            self.audio.write(chunk.to_ndarray().reshape(-1), float(decoded.time or 0.0))
                    else:
                        yield decoded

            wall_origin = None
            for frame in resample(self._timed(timed_frames(pictures(), video))):
                wall_origin = wall_origin or time.monotonic()
                self._put(frame, wall_origin)


def babble_talkers(pool: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """LIVE_TALKERS utterances of `pool`, evenly spaced, decoded now: babble picks its talkers among
    them, so no decoding adds to a caption's latency."""
    keys = list(pool)
    if len(keys) <= BABBLE_TALKERS:
        raise LiveError(f"babble needs more than {BABBLE_TALKERS} talkers, the pool has {len(keys)}")
    return {key: pool[key] for key in keys[:: max(1, len(keys) // LIVE_TALKERS)][:LIVE_TALKERS]}


def open_source(source: str) -> Source:
    """A camera by index (with the microphone), or a video file or stream URL."""
    if source.isdigit():
        return CameraSource(int(source))
    if not is_url(source) and not Path(source).exists():
        raise LiveError(f"{source}: no such file, and not a camera index or URL")
    return MediaSource(source)


class VideoWriter:
    """The annotated frames and their sound, as H.264 and AAC (MP4 or MKV, by the file's suffix)."""

    def __init__(self, path: Path) -> None:
        self._container = av.open(str(path), mode="w")
        self._video = self._container.add_stream("libx264", rate=VIDEO_FPS, options={"preset": "veryfast"})
        self._video.pix_fmt = "yuv420p"
        self._sound = self._container.add_stream("aac", rate=SAMPLE_RATE)
        self._sound.layout = "mono"
        self._frames = 0

    def write(self, rgb: np.ndarray, samples: np.ndarray) -> None:
        """One frame (even height and width, the same every time) and its SAMPLES_PER_VIDEO_FRAME samples."""
        if self._frames == 0:
            self._video.height, self._video.width = rgb.shape[:2]
        picture = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        picture.pts, picture.time_base = self._frames, Fraction(1, VIDEO_FPS)
        self._container.mux(self._video.encode(picture))
        sound = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
        sound.sample_rate, sound.pts = SAMPLE_RATE, self._frames * SAMPLES_PER_VIDEO_FRAME
        self._container.mux(self._sound.encode(sound))
        self._frames += 1

    def close(self) -> None:
        """Flush the encoders and finish the file."""
        self._container.mux(self._video.encode(None))
        self._container.mux(self._sound.encode(None))
        self._container.close()


class Live:
    """The captioning loop over one source (see the module docstring)."""

    def __init__(self, recognizer: Recognizer, options: LiveOptions, name: str) -> None:
        self.recognizer, self.options, self.name = recognizer, options, name
        self.noise, self.snr = options.noise, options.snr
        self.rng = np.random.default_rng(options.seed)  # the noise's, drawn in the recognition thread
        self.babble = None if options.babble is None else babble_talkers(options.babble)
        main = recognizer.modalities[0]  # and the audio head beside it, to compare
        self.columns = [main, *(["audio"] if main != "audio" and "audio" in recognizer.modalities else [])]
        self.segmenter = Segmenter()
        self.history: deque[Tracked] = deque(maxlen=HISTORY_FRAMES)  # the latest frames
        self.pending: deque[LiveFrame] = deque()  # tracked frames waiting for their sound
        self.recognising: deque[tuple[Future[Caption], float]] = deque()  # with their speech's end, wall
        self.report = LiveReport()
        self.shown: Caption | None = None  # the caption on screen, until `shown_until` (wall)
        self.shown_until = 0.0
        self.inset: np.ndarray | None = None  # the latest face's mouth crop
        self.faceless = 0  # tracked frames in a row without a face
        self.wall_origin: float | None = None  # when frame 0 was on screen
        self.time_origin = 0.0  # frame 0's time on the source's clock
        self.first_wall = 0.0
        self.writer: VideoWriter | None = None  # to options.out, opened with the first frame
        self.quit = False

    def run(self, source: Source) -> LiveReport:
        """Caption `source` to its end (or q); the report of the run."""
        with MouthTracker() as tracker, ThreadPoolExecutor(1, thread_name_prefix="recognise") as pool:
            try:
                for frame in source.frames():
                    start = time.monotonic()
                    self._track(frame, tracker)
                    while self.pending and source.audio.ready(self.pending[0].time + FRAME_SECONDS):
                        self._advance(self.pending.popleft(), source.audio, pool)
                    self.report.busy += time.monotonic() - start
                    if self.quit:
                        break
                while self.pending and not self.quit:  # the sound has ended, or will not come
                    self._advance(self.pending.popleft(), source.audio, pool)
                self._submit(self.segmenter.flush(self.report.frames), source.audio, pool)
            finally:
                self._collect(wait=True)
                if self.writer is not None:
                    self.writer.close()
                self._write_captions()
        return self.report

    def _track(self, frame: LiveFrame, tracker: MouthTracker) -> None:
        """Find the face in `frame`, unless it came too late, and keep what an utterance needs of it."""
        now = time.monotonic()
        if self.wall_origin is None:
            self.wall_origin, self.first_wall = frame.wall - frame.index * FRAME_SECONDS, now
            self.time_origin = frame.time - frame.index * FRAME_SECONDS
        lag = now - frame.wall
        self.report.frames += 1
        self.report.max_lag = max(self.report.max_lag, lag)
        self.report.seconds = now - self.first_wall
        gray = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY)
        if lag > MAX_LAG_SECONDS:
            self.report.dropped += 1
            opening = self.history[-1].opening if self.history else None
            self.history.append(Tracked(gray, None, opening))
        else:
            landmarks = tracker.update(frame.rgb)
            opening = None
            if landmarks is None:
                self.faceless += 1
                if self.faceless == FACE_LOST_FRAMES:
                    print("avsr live: no face in view: captions from the sound alone", file=sys.stderr)
            else:
                if self.faceless >= FACE_LOST_FRAMES:
                    print("avsr live: the face is back in view", file=sys.stderr)
                self.faceless = 0
                self.inset = crop_mouths([gray], [landmarks], self.name).crops[0]
                opening = mouth_opening(landmarks)
            self.history.append(Tracked(gray, landmarks, opening))
        self.pending.append(frame)

    def _frames(self, start: int, end: int) -> list[Tracked]:
        """The kept frames [start, end) (those still kept: the history is bounded)."""
        first = self.report.frames - len(self.history)
        return list(self.history)[max(start - first, 0) : max(end - first, 0)]

    def _advance(self, frame: LiveFrame, audio: AudioBuffer, pool: ThreadPoolExecutor) -> None:
        """Cut utterances with this frame's sound, pick up finished captions, and show the frame."""
        samples = audio.read(frame.time, SAMPLES_PER_VIDEO_FRAME)
        lips = lips_moving(self._frames(frame.index + 1 - LIP_WINDOW_FRAMES, frame.index + 1))
        self._submit(self.segmenter.push(frame.index, level_db(samples), lips), audio, pool)
        self._collect(wait=False)
        shown = self.shown.transcripts if self.shown and time.monotonic() < self.shown_until else {}
        columns = [(HEAD_LABELS[head], shown[head].text if head in shown else "") for head in self.columns]
        status = CLEAN if self.noise is None else f"{self.noise} noise at {self.snr:g} dB SNR"
        warning = "no face in view" if self.faceless >= FACE_LOST_FRAMES else ""
        canvas = annotate(frame.rgb, columns, status, warning, self.inset)
        if self.options.out is not None:
            self.writer = self.writer or VideoWriter(self.options.out)
            self.writer.write(canvas, samples)
        if not self.options.headless:
            cv2.imshow(WINDOW_TITLE, cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
            self._key(cv2.waitKey(1))

    def _key(self, code: int) -> None:
        """Act on a key pressed in the window (see KEYS_HELP)."""
        key = chr(code & 0xFF) if code >= 0 else ""
        if key in QUIT_KEYS:
            self.quit = True
        elif key in NOISE_KEYS:
            if NOISE_KEYS[key] == BABBLE and self.babble is None:
                print("avsr live: babble needs talkers: start with --babble-pool MANIFEST", file=sys.stderr)
            else:
                self.noise = NOISE_KEYS[key]
        elif key in SNR_KEYS:
            self.snr += SNR_KEYS[key]

    def _submit(
        self, span: tuple[int, int, int] | None, audio: AudioBuffer, pool: ThreadPoolExecutor
    ) -> None:
        """Send the utterance of frames [start, end) to the recognition thread, with its sound."""
        if span is None:
            return
        start, end, voiced_end = span
        frames = self._frames(start, end)
        start = end - len(frames)  # frames older than the history are gone
        if len(frames) < MIN_FRAMES:
            return
        waveform = audio.read(self.time_origin + start * FRAME_SECONDS, len(frames) * SAMPLES_PER_VIDEO_FRAME)
        spec = noise_spec(self.noise, None if self.noise is None else self.snr)
        future = pool.submit(self._recognise, start, voiced_end, frames, waveform, spec)
        self.recognising.append((future, self.wall_origin + voiced_end * FRAME_SECONDS))

    def _recognise(
        self, start: int, voiced_end: int, frames: list[Tracked], waveform: np.ndarray, spec: NoiseSpec | None
    ) -> Caption:
        """The caption of one utterance (in the recognition thread): every head that can read it.
        `transcribe_clip` pads its edges with still lips and quiet sound (`avsr.windows`)."""
        try:
            crops = crop_mouths([frame.gray for frame in frames], [frame.landmarks for frame in frames],
                                self.name).crops
        except NoFaceError:  # heard only
            crops = None
        if spec is not None:
            waveform = add_noise(waveform, spec, self.rng, pool=self.babble, exclude="")
        transcripts = self.recognizer.transcribe_clip(crops, waveform, Path(self.name), self.options.decoding)
        noise = CLEAN if spec is None else str(spec)
        return Caption(start * FRAME_SECONDS, voiced_end * FRAME_SECONDS, transcripts, noise)

    def _collect(self, wait: bool) -> None:
        """Show and print the captions recognised (all of them, waiting, if `wait`), in order."""
        while self.recognising and (wait or self.recognising[0][0].done()):
            future, speech_end = self.recognising.popleft()
            caption = future.result()
            now = time.monotonic()
            self.report.captions.append(caption)
            self.report.latencies.append(now - speech_end)
            self.shown, self.shown_until = caption, now + CAPTION_SECONDS
            print(self._line(caption, now - speech_end), flush=True)

    def _line(self, caption: Caption, latency: float) -> str:
        """A caption as printed: its time, text, the audio-only text under noise, and the latency."""
        main = caption.main
        line = f"[{caption.start:7.2f} s - {caption.speech_end:7.2f} s] {main.text if main else ''}"
        if caption.noise != CLEAN and "audio" in caption.transcripts and main.modality != "audio":
            line += f"  (audio only, {caption.noise}: {caption.transcripts['audio'].text})"
        if self.options.stats:
            line += f"  [latency {latency:.2f} s]"
        return line

    def _write_captions(self) -> None:
        """The main captions as SRT subtitles to --captions, words timed from the first frame."""
        if self.options.captions is None:
            return
        words = [replace(word, start=word.start + caption.start, end=word.end + caption.start)
                 for caption in self.report.captions if caption.main for word in caption.main.words]
        transcript = Transcript(Path(self.name), " ".join(word.word for word in words), words,
                                self.report.frames * FRAME_SECONDS, self.recognizer.modalities[0],
                                self.recognizer.name)
        with atomic_write(self.options.captions, "w") as handle:
            handle.write(to_srt(transcript))


def run_live(options: LiveOptions) -> LiveReport:
    """Caption `options.source` live until it ends or q is pressed (see the module docstring).

    Raises LiveError for a camera, microphone or screen that cannot be used, an `InputError`
    for a file that cannot be read, and FileNotFoundError for a model that is not installed.
    """
    if not options.headless and sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise LiveError("no screen to show the window on: add --headless (and --out VIDEO, --captions SRT)")
    if options.noise == BABBLE and options.babble is None:
        raise LiveError("babble noise needs talkers: --babble-pool MANIFEST")
    noise_spec(options.noise, None if options.noise is None else options.snr)  # a noise that cannot work
    source = open_source(options.source)
    threads = torch.get_num_threads()
    torch.set_num_threads(RECOGNITION_THREADS)
    try:
        recognizer = Recognizer.load(options.model, options.device, options.clip_norm)
        recognizer.prepare(options.decoding)  # options that cannot work fail before the loop
        if not options.headless:
            print(f"avsr live: {KEYS_HELP}", file=sys.stderr)
        return Live(recognizer, options, source.name).run(source)
    finally:
        torch.set_num_threads(threads)
        source.close()
        if not options.headless:
            cv2.destroyAllWindows()
