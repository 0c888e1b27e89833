"""memojar: a safe, fast disk cache for expensive Python functions.

    from memojar import cached

    @cached
    def load(path): ...

See ``Cache`` for a cache with a size limit or a secret, and ``memojar --help`` for the
command line.
"""

from ._cache import Cache, CachedFunction, EntryInfo, UnknownStoreError, cached
from ._control import disabled
from ._decorator import CacheInfo
from ._errors import MemojarWarning
from ._store import Store
from ._version import __version__ as __version__

__all__ = [
    "Cache", "CacheInfo", "CachedFunction", "EntryInfo", "MemojarWarning", "Store",
    "UnknownStoreError", "cached", "disabled",
]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext memojar``: the ``%memojar`` magic (IPython is imported only then)."""
    from ._ipython import load_ipython_extension as f

    f(ipython)
