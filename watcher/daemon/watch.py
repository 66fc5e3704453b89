"""The watcher (SPEC §7): file events → debounced, cancellable rebuilds.

Threads:
- watchdog's observer threads run :class:`_Handler`, which only filters and
  enqueues (watchdog's emitters must not wait on devreg);
- the loop thread (the caller of :meth:`Watcher.run`) drains the queue after
  a quiet period, updates the context indexes, decides which images changed,
  reloads ``devspace.yaml``, re-plans the inotify watches and checks that the
  registry still has what was pushed;
- one worker thread per image that is building; each image builds at most
  once at a time, at most ``jobs`` images at once. A newer change bumps the
  image's generation and sets the running build's cancel event (its process
  group is killed); the worker then starts again from the newest files, and a
  result whose generation is no longer current is never published;
- with ``--exec``, the thread of :class:`~watcher.daemon.exec_cmd.ExecCommand`. A
  *round* ends when the last busy worker finishes; the images delivered in
  it are handed to that thread, which runs the command (one run at a time).

Watches: only directories that matter get one. A context subtree with no
wholly ignored directory in it gets one recursive schedule; along the way to
an ignored directory (``node_modules``) each directory is scheduled alone,
and the ignored directory is not watched at all. The plan reads the tree the
image's :class:`~watcher.build.contenttag.ContextIndex` walked; the watcher
never walks it again.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from hookpkg.config import Config
from hookpkg.errors import FatalError
from hookpkg.project import ENV_FILE, STATE_DIR
from watcher.build.contenttag import ContextIndex, DigestCache
from watcher.build.dockerignore import candidate_ignore_files
from watcher.build.pipeline import Outcome, Pipeline, registry_has
from watcher.daemon.exec_cmd import ExecCommand

Log = Callable[[str], None]
EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileClosedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
HEALTH_INTERVAL = 2.0  # seconds between checks that the registry kept our images
MAX_DEBOUNCE_WAIT = 1.0  # a never-ending burst still gets handled this often
SAVED_GRACE = 0.01  # the quiet period once every written file is closed
_EDITOR_SUFFIXES = (".swp", ".swx", ".swo", "~", ".tmp.devreg")


def _is_noise(path: str) -> bool:
    name = os.path.basename(path)
    if name == "4913" or name.startswith(".#") or (name.startswith("#") and name.endswith("#")):
        return True  # vim's write probe, emacs lock and autosave files
    return name.endswith(_EDITOR_SUFFIXES)


class _Handler(FileSystemEventHandler):
    """Thin: drop what is never an input, enqueue the rest, return."""

    def __init__(
        self, sink: queue.SimpleQueue[tuple[str, str, bool]], own: tuple[str, ...]
    ) -> None:
        self._sink = sink
        self._own = own  # devreg's outputs: .devreg/ and .devreg.env

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = os.fsdecode(raw)
            if not path or "/.git/" in path or path.endswith("/.git"):
                continue
            if path.startswith(self._own) or _is_noise(path):
                continue
            self._sink.put((path, event.event_type, event.is_directory))


def _track_writes(writing: set[str], event: tuple[str, str, bool]) -> set[str]:
    """Files of a burst still being written: a write opens an entry, its
    close (``IN_CLOSE_WRITE``), a rename into place or a delete ends it.
    Attribute changes (``touch``) never close, so they wait out the debounce."""
    path, kind, is_dir = event
    if is_dir or not path:
        return writing
    if kind in ("modified", "created"):
        writing.add(path)
    elif kind in ("closed", "moved", "deleted"):
        writing.discard(path)
    return writing


def plan_schedules(index: ContextIndex) -> list[tuple[str, bool]]:
    """``(directory, recursive)`` schedules covering exactly the directories
    the index's walk entered, but ``.git``. A directory is "clean" when no
    wholly ignored directory (nor ``.git``) lies below it: one recursive
    schedule then covers it all."""
    watched: set[str] = set()
    blocked = list(index.pruned)
    for d in index.directories():
        if d.startswith(".git/") or "/.git/" in d:
            continue
        if d == ".git" or d.endswith("/.git"):
            blocked.append(d)
        else:
            watched.add(d)
    dirty: set[str] = set()
    for d in blocked:
        p = _parent(d)
        while p not in dirty:
            dirty.add(p)
            if not p:
                break
            p = _parent(p)
    root = str(index.context)
    out: list[tuple[str, bool]] = []
    for d in sorted(watched):
        parent = _parent(d)
        if d and parent in watched and parent not in dirty:
            continue  # inside a recursive schedule
        out.append((f"{root}/{d}" if d else root, d not in dirty))
    return out


def _parent(rel: str) -> str:
    return rel.rpartition("/")[0]


@dataclass
class ImageSlot:
    """One image's live state in the watcher."""

    key: str
    index: ContextIndex
    content: str | None = None  # inputs of the last requested build
    generation: int = 0
    wanted: bool = False
    thread: threading.Thread | None = None
    running: bool = False  # a worker owns this image (set and cleared under the lock)
    cancel: threading.Event = field(default_factory=threading.Event)
    state: str = "pending"
    tag: str | None = None
    reference: str | None = None
    seconds: float | None = None
    error: str | None = None
    tail: tuple[str, ...] = ()
    builds: int = 0
    layers_pushed: int = 0
    delivered_tag: str | None = None


