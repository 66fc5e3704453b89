"""Read ``devspace.yaml`` (and its local imports) into positioned sources and
then into the typed records the rest of devreg uses.

Loading never raises for a bad config: problems become diagnostics, and the
typed model falls back to defaults where a field is wrong, so the preview can
still be shown. Only a missing or unreadable main file raises
:class:`~hookpkg.errors.FatalError` (exit 2).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hookpkg import yamlpos
from hookpkg.bounds import MAX_IMPORTS, Limits, ReadBudget, Unreadable
from hookpkg.errors import Diagnostic, FatalError
from hookpkg.repoglob import git_root
from hookpkg.vars import Vars, has_expression
from hookpkg.yamlpos import Node

DEFAULT_REGISTRY_IMAGE = "registry:2.8.1"
DEFAULT_BUILDKIT_IMAGE = "moby/buildkit:master-rootless"
DEFAULT_PORT = 5000
DEFAULT_NAME = "registry"
DEFAULT_SIZE = "5Gi"

Builder = Literal["docker", "buildkit", "buildkit-incluster", "kaniko", "custom"]
ELIGIBLE_BUILDERS: frozenset[str] = frozenset({"docker", "buildkit"})
# The config versions DevSpace knows; the last is the first with localRegistry.
DEVSPACE_VERSIONS = (*(f"v1beta{n}" for n in range(1, 12)), "v2beta1")


@dataclass(frozen=True)
class Persistence:
    enabled: bool = False
    size: str = DEFAULT_SIZE
    storage_class_name: str | None = None


@dataclass(frozen=True)
class LocalRegistry:
    """``localRegistry`` with defaults applied and ``${VAR}`` resolved."""

    enabled: bool | None = None
    localbuild: bool = False
    namespace: str | None = None  # None: the context's namespace
    name: str = DEFAULT_NAME
    image: str = DEFAULT_REGISTRY_IMAGE
    buildkit_image: str = DEFAULT_BUILDKIT_IMAGE
    port: int = DEFAULT_PORT
    persistence: Persistence = Persistence()
    # YAML paths (``localRegistry.port``) whose expression could not be
    # resolved; the defaults stand in for them.
    unresolved: tuple[str, ...] = ()


@dataclass(frozen=True)
class Image:
    """One ``images.<key>`` entry."""

    key: str
    image: str  # as configured, ``${VAR}`` resolved, tag moved to ``tags``
    tags: tuple[str, ...]
    dockerfile: Path
    context: Path
    build_args: Mapping[str, str]
    target: str | None
    builder: Builder
    file: str  # where it is defined (diagnostics)
    line: int
    col: int
    resolved: bool = True  # False when ``image`` still holds an expression

    @property
    def eligible(self) -> bool:
        """Built locally, so the local registry can apply (SPEC §2)."""
        return self.builder in ELIGIBLE_BUILDERS


@dataclass(frozen=True)
class Config:
    path: Path
    directory: Path
    version: str | None
    local_registry: LocalRegistry
    has_local_registry: bool  # the section is present
    images: Mapping[str, Image]
    profiles: tuple[str, ...] = ()  # the profiles applied, in order (hookpkg.profiles)


@dataclass
class Source:
    """One parsed file: the main config or an import."""

    path: Path
    display: str
    root: Node


@dataclass
class Loaded:
    """Everything read from disk for one config, with its diagnostics."""

    main: Source | None
    sources: list[Source] = field(default_factory=list)
    local_registry: tuple[Source, Node] | None = None
    images: dict[str, tuple[Source, Node]] = field(default_factory=dict)
    vars: Vars = field(default_factory=lambda: Vars(None, {}))
    diagnostics: list[Diagnostic] = field(default_factory=list)
    old_version: str | None = None
    # What is left to read for this config (the manifests the preview reads too).
    budget: ReadBudget = field(default_factory=lambda: ReadBudget(Limits()))
    # The profiles applied (names, in order) and their nodes (``id``): ``sources``
    # are then the files as the profiles left them.
    profiles: tuple[str, ...] = ()
    applied_profiles: frozenset[int] = frozenset()

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


def read_text(path: Path, display: str, budget: ReadBudget | None = None) -> str:
    """A config file's text; raises :class:`FatalError` (exit 2) when it is missing,
    not a regular file, too large or not UTF-8."""
    budget = budget if budget is not None else ReadBudget(Limits())
    try:
        return budget.read(path, what="the file")
    except Unreadable as e:
        raise FatalError(f"{display}: {e}", exit_code=2) from None


def _parse(text: str, path: Path, display: str, out: Loaded) -> Source | None:
    try:
        root, dups = yamlpos.load(text, display)
    except yamlpos.YamlError as e:
        out.diagnostics.append(e.diagnostic)
        return None
    out.diagnostics.extend(dups)
    if root is None:
        root = Node({}, 1, 1, "tag:yaml.org,2002:map")
    if not root.is_map:
        out.diagnostics.append(
            Diagnostic.at(
                display,
                root,
                "error",
                "",
                f"a devspace config must be a mapping at the top level, got {root.kind_name()}",
            )
        )
        return None
    return Source(path, display, root)


def load(
    path: Path,
    *,
    display: str | None = None,
    env: Mapping[str, str] | None = None,
    profiles: Sequence[str] | None = None,
    activation: bool = True,
) -> Loaded:
    """Read and parse the config and its local imports (raises only for exit 2).

    ``profiles`` (``-p``, in order) are applied with DevSpace's semantics, and so
    are the profiles whose ``activation`` matches unless ``activation`` is False
    (:mod:`hookpkg.profiles`); ``None`` (the hook) applies none: the file is
    checked as written."""
    display = display if display is not None else str(path)
    env = os.environ if env is None else env
    try:
        limits = Limits.from_env(env)
    except ValueError as e:
        raise FatalError(str(e), exit_code=2) from None
    out = Loaded(main=None, budget=ReadBudget(limits))
    main = _parse(read_text(path, display, out.budget), path, display, out)
    if main is None:
        return out
    out.main = main
    version = main.root.get("version")
    if (
        version is not None
        and isinstance(version.value, str)
        and version.value in DEVSPACE_VERSIONS[:-1]
    ):
        out.old_version = version.value
        return out
    out.sources.append(main)
    _collect(main, out)
    _follow_imports(main, out)
    out.vars = _vars_of(out.sources, env)
    if profiles is not None:
        _apply_profiles(out, profiles, env, activation)
    return out


def _vars_of(sources: list[Source], env: Mapping[str, str]) -> Vars:
    vars_nodes = [(s.display, s.root.get("vars")) for s in reversed(sources)]
    return _merged_vars([(f, n) for f, n in vars_nodes if n is not None], env)


def _apply_profiles(
    out: Loaded, profiles: Sequence[str], env: Mapping[str, str], activation: bool
) -> None:
    """The files as the profiles leave them; the sections read again from them."""
    from hookpkg.profiles import apply_profiles  # not for the hook, which applies none

    applied = apply_profiles(
        [(s.display, s.root) for s in out.sources],
        profiles,
        env=env,
        vars_=out.vars,
        activation=activation,
    )
    out.diagnostics.extend(applied.diagnostics)
    if applied.roots is None:
        return
    out.sources = [
        dataclasses.replace(s, root=r) for s, r in zip(out.sources, applied.roots, strict=True)
    ]
    out.main = out.sources[0]
    out.local_registry = None
    out.images = {}
    for source in out.sources:
        _collect(source, out)
    out.vars = _vars_of(out.sources, env)
    out.profiles = applied.active
    out.applied_profiles = applied.applied


def _collect(source: Source, out: Loaded) -> None:
    """Take ``localRegistry`` and ``images`` entries not already set (the importing file wins)."""
    lr = source.root.get("localRegistry")
    if out.local_registry is None and lr is not None:
        out.local_registry = (source, lr)  # a null node (``localRegistry:``) counts
    images = source.root.get("images")
    if images is not None and images.is_map:
        for key, node in images.value.items():
            out.images.setdefault(key, (source, node))


def _imports_of(source: Source, out: Loaded) -> Iterator[tuple[str, Node, str]]:
    """``(yaml path, path node, path)`` of each local import a file names."""
    imports = source.root.get("imports")
    if imports is None or imports.value is None:
        return
    if not imports.is_seq:
        out.diagnostics.append(
            Diagnostic.at(
                source.display,
                imports,
                "error",
                "imports",
                f"expected a list of imports, got {imports.kind_name()}",
            )
        )
        return
    for i, item in enumerate(imports.value):
        where = f"imports[{i}]"
        path_node = (
            item.get("path") if item.is_map else (item if isinstance(item.value, str) else None)
        )
        if path_node is None:
            if item.is_map and (item.get("git") is not None or item.get("url") is not None):
                out.diagnostics.append(
                    Diagnostic.at(
                        source.display,
                        item,
                        "note",
                        where,
                        "remote import not followed; its images and localRegistry are not checked",
                    )
                )
            continue
        raw = path_node.value
        if isinstance(raw, str) and not has_expression(raw):
            yield where, path_node, raw


def _follow_imports(main: Source, out: Loaded) -> None:
    """Depth first, as DevSpace merges them (an import's imports before the next
    import), with an explicit stack: a chain of any length costs no recursion,
    and at most :data:`~hookpkg.bounds.MAX_IMPORTS` files are read."""
    seen = {main.path.resolve()}
    stack = [(main, _imports_of(main, out))]
    count = 0
    while stack:
        source, pending = stack[-1]
        entry = next(pending, None)
        if entry is None:
            stack.pop()
            continue
        where, path_node, raw = entry

        def warn(
            message: str, src: Source = source, node: Node = path_node, at: str = where
        ) -> None:
            out.diagnostics.append(
                Diagnostic.at(src.display, node, "warning", f"{at}.path", message)
            )

        base = source.path.parent
        try:
            target = (base / raw).resolve()
            repo = git_root(base.resolve())
        except (OSError, RuntimeError, ValueError) as e:  # a symlink loop, a NUL
            warn(f"import {raw!r} cannot be read ({e}); not checked")
            continue
        display = os.path.normpath(os.path.join(os.path.dirname(source.display), raw))
        if repo is not None and not target.is_relative_to(repo):
            warn(f"import {raw!r} is outside the repository; not checked")
            continue
        if target in seen:
            continue
        if count >= MAX_IMPORTS:
            warn(
                f"more than {MAX_IMPORTS} imported files; this import and the ones after it "
                "are not checked"
            )
            return
        seen.add(target)
        count += 1
        try:
            text = read_text(target, display, out.budget)
        except FatalError as e:
            warn(f"import cannot be read ({e}); not checked")
            continue
        imported = _parse(text, target, display, out)
        if imported is None:
            continue
        out.sources.append(imported)
        _collect(imported, out)
        stack.append((imported, _imports_of(imported, out)))


def _merged_vars(nodes: list[tuple[str, Node]], env: Mapping[str, str]) -> Vars:
    """Imports first, so the importing file's definitions win."""
    merged = Node({}, 1, 1, "tag:yaml.org,2002:map")
    files: dict[str, str] = {}
    for display, node in nodes:
        if node.is_map:
            merged.value.update(node.value)
            files.update(dict.fromkeys(node.value, display))
        elif node.is_seq:
            for item in node.value:
                name = item.get("name")
                if name is not None and isinstance(name.value, str):
                    merged.value[name.value] = item
                    files[name.value] = display
    return Vars(merged, env, files=files)


