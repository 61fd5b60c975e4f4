"""Data I/O: clip readers (frame folders, video files), audio readers and official annotation files.

Everything re-exported here is importable without torch; video / audio backends are imported lazily.
"""

from .annotations import (
    ANNOTATION_KINDS,
    AnnotationError,
    AnnotationKind,
    AnnotationRow,
    read_annotations,
    remap_path,
    write_annotations,
)
from .readers import (
    IMAGE_SUFFIXES,
    MIN_VIDEO_BYTES,
    ClipReader,
    ClipReadError,
    FrameFolderReader,
    VideoFileReader,
    extract_audio_file,
    list_frames,
    open_clip,
    read_audio,
    read_wav,
)

__all__ = [
    "ANNOTATION_KINDS",
    "IMAGE_SUFFIXES",
    "MIN_VIDEO_BYTES",
    "AnnotationError",
    "AnnotationKind",
    "AnnotationRow",
    "ClipReadError",
    "ClipReader",
    "FrameFolderReader",
    "VideoFileReader",
    "extract_audio_file",
    "list_frames",
    "open_clip",
    "read_annotations",
    "read_audio",
    "read_wav",
    "remap_path",
    "write_annotations",
]
