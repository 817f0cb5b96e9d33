"""Video in and out through ffmpeg, for every family that reads or writes video: probing an input, staging it in
a private folder, running ffmpeg with progress and cancellation, mapping frames through a function, and encoding
RGB frames to H.264 MP4.

ffmpeg comes from the `imageio-ffmpeg` wheel, which bundles a static binary (with libx264 and libvpx), so no
system package is needed. ffmpeg always runs as a child process from the worker thread; the caller's progress is
read from a pipe, `ctx.cancelled()` is checked between reads and the child is killed when asked to stop, so a long
encode never blocks cancellation or the event loop. A video that cannot be read is an `InputRejected` naming the
field (error code 10001); ffmpeg failing on a video it could read stays a `BackendError` (10000).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import NDArray

from genmill.backends.base import Availability, RunContext
from genmill.backends.toolkit import cancelled_error, field_value
from genmill.domain.catalog import TaskInput
from genmill.errors import BackendError, InputRejected
from genmill.models.schema import MAX_VIDEO_BYTES

FFMPEG_TIMEOUT_S = 600.0
"""A single ffmpeg child that produces no progress for this long is killed (a hung decoder must not hold a
worker forever)."""


X264_ARGS = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-movflags", "+faststart")
"""H.264 in yuv420p plays in every browser and phone; CRF 18 is visually lossless for the upscaled frames."""


NO_FFMPEG = "imageio-ffmpeg (which bundles ffmpeg) is not installed: pip install 'genmill[cpu]'"


def ffmpeg_availability() -> Availability:
    """Whether the bundled ffmpeg binary is present; cheap (no child process is started)."""
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        return Availability(False, NO_FFMPEG)
    try:
        importlib.import_module("imageio_ffmpeg").get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        return Availability(False, f"imageio-ffmpeg has no usable ffmpeg binary ({exc}); reinstall it")
    return Availability(True)


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise BackendError(NO_FFMPEG) from exc
    exe: str = imageio_ffmpeg.get_ffmpeg_exe()
    return exe


@dataclass(frozen=True)
class VideoInfo:
    """What ffmpeg says about a video's first video stream (sizes after applying its rotation metadata)."""

    width: int
    height: int
    fps: float
    frames: int
    codec: str
    audio_codec: str | None

    def describe(self) -> str:
        audio = f", audio {self.audio_codec}" if self.audio_codec else ", no audio"
        return f"{self.width}x{self.height} {self.codec}, {self.frames} frames at {self.fps:g} fps{audio}"


VIDEO_STREAM = re.compile(rb"Stream #0:\d+\S*: Video: (\w+)[^\n]*?, (\d+)x(\d+)")


AUDIO_STREAM = re.compile(rb"Stream #0:\d+\S*: Audio: (\w+)")


FPS = re.compile(rb"Stream #0:\d+\S*: Video: [^\n]*?([\d.]+) (?:fps|tbr)")


ROTATION = re.compile(rb"rotation of (-?[\d.]+) degrees")


CONTAINER = re.compile(rb"Input #0, ([\w,]+), from")


