"""DevSpace profiles (``-p/--profile``, ``activation``) applied to the YAML
document before the config is built, with DevSpace 6's semantics.

The order is DevSpace's (``loader.go`` ``applyProfiles``, ``versions.go``
``ParseProfile``): the profiles that ``activation`` turns on (in the order the
config lists them), then the ``--profile`` ones in the order given; a name
given twice counts once, at its last place; each profile comes after its
``parent`` / ``parents`` (a parent shared by two profiles is applied twice, as
DevSpace does). Inside one profile: ``replace`` (whole top-level sections),
then ``merge`` (RFC 7386: maps merged, lists and scalars replaced, ``null``
removes), then ``patches`` (``op`` add / replace / remove at a ``path`` in
DevSpace's syntax: ``images.app.image``, ``images.*.tags``,
``deployments.name=api``, ``hooks[0]``, ``/images/app``, ``[?(@.x=='y')]``,
``..image``).

Profiles work on the document as written, imports merged in (the importing file
wins, lists are appended), before ``${VAR}`` is resolved; the variables are read
again afterwards, so a profile may change them. Every node keeps its position:
a value a profile sets is the profile's node, so a diagnostic about it points
into the profile. After the profiles the document is split back into one
document per file (per entry of ``images``, ``deployments``, ``dev``, ``vars``
…), so the rest of devreg reads the files as before.

Stricter than DevSpace, on purpose: a patch that changes nothing because its
path (or, for ``add`` and ``replace``, its parent) matches nothing is an error
(DevSpace drops it silently); a ``remove`` of something absent stays what
DevSpace makes it, a no-op, with a warning. Not supported (an error when the
profile is used): ``merge`` / ``patches`` written as one ``$(command)`` or
``${VAR}`` string, parents from another config (``parents[].source``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hookpkg.bounds import MAX_ALIAS_NODES, MAX_NODES
from hookpkg.errors import Diagnostic, Severity, shown
from hookpkg.vars import Vars, has_expression
from hookpkg.yamlpos import Node, join

_MAP = "tag:yaml.org,2002:map"

# What an imported file contributes (DevSpace's ``ImportSections``).
IMPORT_SECTIONS = frozenset(
    {
        "require",
        "vars",
        "dev",
        "deployments",
        "images",
        "pipelines",
        "commands",
        "functions",
        "pullSecrets",
        "dependencies",
        "hooks",
        "localRegistry",
    }
)
# What ``merge`` and ``replace`` may name (DevSpace's ``ProfileConfigStructure``);
# DevSpace refuses a config whose profile names anything else. devreg also
# applies ``localRegistry`` there (it has always checked it there).
PROFILE_SECTIONS: tuple[str, ...] = (
    "vars",
    "pullSecrets",
    "images",
    "deployments",
    "dev",
    "commands",
    "dependencies",
    "hooks",
)
DEVREG_SECTIONS = ("localRegistry",)
# Sections whose entries may come from different files: each entry is given
# back to the file it came from.
_ENTRY_SECTIONS = IMPORT_SECTIONS - {"require", "localRegistry"}
_OWN_KEYS = ("profiles", "imports")  # never merged nor patched (DevSpace deletes them first)
MAX_PARENT_DEPTH = 50  # DevSpace's bound on a chain of parents
# Nodes the profiles may create in all (copies of the document and of profile values).
MAX_PROFILE_NODES = MAX_NODES + MAX_ALIAS_NODES


class ProfileError(Exception):
    """A profile that cannot be applied; ``node`` is where (in ``file``)."""

    def __init__(self, message: str, node: Node | None = None, path: str = "") -> None:
        super().__init__(message)
        self.node = node
        self.path = path


@dataclass
class Profile:
    """One ``profiles[i]`` entry."""

    name: str
    node: Node
    file: int  # index into the files
    display: str
    path: str  # ``profiles[3]``


@dataclass
class Applied:
    """What :func:`apply_profiles` did: one root per file (``None``: nothing was
    applied, the files stand as they are), the profiles applied in order, the
    profile nodes applied (the static checks skip them), and the diagnostics."""

    roots: list[Node] | None
    active: tuple[str, ...] = ()
    applied: frozenset[int] = frozenset()
    diagnostics: list[Diagnostic] = field(default_factory=list)


# --- which profiles, in which order ------------------------------------------------


def _profiles_of(files: Sequence[tuple[str, Node]]) -> list[Profile]:
    """Every named profile, the importing file's first (DevSpace appends the
    imports' ``profiles`` to the list; a name is looked up from its start)."""
    out: list[Profile] = []
    for f, (display, root) in enumerate(files):
        profiles = root.get("profiles")
        if profiles is None or not profiles.is_seq:
            continue
        for i, node in enumerate(profiles.value):
            name = node.get("name") if node.is_map else None
            if name is not None and isinstance(name.value, str):
                out.append(Profile(name.value, node, f, display, f"profiles[{i}]"))
    return out


def _activation_pattern(expression: str) -> re.Pattern[str]:
    """DevSpace anchors an activation's expression at both ends (``sanitizeMatchExpression``)."""
    return re.compile("^" + expression.removeprefix("^").removesuffix("$") + "$", re.ASCII)


