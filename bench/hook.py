"""devreg check vs check-jsonschema on the same files (issue 2's speed target).

Interleaved runs in one script, median wall time of each command, and the
ratio devreg / check-jsonschema (target <= 0.5). check-jsonschema validates
the document's ``localRegistry`` against the same closed schema devreg
bundles (wrapped so the rest of the document is allowed); devreg does more:
positions, semantic rules, rewrites, variables.

    python bench/hook.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TYPICAL = REPO / "tests" / "hook_examples" / "positive" / "devspace.yaml"


def many_images(n: int) -> str:
    lines = [
        "version: v2beta1",
        "name: big",
        "localRegistry:",
        "  enabled: true",
        "  localbuild: true",
        "images:",
    ]
    for i in range(n):
        lines += [
            f"  svc-{i}:",
            f"    image: ghcr.io/acme/svc-{i}",
            f"    dockerfile: ./svc-{i}/Dockerfile",
            f"    context: ./svc-{i}",
            "    buildArgs:",
            f"      VERSION: '{i}'",
        ]
    lines.append("deployments:")
    for i in range(n):
        lines += [
            f"  svc-{i}:",
            "    helm:",
            "      values:",
            "        containers:",
            f"        - image: ghcr.io/acme/svc-{i}",
            f"          name: svc-{i}",
        ]
    lines.append("dev:")
    for i in range(0, n, 4):
        lines += [f"  svc-{i}:", f"    imageSelector: ghcr.io/acme/svc-{i}"]
    return "\n".join(lines) + "\n"


def tool(name: str) -> str:
    # The console scripts themselves (not a pyenv shim), as pre-commit runs them.
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        sys.exit(f"bench: {name} not found (pip install -e '.[test]')")
    return found


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench: {cmd} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    devreg, cj = tool("devreg"), tool("check-jsonschema")
    with tempfile.TemporaryDirectory() as tmp:
        schema = json.loads(
            (REPO / "hookpkg" / "schemas" / "local-registry.schema.json").read_text()
        )
        wrapper = {
            "$schema": schema["$schema"],
            "type": "object",
            "properties": {
                "localRegistry": {
                    k: v for k, v in schema.items() if k not in ("$schema", "$id", "$defs")
                }
            },
            "$defs": schema["$defs"],  # the section's "#/$defs/…" references resolve at the root
        }
        schema_file = Path(tmp) / "document.schema.json"
        schema_file.write_text(json.dumps(wrapper))
        big = Path(tmp) / "devspace.yaml"
        big.write_text(many_images(200))
        head = f"{'file':<28} {'devreg':>9} {'check-jsonschema':>17} {'ratio':>7}"
        print(f"{head}  (median of {args.runs}, target <= 0.5)")
        worst = 0.0
        for label, path in (("typical devspace.yaml", TYPICAL), ("200 images", big)):
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(args.runs):  # interleaved: noise hits both alike
                ours.append(timed([devreg, "check", str(path)]))
                theirs.append(timed([cj, "--schemafile", str(schema_file), str(path)]))
            a, b = statistics.median(ours), statistics.median(theirs)
            worst = max(worst, a / b)
            print(f"{label:<28} {a * 1000:>7.0f}ms {b * 1000:>15.0f}ms {a / b:>7.2f}")
        print(f"worst ratio {worst:.2f} ({'meets' if worst <= 0.5 else 'MISSES'} the 0.5 target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