def probe(path: Path, field: str) -> VideoInfo:
    """Read the stream header and count the frames with one ffmpeg run that demuxes without decoding.

    `-c copy` passes the video packets through (one per frame in MP4/WebM), so a 10 MB file holding tens of
    thousands of tiny frames is still refused within a second. The header lines parsed are the ones
    imageio-ffmpeg's `read_frames` metadata comes from; its generator is not used because it leaves its pipes
    open when ffmpeg rejects the file. Sizes are as displayed: a phone video stored 1280x720 with a 90 degree
    rotation is 720x1280, as ffmpeg decodes it.
    """
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy"]
    try:
        done = subprocess.run([*command, "-f", "null", "-"], capture_output=True, timeout=120, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InputRejected(f"{field}: reading the video took too long") from exc
    err = done.stderr
    detail = err.decode(errors="replace")[-800:]
    container = CONTAINER.search(err)
    demuxer = container.group(1).decode() if container else ""
    if demuxer == "image2" or demuxer.endswith("_pipe") or demuxer in ("gif", "apng", "webp"):
        # A still (or animated) image opens as a one-stream "video"; the catalog promises video files.
        raise InputRejected(f"{field}: not a decodable video (ffmpeg reads it as an image, {demuxer})")
    video = VIDEO_STREAM.search(err)
    counts = re.findall(rb"frame=\s*(\d+)", err)
    if container and not video:
        raise InputRejected(f"{field}: the file has no video stream", raw_message=detail)
    if done.returncode != 0 or not video or not counts:
        raise InputRejected(f"{field}: not a decodable video", raw_message=detail)
    width, height = int(video.group(2)), int(video.group(3))
    rotation = ROTATION.search(err)
    if rotation and round(abs(float(rotation.group(1)))) % 180 == 90:
        width, height = height, width
    fps_match = FPS.search(err)
    fps = float(fps_match.group(1)) if fps_match else 0.0
    audio = AUDIO_STREAM.search(err)
    return VideoInfo(
        width=width,
        height=height,
        fps=fps if fps > 0 else 25.0,
        frames=int(counts[-1]),
        codec=video.group(1).decode(),
        audio_codec=audio.group(1).decode() if audio else None,
    )


@contextmanager
def staged_video(ctx: RunContext, inputs: TaskInput, field: str) -> Iterator[Path]:
    """Fetch a video input into a private temporary folder (ffmpeg needs a seekable file for MP4) and remove the
    folder afterwards, whatever happens."""
    ref = field_value(inputs, field)
    if not isinstance(ref, str) or not ref.strip():
        raise InputRejected(f"{field}: a video URL or base64 string is required")
    data = ctx.read_input(ref, field=field).data
    if len(data) > MAX_VIDEO_BYTES:
        raise InputRejected(
            f"{field}: {len(data) / 1024 / 1024:.1f} MB, the limit is {MAX_VIDEO_BYTES // (1024 * 1024)} MB"
        )
    if not data:
        raise InputRejected(f"{field}: the file is empty")
    with tempfile.TemporaryDirectory(prefix="genmill-video-") as folder:
        path = Path(folder) / "input"
        path.write_bytes(data)
        yield path


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Stop a child (if still running), reap it and close our ends of its pipes."""
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdout, process.stdin):
        if stream is not None and not stream.closed:
            with suppress(BrokenPipeError):
                stream.close()


def _stderr_tail(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-800:]


def run_ffmpeg(args: list[str], ctx: RunContext, *, frames: int, span: tuple[float, float], what: str) -> None:
    """Run one ffmpeg command to completion, mapping its `frame=` progress onto `span` of the task's progress.

    `-progress pipe:1` makes ffmpeg print a block of key=value lines about four times a second; each block is a
    chance to check `ctx.cancelled()` and kill the child. A watchdog timer kills a child that stops talking.
    """
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-stats_period", "0.25"]
    command += ["-progress", "pipe:1", *args]
    low, high = span
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        assert process.stdout is not None
        watchdog = threading.Timer(FFMPEG_TIMEOUT_S, _kill, (process,))
        watchdog.start()
        try:
            for raw in process.stdout:
                if ctx.cancelled():
                    _kill(process)
                    raise cancelled_error()
                line = raw.decode(errors="replace").strip()
                if line.startswith("frame=") and frames > 0:
                    done = int(line.split("=", 1)[1] or 0)
                    ctx.progress(low + (high - low) * min(done, frames) / frames, f"{what}: frame {done}/{frames}")
            code = process.wait()
        finally:
            watchdog.cancel()
            _kill(process)
        if code != 0:
            raise BackendError(f"ffmpeg failed while {what}", raw_message=_stderr_tail(log))


FrameFn = Callable[[NDArray[np.uint8]], NDArray[np.uint8]]


def map_frames(
    source: Path,
    info: VideoInfo,
    target: Path,
    ctx: RunContext,
    process_frame: FrameFn,
    *,
    encode: list[str],
    field: str,
    out_pix_fmt: str = "rgb24",
    out_size: tuple[int, int] | None = None,
    batch: int = 8,
) -> None:
    """Decode `source` to RGB frames, pass each through `process_frame`, and encode the results to `target`.

    Two ffmpeg children joined by this thread: a decoder writing raw RGB to a pipe and an encoder reading raw
    frames (RGB, or RGBA when `out_pix_fmt` is "rgba") from another, which also takes the audio of `source` as
    its second input, so that `encode` can copy or re-encode it. `out_size` is the processed frames' size
    (default: the input's). Progress is reported every `batch` frames, and cancellation is checked there too.
    """
    exe = ffmpeg_exe()
    size = "{}x{}".format(*(out_size or (info.width, info.height)))
    rate = str(Fraction(info.fps).limit_denominator(1001))
    frame_bytes = info.width * info.height * 3
    decode_cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(source)]
    decode_cmd += ["-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    encode_cmd = [exe, "-hide_banner", "-nostdin", "-y", "-loglevel", "error"]
    encode_cmd += ["-f", "rawvideo", "-pix_fmt", out_pix_fmt, "-s", size, "-r", rate, "-i", "-", "-i", str(source)]
    encode_cmd += ["-map", "0:v:0", "-map", "1:a:0?", *encode, str(target)]
    with tempfile.TemporaryFile() as decode_log, tempfile.TemporaryFile() as encode_log:
        decoder = subprocess.Popen(decode_cmd, stdout=subprocess.PIPE, stderr=decode_log, stdin=subprocess.DEVNULL)
        encoder = subprocess.Popen(encode_cmd, stdin=subprocess.PIPE, stderr=encode_log, stdout=subprocess.DEVNULL)
        assert decoder.stdout is not None and encoder.stdin is not None
        done = 0
        try:
            while True:
                if done % batch == 0:
                    if ctx.cancelled():
                        raise cancelled_error()
                    ctx.progress(0.05 + 0.85 * min(done, info.frames) / max(info.frames, 1), f"frame {done}")
                raw = decoder.stdout.read(frame_bytes)
                if len(raw) < frame_bytes:
                    break
                frame = np.frombuffer(raw, dtype=np.uint8).reshape(info.height, info.width, 3)
                result = process_frame(frame)
                try:
                    encoder.stdin.write(np.ascontiguousarray(result, dtype=np.uint8).tobytes())
                except BrokenPipeError as exc:
                    raise BackendError(
                        "ffmpeg failed while encoding the output video", raw_message=_stderr_tail(encode_log)
                    ) from exc
                done += 1
            encoder.stdin.close()
            if decoder.wait(timeout=FFMPEG_TIMEOUT_S) != 0:
                raise InputRejected(f"{field}: the video could not be decoded", raw_message=_stderr_tail(decode_log))
            if encoder.wait(timeout=FFMPEG_TIMEOUT_S) != 0:
                raise BackendError(
                    "ffmpeg failed while encoding the output video", raw_message=_stderr_tail(encode_log)
                )
            if done == 0:
                raise InputRejected(f"{field}: no frame could be decoded", raw_message=_stderr_tail(decode_log))
        finally:
            if not encoder.stdin.closed:
                with suppress(BrokenPipeError):
                    encoder.stdin.close()
            _kill(decoder)
            _kill(encoder)


def encode_mp4(frames: NDArray[np.uint8], fps: int, ctx: RunContext) -> bytes:
    """H.264 MP4 (the toolkit's x264 settings) of RGB frames, through the bundled ffmpeg."""
    count, height, width, _ = frames.shape
    with tempfile.TemporaryDirectory(prefix="genmill-video-") as folder:
        raw, out = Path(folder) / "frames.rgb", Path(folder) / "out.mp4"
        raw.write_bytes(np.ascontiguousarray(frames).tobytes())
        args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", str(raw)]
        run_ffmpeg([*args, *X264_ARGS, str(out)], ctx, frames=count, span=(0.95, 0.99), what="encoding the video")
        return out.read_bytes()


def decode_frames(data: bytes, *, field: str, max_frames: int = 1000) -> tuple[NDArray[np.uint8], float]:
    """Every frame of a video held in memory as RGB (frames x height x width x 3) and its frame rate, for backends
    that continue an earlier clip. Refuses (naming `field`) what ffmpeg cannot read, or more than `max_frames`."""
    with tempfile.TemporaryDirectory(prefix="genmill-video-") as folder:
        source = Path(folder) / "input"
        source.write_bytes(data)
        info = probe(source, field)
        if info.frames > max_frames:
            raise InputRejected(f"{field}: the video has {info.frames} frames, more than {max_frames}")
        command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(source)]
        command += ["-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        try:
            done = subprocess.run(command, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise InputRejected(f"{field}: decoding the video took too long") from exc
    frame_bytes = info.width * info.height * 3
    count = len(done.stdout) // frame_bytes if frame_bytes else 0
    if done.returncode != 0 or count == 0:
        raise InputRejected(f"{field}: no frame could be decoded", raw_message=done.stderr.decode(errors="replace"))
    frames = np.frombuffer(done.stdout[: count * frame_bytes], dtype=np.uint8)
    return frames.reshape(count, info.height, info.width, 3), info.fps
