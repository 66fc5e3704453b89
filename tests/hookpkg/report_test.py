"""hookpkg/report.py: the hook's results (FileResult), its exit code, and the two
reporters, compiler-style text (plain or coloured) and one JSON document.

Previews come from the real checker (``check_file`` on the repository's examples)
or, for a shape no example has, are written as the records they are."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from hookpkg.commands.check import check_file
from hookpkg.delivery import Cluster
from hookpkg.errors import Diagnostic
from hookpkg.report import (
    JSON_VERSION,
    FileResult,
    Status,
    exit_code,
    format_diagnostic,
    to_json,
    write_json,
    write_preview_text,
    write_text,
)
from hookpkg.rewrite import ImagePreview, Location, Preview

EXAMPLES = Path(__file__).parents[1] / "hook_examples"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
ERROR = Diagnostic("a.yaml", 3, 5, "error", "images.app", "image is required")
WARNING = Diagnostic("a.yaml", 7, 1, "warning", "", "unknown key")
NOTE = Diagnostic("a.yaml", 9, 3, "note", "dev.app", "kept as is")
REMOTE = Cluster("remote", "prod")
KIND = Cluster("kind", "kind-dev", "dev")


def text(results: list[FileResult], **kwargs: bool) -> str:
    out = io.StringIO()
    write_text(results, out, **kwargs)
    return out.getvalue()


def checked(name: str, cluster: Cluster = REMOTE) -> FileResult:
    return check_file(EXAMPLES / name, cluster, registry="localhost:31234")


def test_file_result_counts_by_severity() -> None:
    result = FileResult("a.yaml", "error", [ERROR, WARNING, WARNING, NOTE])
    assert (result.errors, result.warnings) == (1, 2)


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        pytest.param([], 0, id="nothing"),
        pytest.param(["ok", "not-applicable"], 0, id="ok"),
        pytest.param(["ok", "error"], 1, id="an-error"),
        pytest.param(["error", "unreadable", "ok"], 2, id="unreadable-wins"),
    ],
)
def test_exit_code(statuses: list[Status], code: int) -> None:
    assert exit_code([FileResult(f"{i}.yaml", s) for i, s in enumerate(statuses)]) == code


def test_text_diagnostics_messages_and_the_count() -> None:
    results = [
        FileResult("a.yaml", "error", [ERROR, WARNING, WARNING]),
        FileResult("b.yaml", "unreadable", message="cannot read: permission denied"),
        FileResult("c.yaml", "not-applicable", message="version v1beta11 predates v2beta1"),
    ]
    assert text(results).splitlines() == [
        "a.yaml:3:5: error: images.app: image is required",
        "a.yaml:7:1: warning: unknown key",
        "a.yaml:7:1: warning: unknown key",
        "b.yaml: error: cannot read: permission denied",
        "c.yaml: note: version v1beta11 predates v2beta1",
        "1 error, 2 warnings",
    ]


@pytest.mark.parametrize(
    ("diagnostics", "summary"),
    [
        pytest.param([], None, id="none-no-summary"),
        pytest.param([NOTE], None, id="notes-are-not-counted"),
        pytest.param([WARNING], "0 errors, 1 warning", id="one-warning"),
        pytest.param([ERROR, ERROR], "2 errors, 0 warnings", id="plural"),
    ],
)
def test_text_summary(diagnostics: list[Diagnostic], summary: str | None) -> None:
    lines = text([FileResult("a.yaml", diagnostics=diagnostics)]).splitlines()
    assert len(lines) == len(diagnostics) + (summary is not None)
    if summary is not None:
        assert lines[-1] == summary


def test_text_preview_of_the_positive_example() -> None:
    result = checked("positive/devspace.yaml")
    assert result.status == "ok" and result.preview is not None
    shown = text([result])
    file = result.file
    assert shown.splitlines()[0] == (f"{file}: preview for prod (remote), registry localhost:31234")
    assert "  image api: local-registry\n" in shown
    assert (
        f"    {file}:12:12: images.api.image: ghcr.io/acme/shop-api -> localhost:31234/acme/shop-api\n"
    ) in shown
    assert "    RUNTIME_IMAGES_API=localhost:31234/acme/shop-api:<tag>\n" in shown
    assert shown.endswith(
        "  DEVREG_REGISTRY=localhost:31234\n"
        "  DEVSPACE_HOOK_IMAGE_NAME=localhost:31234/acme/shop-api\n"
    )
    assert text([result], show_preview=False) == ""


def test_text_preview_of_a_hand_written_preview() -> None:
    """The lines no example yields at once: kind's path word, an unchanged location,
    an unresolved image, no registry variables, notes after the rest."""
    preview = Preview(
        registry="localhost:[NODE_PORT]",
        cluster=KIND,
        images=[
            ImagePreview(
                "app",
                "acme/app",
                "kind-load",
                "acme/app",
                "<tag>",
                resolved=False,
                locations=[Location("a.yaml", 4, 12, "images.app.image", "acme/app", "acme/app")],
                variables={"RUNTIME_IMAGES_APP": "acme/app:<tag>"},
            )
        ],
        variables={},
        notes=[NOTE],
        unresolved=("${IMAGE}",),
    )
    out = io.StringIO()
    write_preview_text(preview, "a.yaml", out)
    assert out.getvalue().splitlines() == [
        "a.yaml: preview for kind-dev (kind cluster 'dev'), registry localhost:[NODE_PORT]",
        "  note: ${IMAGE} is an unresolved expression; its default is shown",
        "  image app: kind-load (kind cluster dev) (image is an unresolved expression)",
        "    a.yaml:4:12: images.app.image: acme/app (unchanged)",
        "    RUNTIME_IMAGES_APP=acme/app:<tag>",
        "a.yaml:9:3: note: dev.app: kept as is",
    ]


def test_text_preview_without_images_and_with_escapes_from_the_file() -> None:
    preview = Preview("localhost:31234", REMOTE, [], {"DEVREG_REGISTRY": "x\x1b[31my"})
    out = io.StringIO()
    write_preview_text(preview, "evil\u202e.yaml", out)
    assert out.getvalue() == (
        "evil\\u202e.yaml: preview for prod (remote), registry localhost:31234\n"
        "  no images configured\n"
        "  DEVREG_REGISTRY=x\\x1b[31my\n"
    )


def test_colour_is_the_same_text_with_escapes_around_words() -> None:
    results = [
        FileResult("a.yaml", "error", [ERROR, WARNING, NOTE]),
        FileResult("b.yaml", "unreadable", message="cannot read"),
        checked("positive/devspace.yaml"),
    ]
    plain = text(results)
    coloured = text(results, color=True)
    assert coloured != plain
    assert ANSI.sub("", coloured) == plain
    assert "\x1b[31m\x1b[1merror\x1b[0m" in coloured
    assert "\x1b[31m\x1b[1m1 error\x1b[0m, \x1b[33m1 warning\x1b[0m" in coloured


def test_format_diagnostic_paints_the_severity_only() -> None:
    """The path or message may hold the same word: only the severity is painted."""
    d = Diagnostic("error.yaml", 1, 2, "warning", "warning", "error: warning")
    assert format_diagnostic(d) == d.format()
    assert format_diagnostic(d, color=True) == (
        "error.yaml:1:2: \x1b[33mwarning\x1b[0m: warning: error: warning"
    )


def test_json_document() -> None:
    ok = checked("positive/devspace.yaml", KIND)
    bad = checked("negative/devspace.yaml")
    unreadable = FileResult("gone.yaml", "unreadable", message="no such file")
    out = io.StringIO()
    write_json([ok, bad, unreadable], out)
    assert out.getvalue().endswith("}\n")
    doc = json.loads(out.getvalue())
    assert doc == to_json([ok, bad, unreadable])
    assert (doc["version"], doc["ok"]) == (JSON_VERSION, False)
    assert doc["summary"] == {"files": 3, "errors": bad.errors, "warnings": bad.warnings}
    assert bad.errors >= 1

    first, second, third = doc["files"]
    assert (first["status"], first["diagnostics"], first["message"]) == ("ok", [], None)
    preview = first["preview"]
    assert preview["cluster"] == {"kind": "kind", "context": "kind-dev", "kind_cluster": "dev"}
    (api,) = preview["images"]
    # enabled: true, so the local registry even on kind (SPEC §2)
    assert (api["key"], api["path"], api["repository"]) == (
        "api",
        "local-registry",
        "localhost:31234/acme/shop-api",
    )
    assert api["locations"][0] == {
        "file": ok.file,
        "line": 12,
        "column": 12,
        "path": "images.api.image",
        "original": "ghcr.io/acme/shop-api",
        "rewritten": "localhost:31234/acme/shop-api",
    }
    assert preview["variables"]["DEVREG_REGISTRY"] == "localhost:31234"

    assert second["status"] == "error" and second["preview"] is None
    d = bad.diagnostics[0]
    assert second["diagnostics"][0] == {
        "file": d.file,
        "line": d.line,
        "column": d.col,
        "severity": d.severity,
        "path": d.path,
        "message": d.message,
    }
    assert third == {
        "file": "gone.yaml",
        "status": "unreadable",
        "message": "no such file",
        "diagnostics": [],
        "preview": None,
    }


def test_json_ok_when_nothing_failed() -> None:
    doc = to_json([checked("positive/devspace-minimal.yaml")])
    assert doc["ok"] is True
    assert doc["summary"] == {"files": 1, "errors": 0, "warnings": 0}
