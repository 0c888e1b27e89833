"""Attack: arguments that are equal for ``DataFrame.equals`` but not for the function.

Found by the attack session: a DatetimeIndex with a frequency (``pd.date_range(...,
freq="D")``) and the same dates without one keyed alike, so a function that reads the
frequency (``df.index.freqstr``, ``asfreq``, ``to_period``, a forecasting model) returned the
other frame's result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from memojar import Cache

pd = pytest.importorskip("pandas")


@pytest.mark.parametrize("wrap", [lambda i: pd.DataFrame({"a": [1, 2]}, index=i),
                                  lambda i: pd.Series([1, 2], index=i)],
                         ids=["frame", "series"])
def test_an_index_frequency_is_in_the_key(cache_dir: Path, wrap: Any) -> None:
    @Cache(cache_dir).cached
    def frequency(data: Any) -> Any:
        return data.index.freqstr

    daily = wrap(pd.date_range("2020-01-01", periods=2, freq="D"))
    unset = wrap(pd.DatetimeIndex(["2020-01-01", "2020-01-02"]))
    steps = wrap(pd.timedelta_range("1D", periods=2, freq="D"))
    assert daily.equals(unset)  # equal for pandas, not for the function
    for _ in range(2):
        assert [frequency(daily), frequency(unset), frequency(steps)] == ["D", None, "D"]


@pytest.mark.parametrize("wrap", [lambda i: pd.DataFrame({"a": [1, 2, 3]}, index=i),
                                  lambda i: pd.Series([1, 2, 3], index=i)],
                         ids=["frame", "series"])
def test_an_index_frequency_counts_by_what_its_freqstr_leaves_out(
        cache_dir: Path, wrap: Any) -> None:
    """A ``CustomBusinessDay``'s holidays (and a ``BusinessHour``'s hours, a
    ``normalize=True``) are not in its ``freqstr``, ``"C"``, but move ``shift``: the same
    three days under ``CustomBusinessDay()`` and under one with a holiday keyed alike, and
    the second frame got the first one's date."""
    @Cache(cache_dir).cached
    def tenth_day_after(data: Any) -> Any:
        return str(data.index.shift(10)[-1].date())

    plain = wrap(pd.date_range("2020-01-06", periods=3, freq=pd.offsets.CustomBusinessDay()))
    holiday = wrap(pd.date_range("2020-01-06", periods=3,
                                 freq=pd.offsets.CustomBusinessDay(holidays=["2020-01-20"])))
    assert plain.equals(holiday) and plain.index.freqstr == holiday.index.freqstr == "C"
    for _ in range(2):
        assert [tenth_day_after(plain), tenth_day_after(holiday)] == ["2020-01-22", "2020-01-23"]


@pytest.mark.parametrize("make", [lambda: pd.DataFrame({"a": [1, 2]}),
                                  lambda: pd.Series([1, 2], name="a")],
                         ids=["frame", "series"])
def test_a_frames_flags_are_in_the_key(cache_dir: Path, make: Any) -> None:
    """``set_flags(allows_duplicate_labels=False)`` makes ``concat`` refuse duplicate
    labels, and pickle keeps the flag; a frame with it and the same frame without it
    keyed alike, and the second call returned the first one's value where it raises."""
    cache = Cache(cache_dir)

    @cache.cached
    def doubled(data: Any) -> Any:
        return len(pd.concat([data, data]))

    @cache.cached
    def allows(data: Any) -> Any:
        return data.flags.allows_duplicate_labels

    plain = make()
    strict = plain.set_flags(allows_duplicate_labels=False)
    assert plain.equals(strict)  # equal for pandas, not for the function
    for _ in range(2):
        assert doubled(plain) == 4
        with pytest.raises(pd.errors.DuplicateLabelError):
            doubled(strict)
        assert [allows(plain), allows(strict)] == [True, False]
    assert doubled.cache_key(plain) == doubled.cache_key(make())
