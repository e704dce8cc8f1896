"""The command line's helpers, apart from ``mirrord/cli.py`` so that file stays parsing and wiring.

``options``: flags every subcommand shares, help texts, examples and transport prefixes;
``checks``: what is checked before any work (paths, the listen address, entry names);
``failures``: how an operator error and an internal error reach the terminal.

Part of the command-line layer: it may import anything below it, and nothing below imports it.
"""
