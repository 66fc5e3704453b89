"""The rewrite engine (SPEC §4): every place an image URL appears, and what it
becomes. Files are only read; the result points at node positions.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from hookpkg import yamlpos
from hookpkg.bounds import MAX_MANIFEST_FILES, Unreadable
from hookpkg.config import Config, Image, Loaded, Source, split_tag
from hookpkg.delivery import Cluster, PathWord, delivery_path, uses_local_registry
from hookpkg.errors import Diagnostic, shown
from hookpkg.reference import InvalidReference, normalized, parse_reference, rewrite_repository
from hookpkg.variables import TAG_PLACEHOLDER, Delivered, all_variables, image_variables
from hookpkg.vars import RUNTIME, has_expression
from hookpkg.yamlpos import Node, join

# DevSpace's helpers (``legacy/replace.go``: ``image\("?'?([^)"']+)"?'?\)``), the
# name without ``(`` so that a scan stays linear on hostile input.
_HELPER = re.compile(r"(image|tag)\(\"?'?([^()\"']+)\"?'?\)")
_RUNTIME = re.compile(r"(?<!\$)\$\{runtime\.images\.([A-Za-z0-9_\-]+)(?:\.(image|tag))?\}")


class Location(NamedTuple):
    """One place an image URL appears, and what it becomes."""

    file: str
    line: int
    col: int
    path: str
    original: str
    rewritten: str

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.col,
            "path": self.path,
            "original": self.original,
            "rewritten": self.rewritten,
        }


@dataclass
class ImagePreview:
    key: str
    image: str
    path: PathWord
    repository: str  # what the cluster pulls (rewritten or original)
    tag: str
    resolved: bool
    locations: list[Location] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def rewritten(self) -> bool:
        return uses_local_registry(self.path)


@dataclass
class Preview:
    registry: str  # ``localhost:[NODE_PORT]``, ``localhost:31234`` or a KEP-1755 host
    cluster: Cluster
    images: list[ImagePreview]
    variables: dict[str, str]
    notes: list[Diagnostic] = field(default_factory=list)
    unresolved: tuple[str, ...] = ()


def known_tag(image: Image) -> str:
    """The first configured tag when it is fixed; ``<tag>`` otherwise (content
    tags, ``#`` random letters and unresolved expressions are known only at build)."""
    if image.tags and "#" not in image.tags[0] and not has_expression(image.tags[0]):
        return image.tags[0]
    return TAG_PLACEHOLDER


def make_preview(
    loaded: Loaded,
    config: Config,
    cluster: Cluster,
    *,
    registry_host: str,
    push_allowed: Mapping[str, bool] | None = None,
    tags: Mapping[str, str] | None = None,
) -> Preview:
    """``registry_host`` is ``localhost:<nodePort>`` (or the placeholder, or a
    KEP-1755 host); ``tags`` are the built tags when known (the watcher)."""
    previews: dict[str, ImagePreview] = {}
    for key, image in config.images.items():
        word = delivery_path(
            image, config.local_registry, cluster, push_allowed=(push_allowed or {}).get(key)
        )
        repository = image.image
        if uses_local_registry(word) and image.resolved:
            with contextlib.suppress(InvalidReference):  # validation reported it
                repository = rewrite_repository(parse_reference(image.image), registry_host)
        tag = (tags or {}).get(key) or known_tag(image)
        previews[key] = ImagePreview(key, image.image, word, repository, tag, image.resolved)
    engine = _Engine(loaded, config, previews)
    engine.run()
    for p in previews.values():
        p.locations.sort(
            key=lambda loc: (
                loc.file != loaded.main.display if loaded.main else False,
                loc.file,
                loc.line,
                loc.col,
            )
        )
    delivered = {k: Delivered(p.repository, p.tag) for k, p in previews.items()}
    uses_registry = any(p.rewritten for p in previews.values())
    variables = all_variables(
        delivered, registry=registry_host if uses_registry else None, image_count=len(config.images)
    )
    for p in previews.values():
        p.variables = dict(sorted(image_variables(p.key, delivered[p.key]).items()))
    return Preview(
        registry_host,
        cluster,
        list(previews.values()),
        variables,
        engine.notes,
        config.local_registry.unresolved,
    )


class _Engine:
    def __init__(self, loaded: Loaded, config: Config, previews: dict[str, ImagePreview]) -> None:
        self.loaded, self.config, self.previews = loaded, config, previews
        self.notes: list[Diagnostic] = []
        self.manifest_files = 0
        self.places: set[tuple[str, str, int, int]] = set()  # (key, file, line, col)
        self.index: dict[str, str] = {}
        for key, p in previews.items():
            if p.resolved:
                self.index.setdefault(normalized(p.image), key)

    def match(self, value: str) -> tuple[str, str | None] | None:
        """The image key a string of ``devspace.yaml`` names (with its written
        tag), or None. These fields are DevSpace's runtime ones (helm values,
        selectors), substituted in its runtime passes."""
        resolved = self.loaded.vars.resolve(value, RUNTIME)
        if not resolved.complete:
            return None
        return self.match_literal(resolved.value)

    def match_literal(self, value: str) -> tuple[str, str | None] | None:
        """The image key ``value`` names as written (a manifest file's field:
        DevSpace substitutes no variable there)."""
        repo, tag = split_tag(value.strip())
        key = self.index.get(normalized(repo))
        return (key, tag) if key is not None else None

    def add(self, key: str, src: Source | str, node: Node, path: str, rewritten: str) -> None:
        file = src if isinstance(src, str) else src.display
        place = (key, file, node.line, node.col)
        if place in self.places:
            return  # a node reached again through an alias: one place in the file
        self.places.add(place)
        original = str(node.value)
        self.previews[key].locations.append(
            Location(file, node.line, node.col, path, original, rewritten)
        )

    def run(self) -> None:
        for key, (src, node) in self.loaded.images.items():
            image = node.get("image") if node.is_map else None
            if image is not None and key in self.previews:
                self.add(
                    key,
                    src,
                    image,
                    join(join("images", key), "image"),
                    self.previews[key].repository,
                )
        for src in self.loaded.sources:
            self.selectors(src)
            self.deployments(src)

    def selectors(self, src: Source) -> None:
        """Dev selectors keep the tag written there: they pick a container."""
        spots: list[tuple[str, Node]] = []
        dev = src.root.get("dev")
        if dev is not None and dev.is_map:
            for name, cfg in dev.value.items():
                for field_name in ("imageSelector", "devImage"):
                    node = cfg.get(field_name) if cfg.is_map else None
                    if node is not None:
                        spots.append((join(join("dev", name), field_name), node))
        hooks = src.root.get("hooks")
        if hooks is not None and hooks.is_seq:
            for i, hook in enumerate(hooks.value):
                container = hook.get("container") if hook.is_map else None
                node = (
                    container.get("imageSelector")
                    if container is not None and container.is_map
                    else None
                )
                if node is not None:
                    spots.append((f"hooks[{i}].container.imageSelector", node))
        for path, node in spots:
            if not isinstance(node.value, str):
                continue
            hit = self.match(node.value)
            if hit is not None:
                key, tag = hit
                repo = self.previews[key].repository
                self.add(key, src, node, path, f"{repo}:{tag}" if tag else repo)

    def built(self, key: str) -> str:
        p = self.previews[key]
        return f"{p.repository}:{p.tag}"

    def deployments(self, src: Source) -> None:
        deployments = src.root.get("deployments")
        if deployments is None or not deployments.is_map:
            return
        for name, dep in deployments.value.items():
            if not dep.is_map:
                continue
            base = join("deployments", name)
            helm = dep.get("helm")
            values = helm.get("values") if helm is not None and helm.is_map else None
            if values is not None:
                for path, node in values.walk(join(join(base, "helm"), "values")):
                    if isinstance(node.value, str):
                        self.helm_value(src, node, path)
            kubectl = dep.get("kubectl")
            manifests = kubectl.get("manifests") if kubectl is not None and kubectl.is_map else None
            if manifests is not None and manifests.is_seq:
                for i, entry in enumerate(manifests.value):
                    if isinstance(entry.value, str):
                        self.manifest(
                            src, entry, f"{join(join(base, 'kubectl'), 'manifests')}[{i}]"
                        )

    def helm_value(self, src: Source, node: Node, path: str) -> None:
        value: str = node.value
        resolved = self.loaded.vars.resolve(value, RUNTIME)
        hit = self.match_literal(resolved.value) if resolved.complete else None
        if hit is not None:
            self.add(hit[0], src, node, path, self.built(hit[0]))
            return
        if value in self.config.images:
            return  # an image *key* (``image: app``) is not an image
        # DevSpace's helpers and runtime variables act on the value its first
        # passes left (escapes taken off, variables filled in).
        rewritten, touched = self.helpers(resolved.value, runtime=True)
        for key in touched:
            self.add(key, src, node, path, rewritten)

    def helpers(self, value: str, *, runtime: bool) -> tuple[str, list[str]]:
        """``value`` with DevSpace's ``image(key)``/``tag(key)`` helpers and, where
        DevSpace resolves them (``runtime``), ``${runtime.images.key…}`` filled
        in; and the keys it named."""
        touched: list[str] = []

        def helper(m: re.Match[str]) -> str:
            key = m.group(2)
            if key not in self.previews:
                return m.group(0)
            touched.append(key)
            p = self.previews[key]
            return p.repository if m.group(1) == "image" else p.tag

        def runtime_variable(m: re.Match[str]) -> str:
            key = m.group(1)
            if key not in self.previews:
                return m.group(0)
            touched.append(key)
            p = self.previews[key]
            return {"image": p.repository, "tag": p.tag, None: self.built(key)}[m.group(2)]

        rewritten = _HELPER.sub(helper, value)
        if runtime:
            rewritten = _RUNTIME.sub(runtime_variable, rewritten)
        return rewritten, list(dict.fromkeys(touched))

    def manifest(self, src: Source, entry: Node, where: str) -> None:
        pattern = entry.value
        if has_expression(pattern) or "://" in pattern:
            return

        def note(message: str) -> None:
            self.notes.append(Diagnostic.at(src.display, entry, "note", where, message))

        from hookpkg.repoglob import confined_glob, inside, repository_root  # kubectl only

        base = self.config.directory
        root = repository_root(base)
        try:
            matches, problem = confined_glob(pattern, base, root)
        except (OSError, ValueError) as e:  # a NUL in the pattern, a name too long
            matches, problem = [], str(e)
        if problem is not None and not matches:
            note(f"manifest {shown(pattern)} not previewed: {problem}")
            return
        if problem is not None:
            note(f"manifest {shown(pattern)}: {problem}; only the files found before are previewed")
        files: list[Path] = []
        for p in matches:
            if p.is_dir():
                try:
                    files += sorted(
                        q for q in p.iterdir() if q.suffix in (".yaml", ".yml") and inside(q, root)
                    )
                except OSError:
                    continue
            elif p.suffix in (".yaml", ".yml"):
                files.append(p)
        if not files:
            note(f"manifest {shown(pattern)} not found; its images are not previewed")
            return
        for path in files:
            if self.manifest_files >= MAX_MANIFEST_FILES:
                note(f"more than {MAX_MANIFEST_FILES} manifest files; the rest are not previewed")
                return
            self.manifest_files += 1
            self.manifest_file(path, src, entry, where)

    def manifest_file(self, path: Path, src: Source, entry: Node, where: str) -> None:
        # Shown relative to where the config was named, so editors can jump to it.
        rel = os.path.relpath(path, self.config.directory)
        display = os.path.normpath(os.path.join(os.path.dirname(src.display), rel))
        try:
            text = self.loaded.budget.read(path, what="the manifest")
            docs = yamlpos.load_all(text, display)
        except (Unreadable, yamlpos.YamlError) as e:
            reason = e.diagnostic.format() if isinstance(e, yamlpos.YamlError) else str(e)
            self.notes.append(
                Diagnostic.at(
                    src.display,
                    entry,
                    "note",
                    where,
                    f"manifest {display!r} cannot be read ({reason}); its images are not previewed",
                )
            )
            return
        for i, doc in enumerate(docs):
            for node_path, node in _image_fields(doc, f"[{i}]" if len(docs) > 1 else ""):
                self.manifest_image(display, node, node_path)

    def manifest_image(self, display: str, node: Node, path: str) -> None:
        """An ``image:`` of a manifest file, as DevSpace's kubectl deployer
        replaces it: the image's name, else the ``image()``/``tag()`` helpers.
        It fills in no variable there, ``${runtime.images…}`` included."""
        value: str = node.value
        hit = self.match_literal(value)
        if hit is not None:
            self.add(hit[0], display, node, path, self.built(hit[0]))
            return
        rewritten, touched = self.helpers(value, runtime=False)
        for key in touched:
            self.add(key, display, node, path, rewritten)
        found = _RUNTIME.search(rewritten)
        if found is not None and found.group(1) in self.previews:
            key, part = found.group(1), found.group(2)
            helper = {"image": f"image({key})", "tag": f"tag({key})"}.get(
                part or "", f"image({key}):tag({key})"
            )
            self.notes.append(
                Diagnostic(
                    display,
                    node.line,
                    node.col,
                    "note",
                    path,
                    f"DevSpace does not fill in {found.group(0)} in a manifest file (only in "
                    f"devspace.yaml): it deploys {shown(rewritten)}; write {helper}",
                )
            )


def _image_fields(doc: Node, prefix: str) -> Iterator[tuple[str, Node]]:
    for path, node in doc.walk(prefix):
        if node.is_map:
            image = node.get("image")
            if image is not None and isinstance(image.value, str):
                yield join(path, "image"), image
