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
