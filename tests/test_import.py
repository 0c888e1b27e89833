"""``import memojar`` stays light: it imports neither ``logging`` nor ``datetime`` (nor
``inspect``, ``secrets`` or ``platform``, which it needs only to decorate, name or send), and the
"memojar" logger behaves as it did when ``logging`` was imported with memojar. Each test runs
a fresh interpreter: pytest itself imports ``logging``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conftest import run_python


def _run(code: str) -> str:
    return run_python(textwrap.dedent(code))


def test_import_memojar_imports_neither_logging_nor_datetime() -> None:
    # nor inspect (with ast, tokenize), secrets (with hmac, hashlib, random) or platform:
    # imported at the top by modules that use them only to decorate, to name a writer or
    # to send a copy, they made the import 169.2 M instructions, 124.2 M without
    out = _run("""
        import sys
        import memojar
        print(sorted({"logging", "datetime", "textwrap", "traceback", "inspect", "ast",
                      "secrets", "hmac", "random", "platform"} & set(sys.modules)))
    """)
    assert out.split() == ["[]"]


def test_the_first_miss_and_hit_of_a_function_import_nothing(tmp_path: Path) -> None:
    """A cached function's first miss and hit import no module: an import takes Python's
    import lock outside the ``try`` that gives it back, so a Ctrl-C landing just after left
    it held for good, and every import of every other thread waited for ever. Before, the
    first miss imported ``resource`` (a storm of interrupts on the main thread of four
    threads calling cached functions: a hang in 1 run of 8 on Python 3.10)."""
    out = _run(f"""
        import sys
        from memojar import Cache
        cache = Cache({str(tmp_path)!r})

        @cache.cached
        def f(x):
            return x

        before = set(sys.modules)
        f(1), f(1), f(2)
        print(sorted(set(sys.modules) - before))
    """)
    assert out.split() == ["[]"]


def test_a_logger_configured_after_import_memojar_gets_every_record_from_its_line() -> None:
    out = _run("""
        import json, os, sys, tempfile
        import memojar
        assert "logging" not in sys.modules
        import logging
        records = []

        class Keep(logging.Handler):
            def emit(self, record):
                records.append((record.getMessage().split()[0], record.levelno,
                                os.path.basename(record.pathname)))

        log = logging.getLogger("memojar")
        log.setLevel(logging.DEBUG)
        log.addHandler(Keep())
        f = memojar.Cache(tempfile.mkdtemp()).cached(lambda x: x + 1)
        assert f(1) == f(1) == 2
        print(json.dumps([records, [type(h).__name__ for h in log.handlers]]))
    """)
    records, handlers = json.loads(out)
    assert [r[:2] for r in records] == [["miss", 10], ["store", 10], ["hit", 10]]
    assert {r[2] for r in records} == {"_decorator.py"}  # the caller's file, not _errors.py
    assert sorted(handlers) == ["Keep", "NullHandler"]  # memojar's one NullHandler


def test_logging_imported_before_memojar_has_its_null_handler_at_import() -> None:
    out = _run("""
        import logging
        import memojar
        print([type(h).__name__ for h in logging.getLogger("memojar").handlers])
    """)
    assert out.strip() == "['NullHandler']"


def test_a_fault_warned_before_logging_is_imported_is_a_warning_and_imports_nothing() -> None:
    out = _run("""
        import sys, warnings
        import memojar
        from memojar._errors import warn
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warn("the disk is full")
        print([str(w.message) for w in caught], "logging" in sys.modules)
    """)
    assert out.strip() == "['the disk is full'] False"


def test_a_fault_with_logging_imported_but_not_configured_prints_no_log_line() -> None:
    """The NullHandler, added when the logger is first used, keeps logging's last-resort
    handler from printing the warning's text a second time on stderr."""
    out = _run("""
        import io, sys, warnings
        import memojar
        import logging
        from memojar._errors import warn
        sys.stderr = io.StringIO()
        warnings.simplefilter("ignore")
        warn("the disk is full")
        print(repr(sys.stderr.getvalue()))
    """)
    assert out.strip() == "''"


def test_debug_is_off_and_warning_on_until_logging_is_configured() -> None:
    out = _run("""
        import sys
        import memojar
        from memojar._errors import logger
        before = (logger.isEnabledFor(10), logger.isEnabledFor(30), "logging" in sys.modules)
        import logging
        logging.getLogger("memojar").setLevel(logging.DEBUG)
        print(before, logger.isEnabledFor(10))
    """)
    assert out.strip() == "(False, True, False) True"


def test_once_logging_is_imported_every_memojar_module_logs_to_the_real_logger() -> None:
    """So the hit path's ``logger.isEnabledFor(DEBUG)`` is the logger's own method, as when
    memojar imported ``logging`` itself: imported before memojar, or after it."""
    out = _run("""
        import tempfile
        import memojar
        import logging
        f = memojar.Cache(tempfile.mkdtemp()).cached(lambda x: x + 1)
        f(1)
        from memojar import _decorator, _errors, _store
        real = logging.getLogger("memojar")
        print(all(m.logger is real for m in (_decorator, _errors, _store)))
    """)
    assert out.strip() == "True"
    out = _run("""
        import logging
        from memojar import _decorator, _errors
        real = logging.getLogger("memojar")
        print(_decorator.logger is real and _errors.logger is real)
    """)
    assert out.strip() == "True"


def test_a_child_forked_while_a_thread_makes_the_real_logger_does_not_hang() -> None:
    # A thread is inside the stand-in's first load (its addHandler made slow through the
    # public setLoggerClass) when the program forks: the child inherits the lock held.
    out = _run("""
        import os, tempfile, threading, time
        import memojar
        import logging

        class SlowLogger(logging.Logger):
            def addHandler(self, handler):
                time.sleep(1.0)
                super().addHandler(handler)

        logging.setLoggerClass(SlowLogger)
        f = memojar.Cache(tempfile.mkdtemp()).cached(lambda x: x + 1)
        thread = threading.Thread(target=f, args=(1,))
        thread.start()
        time.sleep(0.3)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if f(2) == 3 else 1)
        thread.join()
        for _ in range(100):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print("exit", os.waitstatus_to_exitcode(status))
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            print("hung")
    """)
    assert out.split() == ["exit", "0"]


def test_the_first_log_neither_loads_nor_fails_on_a_users_lazy_module(tmp_path: Path) -> None:
    # importlib.util.LazyLoader: the module runs at its first attribute access (__name__ too).
    (tmp_path / "lazymod.py").write_text("print('loaded')\nraise ImportError('no backend')\n")
    out = _run(f"""
        import importlib.util, sys, tempfile
        import memojar
        import logging

        sys.path.insert(0, {str(tmp_path)!r})
        spec = importlib.util.find_spec("lazymod")
        spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules["lazymod"] = module
        spec.loader.exec_module(module)
        f = memojar.Cache(tempfile.mkdtemp()).cached(lambda x: x + 1)
        print(f(1), f(1))
    """)
    assert out.split() == ["2", "2"]


def test_the_all_extra_is_the_union_of_the_other_extras_but_dev() -> None:
    # ``pip install 'memojar[all]'``: every store and the notebook magic at once; an extra
    # added later and left out of it would be missed silently.
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    others = {name: set(extras[name]) for name in extras if name not in ("all", "dev")}
    assert "all" in extras
    assert set(extras["all"]) == set().union(*others.values())
    assert len(extras["all"]) == len(set(extras["all"]))