# --- the typed model -------------------------------------------------------


def scalar_from_text(text: str) -> Any:
    """A resolved ``${VAR}`` is re-read as a YAML scalar, as DevSpace does."""
    try:
        root, _ = yamlpos.load(text, "<resolved>")
    except yamlpos.YamlError:
        return text
    return text if root is None or not root.is_scalar else root.value


def resolved_field(node: Node | None, loaded: Loaded) -> tuple[Any, bool]:
    """The value of a field after substitution, and whether it is complete."""
    if node is None:
        return None, True
    value = node.value
    if isinstance(value, str) and has_expression(value):
        res = loaded.vars.resolve(value)
        if not res.complete:
            return value, False
        return scalar_from_text(res.value), True
    return value, True


def build_local_registry(loaded: Loaded) -> LocalRegistry:
    if loaded.local_registry is None:
        return LocalRegistry()
    _, node = loaded.local_registry
    if not node.is_map:
        return LocalRegistry()
    unresolved: list[str] = []

    def get(parent: Node, key: str, kind: type | tuple[type, ...], default: Any, path: str) -> Any:
        value, complete = resolved_field(parent.get(key), loaded)
        if not complete:
            unresolved.append(f"{path}.{key}")
            return default
        if (
            value is None
            or not isinstance(value, kind)
            or (kind is int and isinstance(value, bool))
        ):
            return default
        return value

    p = node.get("persistence")
    persistence = Persistence()
    if p is not None and p.is_map:
        size = get(p, "size", (str, int), DEFAULT_SIZE, "localRegistry.persistence")
        persistence = Persistence(
            enabled=get(p, "enabled", bool, False, "localRegistry.persistence"),
            size=str(size),
            storage_class_name=get(p, "storageClassName", str, None, "localRegistry.persistence"),
        )
    return LocalRegistry(
        enabled=get(node, "enabled", bool, None, "localRegistry"),
        localbuild=get(node, "localbuild", bool, False, "localRegistry"),
        namespace=get(node, "namespace", str, None, "localRegistry"),
        name=get(node, "name", str, DEFAULT_NAME, "localRegistry"),
        image=get(node, "image", str, DEFAULT_REGISTRY_IMAGE, "localRegistry"),
        buildkit_image=get(node, "buildKitImage", str, DEFAULT_BUILDKIT_IMAGE, "localRegistry"),
        port=get(node, "port", int, DEFAULT_PORT, "localRegistry"),
        persistence=persistence,
        unresolved=tuple(unresolved),
    )


