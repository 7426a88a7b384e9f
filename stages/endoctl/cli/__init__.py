"""The ``endoctl`` command line: one module per command, each parsing options, calling one core function
and printing one summary line.

A command's module is imported when that command runs (``--help`` imports them all, still without
their heavy imports, which sit inside the commands). So the code a DVC stage runs is its command's
module, :mod:`endoctl.cli.common` and what they import: editing one command reruns only its stages.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

import click
import typer
import typer.main
from typer.core import TyperGroup

# Command -> its module under endoctl.cli, in pipeline order (the order `endoctl --help` lists them).
COMMANDS = {
    "sources": "ingest",
    "synth": "synth",
    "ingest": "ingest",
    "dedupe": "dedupe",
    "audit": "audit",
    "split": "split",
    "build-splits": "build_splits",
    "report": "report",
    "cache": "cache",
    "train": "train",
    "predict": "predict",
    "study": "study",
    "evaluate": "evaluate",
}


def command_app(name: str) -> typer.Typer:
    """The Typer app of the module defining command ``name`` (importing that module only)."""
    return importlib.import_module(f"{__name__}.{COMMANDS[name]}").app


class _Commands(Mapping[str, click.Command]):
    """The root group's commands, each built from its module on first use."""

    def __init__(self) -> None:
        self._built: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in COMMANDS:
            raise KeyError(name)
        if name not in self._built:
            self._built[name] = typer.main.get_group(command_app(name)).commands[name]
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)


class _LazyGroup(TyperGroup):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.commands = _Commands()


app = typer.Typer(
    name="endoctl",
    cls=_LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Build leak-free GI-endoscopy image datasets and train EVA-02 classifiers on them."""


if __name__ == "__main__":
    app()
