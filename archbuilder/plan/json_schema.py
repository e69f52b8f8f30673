"""The JSON Schema of spec files, for editors' YAML support (`cli.py schema`,
schema/archbuilder.schema.json, rewritten by `python -m archbuilder.plan.json_schema --write`). It describes files as written, so it also admits `extends:`
and the list patches (`stages: {2: {repeats: 23}}`) that a file extending another may use."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

from archbuilder.plan.schema import Spec

SCHEMA_ID = "https://archbuilder.invalid/schema/archbuilder.schema.json"


def spec_json_schema() -> dict:
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    properties = schema["properties"]
    properties["extends"] = {"type": "string", "description": "A spec file (relative to this one) to inherit; "
                             "this file then lists only what differs."}
    for name, prop in properties.items():
        if prop.get("type") == "array" or "items" in prop:
            properties[name] = {"anyOf": [prop, {"type": "object", "patternProperties": {"^-?[0-9]+$": {"type": "object"}},
                                                 "additionalProperties": False,
                                                 "description": "Patch items of the extended file's list by index."}],
                                "title": prop.get("title", name)}
    _body_layers_take_parameters(schema)
    # A file that extends another may leave out what it inherits.
    required = schema.pop("required", [])
    schema["if"] = {"required": ["extends"]}
    schema["else"] = {"required": required}
    return schema


IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _body_layers_take_parameters(schema: dict) -> None:
    """In a block's body a string or true/false field may name a parameter (`activation: act`):
    there, each layer type is a copy (`Body...`) whose such fields also take a name; stem and head
    layers keep only the literals, as `validate` does."""
    from archbuilder.layers import BY_TYPE

    defs = schema["$defs"]
    items = defs["BlockDef"]["properties"]["layers"]["items"]
    layer_union = next(member for member in items["oneOf"] if "discriminator" in member)
    mapping = layer_union["discriminator"]["mapping"]
    for tag, reference in list(mapping.items()):
        name = reference.rsplit("/", 1)[1]
        body = copy.deepcopy(defs[name])
        for key in BY_TYPE[tag].choice_fields():
            field = body["properties"][key]
            default = field.pop("default", None)
            title = field.pop("title", key)
            body["properties"][key] = {"anyOf": [field, {"type": "string", "pattern": IDENTIFIER,
                                                         "description": "a choice or bool parameter of the block"}],
                                       "title": title, **({"default": default} if default is not None else {})}
        defs["Body" + name] = body
        mapping[tag] = f"#/$defs/Body{name}"
    layer_union["oneOf"] = [{"$ref": member["$ref"].replace("#/$defs/", "#/$defs/Body", 1)}
                            for member in layer_union["oneOf"]]


def spec_json_schema_text() -> str:
    return json.dumps(spec_json_schema(), indent=2, sort_keys=True) + "\n"


SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema" / "archbuilder.schema.json"
WRITE_COMMAND = "python -m archbuilder.plan.json_schema --write"


def main(argv: list[str]) -> int:
    """`python -m archbuilder.plan.json_schema [--write [PATH]]`: print the schema, or rewrite the
    shipped file (or PATH) after a primitive or a spec field changed; tests/test_json_schema.py
    says when the shipped file is stale."""
    if argv[:1] not in ([], ["--write"]) or len(argv) > 2:
        print(f"usage: {WRITE_COMMAND} [PATH]  (without --write: print the schema)", file=sys.stderr)
        return 2
    text = spec_json_schema_text()
    if not argv:
        sys.stdout.write(text)
        return 0
    from archbuilder.atomic import atomic_write_text

    destination = Path(argv[1]) if len(argv) == 2 else SCHEMA_FILE
    atomic_write_text(destination, text)
    print(f"Wrote {destination}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
