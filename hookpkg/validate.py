"""Semantic validation of ``localRegistry`` and the images it rewrites (SPEC §1).

Every rule yields a :class:`~hookpkg.errors.Diagnostic` pointing at the
offending node; nothing here raises for bad input.
"""

from __future__ import annotations

import difflib
from collections.abc import Generator, Iterator

from hookpkg import schema
from hookpkg.config import (
    DEFAULT_PORT,
    DEFAULT_REGISTRY_IMAGE,
    DEVSPACE_VERSIONS,
    Loaded,
    Source,
    builder_of,
    resolved_field,
)
from hookpkg.errors import Diagnostic, Severity, shown
from hookpkg.reference import InvalidReference, Reference, parse_reference
from hookpkg.variables import collisions
from hookpkg.vars import has_expression
from hookpkg.yamlpos import Node, is_yaml11_bool_word, join

_BOOL_FIELDS = ("enabled", "localbuild")
_IMAGE_FIELDS = ("image", "buildKitImage")
# The config versions DevSpace loads (pkg/devspace/config/versions, its
# VersionLoader), oldest first; the last is the current one.
# Subtrees that hold user data (helm values, variables), where a key named
# ``localRegistry`` is not devreg's business.
_DATA_KEYS = frozenset({"values", "vars", "valuesFiles", "patches", "env"})


def _diag(src: Source, node: Node, severity: Severity, path: str, message: str) -> Diagnostic:
    return Diagnostic.at(src.display, node, severity, path, message)


def validate(loaded: Loaded) -> list[Diagnostic]:
    out: list[Diagnostic] = [*_version(loaded), *_vars(loaded)]
    for src in loaded.sources:
        out.extend(_misplaced(src))
        out.extend(_profiles(src, loaded))
    enabled: bool | None = None
    if loaded.local_registry is not None:
        src, node = loaded.local_registry
        out.extend(_local_registry(src, node, loaded, "localRegistry"))
        enabled_node = node.get("enabled") if node.is_map else None
        if enabled_node is not None:
            value, complete = resolved_field(enabled_node, loaded)
            enabled = value if complete and isinstance(value, bool) else None
    out.extend(_images(loaded, enabled))
    return out


def _version(loaded: Loaded) -> Iterator[Diagnostic]:
    """A ``version`` DevSpace does not know: it refuses to load the file
    (``Unrecognized config version``). It reads the field as written, with no
    variable filled in. A file without one is left alone."""
    node = loaded.main.root.get("version") if loaded.main is not None else None
    if node is None or node.value is None or node.value in DEVSPACE_VERSIONS:
        return
    assert loaded.main is not None
    close = difflib.get_close_matches(str(node.value), DEVSPACE_VERSIONS, n=1, cutoff=0.8)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    what = shown(node.value) if isinstance(node.value, str) else node.kind_name()
    yield _diag(
        loaded.main,
        node,
        "error",
        "version",
        f"unknown config version {what}{hint}: DevSpace refuses to load it; it knows "
        f"{', '.join(DEVSPACE_VERSIONS)} ({DEVSPACE_VERSIONS[-1]} is the one with localRegistry)",
    )


def _vars(loaded: Loaded) -> Iterator[Diagnostic]:
    """Variables that cannot be expanded: a cycle, or a value past the bounds."""
    for name, message in loaded.vars.problems():
        node = loaded.vars.nodes[name]
        yield Diagnostic.at(
            loaded.vars.files.get(name, loaded.main.display if loaded.main else ""),
            node,
            "error",
            join("vars", name),
            message,
        )


def _local_registry(src: Source, node: Node, loaded: Loaded, path: str) -> Iterator[Diagnostic]:
    if node.value is None:
        return  # ``localRegistry:`` alone means all defaults
    if not node.is_map:
        yield _diag(
            src,
            node,
            "error",
            path,
            f"localRegistry must be a mapping of settings, got {node.kind_name()}",
        )
        return
    for err in schema.validate_local_registry(node, path):
        yield _diag(src, err.node, "error", err.path, err.message)
    yield from _yaml11_bools(src, node, path)
    yield from _resolved_values(src, node, loaded, path)
    yield from _references(src, node, loaded, path)
    yield from _warnings(src, node, path)


def _yaml11_bools(src: Source, node: Node, path: str) -> Iterator[Diagnostic]:
    targets = [(k, node.get(k)) for k in _BOOL_FIELDS]
    p = node.get("persistence")
    if p is not None and p.is_map:
        targets.append(("persistence.enabled", p.get("enabled")))
    for key, child in targets:
        if child is not None and is_yaml11_bool_word(child):
            word = "true" if child.value else "false"
            yield _diag(
                src,
                child,
                "warning",
                f"{path}.{key}",
                f"{child.text!r} is read as {word} (YAML 1.1); write {word}",
            )


