"""`schema`: print the JSON Schema of spec files."""

from __future__ import annotations

import click

from archbuilder.plan.json_schema import spec_json_schema_text


@click.command("schema")
def command() -> None:
    """Print the JSON Schema of spec files (shipped as schema/archbuilder.schema.json)."""
    click.echo(spec_json_schema_text(), nl=False)
