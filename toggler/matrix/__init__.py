"""The Matrix adapter (matrix-nio): one stable E2E device, safe command handling, replies and edits.

`MatrixBot` is the entry point (and the service's `Notifier`); `Session` owns login and the stored device;
`LoginMethod` is the seam for other logins (JWT). Only this package imports nio.
"""

from toggler.matrix.bot import MatrixBot
from toggler.matrix.session import Credentials, LoginFailed, LoginMethod, PasswordLogin, Session

__all__ = ["Credentials", "LoginFailed", "LoginMethod", "MatrixBot", "PasswordLogin", "Session"]
