"""Errors that are the user's: raised with a message that says what to do, before anything heavy loads."""


class UsageError(ValueError):
    """A command line or configuration that cannot work; the message says what to do instead."""