def _activated(profile: Profile, env: Mapping[str, str], vars_: Vars) -> Iterator[str]:
    """A reason for each of the profile's activations that matches (DevSpace
    counts the profile once per matching activation)."""
    activation = profile.node.get("activation")
    if activation is None or activation.value is None:
        return
    where = f"{profile.path}.activation"
    if not activation.is_seq:
        raise ProfileError(
            f"activation must be a list of {{env: …, vars: …}}, got {activation.kind_name()}",
            activation,
            where,
        )
    for i, entry in enumerate(activation.value):
        if not entry.is_map:
            raise ProfileError(
                f"an activation must be a mapping with env and/or vars, got {entry.kind_name()}",
                entry,
                f"{where}[{i}]",
            )
        reasons: list[str] = []
        matched = True
        for kind in ("env", "vars"):
            rules = entry.get(kind)
            if rules is None or rules.value is None:
                continue
            if not rules.is_map:
                raise ProfileError(
                    f"{kind} must map names to regular expressions, got {rules.kind_name()}",
                    rules,
                    f"{where}[{i}].{kind}",
                )
            for name, expr in rules.value.items():
                at = join(f"{where}[{i}].{kind}", name)
                if not expr.is_scalar or expr.value is None:
                    raise ProfileError("expected a regular expression", expr, at)
                text = expr.text or str(expr.value)
                try:
                    pattern = _activation_pattern(text)
                except re.error as e:
                    raise ProfileError(
                        f"{shown(text)} is not a regular expression: {e}", expr, at
                    ) from None
                if kind == "env":
                    value = env.get(name, "")
                else:
                    resolved = vars_.resolve("${" + name + "}")
                    if not resolved.complete:
                        matched = False  # no value here (DevSpace would ask for one)
                        continue
                    value = resolved.value
                if pattern.search(value) is None:
                    matched = False
                else:
                    reasons.append(
                        f"{'$' if kind == 'env' else 'var '}{name} matches {shown(text)}"
                    )
        if matched:
            yield "activated: " + (", ".join(reasons) or "an empty activation")


def _chain(
    name: str, by_name: Mapping[str, Profile], depth: int, at: tuple[Node | None, str]
) -> list[tuple[Profile, str]]:
    """``name`` after its parents, each parent's own parents first."""
    node, where = at
    if depth > MAX_PARENT_DEPTH:
        raise ProfileError(
            f"more than {MAX_PARENT_DEPTH} parents in a row from profile {name!r}: "
            "a profile is its own ancestor",
            node,
            where,
        )
    profile = by_name.get(name)
    if profile is None:
        raise ProfileError(_unknown(name, by_name), node, where)
    parent, parents = profile.node.get("parent"), profile.node.get("parents")
    has_parent = parent is not None and parent.value not in (None, "")
    has_parents = parents is not None and parents.value not in (None, [])
    if has_parent and has_parents:
        raise ProfileError(
            "parent and parents cannot both be set; choose one",
            parents,
            f"{profile.path}.parents",
        )
    out: list[tuple[Profile, str]] = []
    if has_parent:
        assert parent is not None
        if not isinstance(parent.value, str):
            raise ProfileError("expected a profile name", parent, f"{profile.path}.parent")
        out += _chain(parent.value, by_name, depth + 1, (parent, f"{profile.path}.parent"))
    elif has_parents:
        assert parents is not None
        if not parents.is_seq:
            raise ProfileError(
                f"parents must be a list, got {parents.kind_name()}",
                parents,
                f"{profile.path}.parents",
            )
        for i, item in enumerate(parents.value):
            where_i = f"{profile.path}.parents[{i}]"
            ref = item.get("profile") if item.is_map else None
            if item.is_map and item.get("source") is not None:
                raise ProfileError(
                    "a parent from another config (source) is not supported by devreg",
                    item.get("source"),
                    f"{where_i}.source",
                )
            if ref is None or ref.value in (None, ""):
                continue  # DevSpace skips an entry without a profile
            if not isinstance(ref.value, str):
                raise ProfileError("expected a profile name", ref, f"{where_i}.profile")
            out += _chain(ref.value, by_name, depth + 1, (ref, f"{where_i}.profile"))
    return [*[(p, why or f"parent of {name!r}") for p, why in out], (profile, "")]


def _unknown(name: str, by_name: Mapping[str, Profile]) -> str:
    import difflib  # only for the message

    known = list(by_name)
    message = f"no profile {name!r}"
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message + (f" (profiles: {', '.join(known)})" if known else " (the config has none)")


