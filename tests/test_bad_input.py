"""Bad arguments fail at decoration or construction time, with a message that says why."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

from memojar import Cache, cached


def f(x, y=1):
    return x + y


def test_a_cache_method_given_arguments_it_takes_none_of_is_named_as_called(
    cache_dir: Path,
) -> None:
    """Before, "make_wrapper.<locals>.cache_clear() takes 0 positional arguments"."""
    g = cached(cache_dir=cache_dir)(f)
    with pytest.raises(TypeError, match=r"^f\.cache_clear\(\) takes 0 positional"):
        g.cache_clear("a")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"^f\.cache_info\(\) takes 0 positional"):
        g.cache_info(1)  # type: ignore[call-arg]


# --- ttl ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "ttl", [0, -1, 0.0, -0.5, dt.timedelta(0), dt.timedelta(seconds=-5), float("inf"),
            float("nan")],
    ids=repr,
)
def test_ttl_must_be_positive_and_finite(cache_dir: Path, ttl: Any) -> None:
    with pytest.raises(ValueError, match=r"ttl= must be a positive, finite duration"):
        cached(cache_dir=cache_dir, ttl=ttl)


@pytest.mark.parametrize("ttl", ["60", b"60", True, [60], object()], ids=repr)
def test_ttl_of_another_type(cache_dir: Path, ttl: Any) -> None:
    with pytest.raises(TypeError, match=r"ttl= must be seconds \(int or float\) or a "
                                        r"datetime.timedelta, not"):
        cached(cache_dir=cache_dir, ttl=ttl)


def test_bad_ttl_on_a_cache_object(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match="ttl="):
        Cache(cache_dir).cached(ttl=-3)


def test_bad_ttl_fails_before_any_function_is_given(cache_dir: Path) -> None:
    calls: list[int] = []
    with pytest.raises(ValueError, match="ttl="):
        @cached(cache_dir=cache_dir, ttl=0)
        def g():
            calls.append(1)
    assert calls == []


# --- what is decorated --------------------------------------------------------------------

@pytest.mark.parametrize("thing", [42, "f", 3.5, [f]], ids=["int", "str", "float", "list"])
def test_decorating_a_non_callable(cache_dir: Path, thing: Any) -> None:
    with pytest.raises(TypeError, match=r"cached needs a function to decorate, not"):
        cached(thing)
    with pytest.raises(TypeError, match=r"cached needs a function to decorate, not"):
        cached(cache_dir=cache_dir)(thing)
    with pytest.raises(TypeError, match=r"cached needs a function to decorate, not"):
        Cache(cache_dir).cached(thing)


def test_bare_form_error_suggests_keywords() -> None:
    with pytest.raises(TypeError, match=r"call it with keywords: @cached\(ttl=60\)"):
        cached(60)  # type: ignore[call-overload]


# --- options of other names -----------------------------------------------------------

@pytest.mark.parametrize(("make", "said"), [
    (lambda d: cached(cache_dir=d, tll=5), r"^cached\(\) got an unexpected keyword argument "
                                          r"'tll': did you mean ttl=\?$"),
    (lambda d: Cache(d).cached(ignored=("x",)), r"'ignored': did you mean ignore=\?$"),
    (lambda d: Cache(d, maxsize=10), r"^Cache\(\) .* 'maxsize': did you mean max_size=\?$"),
])
def test_a_mistyped_option_is_named_with_the_option_meant(
    cache_dir: Path, make: Any, said: str
) -> None:
    """Before, Python's plain "unexpected keyword argument 'tll'", which names no option."""
    with pytest.raises(TypeError, match=said):
        make(cache_dir)


@pytest.mark.parametrize(("option", "said"), [
    ("maxsize", r"'maxsize': memojar calls it memory= \(the results this process also keeps"),
    ("expire", r"'expire': memojar calls it ttl=$"),
    ("stale_after", r"'stale_after': memojar calls it ttl=$"),
    ("location", r"'location': memojar calls it cache_dir=$"),
    ("typed", r"'typed': memojar needs none: keys always tell 1, 1.0 and True apart$"),
])
def test_another_memoizers_option_is_named_as_memojar_calls_it(option: str, said: str) -> None:
    with pytest.raises(TypeError, match=said):
        cached(**{option: 1})


