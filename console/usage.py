"""The one usage error: bad operator input found before anything starts, naming the flag.

Every command that takes flags raises it, the console's own checks (``--theme``,
``--log-file``, in :mod:`console.launcher`) as much as the command line's (:mod:`zakura`), and
the command line reports it the same way for all of them (``zakura.args.fail``): one line
naming the flag and the problem, exit code 2. It lives here, the lowest layer that raises it,
so both use one class (``console`` does not import ``zakura``; docs/ARCHITECTURE.md, "Layers
and packages"). Importing it imports nothing else: ``zakura --help`` stays light.
"""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """Bad operator input discovered after parsing (an unknown theme, a port in use, an
    exposed key ...).

    Args:
        flag: The command-line flag the operator has to change.
        problem: What is wrong, in the operator's terms.
    """

    def __init__(self, flag: str, problem: str) -> None:
        super().__init__(f"{flag}: {problem}")
        self.flag = flag
        self.problem = problem