def _select(
    files: Sequence[tuple[str, Node]],
    requested: Sequence[str],
    env: Mapping[str, str],
    vars_: Vars,
    activation: bool,
    diagnostics: list[Diagnostic],
) -> list[tuple[Profile, str]]:
    profiles = _profiles_of(files)
    by_name: dict[str, Profile] = {}
    for p in profiles:
        by_name.setdefault(p.name, p)
    wanted: list[tuple[str, str]] = []
    if activation:
        for p in profiles:
            try:
                wanted += [(p.name, reason) for reason in _activated(p, env, vars_)]
            except ProfileError as e:
                diagnostics.append(_diag(p.display, e))
    wanted += [(name, "-p " + name) for name in requested]
    # A name given twice counts once, at its last place (filterProfileParents).
    last = {n: i for i, (n, _) in enumerate(wanted)}
    kept = [(n, why) for i, (n, why) in enumerate(wanted) if last[n] == i]
    display, root = files[0]
    top = root.keys.get("profiles") or root.get("profiles") or root
    chain: list[tuple[Profile, str]] = []
    for name, why in kept:
        try:
            for p, reason in _chain(name, by_name, 1, (top, "")):
                chain.append((p, reason or why))
        except ProfileError as e:
            where = e.node if e.node is not None else top
            file = display
            for p in profiles:
                if _contains(p.node, where):
                    file = p.display
            diagnostics.append(_diag(file, e, default=top))
    return chain


def _contains(tree: Node, node: Node) -> bool:
    return any(n is node for _, n in tree.walk())


def _diag(
    file: str, e: ProfileError, *, default: Node | None = None, severity: Severity = "error"
) -> Diagnostic:
    node = e.node if e.node is not None else default
    line, col = (node.line, node.col) if node is not None else (1, 1)
    return Diagnostic(file, line, col, severity, e.path, str(e))


# --- the document, one tree for all files ------------------------------------------


class _Doc:
    """The merged document, every container a copy that knows its file."""

    def __init__(self) -> None:
        self.origin: dict[int, int] = {}
        self.made = 0

    def mark(self, node: Node, f: int) -> Node:
        self.origin[id(node)] = f
        return node

    def copy(self, node: Node, f: int) -> Node:
        """A deep copy of ``node`` (aliases expanded, as DevSpace reads them);
        scalars are shared: nothing changes them in place."""
        if node.is_scalar:
            return self.mark(node, f)
        out = self._shell(node, f)
        stack = [(node, out)]
        while stack:
            src, dst = stack.pop()
            if src.is_map:
                for k, child in src.value.items():
                    dst.value[k] = c = self._shell(child, f)
                    if child.is_map or child.is_seq:
                        stack.append((child, c))
                dst.keys = dict(src.keys)
            else:
                for child in src.value:
                    dst.value.append(c := self._shell(child, f))
                    if child.is_map or child.is_seq:
                        stack.append((child, c))
        return out

    def _shell(self, node: Node, f: int) -> Node:
        self.made += 1
        if self.made > MAX_PROFILE_NODES:
            raise ProfileError(
                f"the profiles make the config larger than {MAX_PROFILE_NODES:,} YAML nodes"
            )
        if node.is_scalar:
            return self.mark(node, f)
        empty: Any = {} if node.is_map else []
        return self.mark(Node(empty, node.line, node.col, node.tag, node.text), f)


def _merge_files(doc: _Doc, files: Sequence[tuple[str, Node]]) -> Node:
    """What DevSpace's ``ResolveImports`` makes of the files, as devreg reads
    them: a map section takes the entries it does not have yet, a list is
    appended to, ``localRegistry`` is the first file's whole."""
    main = files[0][1]
    root = doc.mark(Node({}, main.line, main.col, _MAP), 0)
    keys: dict[str, Node] = {}
    for f, (_, src) in enumerate(files):
        for key, node in src.value.items():
            if key in _OWN_KEYS or (f > 0 and key not in IMPORT_SECTIONS):
                continue
            if key not in root.value:
                root.value[key] = doc.copy(node, f)
                keys[key] = src.keys.get(key, node)
                continue
            have = root.value[key]
            if key == "localRegistry":
                continue
            if have.is_map and node.is_map:
                have_keys = dict(have.keys)  # one copy, not one per key (40,000 vars)
                for k, child in node.value.items():
                    if k not in have.value:
                        have.value[k] = doc.copy(child, f)
                        have_keys[k] = node.keys.get(k, child)
                have.keys = have_keys
            elif have.is_seq and node.is_seq:
                have.value.extend(doc.copy(child, f) for child in node.value)
    root.keys = keys
    return root


def _split(doc: _Doc, merged: Node, files: Sequence[tuple[str, Node]]) -> list[Node]:
    """The merged document given back to its files: an entry of a map or list
    section to the file its node came from, any other section whole."""
    roots: list[Node] = []
    for _, src in files:
        roots.append(Node({}, src.line, src.col, _MAP))
        roots[-1].keys = {}

    def put(f: int, key: str, node: Node, key_node: Node) -> None:
        roots[f].value[key] = node
        roots[f].keys[key] = key_node  # type: ignore[index]

    for key, node in merged.value.items():
        key_node = merged.keys.get(key, node)
        owner = doc.origin.get(id(node), 0)
        if key not in _ENTRY_SECTIONS or not (node.is_map or node.is_seq):
            put(owner, key, node, key_node)
            continue
        parts: dict[int, Node] = {}

        def part(
            f: int,
            node: Node = node,
            key: str = key,
            key_node: Node = key_node,
            parts: dict[int, Node] = parts,
        ) -> Node:
            if f not in parts:
                own = files[f][1].get(key)
                like = own if own is not None and own.is_map == node.is_map else node
                parts[f] = Node({} if node.is_map else [], like.line, like.col, node.tag)
                if node.is_map:
                    parts[f].keys = {}
                put(f, key, parts[f], files[f][1].keys.get(key, key_node))
            return parts[f]

        part(owner)
        if node.is_map:
            for k, child in node.value.items():
                section = part(doc.origin.get(id(child), owner))
                section.value[k] = child
                section.keys[k] = node.keys.get(k, child)  # type: ignore[index]
        else:
            for child in node.value:
                part(doc.origin.get(id(child), owner)).value.append(child)
    for f, (_, src) in enumerate(files):
        for key in _OWN_KEYS:
            if key in src.value:
                put(f, key, src.value[key], src.keys.get(key, src.value[key]))
    return roots