def test_a_cache_told_another_memoizers_size_option_names_max_size(cache_dir: Path) -> None:
    with pytest.raises(TypeError, match=r"'size_limit': memojar calls it max_size=$"):
        Cache(cache_dir, size_limit=2**20)  # diskcache's name


@pytest.mark.parametrize(("option", "said"), [
    # joblib's Memory(location=): before, "did you mean lock_timeout=?"
    ("location", r"'location': memojar calls it directory=$"),
    # cachier's max_age: before, "did you mean max_size=?", a bound in bytes
    ("max_age", r"'max_age': memojar calls it ttl=, an option of each function: "
                r"@cache.cached\(ttl=\.\.\.\)$"),
    ("expire", r"'expire': memojar calls it ttl=, an option of each function: "
               r"@cache.cached\(ttl=\.\.\.\)$"),
])
def test_a_cache_told_another_memoizers_option_names_memojars_never_a_lookalike(
    cache_dir: Path, option: str, said: str
) -> None:
    with pytest.raises(TypeError, match=said):
        Cache(cache_dir, **{option: 3600})


def test_cached_told_a_caches_option_of_another_memoizer_names_where_it_goes() -> None:
    with pytest.raises(TypeError, match=r"'size_limit': memojar calls it max_size=, an option "
                                        r"of the cache: Cache\(directory, max_size=\.\.\.\)$"):
        cached(size_limit=2**20)


def test_an_unknown_option_lists_the_options_there_are() -> None:
    with pytest.raises(TypeError, match=r"'colour' \(it takes cache_dir=, ttl=, version=, "
                                        r"ignore=, key=, depends_on=, files=, "
                                        r"stale_while_revalidate=, min_compute_time=, "
                                        r"memory=\)$"):
        cached(colour="blue")


# --- ignore / key -------------------------------------------------------------------------

def test_ignore_naming_a_missing_parameter(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"ignore= names 'z', which is not a parameter of "
                                         r"f\(x, y=1\); allowed: 'x', 'y'"):
        cached(cache_dir=cache_dir, ignore=("z",))(f)


def test_ignore_naming_several_missing_parameters(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"'a', 'b', which are not parameters"):
        cached(cache_dir=cache_dir, ignore=("a", "x", "b"))(f)


def test_ignore_as_a_single_missing_name(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match="ignore= names 'self'"):
        cached(cache_dir=cache_dir, ignore="self")(f)


def test_ignore_with_a_name_that_is_not_a_str(cache_dir: Path) -> None:
    with pytest.raises(TypeError, match=r"ignore= takes parameter names \(str\)"):
        cached(cache_dir=cache_dir, ignore=(1,))  # type: ignore[arg-type]


def test_ignore_naming_a_keyword_of_var_keyword_says_what_to_do(cache_dir: Path) -> None:
    # ignore= takes parameter names, as joblib's: a keyword passed through **options is not
    # one (and a typo must not pass). Before, the error listed 'options' as allowed and said
    # no more.
    def g(x, **options):
        return x

    with pytest.raises(ValueError, match=r"ignore= names 'verbose', which is not a parameter "
                                         r".*; a keyword passed through \*\*options is not a "
                                         r"parameter: ignore=\('options',\) leaves out all of "
                                         r"them, or pass key= a function of the same arguments "
                                         r"returning what to hash \(options without "
                                         r"'verbose'\)"):
        cached(cache_dir=cache_dir, ignore=("verbose",))(g)


def test_key_that_is_not_callable(cache_dir: Path) -> None:
    with pytest.raises(TypeError, match="key= must be a callable, not str"):
        cached(cache_dir=cache_dir, key="x")  # type: ignore[arg-type]


def test_key_and_ignore_together(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match="pass ignore= or key=, not both"):
        cached(cache_dir=cache_dir, key=lambda x, y=1: x, ignore=("y",))


