"""Subcommands of the `strategist` CLI: one module each, each with `register(subparsers)`.

A command's `func(args) -> int` is what runs; errors meant for the user are raised as
`strategist.errors.StrategistError` and printed without a traceback by the CLI.
"""
