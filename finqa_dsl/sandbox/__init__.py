"""Run generated Python programs as hostile input: isolated worker processes, limits, a value or a reason.

Public API: ``Sandbox`` (``run``, ``run_many``), ``SandboxResult``, ``Reason``, ``SandboxError``,
``DEFAULT_ALLOWED_MODULES``. Torch-free and stdlib-only.
"""

from .pool import DEFAULT_ALLOWED_MODULES, Sandbox, SandboxError, SandboxResult
from .reasons import Reason

__all__ = ["DEFAULT_ALLOWED_MODULES", "Reason", "Sandbox", "SandboxError", "SandboxResult"]
