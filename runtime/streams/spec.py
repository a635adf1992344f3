"""The streams of a run: ``--source`` URIs, or a ``--sources FILE.yaml`` naming each and giving it its own sinks;
and opening them together, so one unreachable camera among several is reported, not fatal.

File format (a list under ``sources:``, or a bare list; an entry may also be a bare URI string)::

    sources:
      - uri: rtsp://10.0.0.5/stream1
        name: gate                      # what results call it (meta["source"], JSON lines, /metrics labels)
        sinks: [jsonl:gate.jsonl, video:gate.mp4]
      - uri: clips/yard.mp4

Errors are one line naming the file and the key path (``cams.yaml: sources[1].sinkz: unknown key``).
Sources are opened in parallel threads, so N unreachable network cameras cost one open timeout, not N.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, List, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import UserError
from ..sources import Source, open_source
from ..validation import parse_yaml, validation_line

__all__ = ["MAX_STREAMS", "StreamSpec", "gather_sources", "load_sources_file", "open_streams"]

log = logging.getLogger("edgevision.streams")
MAX_STREAMS = 64  # each stream is a reader thread and a decoder; more is a typo or a different deployment


class StreamSpec(BaseModel):
    """One stream: its URI, an optional name, and sinks for its results only."""

    model_config = ConfigDict(extra="forbid")
    uri: str = Field(min_length=1)
    name: Optional[str] = None  # noqa: UP045 - pydantic evaluates this at run time on Python 3.8
    sinks: List[str] = Field(default_factory=list)  # noqa: UP006

    @field_validator("name")
    @classmethod
    def _name_is_a_label(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or any(c in v for c in "\n\r\"")):
            raise ValueError("must be a non-empty single-line name without quotes")
        return v


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: List[StreamSpec] = Field(min_length=1, max_length=MAX_STREAMS)  # noqa: UP006


def load_sources_file(path: str | os.PathLike[str]) -> list[StreamSpec]:
    """Read and validate a ``--sources`` file (see the module docstring); ``UserError`` on any problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--sources {p}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    data = parse_yaml(text, str(p))
    if isinstance(data, list):
        data = {"sources": data}
    if not isinstance(data, dict):
        raise UserError(f"{p}: expected a list of sources, or a mapping with a 'sources' list")
    if isinstance(data.get("sources"), list):
        data["sources"] = [{"uri": e} if isinstance(e, str) else e for e in data["sources"]]
    try:
        specs = _File.model_validate(data).sources
    except ValidationError as exc:
        raise UserError(validation_line(str(p), exc)) from None
    names = [s.name or s.uri for s in specs]
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        raise UserError(f"{p}: sources: {dup!r} appears twice; give each stream its own name")
    return specs


def open_streams(specs: Sequence[StreamSpec], **open_kw: Any) -> tuple[list[Source], list[str]]:
    """Open every stream in parallel (``open_source`` with ``open_kw``; stream ids follow the list).

    One stream: its error is raised as before. Several: the ones that open are returned and each failure is
    logged once and returned as a line (``stream 2 (rtsp://...): cannot open the stream``); only when none
    opens is the first error raised.
    """
    if len(specs) == 1:
        src = open_source(specs[0].uri, stream_id=0, **open_kw)
        src.name = specs[0].name or src.uri
        return [src], []
    got: list[Source | BaseException | None] = [None] * len(specs)

    def one(i: int) -> None:
        try:
            got[i] = open_source(specs[i].uri, stream_id=i, **open_kw)
        except BaseException as exc:  # reported below, on the caller's thread
            got[i] = exc

    threads = [threading.Thread(target=one, args=(i,), name=f"edgevision-open{i}", daemon=True)
               for i in range(len(specs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sources: list[Source] = []
    failures: list[str] = []
    for i, (spec, item) in enumerate(zip(specs, got)):
        if isinstance(item, Source):
            item.name = spec.name or item.uri
            sources.append(item)
        elif isinstance(item, UserError):
            failures.append(f"stream {i} ({spec.name or spec.uri}): {item}")
        elif isinstance(item, BaseException):
            for src in sources:
                src.close()
            raise item
    for line in failures:
        log.error("%s; running the other streams", line)
    if not sources:
        raise UserError(failures[0])
    return sources, failures


def gather_sources(source: Source | str | Sequence[Source | str]) -> list[Source]:
    """The pipeline's sources. Several: URIs are opened with stream ids 0, 1, ... in list order; given
    ``Source`` objects keep theirs when they are all distinct (e.g. ``streams.open_streams``), else they are
    renumbered the same way."""
    items: list[Source | str] = [source] if isinstance(source, (Source, str)) else list(source)
    if not items:
        raise UserError("no source given")
    if len(items) == 1:
        return [open_source(items[0]) if isinstance(items[0], str) else items[0]]
    sources: list[Source] = []
    try:
        for i, item in enumerate(items):
            sources.append(open_source(item, stream_id=i) if isinstance(item, str) else item)
    except BaseException:
        for src in sources:
            src.close()
        raise
    if len({s.stream_id for s in sources}) < len(sources):
        for i, src in enumerate(sources):
            src.stream_id = i
    return sources
