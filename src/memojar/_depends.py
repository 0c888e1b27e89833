"""What a function's results depend on beyond its arguments: ``depends_on=`` and ``files=``.

``depends_on`` rows join the function's own dependencies (``_identity.dependencies``) in its
identity; ``files`` wraps the binder so that a path argument is keyed with its content. The
content hash of a file is kept per process by ``(device, inode, size, mtime, ctime)``: an
unchanged file costs one ``stat`` per call, an edit that restores the size and the
modification time still changes the ctime (which no user call can set back), so it is read
again. A file changed within a second of being hashed is hashed again at the next call (a
timestamp may not yet tell two writes in the same clock tick apart); within three seconds
on a file system whose timestamps count whole seconds (FAT counts modification times in
two, and a FUSE file system such as sshfs reports that time as the ctime). A file whose
ctime is whole seconds and equal to its mtime has no change time of its own (FAT, sshfs:
``os.utime`` sets it back, and fusefat does not move it on a write): its digest is not
kept, and it is read at each call (so too, for want of telling them apart, on a file system
that only counts whole seconds, ext3 or HFS+, a file last changed by a write). A FIFO, device or
socket is never read (``NotAFile``); a directory tree follows links, loop-safe, and leaves out a
memojar cache in it. A write through a shared mapping (``mmap``,
``numpy.memmap``) to a page already written since the kernel last wrote it back changes no
timestamp: it is not seen until then (on tmpfs, not at all), by this or any ``stat``.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import io
import os
import pickle
import stat
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import BuiltinFunctionType, FunctionType, ModuleType
from typing import Any

import xxhash

from ._identity import (
    bound_shape,
    code_behind,
    dependencies,
    function_name,
    has_wrapped,
    is_user_module,
    split,
)

Row = tuple[str, str, str]
_CHUNK = 1 << 20
_RECENT = 1.0  # seconds: a file whose ctime is this recent is not trusted by its stat
# ... nor, with a ctime of whole seconds (a file system counting in 1 or 2 s: two writes 1.5 s
# after such a tick have one ctime), one this recent: the tick plus the kernel clock's lag
_RECENT_COARSE = 3.0


def depends_on_rows(depends_on: Any) -> tuple[list[Row], list[Any]]:
    """``depends_on=`` as rows known now (package versions, plain values) and callables,
    whose identity is taken with the function's own at the first call.

    ``None`` is none. Raises ``ValueError`` for a package that is not installed,
    ``TypeError`` for a value that is neither a package name, a callable nor plain data.
    """
    from ._identity import _constant, _constant_digest

    if depends_on is None:
        # None is none, as for ignore= and files=; before, the plain value None, a
        # dependency that made another identity than the same function's without it
        return [], []
    items = (depends_on,) if isinstance(depends_on, str) or callable(depends_on) else depends_on
    try:
        items = tuple(items)
    except TypeError:
        if not _constant(depends_on):
            raise TypeError(
                "depends_on= takes a package name, a callable or a plain value, or a tuple "
                f"of them, not {type(depends_on).__name__}"
            ) from None
        # one plain value (depends_on=3): refused before, by a message calling it allowed
        items = (depends_on,)
    rows: list[Row] = []
    callables: list[Any] = []
    for at, item in enumerate(items):
        if isinstance(item, str):
            if not item.strip():
                raise ValueError(
                    f"depends_on[{at}] is an empty package name: name an installed "
                    "distribution (depends_on=('numpy',)), or leave it out"
                )
            rows.append(("package", item, _package_version(item)))
        elif callable(item):
            callables.append(item)
        elif _constant(item):
            rows.append(("value", f"depends_on[{at}]", _constant_digest(item)))
        else:
            raise TypeError(
                f"depends_on[{at}] is a {type(item).__name__}: pass package names (str), "
                "callables, or plain values (numbers, str, bytes, and tuples, lists, dicts "
                "of them)"
            )
    return rows, callables


def option_rows(key: Any, ignore: tuple[str, ...]) -> tuple[list[Row], list[Any]]:
    """What ``key=`` and ``ignore=`` add to the identity, as ``depends_on_rows``: they
    decide which calls share an entry.

    - ``key=`` as a ``depends_on=`` callable (``callable_rows``): its code and what it
      reads, what is bound to it (a partial's arguments, a callable instance's or a bound
      method's object, each part that cannot be pickled by its type), and a library
      callable's state (``operator.itemgetter("id")``). Before, an edited key function
      (``x % 10`` made ``x % 100``) returned for f(1) what f(11) stored under the old, and
      so did ``partial(key_mod, mod=100)`` after ``mod=10``.
    - The names ``ignore=`` leaves out, as a set: a key hashes the other arguments'
      values, not their names. Before, f(5, 1) under ``ignore=("a",)`` hashed b=1 as
      f(1, 9) under ``ignore=("b",)`` had hashed a=1, and returned its value.
    """
    from ._identity import _constant_digest

    rows: list[Row] = []
    if ignore:
        rows.append(("option", "ignore=", _constant_digest(tuple(sorted(set(ignore))))))
    return rows, [] if key is None else [key]


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
    # An import name ("yaml", "sklearn", "PIL") is what a user writes as often as the
    # distribution's ("PyYAML"): count the version of the one distribution providing it.
    providers = _providers(name)
    if len(providers) == 1:
        try:
            return metadata.version(providers[0])
        except metadata.PackageNotFoundError:  # uninstalled since the names were listed
            providers = _providers(name, again=True)
            if len(providers) == 1:
                return metadata.version(providers[0])
    if providers:
        raise ValueError(
            f"depends_on= names {name!r}, which is imported from several distributions "
            f"({', '.join(map(repr, providers))}): name the one the results depend on, "
            f"depends_on=({providers[0]!r},), or each of them"
        )
    raise ValueError(
        f"depends_on= names the package {name!r}, which is not installed (no "
        "distribution of that name on sys.path); name an installed distribution, or, "
        f"to depend on the string itself, put it in a tuple of its own: "
        f"depends_on=[({name!r},)]"
    )


# Every distribution's top-level import names (``packages_distributions``), listed once for
# the process: a scan of every distribution installed (130 ms for 140 of them), which each
# decoration naming an import name paid before (20 such decorations: 3.3 s of import).
# Listed again for a name it does not hold (installed since) or whose distribution is gone.
_IMPORT_NAMES: Mapping[str, list[str]] | None = None


def _providers(name: str, again: bool = False) -> list[str]:
    """The distributions providing the top-level import ``name``, by name, sorted."""
    global _IMPORT_NAMES
    from importlib import metadata

    names = _IMPORT_NAMES
    if names is None or again or name not in names:
        names = _IMPORT_NAMES = metadata.packages_distributions()
    return sorted({d for d in names.get(name, ()) if d})  # (a broken one's name: None)


def callable_rows(callables: Iterable[Any]) -> list[Row]:
    """Rows for the callables of ``depends_on`` (and ``key=``): a user function with its
    dependencies, a library callable by its name (its package's version is what to name for
    it) and what it holds (``operator.itemgetter("id")``'s ``"id"``, ``table.get``'s
    ``table``). What a partial, bound method or callable instance binds to it
    (``partial(g, k=2)``'s ``k``, ``scaler.transform``'s ``scaler``) is a row of its own, by
    its state, as it is in the key of a function decorated so: a ``k`` or a ``scaler`` made
    otherwise is another dependency (``bound_shape``: a lock among them counts by its type,
    the others by their state)."""
    rows: list[Row] = []
    for item in callables:
        target, args, kwargs = split(item)
        name = function_name(target)
        if (args or kwargs) and not _bound_by_its_module(item):
            rows.append(("value", f"{name}(bound)".replace(" ", "_"),
                         _digest(bound_shape((args, kwargs)))))
        own = _rows_of(target, name)
        rows.extend(own)
        now = _reloaded_as(target) if own[0][0] == "function" else None  # (a user's)
        if now is not None:  # what its module binds at its name now (see _reloaded_as)
            again = _rows_of(now, name)
            if again != own:
                rows.extend((kind, f"{what}(reloaded)" if what == name else what, digest)
                            for kind, what, digest in again)
    return rows


def _rows_of(target: Any, name: str) -> list[Row]:
    """``callable_rows``' rows of one callable, ``name`` its function's: its code and what it
    reads, or a library callable's name and state."""
    module = getattr(target, "__module__", None) or type(target).__module__
    if not is_user_module(module):
        return [("library", name, _library_state(target))]
    own, *deps = dependencies(target)
    return [("function", name, own[2]), *deps]


def _library_state(target: Any) -> str:
    """What a library callable holds that decides what it does ("-": nothing, a function or
    class known by its name): ``itemgetter("id")``'s ``"id"``, ``{1: "a"}.get``'s table,
    ``"{0[1]}".format``'s string. Before, none of it counted: under ``key=itemgetter("id")``
    and then ``itemgetter("uuid")``, ``f(row)`` returned what another row had stored."""
    if (isinstance(target, (FunctionType, type, ModuleType)) or has_wrapped(target)
            or _bound_by_its_module(target)):
        return "-"
    if isinstance(target, BuiltinFunctionType):  # (a module's function: its module)
        owner = getattr(target, "__self__", None)
        if owner is None or isinstance(owner, ModuleType):
            return "-"
        return _digest(bound_shape(owner))
    return _digest(bound_shape(target))


def _bound_by_its_module(item: Any) -> bool:
    """Whether ``item`` is a method bound to an object of a library that its module binds
    at the method's name (``random.random``, ``random.choice``, ``numpy.random.rand``): it
    is the library's function, known by its name; its object's state (the module's random
    generator, seeded anew in each process) is not the user's, and would key each process
    apart."""
    try:
        owner = getattr(item, "__self__", None)
        if owner is None or isinstance(owner, ModuleType):
            return False
        name = getattr(item, "__name__", None)
        modules = (getattr(item, "__module__", None), type(owner).__module__)
    except Exception:  # noqa: BLE001 - whatever its __getattr__ raised: the user's object
        return False
    return isinstance(name, str) and any(
        isinstance(module, str) and not is_user_module(module)
        and getattr(sys.modules.get(module), name, None) is item for module in modules)


def _digest(shape: Any) -> str:
    return xxhash.xxh3_64_hexdigest(repr(shape).encode())


def _reloaded_as(target: Any) -> Any:
    """What the module of ``target`` (a function or class of ``depends_on=``, or ``key=``)
    binds at its name now, if that is another callable (else None): the module was reloaded
    (``importlib.reload`` runs it again: its functions and classes are new objects, and a
    name may now bind an alias, a lambda, a wrapper or a name imported from elsewhere).

    ``depends_on=`` holds the object it was given, the old code, while a call finding the
    helper by name (``getattr(helpers, name)``, why it is named there) runs the new: both
    count (``callable_rows``, where they differ), so a value is never stored under an
    identity of the old code alone. Before, the reload was seen, and the identity made again
    of the old object: ``f(2)`` of the new code was stored under the old identity, and a
    process running the old code got it; and only a function or a class with a function of
    its module's namespace, its type and name unchanged, was looked for (a class of
    staticmethods or data, an alias, a wrapper without ``functools.wraps``: not).

    Its name is its qualified name, or else (a wrapper's ``deco.<locals>.wrapper``) the
    module's name that bound it when its identity was first made, remembered (``_NAMES``):
    an object first looked at after the reload has no name there, and is left as it is. A
    copy sent by value (cloudpickle) is found as its module binds it, the same code, and
    adds nothing; ``__main__`` (never reloaded; a notebook cell's redefinition: see the
    README) is left as it is."""
    module = getattr(target, "__module__", None)
    if not isinstance(module, str) or module in ("__main__", "__mp_main__"):
        return None
    namespace = getattr(sys.modules.get(module), "__dict__", None)
    if namespace is None:
        return None
    try:
        name = _NAMES.get(target)
    except TypeError:  # (not weakly referable: looked for each time)
        name = None
    if name is None:
        name = _name_in(namespace, target)
        if name is None:
            return None
        with contextlib.suppress(TypeError):
            _NAMES[target] = name
    found = _at(namespace, name)
    if (found is None or found is target or not callable(found)
            or isinstance(found, ModuleType)):
        return None
    return found


# target -> the name its module bound it at (``_reloaded_as``)
_NAMES: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _name_in(namespace: dict[str, Any], target: Any) -> str | None:
    """The name ``namespace`` binds ``target`` at: its qualified name, else a module-level
    name found by looking at each (once an object: ``_NAMES``)."""
    qualname = getattr(target, "__qualname__", None)
    if isinstance(qualname, str) and "<" not in qualname and _at(namespace, qualname) is target:
        return qualname
    try:
        bound = list(namespace.items())
    except RuntimeError:  # changed meanwhile by another thread (an import): not known
        return None
    return next((name for name, value in bound if value is target), None)


def _at(namespace: dict[str, Any], name: str) -> Any:
    """What ``namespace`` binds at the dotted ``name`` (None: nothing)."""
    first, *rest = name.split(".")
    try:
        found = namespace[first]
        for part in rest:
            found = getattr(found, part)
    except Exception:  # noqa: BLE001 - gone from the module, or a member that raises
        return None
    return found


# --- files= ---------------------------------------------------------------------------

def files_binder(binder: Callable[..., tuple[Any, ...]], names: list[str],
                 files: tuple[str, ...], owner: str) -> Callable[..., tuple[Any, ...]]:
    """``binder`` with each ``files`` parameter's value replaced by ``(value, content)``.

    ``names`` are the parameters the binder's tuple holds, in order. Raises ``ValueError``
    for a name that is not one of them."""
    unknown = [name for name in files if name not in names]
    if unknown:
        raise ValueError(
            f"files= names {', '.join(map(repr, unknown))}, which "
            f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} of "
            f"{owner} (or {'is' if len(unknown) == 1 else 'are'} in ignore=); its keyed "
            f"parameters: {', '.join(names) or 'none'}"
        )
    at = tuple(names.index(name) for name in files)

    def paths(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        values = binder(*args, **kwargs)
        return tuple(values[i] for i in at)

    def bind(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        values = list(binder(*args, **kwargs))
        for i in at:
            try:
                values[i] = (values[i], content_digest(values[i]))
            except NotAPath:  # a frame: keyed by its value, as any argument (a
                values[i] = (values[i], "-")  # parameter taking a path or the data read)
            except NotAFile as exc:
                raise ValueError(
                    f"files= parameter {names[i]!r} of {owner} is {exc.args[0]!r}, "
                    f"{exc.args[1]}: its content cannot be hashed without reading it to the "
                    "end or taking it from the function; pass a regular file or a directory, "
                    f"or call {owner} without the cache (memojar.disabled)"
                ) from None
            except RemotePath as exc:
                # Before, keyed as a missing file ("-"): stored, and every later call
                # returned it, whatever became of the object.
                local = _file_url_path(exc.args[0])
                if local is not None:  # a file here: its path is what to pass (before,
                    raise ValueError(  # told of an object's ETag, as for s3://)
                        f"files= parameter {names[i]!r} of {owner} is the URL "
                        f"{exc.args[0]!r}: memojar follows a file by its path, not a "
                        f"file:// URL; pass its path, {local!r}"
                    ) from None
                raise ValueError(
                    f"files= parameter {names[i]!r} of {owner} is the URL {exc.args[0]!r}: "
                    "memojar follows files of this machine, and would never see the object "
                    f"change; leave {names[i]!r} out of files= and pass ttl= (recomputed "
                    "after a while) or key= returning the object's version (its ETag), or "
                    "pass a local copy's path"
                ) from None
        return tuple(values)

    bind.__dict__["paths"] = paths  # the path arguments of a call, unhashed (``files_state``)
    return bind


def files_state(paths: Iterable[Any]) -> tuple[Any, ...]:
    """What ``stat`` says of ``files=`` paths (of each name in a tree), taken when a call
    starts and compared when it returns: a file rewritten meanwhile with the content it had
    (another job regenerating an export truncates it, then writes it again) has the same
    content digest after the call as before, while the function may have read it empty or
    half written. Its ctime (and inode, if replaced) tells; the value is then not stored.

    A rewrite within one tick of the file system's clock after the ``stat`` leaving the
    same size and no other trace is not seen."""
    return tuple(_path_state(path) for path in paths)


def _path_state(path: Any, depth: int = 0) -> Any:
    if isinstance(path, dict) and depth < _NESTING:
        return tuple(_path_state(path[k], depth + 1) for k in _sorted_keys(path))
    if isinstance(path, _SEQUENCES) and depth < _NESTING:
        items = sorted(path, key=_sort_name) if isinstance(path, (set, frozenset)) else path
        return tuple(_path_state(item, depth + 1) for item in items)
    try:
        name = os.fspath(path)
        if isinstance(name, bytes):
            name = os.fsdecode(name)
    except TypeError:
        column = _column(path) if depth < _NESTING else None
        if column is None:
            return None
        return tuple(_path_state(item, depth + 1) for item in column)
    try:
        st = os.stat(name)
    except (OSError, ValueError):
        import glob

        if name.startswith("~") and os.path.expanduser(name) != name:
            return _path_state(os.path.expanduser(name), depth)
        if not glob.has_magic(name):
            return None
        return tuple((match, _path_state(match, _NESTING))
                     for match in sorted(glob.glob(name, recursive=True)))
    if not stat.S_ISDIR(st.st_mode):
        return _stat_state(st)
    found: list[Any] = []
    _tree_state(name, "", {(st.st_dev, st.st_ino)}, found)
    return tuple(found)


def _stat_state(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _tree_state(folder: str, rel: str, above: set[tuple[int, int]], out: list[Any],
                folder_row: Any = None) -> None:
    """``_walk_tree``'s walk, with each name's ``stat`` instead of its content."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        names = None
    if names is not None and _is_cache(folder, names):
        return  # left out, name and all (``_is_cache``)
    if folder_row is not None:
        out.append(folder_row)
    if names is None:
        out.append((rel, None))
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            st = os.stat(path)
        except OSError:
            out.append((rel + name, None))
            continue
        if not stat.S_ISDIR(st.st_mode):
            out.append((rel + name, _stat_state(st)))
            continue
        row = (rel + name, "folder")  # its names count, not its times (a temporary
        node = (st.st_dev, st.st_ino)  # file made and removed in it changes nothing read)
        if node in above:
            out.append(row)
        else:
            _tree_state(path, rel + name + "/", above | {node}, out, row)


class NotAFile(Exception):
    """A ``files=`` path that is a FIFO, a device or a socket: (path, what it is)."""


class RemotePath(Exception):
    """A ``files=`` path that names no file here and is a URL (``s3://b/data.parquet``):
    (the URL,)."""


def _file_url_path(url: str) -> str | None:
    """The local path a ``file://`` URL names, as a cache location's is read
    (``_location.file_path``), or None for another URL or one naming another host."""
    if url[:7].lower() != "file://":
        return None
    from ._location import file_path

    try:
        return file_path(url)
    except ValueError:
        return None


def _is_url(name: str) -> bool:
    scheme, sep, _ = name.partition("://")
    return bool(sep) and scheme[:1].isalpha() and all(
        c.isascii() and (c.isalnum() or c in "+.-") for c in scheme)


class NotAPath(Exception):
    """A ``files=`` argument that is neither a path, None, nor a list, tuple or set of
    paths: (what it is,)."""


_SEQUENCES = (list, tuple, set, frozenset)
_NESTING = 10  # levels of lists of lists of paths


_hashes: dict[str, tuple[tuple[int, ...], str]] = {}
# Bounded: a long-running process reading ever new files (a pipeline over a growing folder)
# keeps the digests of the last ``_HASHES_MAX`` files hashed, not of every file it ever read.
_HASHES_MAX = 1 << 16
_hashes_lock = threading.RLock()  # reentrant: a signal handler may hash a file meanwhile


def _unlock_in_child() -> None:
    """A forked child's own lock (a thread of the parent may have held it at the fork)."""
    global _hashes_lock
    _hashes_lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_unlock_in_child)
_OPEN = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_ABSENT = (errno.ENOENT, errno.ENOTDIR)  # no such path (other errors: there, unreadable)
UNREADABLE = "unreadable"  # the content digest of a path this user cannot read


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def content_digest(path: Any, depth: int = 0, again: bool = False) -> str:
    """A digest of a file's or a directory tree's content ("-" if it does not exist: the
    function meets the error itself, and an exception is never cached).

    A path starting with ``~`` that does not exist as it is counts as expanded
    (``os.path.expanduser``, as pandas reads it). A list or tuple of paths is the digest
    of each in order, a set of them each in the order of its name, a dict the digest of
    its values in the order of its keys (``{"train": "a.csv", "test": "b.csv"}``: before,
    keyed by its value only, and an edited file returned the old value); a pattern that names
    no file but matches some (``data/*.csv``, ``glob.glob`` with ``recursive=True``) the
    names and contents of its matches (before,
    both were "-": the files' contents were never in the key, and an edited file returned
    the old value).

    Raises ``NotAFile`` for a FIFO, a device or a socket: reading one would block (a FIFO
    with no writer), never end (``/dev/zero``) or take the data the function is to read;
    ``NotAPath`` for anything else that is not a path (a frame): keyed by its value
    instead, as any argument (a dict's values that are not paths count so too)."""
    if path is None:
        return "-"
    if isinstance(path, _SEQUENCES):
        return _many_digest(path, depth)
    if isinstance(path, dict):
        return _many_digest(path, depth)
    try:
        name = os.fspath(path)
    except TypeError:
        column = _column(path)
        if column is None:
            raise NotAPath(f"a {type(path).__name__}") from None
        return _many_digest(column, depth)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    try:
        st = os.stat(name)
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno not in _ABSENT:
            return UNREADABLE  # there, behind a folder this user may not enter
        if _is_url(name):
            raise RemotePath(name) from None
        if name.startswith("~") and os.path.expanduser(name) != name:
            # "~/data.csv": what pandas.read_csv and Path.expanduser read (before: "-",
            # and an edited file was never in the key)
            return content_digest(os.path.expanduser(name), depth)
        return _glob_digest(name)
    if stat.S_ISDIR(st.st_mode):
        return _tree_digest(name, st)
    found = _file_digest(name, st)
    if found is None:
        if stat.S_ISREG(st.st_mode) and not again:
            # A file at the stat and something else at the open: replaced meanwhile (a
            # folder made at the path by another thread or process). Looked at again, as
            # what it is now; before, the call raised that it is 'not a regular file'.
            return content_digest(path, depth, again=True)
        raise NotAFile(name, _kind(st.st_mode))
    return found


def _many_digest(paths: Any, depth: int) -> str:
    if depth >= _NESTING:
        raise NotAPath(f"a {type(paths).__name__} nested over {_NESTING} levels")
    if isinstance(paths, dict):  # its values, in the order of its keys (which the key holds)
        items = [paths[k] for k in _sorted_keys(paths)]
        digest = xxhash.xxh3_128(b"map")
    else:
        items = list(paths)
        if isinstance(paths, (set, frozenset)):
            items.sort(key=_sort_name)
        digest = xxhash.xxh3_128(b"many")
    for item in items:
        try:
            found = content_digest(item, depth + 1)
        except NotAPath:  # keyed by its value (the list is in the key too)
            found = "-"
        digest.update(found.encode() + b"\0")
    return digest.hexdigest()


def _column(value: Any) -> list[Any] | None:
    """The items of a sequence of paths held otherwise than in a list, tuple or set: a
    ``deque``, a ``UserList``, or a one-dimensional array of strings or objects (numpy's,
    a pandas Series or Index: ``df["path"]``, ``df["path"].values``; a polars Series of
    strings); None for anything
    else (a frame, an array of numbers: data, keyed by its value). Before, such a column
    was no path, keyed by the names it holds only: an edited file returned the old value,
    with no warning."""
    if isinstance(value, (collections.deque, collections.UserList)):
        return list(value)
    # Told by their library's module first: no attribute of another object is read (its
    # ``__getattr__`` may raise anything, or do anything).
    library = type(value).__module__.partition(".")[0]
    if library == "polars":  # a Series of paths
        if (type(value).__name__ == "Series"
                and str(getattr(value, "dtype", "")) in ("String", "Object", "Categorical")):
            return list(value)
        return None
    if library not in ("numpy", "pandas"):
        return None
    if getattr(value, "ndim", None) != 1 or getattr(getattr(value, "dtype", None), "kind",
                                                     None) not in ("O", "U", "S"):
        return None  # a frame, an array of numbers: data
    return list(value)


def _sorted_keys(table: dict[Any, Any]) -> list[Any]:
    """A dict's keys in an order that does not depend on its insertion order (equal dicts
    are one key) nor on the process (``repr`` of str and numbers)."""
    return sorted(table, key=lambda k: (type(k).__name__, repr(k)))


def _sort_name(path: Any) -> str:
    try:
        name = os.fspath(path)
    except TypeError:
        return repr(type(path))
    return os.fsdecode(name)


def _glob_digest(name: str) -> str:
    """"-" for a path that does not exist; for a glob pattern, its matches' names and
    contents."""
    import glob

    if not glob.has_magic(name):
        return "-"
    digest = xxhash.xxh3_128(b"glob")
    for match in sorted(glob.glob(name, recursive=True)):
        digest.update(os.fsencode(match) + b"\0" + content_digest(match).encode() + b"\0")
    return digest.hexdigest()


def _file_digest(name: str, st: os.stat_result) -> str | None:
    """The content digest of the regular file ``name`` (whose ``stat`` is ``st``): "-" if
    it was removed since, ``UNREADABLE`` if this user cannot read it, None if it is not a
    regular file (checked on the open descriptor, so a FIFO swapped in after the ``stat``
    is never read: opened without blocking). Before, an unreadable file was "-", keyed as
    a missing one: a function answering a missing file itself (``except
    FileNotFoundError``) had that answer returned for a file there, which it cannot read."""
    sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    found = _hashes.get(name)
    if found is not None and found[0] == sig:
        return found[1]
    if not stat.S_ISREG(st.st_mode):
        return None
    started = time.time()
    digest = xxhash.xxh3_128()
    try:
        fd = os.open(name, _OPEN)
    except OSError as exc:
        return "-" if exc.errno in _ABSENT else UNREADABLE
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            return None
        with open(fd, "rb", closefd=False) as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return UNREADABLE
    finally:
        os.close(fd)
    hexdigest = digest.hexdigest()
    sig = (opened.st_dev, opened.st_ino, opened.st_size, opened.st_mtime_ns,
           opened.st_ctime_ns)
    ctime = opened.st_ctime_ns
    coarse = not ctime % 1_000_000_000
    if coarse and ctime == opened.st_mtime_ns:
        # No change time of its own (FAT, sshfs: the modification time, which os.utime
        # sets back, and fusefat does not move on a write): its stat cannot tell an edit
        # that keeps the size. Before, the digest was kept, and the edited file's calls
        # returned the value of its old content. Read at each call.
        return hexdigest
    if started - ctime / 1e9 > (_RECENT_COARSE if coarse else _RECENT):
        with _hashes_lock:
            if name not in _hashes and len(_hashes) >= _HASHES_MAX:
                del _hashes[next(iter(_hashes))]  # the earliest hashed
            _hashes[name] = (sig, hexdigest)
    return hexdigest


def _tree_digest(root: str, st: os.stat_result) -> str:
    """A digest of a directory tree: every name in it (an empty folder too), and each
    regular file's content. Links are followed, to files and to folders (a folder reached
    twice on one path, a link loop, counts by name only); a FIFO, device or socket in the
    tree counts by its name and kind, never read. Marked as a folder's: a file's digest is
    bare hex (before, both were the hex digest of the bytes hashed, and an empty folder was
    keyed as an empty file)."""
    digest = xxhash.xxh3_128()
    _walk_tree(root, b"", {(st.st_dev, st.st_ino)}, digest)
    return "folder:" + digest.hexdigest()


def _walk_tree(folder: str, rel: bytes, above: set[tuple[int, int]], digest: Any,
               folder_row: bytes = b"") -> None:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        digest.update(folder_row + rel + b"\0unreadable\0")
        return
    if _is_cache(folder, names):
        return  # left out, name and all
    digest.update(folder_row)
    for name in names:
        path = os.path.join(folder, name)
        here = rel + os.fsencode(name)
        try:
            st = os.stat(path)
        except OSError:
            digest.update(here + b"\0missing\0")  # a dangling link, or removed meanwhile
            continue
        if stat.S_ISDIR(st.st_mode):
            node = (st.st_dev, st.st_ino)
            if node in above:
                digest.update(here + b"\0loop\0")
                continue
            _walk_tree(path, here + b"/", above | {node}, digest, here + b"\0folder\0")
            continue
        found = _file_digest(path, st)
        digest.update(here + b"\0" + (found or _kind(st.st_mode)).encode() + b"\0")


def _is_cache(folder: str, names: list[str]) -> bool:
    """True if ``folder`` (whose names are ``names``) is a memojar cache: left out of a
    tree, name and all (its entries, locks and statistics are memojar's, not the function's
    input). Before, a ``files=`` folder holding the cache (``files=("root",)`` called with
    ".", the cache in "./.cache") changed with every entry stored and every statistics
    write: no call ever hit, each stored another entry, and each warned that a file changed
    while the function ran (memojar's own). No system call for a folder without the tag."""
    if _CACHE_TAG not in names:
        return False
    from ._filestore import is_cache_dir

    return is_cache_dir(folder)


_CACHE_TAG = "CACHEDIR.TAG"  # ``_filestore._TAG``


# --- result classes -------------------------------------------------------------------

def result_classes(classes: set[Any]) -> bytes:
    """The result-classes section of an entry: the user's classes among ``classes`` (what
    the pickler met) with their fingerprints, or ``b""`` when there are none. Functions of
    the user's code it met are rows too (``function name fingerprint``): unpickling runs
    one a class's ``__reduce__`` names to rebuild its instances, whose code is in no
    method of the class."""
    if not classes:
        return b""
    from ._entry import CLASSES
    from ._identity import class_identity, function_identity

    rows = []
    for cls in classes:
        if not is_user_module(getattr(cls, "__module__", None) or "__main__"):
            continue
        if type(cls) is not FunctionType and not _of_python_code(cls):
            continue
        if type(cls) is FunctionType:
            found = function_identity(cls)
            if found is not None:
                rows.append(f"function {found[0]} {found[1]}")
            continue
        found = class_identity(cls)
        if found is not None:
            rows.append(f"class {found[0]} {found[1]}")
    if not rows:
        return b""
    return CLASSES + "\n".join(sorted(rows)).encode()


_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: made at run time (a class statement, or C)
_IMMUTABLETYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE: a C extension's, never a class statement's


def _of_python_code(cls: Any) -> bool:
    """Whether ``cls`` is a class a ``class`` statement can have made: not a compiled
    extension's type, whose module may have no file and so pass for the user's (Cython's
    shared ``_cython_3_X_Y``, whose function type every pandas frame pickles). Before, such
    a type was a result class: a process that had not imported its module found the row
    could not be imported and missed, so a function importing pandas in its body never
    hit across processes."""
    flags = getattr(cls, "__flags__", 0)
    return bool(flags & _HEAPTYPE) and not flags & _IMMUTABLETYPE


_sections: dict[bytes, list[tuple[str, str, str]]] = {}
# Bounded: a notebook cell defining a class, run again and again, made a new record (its
# fingerprint) per run, each kept for the life of the kernel. The latest parsed are kept.
_SECTIONS_MAX = 1024


def changed_result_class(section: bytes) -> str | None:
    """None if every class (and rebuilding function) a stored result holds is as it was,
    else which one changed.

    Each class is looked up by name at every such hit (a notebook cell run again defines a
    new class under the old name) and its fingerprint is computed once per class object and
    process (``class_identity``); a section is parsed once. A result without classes of the
    user's code never comes here."""
    from ._entry import CACHE_WRAPPER, Miss, parse_rows
    from ._identity import class_identity, function_identity

    rows = _sections.get(section)
    if rows is None:
        parsed = parse_rows(section.decode(errors="replace"))
        rows = sorted((name, kind, fp) for name, (kind, fp) in parsed.items())
        if len(_sections) >= _SECTIONS_MAX:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):  # emptied, or
                del _sections[next(iter(_sections))]  # changed by another thread meanwhile
        _sections[section] = rows
    for name, kind, fingerprint in rows:
        what = "result function" if kind == "function" else "result class"
        try:
            cls = _find_class(name)
        except ImportError as exc:  # missing here, maybe not elsewhere: keep the entry
            raise Miss(f"{what} {name} cannot be imported: {exc}") from exc
        except Exception as exc:  # its module fails: a miss, as unpickling would make it
            raise Miss(f"{what} {name} does not load: {type(exc).__name__}: {exc}"
                       ) from exc
        if type(cls) is CACHE_WRAPPER:  # its function is the row (``_SeeingPickler``)
            cls = cls.__wrapped__
        if kind == "function":
            found = function_identity(cls) if type(cls) is FunctionType else None
        else:
            found = class_identity(cls) if isinstance(cls, type) else None
        if found is None:
            return f"{what} {name} no longer exists"
        if found[1] != fingerprint:
            return f"{what} {name} changed"
    return None


def _find_class(name: str) -> Any:
    """The class ``module.qualname`` names, importing its module as unpickling would.

    Raises ``ImportError`` when no prefix of the name imports (the module is missing in this
    process: the entry is another environment's to use, not to be deleted)."""
    import importlib
    import sys

    parts = name.split(".")
    failure: ImportError | None = None
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        module = sys.modules.get(module_name)
        if module is None and module_name != "__main__":
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:  # a shorter name may be the module
                failure = failure or exc
                continue
        if module is None:
            continue
        owner: Any = module
        for part in parts[cut:]:
            owner = getattr(owner, part, None)
        return owner
    if failure is not None:
        try:
            raise failure
        finally:  # this frame is in its traceback: no cycle left to the collector
            del failure
    return None


# --- cache_explain --------------------------------------------------------------------

_KIND_WORDS = {"function": "helper", "class": "class", "constant": "constant",
               "package": "package", "value": "depends_on value", "library": "library callable",
               "cached": "cached helper"}


def utc(timestamp: float) -> str:
    from ._report import utc  # imports datetime: not at ``import memojar``

    return utc(timestamp).strftime("%Y-%m-%dT%H:%M:%SZ")


def explain_absent(memo: Any, values: tuple[Any, ...], ident: bytes) -> str:
    """No entry for this call: say if another Python version's entry exists for it, or
    another closure's or lambda's of the same name (``_identity.sibling_of``)."""
    from ._entry import PYTHON, key_seed, read_header
    from ._identity import family_of, place_of
    from ._keys import holds_code, make_key

    keys: dict[str, str] = {}  # the call's key under each sibling's scope
    older: Any = None  # the newest entry of this scope and Python written by other code
    ours = False  # an entry of this code, scope and Python exists (for other arguments)
    try:
        for stored in memo.store.scan(memo.name):
            try:
                header = read_header(stored.head)
            except Exception:  # noqa: BLE001 - an unreadable entry is not this call's
                continue
            if (header.python == PYTHON and header.scope == memo.scope
                    and header.ident != ident
                    and (older is None or header.created > older.created)):
                older = header
            ours = ours or (header.python == PYTHON and header.scope == memo.scope
                            and header.ident == ident)
            if (header.python != PYTHON and header.scope == memo.scope
                    and make_key(values, key_seed(memo.scope, header.python)) == header.key):
                return (f"miss: no entry for this Python ({PYTHON}); Python {header.python} "
                        "stored one (each Python version keeps its own)")
            if (header.python == PYTHON and header.scope != memo.scope
                    and place_of(header.scope) == memo.place
                    and (keys.get(header.scope) or keys.setdefault(
                        header.scope, make_key(values, key_seed(header.scope)))) == header.key):
                if memo.name.endswith("<lambda>"):
                    what = "another lambda of this name (other code or captured values)"
                elif family_of(memo.name, header.scope) != family_of(memo.name, memo.scope):
                    return f"incompatible: the code of {memo.name} changed"
                else:
                    what = "a closure of this name capturing other values"
                return f"miss: no entry for these arguments; {what} stored one (each keeps its own)"
    except (OSError, TypeError, ValueError):
        pass
    if older is not None and holds_code(values):
        # A function or instance of the user's code among the arguments keys with what it
        # depends on (``_identity.argument_identity``): an edit of it is another key, not an
        # incompatible entry. Say what changed since the entries there are were written.
        return ("miss: no entry for these arguments; the stored ones are of other code: "
                + _since(memo, older, ident))
    if ours and holds_code(values):
        # The function's own code is the entries', so no stored entry tells what an edit of
        # the code the arguments hold changed: their keys cannot be made again. Say that the
        # key covers it (before: a bare "no entry" after an edit of a helper it calls).
        names = _code_named(values)
        return ("miss: no entry for these arguments; they hold "
                + (", ".join(names) if names else "code") + " of your code, and the key "
                "covers it and what it calls: an edit of either is another key")
    if ours and getattr(memo, "files", None):
        # The same for the content of the paths ``files=`` names, which the key covers
        return ("miss: no entry for these arguments; the key covers the content of the "
                f"files= paths ({', '.join(memo.files)}): an edited file is another key")
    return "miss: no entry for these arguments"


def _code_named(values: tuple[Any, ...]) -> list[str]:
    """The names of the functions and classes of the user's code ``values`` hold (an
    instance's class too), sorted, at most three; empty if they cannot be listed."""
    noting = _Noting(io.BytesIO(), 5)
    try:
        noting.dump(values)
    except Exception:  # noqa: BLE001 - a value pickle cannot take: the names found so far
        pass
    return sorted(noting.names)[:3]


class _Noting(pickle.Pickler):
    """Notes the names of the user's functions and classes it meets (``_code_named``).
    A class of its own, not one made at each call: a class is a cycle (its ``__mro__``,
    its ``__dict__``'s descriptors) only the collector frees, made by every such line of
    ``cache_explain``."""

    def __init__(self, file: Any, protocol: int) -> None:
        super().__init__(file, protocol)
        self.names: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        found = code_behind(obj)
        if is_user_module(getattr(found, "__module__", None) or "__main__"):
            self.names.add(function_name(found))
        return NotImplemented


def _since(memo: Any, header: Any, ident: bytes) -> str:
    """What differs between an entry's identity and the function's now (its version, or
    what its manifest names)."""
    from ._entry import version_tag

    current = version_tag(memo.version)
    if header.version != current:
        return f"the version changed ({_tag(header.version)} -> {_tag(current)})"
    if not header.manifest:
        return "the code changed"
    return changes(header.manifest, _manifest_text(ident), memo.name)


def explain_miss(memo: Any, data: Any, reason: str, ident: bytes) -> str:
    """Why the entry stored for a call cannot be used, naming what changed."""
    from ._entry import CLOCK_SKEW, PYTHON, Miss, read_header, version_tag

    try:
        header = read_header(data)
    except Miss:
        return f"miss: the entry is unusable ({reason})"
    if reason == "stale":
        if header.created > time.time() + CLOCK_SKEW:
            return (f"stale: created {utc(header.created)}, later than this clock (a clock "
                    "ahead of it wrote it, or it was set back): its age is unknown")
        ends = [t for t in (header.expires, memo.ttl and header.created + memo.ttl) if t]
        if not ends:
            return "stale"
        swr = getattr(memo, "swr", None)
        if swr and time.time() < min(ends) + swr:  # what the call does: ``_stale``
            return (f"stale: expired {utc(min(ends))}; returned at once and recomputed in "
                    f"the background (stale_while_revalidate, until {utc(min(ends) + swr)})")
        return f"stale: expired {utc(min(ends))}"
    if header.python != PYTHON:
        return f"incompatible: written by Python {header.python}, this is Python {PYTHON}"
    if reason.startswith(("result class", "result function")):
        return f"incompatible: {reason}"
    current = version_tag(memo.version)
    if header.version != current:
        return (f"incompatible: the version changed ({_tag(header.version)} -> "
                f"{_tag(current)})")
    if header.ident != ident:
        if not header.manifest:
            return "incompatible: the code changed (the entry lists no dependencies)"
        return "incompatible: " + changes(header.manifest, _manifest_text(ident), memo.name)
    return f"miss: {reason}"


def changes(old_manifest: str, new_manifest: str, function: str) -> str:
    """What differs between two manifests (an entry's and the current code's, or an older
    entry's and the newest one's), most telling first: the function's own code, then each
    helper, class, constant, package or value by name."""
    from ._entry import row_list

    # Every row of a name (a decorator's wrapper and the function it wraps share theirs):
    # before, the last alone, and an edit of the other was "the code changed", unnamed.
    old: dict[str, list[tuple[str, str]]] = {}
    new: dict[str, list[tuple[str, str]]] = {}
    for rows, manifest in ((old, old_manifest), (new, new_manifest)):
        for kind, name, fingerprint in row_list(manifest):
            rows.setdefault(name, []).append((kind, fingerprint))
    found = []
    for name in sorted(old.keys() | new.keys(), key=lambda n: (n != "", n)):
        was_all, now_all = old.get(name), new.get(name)
        if was_all is not None and now_all is not None and sorted(was_all) == sorted(now_all):
            continue
        was = was_all[0] if was_all else None
        now = now_all[0] if now_all else None
        kind = (now or was)[0]  # type: ignore[index]
        word = _KIND_WORDS.get(kind, kind)
        if kind == "code":
            found.append(f"the code of {name or function} changed")
        elif kind == "memojar":  # an entry of a memojar whose keys meant otherwise
            found.append(f"memojar's {name} changed (an upgrade: computed once again)")
        elif kind == "package" and was and now:
            found.append(f"package {name} {was[1]} -> {now[1]}")
        elif was is None:
            found.append(f"{word} {name} is new")
        elif now is None:
            found.append(f"{word} {name} is no longer used")
        else:
            found.append(f"{word} {name} changed")
    return "; ".join(found) or "the code changed"


def _tag(tag: str) -> str:
    return repr(tag.partition(":")[2]) if tag.startswith("str:") else (
        tag.partition(":")[2] or "none")


def _manifest_text(ident: bytes) -> str:
    from ._entry import MANIFEST

    text: str = ident.partition(MANIFEST)[2].decode(errors="replace")
    return text