# --- merge and replace -----------------------------------------------------------------


def _sections(profile: Profile, what: str) -> Iterator[tuple[str, Node, Node]]:
    body = profile.node.get(what)
    where = f"{profile.path}.{what}"
    if body is None or body.value is None:
        return
    if isinstance(body.value, str) and has_expression(body.value):
        raise ProfileError(
            f"{what} is an expression ({shown(body.value)}) that devreg does not evaluate; "
            "write the sections out to use this profile with devreg",
            body,
            where,
        )
    if not body.is_map:
        raise ProfileError(
            f"{what} must be a mapping of sections, got {body.kind_name()}", body, where
        )
    for key, value in body.value.items():
        if key not in PROFILE_SECTIONS and key not in DEVREG_SECTIONS:
            raise ProfileError(
                f"a profile cannot {what} {key!r}; it can {what} "
                + ", ".join(PROFILE_SECTIONS + DEVREG_SECTIONS),
                body.keys.get(key, value),
                join(where, key),
            )
        if value.value is not None:  # DevSpace skips a null section
            yield key, value, body.keys.get(key, value)


def _replace(doc: _Doc, root: Node, profile: Profile) -> None:
    for key, value, key_node in _sections(profile, "replace"):
        root.value[key] = doc.copy(value, profile.file)
        root.keys = {**root.keys, key: key_node}


def _merge(doc: _Doc, root: Node, profile: Profile) -> None:
    for key, value, key_node in _sections(profile, "merge"):
        merged = merge_patch(doc, root.value.get(key), value, profile.file)
        if merged is None:
            root.value.pop(key, None)
        else:
            root.value[key] = merged
            root.keys = {**root.keys, key: root.keys.get(key, key_node)}


def merge_patch(doc: _Doc, target: Node | None, patch: Node, f: int) -> Node | None:
    """RFC 7386 on positioned nodes (None: the key goes away). What the patch
    sets keeps the patch's positions; what it leaves keeps the target's."""
    if not patch.is_map:
        return doc.copy(patch, f)
    if target is None or not target.is_map:
        target = doc.mark(Node({}, patch.line, patch.col, _MAP), f)
        target.keys = {}
    keys = dict(target.keys)  # one copy, not one per key
    for key, value in patch.value.items():
        if value.value is None:
            target.value.pop(key, None)
            continue
        merged = merge_patch(doc, target.value.get(key), value, f)
        if merged is not None:
            target.value[key] = merged
            keys.setdefault(key, patch.keys.get(key, value))
    target.keys = keys
    return target


# --- patch paths ---------------------------------------------------------------------

_LEGACY = re.compile(r"([^=]+)=([^.=><~]+)", re.IGNORECASE)
_HAS_FILTER = re.compile(r"\[\?.*\)\]", re.IGNORECASE)
_XPATH_INDEX = re.compile(r"/(\d+|\*)/")
_XPATH_TRAILING = re.compile(r"/(\d+|\*)$")
_NUMERIC = re.compile(r"[0-9]+\Z")


def transform_path(path: str) -> str:
    """DevSpace's ``TransformPath``: ``name=value`` selectors become filters,
    ``/a/0/b`` becomes ``$.a[0].b``; anything else is left as written."""
    if not path:
        return path
    if _LEGACY.search(path):
        tokens = []
        for token in path.split("."):
            m = _LEGACY.search(token)
            if m is not None:
                key, value = m.group(1), m.group(2)
                if _NUMERIC.match(value):
                    token = f"[?(@.{key}=='{value}' || @.{key}=={value})]"
                else:
                    token = f"[?(@.{key}=='{value}')]"
            tokens.append(token)
        return ".".join(tokens).replace(".[?", "[?")
    if "/" in path and not _HAS_FILTER.search(path):
        rewritten = _XPATH_INDEX.sub(r"[\1].", path)
        rewritten = _XPATH_TRAILING.sub(r"[\1]", rewritten)
        return re.sub(r"^/", "$.", rewritten)
    return path


_END_BRACKET = re.compile(r"\[([^\]]+)\]$")


def parent_path(path: str) -> str:
    """DevSpace's ``getParentPath``."""
    if _END_BRACKET.search(path):
        return _END_BRACKET.sub("", path)
    return ".".join(path.split(".")[:-1])


def child_name(path: str) -> str:
    """DevSpace's ``getChildName``."""
    if path in ("$", "."):
        return ""
    m = _END_BRACKET.search(path)
    if m is not None:
        return m.group(1).replace("'", "").replace('"', "")
    tokens = re.split(r"[$.]", path)
    return tokens[-1] if tokens else ""


