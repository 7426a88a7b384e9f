"""The frames of a capsule study in order, each scaled once to the model's input and to a thumbnail.

A study is a video file (decoded by FFmpeg through PyAV, whose wheels carry it) or a folder of
numbered frame images, as capsule software exports them. Frames come out in frame order with their
time in seconds from the first frame: a video's own timestamps, or for a folder the frame number in
each file name over ``fps``.

Each frame is scaled straight to the model's input by the decoder's own scaler (FFmpeg's swscale for
video; libjpeg's DCT scaling, then Pillow, for image files), following timm's eval transform
(shorter side to ``floor(size / crop_pct)``, centre crop ``size``), so no full-size RGB copy is
made; a square thumbnail (the page's pictures and the perceptual hash) comes from the same decode.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from endoctl.imaging import IMAGE_SUFFIXES, ImageRejected, decode_rgb, read_image_file
from endoctl.params import MAX_PIXELS

THUMB = 112  # px, the square thumbnail of every frame
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v"})  # predict points here
_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last digit run of a file stem: the frame number
_PIL_FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR}
_FFMPEG_FILTERS = {"nearest": "POINT", "bilinear": "BILINEAR", "bicubic": "BICUBIC"}


class StudyInputError(ValueError):
    """The study cannot be read (further); ``str(exc)`` is the one line for the user."""


@dataclass(frozen=True)
class Geometry:
    """timm's eval geometry: scale (shorter side to ``scale``, or both sides with ``squash``), centre crop ``size``."""

    size: int
    scale: int
    interpolation: str = "bicubic"
    squash: bool = False

    def scaled(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the scale step, as torchvision's ``Resize(int)`` rounds them."""
        if self.squash:
            return self.scale, self.scale
        if width <= height:
            return self.scale, int(self.scale * height / width)
        return int(self.scale * width / height), self.scale

    def crop(self, pixels: np.ndarray) -> np.ndarray:
        """The centre ``size`` x ``size`` of a scaled frame (torchvision's ``CenterCrop`` offsets)."""
        height, width = pixels.shape[:2]
        top, left = int(round((height - self.size) / 2.0)), int(round((width - self.size) / 2.0))
        return np.ascontiguousarray(pixels[top : top + self.size, left : left + self.size])


def model_geometry(data_config: dict[str, Any]) -> Geometry:
    """The :class:`Geometry` of a timm data config (``input_size``, ``crop_pct``, ``crop_mode``, ``interpolation``)."""
    size = int(data_config["input_size"][-1])
    crop_pct = float(data_config.get("crop_pct") or 1.0)
    return Geometry(
        size,
        math.floor(size / crop_pct),
        str(data_config.get("interpolation") or "bicubic"),
        data_config.get("crop_mode") == "squash",
    )


THUMB_GEOMETRY = Geometry(THUMB, THUMB, "bilinear")


@dataclass
class Frame:
    """One frame: ``pixels`` (size, size, 3) uint8 model input and ``thumb``, or ``reason`` when unreadable."""

    index: int  # position in the study, from 0
    time: float  # seconds from the first frame
    name: str  # the file name (frame folders) or "" (video)
    pixels: np.ndarray | None = None
    thumb: np.ndarray | None = None
    reason: str = ""


class StudyFrames:
    """What :func:`open_study` returns: ``frames(start)`` yields :class:`Frame` in order from position ``start``."""

    kind: str  # "video" or "frames"
    total: int | None  # frames the input holds (a video's header may not say)
    skipped: int = 0  # files in a frame folder that are not numbered frame images

    def frames(self, start: int = 0) -> Iterator[Frame]:
        raise NotImplementedError


class VideoFrames(StudyFrames):
    """A video file through PyAV; decoding runs in FFmpeg's own threads."""

    kind = "video"

    def __init__(self, path: Path, geometry: Geometry) -> None:
        import av

        self.path, self.geometry = path, geometry
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise StudyInputError(f"{path}: no video stream")
                stream = container.streams.video[0]
                self.total = int(stream.frames) or None
                rate = stream.average_rate or stream.guessed_rate
                self.fps = float(rate) if rate else None
                # containers that do not count frames (Matroska) still state how long they last
                self.duration = container.duration / 1_000_000 if container.duration else None
        except av.FFmpegError as exc:
            raise StudyInputError(f"{path}: not a readable video ({_ffmpeg_reason(exc)})") from None

    def frames(self, start: int = 0) -> Iterator[Frame]:
        import av

        good, first_time, time = -1, None, 0.0
        scalers = (av.video.reformatter.VideoReformatter(), av.video.reformatter.VideoReformatter())
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for i, frame in enumerate(container.decode(stream)):
                    time = frame.time if frame.time is not None else i / (self.fps or 1.0)
                    first_time = time if first_time is None else first_time
                    good = i
                    if i < start:
                        continue  # decoded (a video cannot be entered mid-GOP exactly) but not converted
                    yield Frame(i, round(time - first_time, 6), "", *self._convert(frame, scalers))
        except av.FFmpegError as exc:
            raise StudyInputError(f"{self.path}: unreadable after {_last_good(good)} ({_ffmpeg_reason(exc)})") from None
        if self.total is not None and good + 1 < self.total:
            raise StudyInputError(
                f"{self.path}: truncated: the video ended after {_last_good(good)}, its header declares "
                f"{self.total:,} frames"
            )
        step = 1 / self.fps if self.fps else 0.0
        if self.total is None and self.duration and time - (first_time or 0.0) + 1.5 * step < self.duration:
            raise StudyInputError(
                f"{self.path}: truncated: the video ended at {time - (first_time or 0.0):.1f} s after "
                f"{_last_good(good)}, its header says it lasts {self.duration:.1f} s"
            )

    def _convert(self, frame: Any, scalers: tuple[Any, Any]) -> tuple[np.ndarray, np.ndarray]:
        """The model input and the thumbnail, each scaled by FFmpeg straight from the decoded frame; one
        reformatter per size keeps its scaler (rebuilding it for every frame cost 4x the decoding)."""
        out = []
        for geometry, scaler in zip((self.geometry, THUMB_GEOMETRY), scalers):
            width, height = geometry.scaled(frame.width, frame.height)
            interpolation = _FFMPEG_FILTERS.get(geometry.interpolation, "BICUBIC")
            scaled = scaler.reformat(frame, width=width, height=height, format="rgb24", interpolation=interpolation)
            out.append(geometry.crop(scaled.to_ndarray()))
        return out[0], out[1]


class FolderFrames(StudyFrames):
    """Numbered frame images of one folder (not recursive), in frame-number order, timed by ``fps``."""

    kind = "frames"

    def __init__(self, folder: Path, geometry: Geometry, fps: float, max_pixels: int = MAX_PIXELS) -> None:
        if fps <= 0:
            raise StudyInputError(f"--fps must be > 0, got {fps}")
        self.folder, self.geometry, self.fps, self.max_pixels = folder, geometry, fps, max_pixels
        numbered, skipped = [], 0
        for entry in os.scandir(folder):
            name = entry.name
            match = _NUMBER.search(Path(name).stem)
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES or match is None:
                skipped += 1
                continue
            numbered.append((int(match.group(1)), name))
        if not numbered:
            raise StudyInputError(
                f"{folder}: no numbered frames (image files named with their frame number, e.g. frame_000123.jpg)"
                + (f"; {skipped} other entries" if skipped else "; the folder is empty")
            )
        numbered.sort()
        self.numbers = [n for n, _ in numbered]
        self.names = [name for _, name in numbered]
        self.total, self.skipped = len(numbered), skipped

    def frames(self, start: int = 0) -> Iterator[Frame]:
        first = self.numbers[0]
        for i in range(start, len(self.names)):
            frame = Frame(i, round((self.numbers[i] - first) / self.fps, 6), self.names[i])
            try:
                frame.pixels, frame.thumb = self._convert(self.folder / self.names[i])
            except ImageRejected as exc:
                frame.reason = str(exc)
            yield frame

    def _convert(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Decode once (a JPEG at the smallest DCT scale that keeps the thumbnail sharp), scale twice."""
        draft = max(self.geometry.scale, THUMB)
        image = decode_rgb(read_image_file(path), self.max_pixels, draft=draft)
        out = []
        for geometry in (self.geometry, THUMB_GEOMETRY):
            size = geometry.scaled(image.width, image.height)
            scaled = image.resize(size, _PIL_FILTERS.get(geometry.interpolation, Image.Resampling.BICUBIC))
            out.append(geometry.crop(np.asarray(scaled)))
        return out[0], out[1]


def open_study(path: Path, geometry: Geometry, fps: float, max_pixels: int = MAX_PIXELS) -> StudyFrames:
    """A video file or a folder of numbered frames; :class:`StudyInputError` naming ``path`` otherwise."""
    if path.is_dir():
        return FolderFrames(path, geometry, fps, max_pixels)
    if not path.exists():
        raise StudyInputError(f"study not found: {path}")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise StudyInputError(
            f"{path}: expected a video ({', '.join(sorted(VIDEO_SUFFIXES))}) or a folder of numbered frames"
        )
    return VideoFrames(path, geometry)


def _last_good(index: int) -> str:
    return f"frame {index} (the last good one; {index + 1:,} decoded)" if index >= 0 else "no frame (none decoded)"


def _ffmpeg_reason(exc: Exception) -> str:
    """FFmpeg's message without the file name PyAV appends (the caller names the file)."""
    return str(getattr(exc, "strerror", None) or exc).split(": '")[0]
