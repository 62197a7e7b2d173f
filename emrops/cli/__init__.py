"""The thin Typer layer: parse options, call the core, render the result."""