# --- version ------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [1.0, b"1", True, (1, 2), ["1"]], ids=repr)
def test_version_of_another_type(cache_dir: Path, version: Any) -> None:
    with pytest.raises(TypeError, match=r"version= must be a str or an int, not"):
        cached(cache_dir=cache_dir, version=version)


@pytest.mark.parametrize("version", [None, 0, 7, "", "2024-01"], ids=repr)
def test_version_str_int_or_none_is_accepted(cache_dir: Path, version: Any) -> None:
    assert cached(cache_dir=cache_dir, version=version)(f)(1) == 2


# --- max_size -----------------------------------------------------------------------------

@pytest.mark.parametrize("max_size", [0, -1, -(2**40)], ids=repr)
def test_max_size_must_be_positive(cache_dir: Path, max_size: int) -> None:
    with pytest.raises(ValueError, match=r"max_size= must be a positive number of bytes, got"):
        Cache(cache_dir, max_size=max_size)


@pytest.mark.parametrize("max_size", [1.5, "1000", True], ids=repr)
def test_max_size_must_be_a_whole_number(cache_dir: Path, max_size: Any) -> None:
    with pytest.raises(TypeError, match=r"max_size= must be a whole number of bytes, not"):
        Cache(cache_dir, max_size=max_size)


def test_sizes_and_durations_computed_with_numpy_are_taken(cache_dir: Path) -> None:
    # A size or a duration a data scientist computed with numpy (np.int64, np.int32) was
    # refused: "max_size= must be a whole number of bytes, not int64".
    np = pytest.importorskip("numpy")
    cache = Cache(cache_dir, max_size=np.int64(2**30), lock_timeout=np.int32(5))
    assert cache.max_size == 2**30 and type(cache.max_size) is int
    assert cache.lock_timeout == 5.0

    @cache.cached(ttl=np.int32(60), memory=np.int64(10), min_compute_time=np.float32(0))
    def double(x: int) -> int:
        return 2 * x

    assert double(2) == 4 and double(2) == 4
    assert double.cache_info().hits == 1


@pytest.mark.parametrize("option", ["ttl", "memory", "min_compute_time"])
def test_a_bool_is_not_a_number_of_seconds_or_results(cache_dir: Path, option: str) -> None:
    with pytest.raises(TypeError, match=rf"{option}= must be .*, not bool"):
        cached(cache_dir=cache_dir, **{option: True})


def test_sizes_and_durations_as_text_say_how_to_write_them(cache_dir: Path) -> None:
    # A data scientist's first try, max_size="1GB" or ttl="1h", was told only "not str".
    with pytest.raises(TypeError, match=r"not str \('1GB'\): e\.g\. max_size=2\*\*30 for 1 GiB"):
        Cache(cache_dir, max_size="1GB")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"not str \('1h'\): e\.g\. ttl=3600 or "
                                        r"ttl=timedelta\(hours=1\)"):
        cached(cache_dir=cache_dir, ttl="1h")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"e\.g\. stale_while_revalidate=3600"):
        cached(cache_dir=cache_dir, ttl=60, stale_while_revalidate="10m")  # type: ignore[call-overload]


# --- cache_dir ----------------------------------------------------------------------------

def test_cache_dir_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_text("not a directory")
    with pytest.raises(ValueError, match=r"cache_dir .*a-file.* is a file, not a directory"):
        Cache(path)
    with pytest.raises(ValueError, match=r"is a file, not a directory"):
        cached(cache_dir=path)
    assert path.read_text() == "not a directory"


def test_cache_dir_under_a_file_fails_on_write_not_on_the_caller(tmp_path: Path) -> None:
    from memojar import MemojarWarning

    path = tmp_path / "a-file"
    path.write_text("x")
    g = cached(cache_dir=path / "sub")(f)
    with pytest.warns(MemojarWarning, match="not cached"):
        assert g(1) == 2


# --- secret -------------------------------------------------------------------------------

@pytest.mark.parametrize("secret", [123, ["k"]], ids=repr)
def test_secret_of_another_type(cache_dir: Path, secret: Any) -> None:
    with pytest.raises(TypeError, match="secret= must be bytes or str"):
        Cache(cache_dir, secret=secret)


