"""The ``octovid`` command line: create, watch and download videos; batches; the simulator.

It only composes the public API and the batch engine (``octovid._batch``). Its parts:
``_main`` (parsing, dispatch, exit statuses, signals), ``_commands`` (each command),
``_catalog`` (the models and fields it accepts), ``_display`` (progress and summaries),
``_messages`` (errors in the command line's words) and ``_simulate`` (``octovid simulate``).
"""

from ._main import build_parser, main

__all__ = ["build_parser", "main"]