def _resolved_values(src: Source, node: Node, loaded: Loaded, path: str) -> Iterator[Diagnostic]:
    """Fields written as ``${VAR}`` are checked again once the variable is known."""
    fields: list[tuple[tuple[str, ...], Node]] = [
        ((k,), child) for k, child in node.value.items() if k != "persistence"
    ]
    p = node.get("persistence")
    if p is not None and p.is_map:
        fields += [(("persistence", k), child) for k, child in p.value.items()]
    for keys, child in fields:
        if not (isinstance(child.value, str) and has_expression(child.value)):
            continue
        error = loaded.vars.resolve(child.value).error
        if error is not None:
            yield _diag(
                src,
                child,
                "error",
                join(path, ".".join(keys)),
                f"{child.value!r} cannot be resolved: {error}",
            )
            continue
        value, complete = resolved_field(child, loaded)
        if not complete:
            continue
        try:
            sub = schema.property_schema(*keys)
        except KeyError:
            continue  # an unknown key: already reported
        probe = Node(value, child.line, child.col, child.tag, str(value))
        for err in schema.validate_value(probe, sub, join(path, ".".join(keys)), literal=True):
            yield _diag(
                src,
                child,
                "error",
                err.path,
                f"{child.value!r} resolves to {value!r}: {err.message}",
            )


def _references(src: Source, node: Node, loaded: Loaded, path: str) -> Iterator[Diagnostic]:
    for key in _IMAGE_FIELDS:
        child = node.get(key)
        if child is None or not isinstance(child.value, str) or not child.value:
            continue
        value, complete = resolved_field(child, loaded)
        if not complete or not isinstance(value, str):
            continue
        try:
            parse_reference(value)
        except InvalidReference as e:
            yield _diag(src, child, "error", f"{path}.{key}", f"not a valid image reference: {e}")


def _warnings(src: Source, node: Node, path: str) -> Iterator[Diagnostic]:
    p = node.get("persistence")
    if p is not None and p.is_map:
        enabled = p.get("enabled")
        if enabled is None or enabled.value is not True:
            others = [k for k in p.value if k != "enabled"]
            if others and not (enabled is not None and isinstance(enabled.value, str)):
                first = p.keys[others[0]]
                yield _diag(
                    src,
                    first,
                    "warning",
                    f"{path}.persistence.{others[0]}",
                    "persistence settings have no effect while persistence.enabled is not true",
                )
    port, image = node.get("port"), node.get("image")
    if (
        port is not None
        and isinstance(port.value, int)
        and port.value != DEFAULT_PORT
        and image is not None
        and isinstance(image.value, str)
        and image.value != DEFAULT_REGISTRY_IMAGE
    ):
        yield _diag(
            src,
            port,
            "warning",
            f"{path}.port",
            f"port {port.value} with a custom image: devreg sets REGISTRY_HTTP_ADDR=:{port.value}, "
            f"which the distribution registry honours; {image.value!r} may ignore it",
        )


def _images(loaded: Loaded, enabled: bool | None) -> Iterator[Diagnostic]:
    yield from _image_sections(loaded)
    where: dict[str, tuple[Source, Node]] = {}
    for key, (src, node) in loaded.images.items():
        where[key] = (src, src.root.value["images"].keys.get(key, node))
        yield from _image(loaded, key, node, where[key], enabled)
    yield from _image_key_collisions(where)


def _image_sections(loaded: Loaded) -> Iterator[Diagnostic]:
    """An ``images`` that is not a mapping, in any of the files."""
    for src in loaded.sources:
        images = src.root.get("images")
        if images is None or images.value is None or images.is_map:
            continue
        yield _diag(
            src,
            images,
            "error",
            "images",
            f"expected a mapping of images, got {images.kind_name()}",
        )


def _image(
    loaded: Loaded, key: str, node: Node, at: tuple[Source, Node], enabled: bool | None
) -> Iterator[Diagnostic]:
    """One ``images.<key>`` entry; ``at`` is its file and its key's node."""
    src, key_node = at
    path = join("images", key)
    image = yield from _image_field(src, node, key_node, path)
    if image is None:
        return
    ref = yield from _image_reference(src, image, loaded, f"{path}.image")
    if ref is None:
        return
    builder = builder_of(node)
    eligible = builder in ("docker", "buildkit")
    if ref.digest and eligible and enabled is not False:
        yield _digest_pinned(src, image, f"{path}.image", enabled)
    if enabled is True and not eligible:
        how = {
            "kaniko": "kaniko",
            "custom": "a custom build",
            "buildkit-incluster": "buildKit.inCluster",
        }[builder]
        yield _diag(
            src,
            key_node,
            "warning",
            path,
            f"built with {how}: the local registry does not apply to it (enabled: true is "
            "ignored for this image, it is pushed to its own registry)",
        )


