"""``devreg check`` as the hook runs it: exit codes, text and JSON output,
several files at once, the real-world corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from watcher.cli.main import main

GOOD = "version: v2beta1\nlocalRegistry:\n  enabled: true\nimages:\n  app:\n    image: ghcr.io/org/app\n"
BAD = "version: v2beta1\nlocalRegistry:\n  locaBuild: true\n  port: 70000\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out + err


def test_good_file_previews(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "devspace.yaml").write_text(GOOD)
    rc, out = run(capsys, "check", str(tmp_path / "devspace.yaml"))
    assert rc == 0
    assert "image app: local-registry" in out
    assert "images.app.image: ghcr.io/org/app -> localhost:[NODE_PORT]/org/app" in out
    assert "RUNTIME_IMAGES_APP=localhost:[NODE_PORT]/org/app:<tag>" in out
    assert "DEVREG_REGISTRY=localhost:[NODE_PORT]" in out


def test_node_port_substitutes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "devspace.yaml").write_text(GOOD)
    rc, out = run(capsys, "preview", "-c", str(tmp_path / "devspace.yaml"), "--node-port", "31234")
    assert rc == 0
    assert "RUNTIME_IMAGES_APP_IMAGE=localhost:31234/org/app" in out
    assert "[NODE_PORT]" not in out


def test_bad_file_reports_compiler_style(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "devspace.yaml"
    f.write_text(BAD)
    rc, out = run(capsys, "check", str(f))
    assert rc == 1
    lines = out.splitlines()
    assert (
        f"{f}:3:3: error: localRegistry.locaBuild: unknown key 'locaBuild'; did you mean 'localbuild'?"
        in lines[0]
    )
    assert lines[1].startswith(f"{f}:4:9: error: localRegistry.port: 70000 is out of range")
    assert lines[-1] == "2 errors, 0 warnings"


def test_a_bad_file_never_stops_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(BAD)
    (tmp_path / "b.yaml").write_text(GOOD)
    rc, out = run(
        capsys,
        "check",
        str(tmp_path / "a.yaml"),
        str(tmp_path / "missing.yaml"),
        str(tmp_path / "b.yaml"),
    )
    assert rc == 2  # a missing file wins over config errors
    assert "a.yaml:3:3: error" in out
    assert f"{tmp_path / 'missing.yaml'}: error: no such file" in out
    assert "image app: local-registry" in out  # b.yaml was still checked


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param(lambda p: None, "no such file", id="missing"),
        pytest.param(lambda p: p.mkdir(), "is a directory", id="directory"),
        pytest.param(lambda p: p.write_bytes(b"\xff\xfe\x00bad"), "not UTF-8", id="binary"),
    ],
)
def test_unreadable_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup, message: str
) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "devspace.yaml"
    setup(f)
    rc, out = run(capsys, "check", str(f))
    assert rc == 2
    assert message in out


def test_json_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text(BAD)
    (tmp_path / "b.yaml").write_text(GOOD)
    rc, out = run(
        capsys,
        "check",
        "--format",
        "json",
        "--node-port",
        "30001",
        str(tmp_path / "a.yaml"),
        str(tmp_path / "b.yaml"),
    )
    assert rc == 1
    doc = json.loads(out)
    assert doc["version"] == 1 and doc["ok"] is False
    assert doc["summary"] == {"files": 2, "errors": 2, "warnings": 0}
    a, b = doc["files"]
    assert a["status"] == "error" and a["preview"] is None
    assert a["diagnostics"][0] == {
        "file": str(tmp_path / "a.yaml"),
        "line": 3,
        "column": 3,
        "severity": "error",
        "path": "localRegistry.locaBuild",
        "message": "unknown key 'locaBuild'; did you mean 'localbuild'? (allowed: buildKitImage, enabled, image, "
        "localbuild, name, namespace, persistence, port)",
    }
    img = b["preview"]["images"][0]
    assert img["key"] == "app" and img["path"] == "local-registry"
    assert img["locations"][0] == {
        "file": str(tmp_path / "b.yaml"),
        "line": 6,
        "column": 12,
        "path": "images.app.image",
        "original": "ghcr.io/org/app",
        "rewritten": "localhost:30001/org/app",
    }
    assert b["preview"]["variables"]["RUNTIME_IMAGES_APP"] == "localhost:30001/org/app:<tag>"


def test_context_flag_classifies_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\ncurrent-context: gke\ncontexts:\n- name: gke\n  context: {cluster: c}\n"
        "- name: kind-dev\n  context: {cluster: c}\nclusters:\n- name: c\n  cluster: {server: 'https://x'}\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    (tmp_path / "devspace.yaml").write_text("images:\n  app:\n    image: ghcr.io/org/app\n")
    _, out = run(capsys, "check", str(tmp_path / "devspace.yaml"))
    assert "image app: local-registry-if-refused" in out
    _, out = run(capsys, "check", "--context", "kind-dev", str(tmp_path / "devspace.yaml"))
    assert "image app: kind-load (kind cluster dev)" in out


def test_corpus(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every real-world config passes except DevSpace's own misplaced fixture."""
    files = sorted(corpus.glob("*.yaml"))
    assert len(files) >= 25
    for f in files:
        rc, out = run(capsys, "check", str(f))
        assert "Traceback" not in out, f
        expected = 1 if f.name.startswith("06-") else 0
        assert rc == expected, f"{f.name}: {out}"
        if expected:
            assert "localRegistry belongs at the top level" in out


def test_check_imports_no_runtime_libraries(tmp_path: Path) -> None:
    """The hook runs on every commit: docker, kubernetes and watchdog stay unimported."""
    (tmp_path / "devspace.yaml").write_text(GOOD)
    code = (
        "import sys\nfrom watcher.cli.main import main\n"
        f"rc = main(['check', {str(tmp_path / 'devspace.yaml')!r}])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('docker', 'kubernetes', 'watchdog', 'jsonschema', 'requests'))\n"
        "print('HEAVY', heavy)\nraise SystemExit(rc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])},
    )
    assert "HEAVY []" in out.stdout