def builder_of(node: Node) -> Builder:
    if node.get("kaniko") is not None:
        return "kaniko"
    if node.get("custom") is not None:
        return "custom"
    bk = node.get("buildKit")
    if bk is not None and "buildKit" in node.value:
        in_cluster = bk.get("inCluster") if bk.is_map else None
        if in_cluster is not None and in_cluster.value not in (None, False):
            return "buildkit-incluster"
        return "buildkit"
    if "buildKit" in node.value:
        return "buildkit"
    return "docker"


def split_tag(image: str) -> tuple[str, str | None]:
    """``org/app:1.2`` -> (``org/app``, ``1.2``); a registry port is not a tag."""
    if "@" in image:
        return image, None
    colon, slash = image.rfind(":"), image.rfind("/")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, None


def build_image(
    key: str, source: Source, node: Node, loaded: Loaded, directory: Path
) -> Image | None:
    if not node.is_map:
        return None
    image_node = node.get("image")
    raw, complete = resolved_field(image_node, loaded)
    if not isinstance(raw, str):
        return None
    image, tag = split_tag(raw) if complete else (raw, None)
    tags: list[str] = [tag] if tag else []
    tags_node = node.get("tags")
    if tags_node is not None and tags_node.is_seq:
        for t in tags_node.value:
            if t.value is not None and not isinstance(t.value, (dict, list)):
                tags.append(loaded.vars.resolve(str(t.value)).value)

    def text(key: str, default: str) -> str:
        value, _ = resolved_field(node.get(key), loaded)
        return (
            str(value)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool)
            else default
        )

    args: dict[str, str] = {}
    args_node = node.get("buildArgs")
    if args_node is not None and args_node.is_map:
        for k, v in args_node.value.items():
            if v.value is not None and not isinstance(v.value, (dict, list)):
                args[k] = loaded.vars.resolve(str(v.value)).value
    target = text("target", "") or None
    return Image(
        key=key,
        image=image,
        tags=tuple(tags),
        dockerfile=(directory / text("dockerfile", "./Dockerfile")).resolve(),
        context=(directory / text("context", "./")).resolve(),
        build_args=args,
        target=target,
        builder=builder_of(node),
        file=source.display,
        line=image_node.line if image_node else node.line,
        col=image_node.col if image_node else node.col,
        resolved=complete,
    )


def build_config(loaded: Loaded, *, directory: Path) -> Config:
    """The typed config of a checked ``loaded`` (see :func:`hookpkg.project.load_project`,
    which decides the project's ``directory``)."""
    assert loaded.main is not None
    images: dict[str, Image] = {}
    for key, (source, node) in loaded.images.items():
        image = build_image(key, source, node, loaded, directory)
        if image is not None:
            images[key] = image
    version = loaded.main.root.get("version")
    return Config(
        path=loaded.main.path,
        directory=directory,
        version=str(version.value) if version is not None else None,
        local_registry=build_local_registry(loaded),
        has_local_registry=loaded.local_registry is not None,
        images=images,
        profiles=loaded.profiles,
    )
