"""One module per command; each exposes its click commands in ``COMMANDS``.

The group (:class:`~nodeagent.commands.lazy.LazyGroup`) loads a command's module only when that
command runs (or when ``--help`` lists them all): each module imports what it needs inside its
functions, and the CLI's start-up stays near the interpreter's own.
"""