class Watcher:
    def __init__(
        self,
        *,
        config: Config,
        reload_config: Callable[[Log], Config | None],
        make_pipeline: Callable[[Config], Pipeline],
        cache: DigestCache,
        debounce: float = 0.05,
        jobs: int | None = None,
        log: Log,
        on_status: Callable[[dict[str, Any]], None] | None = None,
        observer_factory: Callable[[], BaseObserver] = Observer,
        exec_command: ExecCommand | None = None,
        probe_status: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        self.config = config
        self._probe_status = probe_status
        self._reload_config = reload_config
        self._make_pipeline = make_pipeline
        self.cache = cache
        self.debounce = debounce
        self.jobs = jobs or os.cpu_count() or 2
        self.log = log
        self._on_status = on_status
        self._observer_factory = observer_factory
        self._events: queue.SimpleQueue[tuple[str, str, bool]] = queue.SimpleQueue()
        self._lock = threading.RLock()
        self._slots_free = threading.Semaphore(self.jobs)
        self._stop = threading.Event()
        self.slots: dict[str, ImageSlot] = {}
        self.config_errors: list[str] = []
        self.exec_command = exec_command
        if exec_command is not None:
            exec_command.on_change = self._report
        self._workers = 0  # running worker threads, of current and removed images
        self._round: set[str] = set()  # images delivered since the last round ended
        self.pipeline: Pipeline | None = None
        self._observer: BaseObserver | None = None
        self._scheduled: dict[tuple[str, bool], ObservedWatch] = {}
        own = config.directory / STATE_DIR
        self._handler = _Handler(
            self._events, (str(own) + "/", str(own), str(config.directory / ENV_FILE))
        )
        self.started = time.time()

    # --- lifecycle -----------------------------------------------------------

    def stop(self) -> None:
        """Safe from a signal handler: the loop wakes up and winds down."""
        self._stop.set()
        self._events.put(("", "stop", False))

    def run(self) -> None:
        observer = self._observer_factory()
        self._observer = observer
        observer.start()
        if self.exec_command is not None:
            self.exec_command.start()
        try:
            self._apply_config(self.config, initial=True)
            self._report()
            self._loop()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            for slot in self.slots.values():
                slot.wanted = False
                slot.cancel.set()
            threads = [s.thread for s in self.slots.values() if s.thread is not None]
        for t in threads:
            t.join()
        if self.exec_command is not None:
            self.exec_command.close()  # stops a running CMD with its process group
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
        self.cache.save()
        self._report()

    # --- configuration ---------------------------------------------------------

    def _apply_config(self, config: Config, *, initial: bool = False) -> None:
        pipeline = self._make_pipeline(config)
        with self._lock:
            old = self.slots
            for key, slot in old.items():
                if key not in config.images:
                    slot.wanted = False
                    slot.cancel.set()
            self.config = config
            self.pipeline = pipeline
            slots: dict[str, ImageSlot] = {}
            for key, image in config.images.items():
                previous = old.get(key)
                if previous is not None and (
                    previous.index.context == image.context
                    and previous.index.dockerfile == image.dockerfile
                ):
                    slot = previous
                else:
                    index = ContextIndex(image.context, image.dockerfile, self.cache)
                    index.scan()
                    slot = previous or ImageSlot(key, index)
                    slot.index = index
                slot.content = None  # new config: re-check every image
                slots[key] = slot
            self.slots = slots
        self.cache.save()
        self._reschedule()
        pipeline.publish()
        for key in config.images:
            self._consider(key)

    def _reload(self) -> None:
        diagnostics: list[str] = []

        def collect(line: str) -> None:
            diagnostics.append(line)
            self.log(line)

        config = self._reload_config(collect)
        if config is None:
            self._config_error(diagnostics or ["the configuration has errors"])
            return
        try:
            self._apply_config(config)
        except FatalError as e:
            self._config_error([*diagnostics, f"{self.config.path}: cannot be applied: {e}"])
            return
        with self._lock:
            self.config_errors = []
        self.log(f"{self.config.path.name} changed; configuration reloaded")
        self._report()

    def _config_error(self, lines: list[str]) -> None:
        # The user sees where (file:line:col) in the log and in `devreg status`;
        # builds go on with the configuration that was last valid.
        with self._lock:
            self.config_errors = lines
        self.log(f"{self.config.path.name} is invalid; keeping the last good configuration")
        self._report()

    # --- watches -----------------------------------------------------------------

    def _reschedule(self) -> None:
        assert self._observer is not None
        wanted: set[tuple[str, bool]] = set()
        for slot in self.slots.values():
            wanted.update(plan_schedules(slot.index))
            wanted.add((str(slot.index.dockerfile.parent), False))
        wanted.add((str(self.config.path.resolve().parent), False))
        for key in list(self._scheduled):
            if key not in wanted:
                with contextlib.suppress(KeyError):
                    self._observer.unschedule(self._scheduled.pop(key))
        for path, recursive in sorted(wanted):
            if (path, recursive) in self._scheduled or not os.path.isdir(path):
                continue
            try:
                self._scheduled[(path, recursive)] = self._observer.schedule(
                    self._handler, path, recursive=recursive, event_filter=EVENT_TYPES
                )
            except OSError as e:
                self.log(f"cannot watch {path}: {e}")

    # --- the loop ----------------------------------------------------------------

    def _loop(self) -> None:
        next_health = time.monotonic() + HEALTH_INTERVAL
        while not self._stop.is_set():
            try:
                first = self._events.get(timeout=max(0.0, next_health - time.monotonic()))
            except queue.Empty:
                self._check_registry()
                next_health = time.monotonic() + HEALTH_INTERVAL
                continue
            batch = [first]
            writing = _track_writes(set(), first)
            deadline = time.monotonic() + MAX_DEBOUNCE_WAIT
            while not self._stop.is_set():
                # Every file written in this burst has been closed or renamed
                # into place: the save is complete, and only a short grace
                # is left for a next file (a checkout writes them back to
                # back). A late event still cancels and restarts the build.
                quiet = self.debounce if writing else min(self.debounce, SAVED_GRACE)
                try:
                    event = self._events.get(
                        timeout=min(quiet, max(0.0, deadline - time.monotonic()))
                    )
                except queue.Empty:
                    break
                batch.append(event)
                _track_writes(writing, event)
            if self._stop.is_set():
                break
            self._handle(batch)

    def _handle(self, batch: Iterable[tuple[str, str, bool]]) -> None:
        config_path = str(self.config.path.resolve())
        paths: set[str] = set()
        new_dirs = False
        reload = False
        for path, kind, is_dir in batch:
            if not path:
                continue
            if path == config_path:
                reload = True
                continue
            paths.add(path)
            new_dirs = new_dirs or (is_dir and kind in ("created", "moved"))
        if reload:
            self._reload()
        changed_filter = False
        for key, slot in list(self.slots.items()):
            index = slot.index
            root = str(index.context) + "/"
            mine = [p for p in paths if p.startswith(root)]
            ignore_files = {str(p) for p in candidate_ignore_files(index.context, index.dockerfile)}
            if any(p in ignore_files for p in paths):
                changed_filter = True
                mine += [p for p in paths if p in ignore_files]
            if mine:
                index.update(mine)
            if mine or str(index.dockerfile) in paths:
                self._consider(key)
        if new_dirs or changed_filter:
            self._reschedule()

    def _consider(self, key: str, *, force: bool = False) -> None:
        """Request a build when the image's inputs differ from the last
        request (a touch or a save without edits changes nothing)."""
        assert self.pipeline is not None
        slot = self.slots[key]
        snapshot = slot.index.snapshot()
        try:
            content = self.pipeline.content_of(key, snapshot)
        except Exception as e:  # the Dockerfile vanished mid-save
            content = f"error:{e}"
        with self._lock:
            if content == slot.content and not force:
                return
            slot.content = content
            slot.generation += 1
            slot.wanted = True
            # ``running``, not ``thread.is_alive()``: a worker that has just
            # decided to return is still alive for a moment, and would drop
            # this request.
            if slot.running:
                slot.cancel.set()  # the worker restarts from the newest files
                return
            slot.running = True
            self._workers += 1
            slot.thread = threading.Thread(
                target=self._work, args=(slot,), name=f"devreg-build-{key}"
            )
            slot.thread.start()

    # --- workers -----------------------------------------------------------------

    def _work(self, slot: ImageSlot) -> None:
        ended = False
        try:
            while True:
                with self._lock:
                    if not slot.wanted or self._stop.is_set():
                        # Decided and published under the lock: a request
                        # arriving after this starts a new worker.
                        ended = True
                        slot.running = False
                        self._workers -= 1
                        delivered = self._end_of_round()
                        break
                    slot.wanted = False
                    generation = slot.generation
                    slot.cancel = cancel = threading.Event()
                    pipeline = self.pipeline
                    snapshot = slot.index.snapshot()
                assert pipeline is not None
                while not self._slots_free.acquire(timeout=0.1):
                    if cancel.is_set():
                        break
                else:
                    try:
                        self._set(slot, state="building")
                        outcome = pipeline.run(
                            slot.key,
                            snapshot,
                            cancel=cancel,
                            is_current=lambda g=generation: slot.generation == g,  # type: ignore[misc]
                            log=lambda line: self.log(f"[{slot.key}] {line}"),
                        )
                    finally:
                        self._slots_free.release()
                    self._record(slot, outcome)
        finally:
            if not ended:  # a bug raised: the next change of this image starts a worker
                with self._lock:
                    slot.running = False
                    self._workers -= 1
        if delivered and self.exec_command is not None:
            self.exec_command.submit(delivered)

    def _end_of_round(self) -> set[str]:
        """Under the lock, when a worker ends: the images delivered in the
        round that just ended, when it ended (no worker left)."""
        if self._workers or self._stop.is_set() or not self._round:
            return set()
        delivered, self._round = self._round, set()
        return delivered

    def _record(self, slot: ImageSlot, outcome: Outcome) -> None:
        if outcome.state == "cancelled":
            self.log(f"[{slot.key}] build cancelled: newer changes arrived")
            return
        with self._lock:
            slot.tag = outcome.tag
            slot.reference = outcome.reference
            slot.seconds = round(outcome.seconds, 3)
            slot.builds += int(outcome.built)
            slot.layers_pushed += outcome.layers_pushed
            if outcome.state == "failed":
                slot.state = "failed"
                slot.error = outcome.error
                slot.tail = outcome.tail
            else:
                slot.state = "ok"
                slot.error = None
                slot.tail = ()
                slot.delivered_tag = outcome.tag
                self._round.add(slot.key)
        if outcome.state == "failed":
            tail = "\n".join(f"[{slot.key}]   {line}" for line in outcome.tail[-15:])
            self.log(f"[{slot.key}] FAILED: {outcome.error}" + (f"\n{tail}" if tail else ""))
            self.log(f"[{slot.key}] keeping the last good image in .devreg.env")
        else:
            self.log(f"[{slot.key}] {outcome.state}: {outcome.reference} ({outcome.seconds:.2f} s)")
        self._report()

    def _set(self, slot: ImageSlot, *, state: str) -> None:
        with self._lock:
            slot.state = state
        self._report()

    # --- the registry kept our images? ---------------------------------------------

    def _check_registry(self) -> None:
        pipeline = self.pipeline
        if pipeline is None or pipeline.endpoint is None:
            return
        for key, slot in list(self.slots.items()):
            route = pipeline.routes.get(key)
            if (
                route is None
                or route.path != "local-registry"
                or slot.state != "ok"
                or not slot.delivered_tag
            ):
                continue
            if (
                registry_has(
                    pipeline.endpoint.push_host, route.repository, slot.delivered_tag, timeout=2.0
                )
                is False
            ):
                lost = f"{route.repository}:{slot.delivered_tag}"
                self.log(f"[{key}] the registry lost {lost}; pushing it again")
                self._consider(key, force=True)

    # --- status ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._lock:
            images = {
                key: {
                    "state": s.state,
                    "tag": s.tag,
                    "reference": s.reference,
                    "last_build_seconds": s.seconds,
                    "last_error": s.error,
                    "last_error_tail": list(s.tail),
                    "builds": s.builds,
                    "layers_pushed": s.layers_pushed,
                    "path": self.pipeline.routes[key].path
                    if self.pipeline and key in self.pipeline.routes
                    else None,
                }
                for key, s in self.slots.items()
            }
        return {
            "exec": self.exec_command.status() if self.exec_command is not None else None,
            "pid": os.getpid(),
            "state": "stopped" if self._stop.is_set() else "running",
            "started": self.started,
            "config": str(self.config.path),
            "profiles": list(self.config.profiles),
            "registry": self.pipeline.endpoint.host
            if self.pipeline and self.pipeline.endpoint
            else None,
            "images": images,
            "config_errors": list(self.config_errors),
            "pull_probe": self._probe_status() if self._probe_status is not None else None,
        }

    def report(self) -> None:
        """Write the status now (something outside the rounds changed, such as the
        pull probe's result)."""
        self._report()

    def _report(self) -> None:
        if self._on_status is not None:
            self._on_status(self.status())


def inotify_watches(pid: int) -> int:
    count = 0
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(f"{fd_dir}/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                count += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            continue
    return count