@pytest.mark.parametrize("secret", ["", b""], ids=repr)
def test_empty_secret(cache_dir: Path, secret: Any) -> None:
    with pytest.raises(ValueError, match="secret= must not be empty"):
        Cache(cache_dir, secret=secret)


# --- nothing is created by a failed construction ------------------------------------------

def test_bad_arguments_create_no_directory(tmp_path: Path) -> None:
    target = tmp_path / "never"
    for kwargs in ({"ttl": 0}, {"version": 1.5}, {"ignore": ("nope",)}):
        with pytest.raises((TypeError, ValueError)):
            cached(cache_dir=target, **kwargs)(f)
    with pytest.raises(ValueError):
        Cache(target, max_size=0)
    assert not target.exists()


# --- options given None, the wrong type or an empty value ---------------------------------

@pytest.mark.parametrize("option", ["ignore", "files"])
@pytest.mark.parametrize("value", [b"x", 3], ids=repr)
def test_names_option_of_another_type_names_the_option(
    cache_dir: Path, option: str, value: Any
) -> None:
    # b"x" said "takes parameter names (str), got 120" (its first byte).
    with pytest.raises(TypeError, match=rf"{option}= takes parameter names .* not "
                                        rf"{type(value).__name__}; pass \(\) for none"):
        cached(cache_dir=cache_dir, **{option: value})


@pytest.mark.parametrize("option", ["ignore", "files", "depends_on"])
def test_none_for_ignore_files_or_depends_on_means_none(cache_dir: Path, option: str) -> None:
    # joblib's Memory.cache(ignore=None) is its default. Before, ignore=None and files=None
    # raised TypeError while depends_on=None was taken as a plain value the function
    # depends on: another identity, so it never hit the entries of the same function
    # decorated without it.
    cached(cache_dir=cache_dir)(f)(1)
    g = cached(cache_dir=cache_dir, **{option: None})(f)
    assert g.cache_explain(1).startswith("hit"), g.cache_explain(1)


def test_files_naming_an_ignored_parameter(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"files= names 'x', which is not a parameter of "
                                         r".*f \(or is in ignore=\); its keyed parameters: y"):
        cached(cache_dir=cache_dir, files=("x",), ignore=("x",))(f)


@pytest.mark.parametrize("make", [lambda v: cached(cache_dir=v), lambda v: Cache(v)],
                         ids=["cache_dir", "directory"])
@pytest.mark.parametrize("value", [123, 1.5, ["/tmp/x"]], ids=repr)
def test_location_of_another_type_names_the_argument(make: Any, value: Any) -> None:
    # It said "expected str, bytes or os.PathLike object, not int".
    with pytest.raises(TypeError, match=r"(cache_dir|directory)= must be a directory path "
                                        r"\(str or os.PathLike\) or a URL"):
        make(value)


@pytest.mark.parametrize("make", [lambda v: cached(cache_dir=v), lambda v: Cache(v)],
                         ids=["cache_dir", "directory"])
