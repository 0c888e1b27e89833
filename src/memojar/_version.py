"""memojar's version, in a module of its own: the package and the command line import it
(the command line importing the package would be an arrow back up)."""

__version__ = "0.1.0"
