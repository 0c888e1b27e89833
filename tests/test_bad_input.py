"""Bad arguments fail at decoration or construction time, with a message that says why."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from memojar import Cache, cached


def f(x, y=1):
    return x + y


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
