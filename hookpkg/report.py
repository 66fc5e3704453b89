"""Collect results, then report: compiler-style text or one JSON document."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from hookpkg.color import SEVERITY_COLORS, paint, severity
from hookpkg.errors import Diagnostic, printable
from hookpkg.rewrite import ImagePreview, Preview
from hookpkg.variables import HOOK_IMAGE_VAR, REGISTRY_VAR

JSON_VERSION = 1
Status = Literal["ok", "error", "unreadable", "not-applicable"]


@dataclass
class FileResult:
    file: str
    status: Status = "ok"
    diagnostics: list[Diagnostic] = field(default_factory=list)
    preview: Preview | None = None
    message: str | None = None  # for unreadable / not-applicable files

    @property
    def errors(self) -> int:
        return sum(d.severity == "error" for d in self.diagnostics)

    @property
    def warnings(self) -> int:
        return sum(d.severity == "warning" for d in self.diagnostics)


def exit_code(results: list[FileResult]) -> int:
    """2 when a file could not be read, else 1 when any has errors, else 0."""
    if any(r.status == "unreadable" for r in results):
        return 2
    if any(r.status == "error" for r in results):
        return 1
    return 0


# --- text -------------------------------------------------------------------


def _path_word(p: ImagePreview, preview: Preview) -> str:
    if p.path == "kind-load":
        return f"kind-load (kind cluster {preview.cluster.kind_name})"
    return p.path


def write_preview_text(preview: Preview, file: str, out: TextIO, *, color: bool = False) -> None:
    def line(text: str) -> None:  # keys and values come from files a stranger may write
        out.write(printable(text) + "\n")

    line(f"{file}: preview for {preview.cluster.describe()}, registry {preview.registry}")
    for name in preview.unresolved:
        line(f"  note: {name} is an unresolved expression; its default is shown")
    if not preview.images:
        line("  no images configured")
    for p in preview.images:
        unresolved = "" if p.resolved else " (image is an unresolved expression)"
        line(f"  image {p.key}: {_path_word(p, preview)}{unresolved}")
        for loc in p.locations:
            arrow = (
                f"{loc.original} -> {loc.rewritten}"
                if loc.rewritten != loc.original
                else f"{loc.original} (unchanged)"
            )
            line(f"    {loc.file}:{loc.line}:{loc.col}: {loc.path}: {arrow}")
        for name, value in p.variables.items():
            line(f"    {name}={value}")
    for name in (REGISTRY_VAR, HOOK_IMAGE_VAR):
        if name in preview.variables:
            line(f"  {name}={preview.variables[name]}")
    for note in preview.notes:
        out.write(format_diagnostic(note, color=color) + "\n")


def format_diagnostic(d: Diagnostic, *, color: bool = False) -> str:
    """``Diagnostic.format``, with the severity in its colour when ``color``
    (painted on the formatted line: the colour codes are the only escapes in it)."""
    text = d.format()
    if not color:
        return text
    word = f": {d.severity}: "
    return text.replace(word, f": {severity(d.severity, True)}: ", 1)


def write_text(
    results: list[FileResult], out: TextIO, *, show_preview: bool = True, color: bool = False
) -> None:
    for r in results:
        for d in r.diagnostics:
            out.write(format_diagnostic(d, color=color) + "\n")
        if r.message:
            word = severity("note" if r.status == "not-applicable" else "error", color)
            out.write(f"{r.file}: {word}: {r.message}\n")
        if show_preview and r.preview is not None:
            write_preview_text(r.preview, r.file, out, color=color)
    errors = sum(r.errors for r in results)
    warnings = sum(r.warnings for r in results)
    if errors or warnings:
        out.write(f"{_count(errors, 'error', color)}, {_count(warnings, 'warning', color)}\n")


def _count(n: int, word: str, color: bool) -> str:
    """``3 errors``, in the severity's colour when there are any."""
    return paint(f"{n} {word}{'s' * (n != 1)}", SEVERITY_COLORS[word], color and n > 0)


# --- JSON -------------------------------------------------------------------


def diagnostic_dict(d: Diagnostic) -> dict[str, Any]:
    return {
        "file": d.file,
        "line": d.line,
        "column": d.col,
        "severity": d.severity,
        "path": d.path,
        "message": d.message,
    }


def preview_dict(preview: Preview) -> dict[str, Any]:
    return {
        "cluster": {
            "kind": preview.cluster.kind,
            "context": preview.cluster.context,
            "kind_cluster": preview.cluster.kind_name,
        },
        "registry": preview.registry,
        "unresolved": list(preview.unresolved),
        "images": [
            {
                "key": p.key,
                "image": p.image,
                "path": p.path,
                "resolved": p.resolved,
                "repository": p.repository,
                "tag": p.tag,
                "locations": [loc.as_dict() for loc in p.locations],
                "variables": p.variables,
            }
            for p in preview.images
        ],
        "variables": preview.variables,
        "notes": [diagnostic_dict(n) for n in preview.notes],
    }


def to_json(results: list[FileResult]) -> dict[str, Any]:
    return {
        "version": JSON_VERSION,
        "ok": exit_code(results) == 0,
        "files": [
            {
                "file": r.file,
                "status": r.status,
                "message": r.message,
                "diagnostics": [diagnostic_dict(d) for d in r.diagnostics],
                "preview": preview_dict(r.preview) if r.preview is not None else None,
            }
            for r in results
        ],
        "summary": {
            "files": len(results),
            "errors": sum(r.errors for r in results),
            "warnings": sum(r.warnings for r in results),
        },
    }


def write_json(results: list[FileResult], out: TextIO) -> None:
    json.dump(to_json(results), out, indent=2)
    out.write("\n")
