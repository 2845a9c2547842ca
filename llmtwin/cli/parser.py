"""The argument parser of every command: each option's default is shown in ``--help``."""

from __future__ import annotations

import argparse


def shows_default(action: argparse.Action) -> bool:
    """Whether ``--help`` should append ``(default: ...)`` to this option's help.

    Not for positionals, flags (``store_true``: the default is always "off"), repeatable options
    starting empty, options without a default, or help that already says what the default is.
    """
    default = action.default
    if not action.option_strings or action.help in (None, argparse.SUPPRESS):
        return False
    if default is None or default is argparse.SUPPRESS or isinstance(default, bool) or default == []:
        return False
    return "default" not in str(action.help).lower()


class DefaultsFormatter(argparse.HelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        return f"{text} (default: %(default)s)" if text and shows_default(action) else text


class TwinParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` that shows defaults; its sub-parsers are of this class too."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