def _image_field(
    src: Source, node: Node, key_node: Node, path: str
) -> Generator[Diagnostic, None, Node | None]:
    """The entry's ``image`` node when it holds a string (else what is wrong)."""
    if not node.is_map:
        yield _diag(
            src,
            node,
            "error",
            path,
            f"expected a mapping with an 'image' field, got {node.kind_name()}",
        )
        return None
    image = node.get("image")
    if image is None:
        yield _diag(src, key_node, "error", path, "missing required field 'image'")
        return None
    if not isinstance(image.value, str):
        yield _diag(
            src,
            image,
            "error",
            f"{path}.image",
            f"expected an image reference, got {image.kind_name()}",
        )
        return None
    return image


def _image_reference(
    src: Source, image: Node, loaded: Loaded, path: str
) -> Generator[Diagnostic, None, Reference | None]:
    """The reference ``image`` names once its variables are filled in; None
    when it is wrong (reported) or cannot be known at commit time."""
    error = loaded.vars.resolve(image.value).error
    if error is not None:
        yield _diag(src, image, "error", path, f"{image.value!r} cannot be resolved: {error}")
        return None
    value, complete = resolved_field(image, loaded)
    if not complete or not isinstance(value, str):
        return None
    try:
        return parse_reference(value)
    except InvalidReference as e:
        what = f"{value!r} (from {image.value!r})" if value != image.value else repr(value)
        yield _diag(src, image, "error", path, f"{what} is not a valid image reference: {e}")
        return None


def _digest_pinned(src: Source, image: Node, path: str, enabled: bool | None) -> Diagnostic:
    msg = "digest-pinned images cannot be rebuilt into the local registry; remove the @digest"
    if enabled is True:
        return _diag(src, image, "error", path, msg)
    return _diag(
        src,
        image,
        "warning",
        path,
        msg + " (only a problem if the push is refused and the local registry is used)",
    )


def _image_key_collisions(where: dict[str, tuple[Source, Node]]) -> Iterator[Diagnostic]:
    """Two keys whose variables share a name, reported at the later key."""
    for later, (earlier, name) in collisions(list(where)).items():
        src, key_node = where[later]
        yield _diag(
            src,
            key_node,
            "error",
            join("images", later),
            f"image keys {earlier!r} and {later!r} both define the variable {name}; rename one",
        )


def _misplaced(src: Source) -> Iterator[Diagnostic]:
    """``localRegistry`` only means something at the top level (DevSpace's
    own "invalid" fixture nests it under ``images.app``)."""

    seen: set[int] = set()  # a node reached through aliases is one place in the file

    def walk(node: Node, path: str, depth: int) -> Iterator[Diagnostic]:
        if not node.is_map or depth > 8 or id(node) in seen:
            return
        seen.add(id(node))
        for key, child in node.value.items():
            if key == "localRegistry" and depth > 0:
                yield _diag(
                    src,
                    node.keys[key],
                    "error",
                    join(path, key),
                    "localRegistry belongs at the top level of the config; move it there",
                )
            if key in _DATA_KEYS or (depth == 0 and key == "profiles"):
                continue
            if child.is_map:
                yield from walk(child, join(path, key), depth + 1)
            elif child.is_seq:
                for i, item in enumerate(child.value):
                    yield from walk(item, f"{join(path, key)}[{i}]", depth + 1)

    yield from walk(src.root, "", 0)


def _profiles(src: Source, loaded: Loaded) -> Iterator[Diagnostic]:
    """Profiles ``merge``/``replace`` whole sections: a ``localRegistry`` there
    is a top-level one and gets the same checks. A profile that was applied
    (``-p``, ``activation``: :mod:`hookpkg.profiles`) is checked where it landed,
    in the top-level ``localRegistry``, and not a second time here."""
    profiles = src.root.get("profiles")
    if profiles is None or not profiles.is_seq:
        return
    for i, profile in enumerate(profiles.value):
        if not profile.is_map or id(profile) in loaded.applied_profiles:
            continue
        for section in ("merge", "replace"):
            body = profile.get(section)
            if body is None or not body.is_map:
                continue
            lr = body.get("localRegistry")
            if lr is not None:
                path = f"profiles[{i}].{section}.localRegistry"
                yield from _local_registry(src, lr, loaded, path)