@dataclass(frozen=True)
class Match:
    """A node a path found, and where it hangs (None for the root)."""

    node: Node
    parent: Node | None
    key: str | int | None


_NAME_END = set(".[])" + " &|=!><~")
Step = Callable[[list[Match], Node], list[Match]]


class PathSyntaxError(ValueError):
    pass


def compile_path(path: str) -> Callable[[Node], list[Match]]:
    """A yaml-jsonpath path (the subset DevSpace's docs use) as a function of the root."""
    steps = _Parser(path).path()

    def find(root: Node) -> list[Match]:
        found = [Match(root, None, None)]
        for step in steps:
            found = step(found, root)
        return found

    return find


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str) -> PathSyntaxError:
        return PathSyntaxError(f"{message} at character {self.pos + 1} of {shown(self.text)}")

    def peek(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def path(self, *, nested: bool = False) -> list[Step]:
        steps: list[Step] = []
        if self.peek("$"):
            self.pos += 1
        elif not nested and self.pos < len(self.text) and self.text[self.pos] not in ".[":
            steps.append(self.child(self.name()))
        while self.pos < len(self.text):
            if nested and (self.text[self.pos] in ")&|=!<> " or self.peek("]")):
                break
            steps.append(self.step())
        return steps

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _NAME_END:
            self.pos += 1
        if self.pos == start:
            raise self.error("a name is missing")
        return self.text[start : self.pos]

    def step(self) -> Step:
        if self.peek(".."):
            self.pos += 2
            if self.peek("["):
                inner = self.bracket(recursive=True)
                return lambda ms, root: inner(_descendants(ms), root)
            name = self.name()
            last = _all_children if name == "*" else _child_step(name)
            return lambda ms, root: last(_descendants(ms), root)
        if self.peek("."):
            self.pos += 1
            name = self.name()
            return _all_children if name == "*" else _child_step(name)
        if self.peek("["):
            return self.bracket(recursive=False)
        raise self.error("expected '.', '..' or '['")

    def child(self, name: str) -> Step:
        return _all_children if name == "*" else _child_step(name)

    def bracket(self, *, recursive: bool) -> Step:
        self.pos += 1  # [
        if self.peek("?("):
            self.pos += 2
            test = _FilterParser(self).expr()
            if not self.peek(")]"):
                raise self.error("a filter must end with ')]'")
            self.pos += 2
            return _filter_step(test, recursive)
        if self.peek("'") or self.peek('"'):
            names = [self.quoted()]
            while self.peek(","):
                self.pos += 1
                names.append(self.quoted())
            self.expect("]")
            return _bracket_children(names)
        end = self.text.find("]", self.pos)
        if end < 0:
            raise self.error("'[' without ']'")
        subscript = self.text[self.pos : end].strip()
        self.pos = end + 1
        if subscript == "*":
            return _all_children
        return _subscript_step(self._union(subscript))

    def _union(self, subscript: str) -> list[tuple[int | None, ...]]:
        out: list[tuple[int | None, ...]] = []
        for part in subscript.split(","):
            try:
                bounds = tuple(int(x) if x.strip() else None for x in part.split(":"))
            except ValueError:
                raise self.error(f"{shown(part)} is not an index, a range or '*'") from None
            if not 1 <= len(bounds) <= 3 or (len(bounds) == 1 and bounds[0] is None):
                raise self.error(f"{shown(part)} is not an index, a range or '*'")
            out.append(bounds)
        return out

    def quoted(self) -> str:
        while self.peek(" "):
            self.pos += 1
        quote = self.text[self.pos : self.pos + 1]
        if quote not in ("'", '"'):
            raise self.error("expected a quoted name")
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(self.text):
                raise self.error(f"unmatched {quote}")
            ch = self.text[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if ch == quote:
                while self.peek(" "):
                    self.pos += 1
                return "".join(out)
            out.append(ch)

    def expect(self, s: str) -> None:
        if not self.peek(s):
            raise self.error(f"expected {s!r}")
        self.pos += len(s)


def _child_step(name: str) -> Step:
    def step(ms: list[Match], root: Node) -> list[Match]:
        return [
            Match(m.node.value[name], m.node, name)
            for m in ms
            if m.node.is_map and name in m.node.value
        ]

    return step


def _bracket_children(names: list[str]) -> Step:
    def step(ms: list[Match], root: Node) -> list[Match]:
        return [
            Match(m.node.value[n], m.node, n)
            for m in ms
            for n in names
            if m.node.is_map and n in m.node.value
        ]

    return step


def _all_children(ms: list[Match], root: Node) -> list[Match]:
    out: list[Match] = []
    for m in ms:
        if m.node.is_map:
            out += [Match(c, m.node, k) for k, c in m.node.value.items()]
        elif m.node.is_seq:
            out += [Match(c, m.node, i) for i, c in enumerate(m.node.value)]
    return out


def _subscript_step(union: list[tuple[int | None, ...]]) -> Step:
    def step(ms: list[Match], root: Node) -> list[Match]:
        out: list[Match] = []
        for m in ms:
            if not m.node.is_seq:
                continue
            items = m.node.value
            for bounds in union:
                if len(bounds) == 1:
                    i = bounds[0]
                    assert i is not None
                    picked = [i + len(items) if i < 0 else i]
                else:
                    picked = list(range(len(items)))[slice(*bounds)]
                out += [Match(items[i], m.node, i) for i in picked if 0 <= i < len(items)]
        return out

    return step


def _descendants(ms: list[Match]) -> list[Match]:
    """Each node and all below it, in document order."""
    out: list[Match] = []
    for m in ms:
        stack = [m]
        while stack:
            here = stack.pop()
            out.append(here)
            v = here.node.value
            if isinstance(v, dict):
                stack += reversed([Match(c, here.node, k) for k, c in v.items()])
            elif isinstance(v, list):
                stack += reversed([Match(c, here.node, i) for i, c in enumerate(v)])
    return out


# --- filters: [?(@.name == 'x' && @.port > 80 || @.image =~ /^org\//)] -------------

Test = Callable[[Node, Node], bool]
_Term = Callable[[Node, Node], list[Any]]
_MISSING = object()


def _filter_step(test: Test, recursive: bool) -> Step:
    def step(ms: list[Match], root: Node) -> list[Match]:
        out: list[Match] = []
        for m in ms:
            if m.node.is_seq and not recursive:
                out += [Match(c, m.node, i) for i, c in enumerate(m.node.value) if test(c, root)]
            elif test(m.node, root):
                out.append(m)
        return out

    return step


def _typed(node: Node) -> Any:
    v = node.value
    if isinstance(v, (dict, list)):
        return _MISSING
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return node.text  # a timestamp: DevSpace reads it through JSON, as a string


class _FilterParser:
    def __init__(self, p: _Parser) -> None:
        self.p = p

    def ws(self) -> None:
        while self.p.peek(" "):
            self.p.pos += 1

    def expr(self) -> Test:
        return self.chain("||", self.conj, lambda a, b: lambda n, r: a(n, r) or b(n, r))

    def conj(self) -> Test:
        return self.chain("&&", self.basic, lambda a, b: lambda n, r: a(n, r) and b(n, r))

    def chain(
        self, op: str, operand: Callable[[], Test], both: Callable[[Test, Test], Test]
    ) -> Test:
        """``operand (op operand)*``, left to right."""
        left = operand()
        self.ws()
        while self.p.peek(op):
            self.p.pos += len(op)
            left = both(left, operand())
            self.ws()
        return left

    def basic(self) -> Test:
        self.ws()
        if self.p.peek("!") and not self.p.peek("!="):
            self.p.pos += 1
            inner = self.basic()
            return lambda n, r: not inner(n, r)
        if self.p.peek("("):
            self.p.pos += 1
            inner = self.expr()
            self.ws()
            self.p.expect(")")
            return inner
        left, is_path = self.term()
        self.ws()
        if self.p.peek("=~"):
            self.p.pos += 2
            self.ws()
            pattern = self.regex()
            return lambda n, r: _all_pairs(
                left(n, r), [pattern], lambda a, b: isinstance(a, str) and bool(b.search(a))
            )
        for op in ("==", "!=", ">=", "<=", ">", "<"):
            if self.p.peek(op):
                self.p.pos += len(op)
                right, _ = self.term()
                return _comparison(left, right, op)
        if not is_path:
            raise self.p.error("a literal alone is not a filter")
        return lambda n, r: len(left(n, r)) > 0

    def term(self) -> tuple[_Term, bool]:
        self.ws()
        p = self.p
        if p.peek("@") or p.peek("$"):
            relative = p.peek("@")
            p.pos += 1
            steps = p.path(nested=True)

            def values(n: Node, r: Node) -> list[Any]:
                found = [Match(n if relative else r, None, None)]
                for s in steps:
                    found = s(found, r)
                return [_typed(m.node) for m in found]

            return values, True
        for word, value in (("true", True), ("false", False), ("null", None)):
            if p.peek(word):
                p.pos += len(word)
                return (lambda n, r, v=value: [v]), False
        if p.peek("'") or p.peek('"'):
            text = p.quoted()
            return (lambda n, r: [text]), False
        m = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?").match(p.text, p.pos)
        if m is None:
            raise p.error("expected @, $, a quoted string, a number, true, false or null")
        p.pos = m.end()
        number: float | int = float(m.group()) if m.group(1) or m.group(2) else int(m.group())
        return (lambda n, r: [number]), False

    def regex(self) -> re.Pattern[str]:
        p = self.p
        p.expect("/")
        out = []
        while True:
            if p.pos >= len(p.text):
                raise p.error("a regular expression must end with '/'")
            if p.peek("\\/"):
                out.append("/")
                p.pos += 2
                continue
            ch = p.text[p.pos]
            p.pos += 1
            if ch == "/":
                break
            out.append(ch)
        try:
            return re.compile("".join(out))
        except re.error as e:
            raise p.error(f"not a regular expression ({e})") from None


def _all_pairs(left: list[Any], right: list[Any], ok: Callable[[Any, Any], bool]) -> bool:
    """yaml-jsonpath compares set-wise: every pair must pass, and an empty side fails."""
    pairs = [(a, b) for a in left for b in right]
    return bool(pairs) and all(ok(a, b) for a, b in pairs)


def _kind(v: Any) -> str:
    if v is _MISSING:
        return "container"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return "string"


def _comparison(left: _Term, right: _Term, op: str) -> Test:
    def ok(a: Any, b: Any) -> bool:
        if _kind(a) != _kind(b) or _kind(a) == "container":
            return op == "!="  # incomparable: only != holds
        if _kind(a) in ("bool", "null"):
            return bool({"==": a == b, "!=": a != b, "<=": a == b, ">=": a == b}.get(op, False))
        return bool(
            {
                "==": a == b,
                "!=": a != b,
                ">": a > b,
                ">=": a >= b,
                "<": a < b,
                "<=": a <= b,
            }[op]
        )

    return lambda n, r: _all_pairs(left(n, r), right(n, r), ok)


# --- patches -----------------------------------------------------------------------

_OPS = ("add", "replace", "remove")
_BRACKETED_SELECTOR = re.compile(r"\[([A-Za-z0-9_.-]+)=([^\]=?'\"]+)\]")


@dataclass
class _Patch:
    op: str
    path: str  # as written
    find: Callable[[Node], list[Match]]
    value: Node | None
    node: Node
    where: str


def _read_patches(profile: Profile) -> list[_Patch]:
    patches = profile.node.get("patches")
    where = f"{profile.path}.patches"
    if patches is None or patches.value is None:
        return []
    if isinstance(patches.value, str) and has_expression(patches.value):
        raise ProfileError(
            f"patches is an expression ({shown(patches.value)}) that devreg does not evaluate",
            patches,
            where,
        )
    if not patches.is_seq:
        raise ProfileError(f"patches must be a list, got {patches.kind_name()}", patches, where)
    out: list[_Patch] = []
    for i, entry in enumerate(patches.value):
        at = f"{where}[{i}]"
        if not entry.is_map:
            raise ProfileError(
                f"a patch must be a mapping (op, path, value), got {entry.kind_name()}", entry, at
            )
        op, path = entry.get("op"), entry.get("path")
        if op is None or op.value in (None, ""):
            raise ProfileError("op is missing (add, replace or remove)", entry, at)
        if op.value not in _OPS:
            raise ProfileError(
                f"unexpected op {shown(op.value)}: a patch's op is add, replace or remove",
                op,
                f"{at}.op",
            )
        if path is None or not isinstance(path.value, str) or not path.value:
            raise ProfileError("path is missing", path or entry, f"{at}.path")
        value = entry.get("value")
        if op.value != "remove" and (value is None or value.value is None):
            raise ProfileError(f"op {op.value} needs a value", value or entry, at)
        bracketed = _BRACKETED_SELECTOR.search(path.value)
        if bracketed is not None:  # DevSpace would read it as one odd name and match nothing
            key, value = bracketed.groups()
            raise ProfileError(
                f"{bracketed.group()} is not DevSpace's selector: write .{key}={value} "
                f"or [?(@.{key}=='{value}')]",
                path,
                f"{at}.path",
            )
        try:
            find = compile_path(transform_path(path.value))
        except PathSyntaxError as e:
            raise ProfileError(f"not a path DevSpace reads: {e}", path, f"{at}.path") from None
        out.append(_Patch(op.value, path.value, find, value, path, at))
    return out


def _apply_patches(doc: _Doc, root: Node, profile: Profile, diagnostics: list[Diagnostic]) -> None:
    patches = _read_patches(profile)
    # DevSpace decides before the first patch runs: a remove of something
    # absent is skipped, a replace of something absent becomes an add.
    decided: list[tuple[_Patch, str]] = []
    for patch in patches:
        op = patch.op
        absent = op in ("remove", "replace") and not patch.path.startswith("/")
        if absent and not patch.find(root):
            if op == "remove":
                diagnostics.append(
                    Diagnostic.at(
                        profile.display,
                        patch.node,
                        "warning",
                        f"{patch.where}.path",
                        f"{shown(patch.path)} matches nothing: this remove does nothing "
                        "(DevSpace skips it too)",
                    )
                )
                continue
            op = "add"
        decided.append((patch, op))
    for patch, op in decided:
        try:
            _perform(doc, root, patch, op, profile.file)
        except ProfileError as e:
            diagnostics.append(
                Diagnostic.at(profile.display, patch.node, "error", f"{patch.where}.path", str(e))
            )


def _perform(doc: _Doc, root: Node, patch: _Patch, op: str, f: int) -> None:
    matches = patch.find(root)
    if not matches and op != "add":
        raise ProfileError(f"{shown(patch.path)} matches nothing, so there is nothing to {op}")
    if op == "remove":
        _remove(matches)
        return
    assert patch.value is not None
    if op == "replace":
        if any(m.parent is None for m in matches):
            raise ProfileError("the whole config cannot be replaced")
        value = patch.value
        _set(matches, lambda: doc.copy(value, f))
        return
    # add, as DevSpace's patch library does it
    if matches and (matches[0].node.is_map or matches[0].node.is_seq):
        for m in matches:
            _add_into(doc, m.node, patch.value, f, patch.path)
        return
    parents = compile_path(parent_path(transform_path(patch.path)))(root)
    if matches:
        if parents and parents[0].node.is_seq:
            for m in matches:  # a scalar item: the value goes in before it
                assert m.parent is not None and isinstance(m.key, int)
                items = m.parent.value
                items.insert(
                    next(i for i, c in enumerate(items) if c is m.node), doc.copy(patch.value, f)
                )
            return
        raise ProfileError(
            f"{shown(patch.path)} already exists; op add does not overwrite it (use op: replace)"
        )
    if not parents:
        raise ProfileError(
            f"{shown(patch.path)} matches nothing, and neither does "
            f"{shown(parent_path(patch.path)) if parent_path(patch.path) else 'its parent'}: "
            "the patch would change nothing"
        )
    name = child_name(transform_path(patch.path))
    for m in parents:
        if m.node.is_seq:
            raise ProfileError(
                f"{shown(patch.path)}: there is no item {name} in the list "
                f"({len(m.node.value)} items); to append, add to the list itself"
            )
        if not m.node.is_map:
            raise ProfileError(f"{shown(patch.path)}: its parent is {m.node.kind_name()}")
        m.node.value[name] = doc.copy(patch.value, f)
        m.node.keys = {**m.node.keys, name: patch.node}


def _add_into(doc: _Doc, target: Node, value: Node, f: int, path: str) -> None:
    if target.is_seq:
        target.value.append(doc.copy(value, f))  # a list is added as one item, as in DevSpace
        return
    if not value.is_map:
        raise ProfileError(
            f"{shown(path)} is a mapping: op add puts the keys of a mapping value into it, "
            f"got {value.kind_name()} (use op: replace to overwrite it)"
        )
    clash = [k for k in value.value if k in target.value]
    if clash:
        raise ProfileError(
            f"{shown(path)} already has {shown(clash[0])}; op add does not overwrite a key "
            "(use op: replace on it)"
        )
    for k, child in value.value.items():
        target.value[k] = doc.copy(child, f)
    target.keys = {**target.keys, **{k: value.keys.get(k, c) for k, c in value.value.items()}}


def _remove(matches: list[Match]) -> None:
    """Each match out of its parent; a list is filtered once, however many of its
    items go (20,000 matches, one pass each)."""
    gone: dict[int, tuple[Node, set[int]]] = {}
    for m in matches:
        if m.parent is None:
            raise ProfileError("the whole config cannot be removed")
        if m.parent.is_map:
            m.parent.value.pop(str(m.key), None)
        else:
            gone.setdefault(id(m.parent), (m.parent, set()))[1].add(id(m.node))
    for parent, ids in gone.values():
        parent.value[:] = [c for c in parent.value if id(c) not in ids]


def _set(matches: list[Match], make: Callable[[], Node]) -> None:
    """Each match replaced by a new ``make()``; in a list, the first item not yet
    replaced that is the matched node (an aliased node can stand there twice)."""
    places: dict[int, dict[int, list[int]]] = {}
    for m in matches:
        assert m.parent is not None and m.key is not None
        if m.parent.is_map:
            m.parent.value[str(m.key)] = make()
            continue
        items = m.parent.value
        if id(m.parent) not in places:
            index: dict[int, list[int]] = {}
            for i, c in enumerate(items):
                index.setdefault(id(c), []).append(i)
            places[id(m.parent)] = index
        free = places[id(m.parent)].get(id(m.node))
        if free:
            items[free.pop(0)] = make()


# --- the one entry point -----------------------------------------------------------


def apply_profiles(
    files: Sequence[tuple[str, Node]],
    requested: Sequence[str] = (),
    *,
    env: Mapping[str, str],
    vars_: Vars,
    activation: bool = True,
) -> Applied:
    """Apply the profiles ``requested`` (``-p``, in order) and, unless
    ``activation`` is False, those their ``activation`` turns on, to ``files``
    (``(display, root)``, the main config first, then its imports as read)."""
    diagnostics: list[Diagnostic] = []
    chain = _select(files, requested, env, vars_, activation, diagnostics)
    if not chain:
        return Applied(None, diagnostics=diagnostics)
    doc = _Doc()
    try:
        root = _merge_files(doc, files)
    except ProfileError as e:
        diagnostics.append(_diag(files[0][0], e, default=files[0][1]))
        return Applied(None, diagnostics=diagnostics)
    for profile, why in chain:
        diagnostics.append(
            Diagnostic.at(
                profile.display,
                profile.node.get("name") or profile.node,
                "note",
                profile.path,
                f"profile {profile.name!r} applied ({why})",
            )
        )
        for step in (_replace, _merge):
            try:
                step(doc, root, profile)
            except ProfileError as e:
                diagnostics.append(_diag(profile.display, e, default=profile.node))
        try:
            _apply_patches(doc, root, profile, diagnostics)
        except ProfileError as e:
            diagnostics.append(_diag(profile.display, e, default=profile.node))
    active = tuple(dict.fromkeys(p.name for p, _ in chain))
    applied = frozenset(id(p.node) for p, _ in chain)
    return Applied(_split(doc, root, files), active, applied, diagnostics)
