"""corofw: a web micro-framework whose concurrency is plain generators on an
epoll event loop."""

from .kernel import *  # noqa: F403
from .kernel import __all__ as _kernel_all

__version__ = "0.1.0"
__all__ = [*_kernel_all]