def test_empty_location_is_an_error_not_the_working_directory(
    make: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # '' was the current directory (abspath('')), refused as a folder memojar did not create
    # with a message about that folder rather than about the empty argument.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"(cache_dir|directory)= is an empty path"):
        make("")
    # Blank: a folder named "  " was made (the command line refuses `--dir "  "` already).
    with pytest.raises(ValueError, match=r"(cache_dir|directory)= is an empty path"):
        make("  ")
    assert list(tmp_path.iterdir()) == []


def test_a_bad_memojar_dir_is_named_as_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MEMOJAR_DIR=. in a project folder: the error spoke of "cache_dir", which the user had
    # never passed.
    project = tmp_path / "project"
    project.mkdir()
    (project / "data.csv").write_text("a,b\n")
    monkeypatch.setenv("MEMOJAR_DIR", str(project))
    with pytest.raises(ValueError, match=r"^\$MEMOJAR_DIR '.*project' is an existing folder"):
        Cache()
    with pytest.raises(ValueError, match=r"^\$MEMOJAR_DIR '.*project' is an existing folder"):
        cached(f)
    monkeypatch.setenv("MEMOJAR_DIR", "s4://bucket")
    with pytest.raises(ValueError, match=r"^\$MEMOJAR_DIR: cache location 's4://bucket'"):
        cached()
    # passed, it is still cache_dir's
    with pytest.raises(ValueError, match=r"^cache_dir '.*project' is an existing folder"):
        cached(cache_dir=project)


def test_a_bad_default_directory_is_named_as_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ~/.cache/memojar a file (or a link to a folder of the user's), no cache_dir= and no
    # $MEMOJAR_DIR: a bare @cached raised "cache_dir '...' is a file", of an argument the
    # user had never passed, saying nothing of how to cache elsewhere.
    monkeypatch.delenv("MEMOJAR_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg").mkdir()
    (tmp_path / "xdg" / "memojar").write_text("not a directory")
    said = (r"^the default cache directory '.*xdg/memojar' is a file, not a directory.*"
            r"set \$MEMOJAR_DIR, or pass cache_dir=, to cache elsewhere")
    with pytest.raises(ValueError, match=said):
        Cache()
    with pytest.raises(ValueError, match=said):
        cached(f)
    (tmp_path / "xdg" / "memojar").unlink()
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "data.csv").write_text("a,b\n")
    (tmp_path / "xdg" / "memojar").symlink_to(tmp_path / "project")
    with pytest.raises(ValueError, match=r"^the default cache directory '.*project' is an "
                                         r"existing folder"):
        cached()
    assert (tmp_path / "project" / "data.csv").read_text() == "a,b\n"


def test_bytes_location_is_a_path(tmp_path: Path) -> None:
    # A bytes path failed deep inside ("cannot use a string pattern on a bytes-like object").
    target = tmp_path / "c"
    g = cached(cache_dir=bytes(target))(f)
    assert g(1) == 2 and g.cache_info().entries == 1
    assert Cache(bytes(target)).directory == str(target)


@pytest.mark.parametrize("function", [123, 1.5, b"mod.f"], ids=repr)
def test_clear_and_entries_of_something_not_a_function(cache_dir: Path, function: Any) -> None:
    # cache.clear(123) returned 0 and entries(123) yielded nothing, silently.
    cache = Cache(cache_dir)
    cache.cached(f)(1)
    with pytest.raises(TypeError, match=r"function= takes a 'module.qualname' str or a "
                                        r"function decorated with @cached"):
        cache.clear(function)
    with pytest.raises(TypeError, match=r"function= takes"):
        list(cache.entries(function))
    assert len(list(cache.entries())) == 1


class Loader:
    pass


@pytest.mark.parametrize("function", [len, f, Loader], ids=["builtin", "undecorated", "class"])
def test_clear_and_entries_of_a_callable_not_decorated(cache_dir: Path, function: Any) -> None:
    # cache.clear(len) returned 0 and entries(len) yielded nothing, silently: API.md takes
    # a 'module.qualname' str or the decorated function itself.
    cache = Cache(cache_dir)
    cache.cached(f)(1)
    with pytest.raises(TypeError, match=r"function= takes a 'module.qualname' str or a "
                                        r"function decorated with @cached, not .* which is "
                                        r"not decorated: pass the function @cached returned, "
                                        r"or its name '"):
        cache.clear(function)
    with pytest.raises(TypeError, match=r"which is not decorated"):
        list(cache.entries(function))
    assert len(list(cache.entries())) == 1


def test_empty_package_name_in_depends_on(cache_dir: Path) -> None:
    # importlib.metadata's "A distribution name is required." named no argument.
    with pytest.raises(ValueError, match=r"depends_on\[1\] is an empty package name"):
        cached(cache_dir=cache_dir, depends_on=("filelock", ""))(f)


@pytest.mark.parametrize("option", ["ttl", "stale_while_revalidate", "min_compute_time"])
def test_an_int_too_large_for_a_float(cache_dir: Path, option: str) -> None:
    # float(10**400) raised OverflowError("int too large to convert to float").
    kwargs: dict[str, Any] = {option: 10**400}
    if option == "stale_while_revalidate":
        kwargs["ttl"] = 60
    with pytest.raises(ValueError, match=rf"{option}= must be a"):
        cached(cache_dir=cache_dir, **kwargs)


def test_lock_timeout_too_large_for_a_float_waits_as_long_as_it_takes(cache_dir: Path) -> None:
    import math

    assert Cache(cache_dir, lock_timeout=10**400).lock_timeout == math.inf


# --- prune ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["no", "yes", 1, 0, None, [True]], ids=repr)
def test_prune_other_pythons_takes_a_bool_only(cache_dir: Path, value: Any) -> None:
    # Before, any truthy value ("no" too) removed the entries other Python versions read.
    cache = Cache(cache_dir)
    with pytest.raises(TypeError, match=r"other_pythons= must be True or False, not "):
        cache.prune(other_pythons=value)
    assert cache.prune(other_pythons=False) == 0 and cache.prune(other_pythons=True) == 0


def test_prune_progress_must_be_callable(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    cache.cached(f)(1)
    with pytest.raises(TypeError, match=r"progress= must be a callable \(or None\), not int"):
        cache.prune(progress=5)  # type: ignore[arg-type]


@pytest.mark.parametrize("blank", ["", " ", "\t\n"], ids=repr)
def test_a_blank_memojar_dir_is_unset_not_a_folder_named_blank(
    blank: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, MEMOJAR_DIR=" " (a shell variable quoted while blank) cached in a folder " "
    # of the current directory; "" already meant the default.
    from memojar._cache import default_directory

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("MEMOJAR_DIR", blank)
    assert default_directory() == str(tmp_path / "xdg" / "memojar")
    assert Cache().directory == str(tmp_path / "xdg" / "memojar")
    assert os.listdir(tmp_path) == []


def test_a_version_that_is_not_valid_text_fails_at_decoration(cache_dir: Path) -> None:
    # Before: decorated, then UnicodeEncodeError from inside memojar at every call.
    name = os.fsdecode(b"model-\xff.bin")
    with pytest.raises(ValueError, match=r"version= .* is not valid text \(it holds a lone "
                                         r"surrogate"):
        cached(cache_dir=cache_dir, version=name)
    with pytest.raises(ValueError, match="version="):
        Cache(cache_dir).cached(version=name)
    g = cached(cache_dir=cache_dir, version=os.fsencode(name).hex())(f)
    assert g(1) == g(1) == 2


def test_a_function_name_that_is_not_valid_text_is_a_clear_error(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: UnicodeEncodeError from the store (the command line: "unexpected error ...
    # please report it"), for a name with an undecodable byte (os.fsdecode, or argv).
    from memojar import _cli

    cache = Cache(cache_dir)
    cache.cached(f)(1)
    name = os.fsdecode(b"mod.\xff")
    for call in (lambda: cache.clear(name), lambda: list(cache.entries(name))):
        with pytest.raises(ValueError, match=r"function= .* is not a function's name"):
            call()
    for argv in (["ls", name], ["clear", "mod.f", name, "--yes"]):
        assert _cli.main(["--dir", str(cache_dir), *argv]) == 2
        err = capsys.readouterr().err
        assert "is not a function's name" in err and "unexpected" not in err
    assert len(list(cache.entries())) == 1


@pytest.mark.parametrize(("module", "qualname", "escaped"), [
    ("mod", "a\udcff", "mod.a\\xff"),  # a byte os.fsdecode could not decode
    (os.fsdecode(b"caf\xe9"), "load", "caf\\xe9.load"),  # a module loaded from such a file
    ("mod", "a\ud800", "mod.a\\ud800"),  # a surrogate no file name decodes to
], ids=["qualname", "module", "high-surrogate"])
def test_a_function_whose_name_is_not_valid_text_is_cached_by_its_escaped_name(
    cache_dir: Path, capsys: pytest.CaptureFixture[str], module: str, qualname: str,
    escaped: str,
) -> None:
    # Before: UnicodeEncodeError from inside memojar at the first call of a function whose
    # __qualname__ (set by hand) or __module__ (a file whose name is not UTF-8, loaded by
    # importlib) held a lone surrogate; its name is now escaped as a script's path is.
    from memojar import _cli

    def g(x: int) -> int:
        return x + 1

    g.__module__, g.__qualname__ = module, qualname
    cache = Cache(cache_dir)
    h = cache.cached(g)
    assert h(1) == h(1) == 2
    assert h.cache_info()[:3] == (1, 1, 1)
    assert [e.function for e in cache.entries()] == [escaped]
    assert _cli.main(["--dir", str(cache_dir), "ls", escaped]) == 0
    assert "1 entry" in capsys.readouterr().out
    with pytest.raises(ValueError, match="known by its escaped name"):
        cache.clear(f"{module}.{qualname}")
    assert _cli.main(["--dir", str(cache_dir), "ls", f"{module}.{qualname}"]) == 2
    err = capsys.readouterr().err
    assert f"listed by its escaped name, '{escaped}'" in err and "unexpected" not in err
    assert cache.clear(h) == 1


def test_a_function_of_a_module_not_valid_text_that_reads_a_global_is_cached(
        cache_dir: Path) -> None:
    # Before: UnicodeEncodeError from inside memojar at the first call of a function of a
    # module whose name holds a lone surrogate (a file whose name is not UTF-8) reading a
    # global of it: the fingerprint's rows name the module, and were encoded strictly.
    import types

    source = "def g(x):\n    return x * K\n"
    results = []
    for name, k in ((os.fsdecode(b"m\xff"), 2), ("m\\xff", 3)):  # the same escaped name
        module = types.ModuleType(name)
        module.K = k  # type: ignore[attr-defined]
        exec(source, module.__dict__)
        module.g.__module__ = name  # type: ignore[attr-defined]
        h = Cache(cache_dir).cached(module.g)  # type: ignore[attr-defined]
        results.append((h(5), h(5)))
    assert results == [(10, 10), (15, 15)]


def test_a_secret_with_undecodable_bytes_is_those_bytes(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: Cache() raised UnicodeEncodeError for a $MEMOJAR_SECRET holding a byte that is
    # not UTF-8 (os.environ gives it as a lone surrogate).
    monkeypatch.setenv("MEMOJAR_SECRET", os.fsdecode(b"k\xff"))
    g = Cache(cache_dir).cached(f)
    assert g(1) == 2
    monkeypatch.delenv("MEMOJAR_SECRET")
    same = Cache(cache_dir, secret=b"k\xff").cached(f)
    assert same(1) == 2 and same.cache_info().hits == 1  # the entry verified: same key
    with pytest.raises(ValueError, match=r"secret= is not valid text"):
        Cache(cache_dir, secret="\ud800")


@pytest.mark.parametrize("ttl", [1e300, dt.timedelta.max, "written so"], ids=str)
def test_a_ttl_past_year_9999_lists_and_reads(
    ttl: Any, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: Cache.entries() raised "year 2739933 is out of range", and `memojar ls
    # FUNCTION` said "unexpected error ... please report it". A ttl over a thousand years
    # is a thousand years; an entry written with a later expiry (by an older memojar) shows
    # the latest time a datetime holds.
    from memojar import _cli

    cache = Cache(cache_dir)
    g = cache.cached(ttl=ttl if ttl != "written so" else 60)(f)
    if ttl == "written so":
        g.__memojar__.ttl = 1e300  # type: ignore[attr-defined]
    assert g(1) == g(1) == 2 and g.cache_info().hits == 1
    (entry,) = cache.entries()
    assert entry.expires is not None and entry.expires.year >= 3000
    name = entry.function
    for argv in (["ls", name], ["ls", name, "--json"], ["ls"], ["info", "--json"]):
        assert _cli.main(["--dir", str(cache_dir), *argv]) == 0, capsys.readouterr().err
    assert "unexpected" not in capsys.readouterr().err
