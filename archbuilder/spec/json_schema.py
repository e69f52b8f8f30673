"""The JSON Schema of spec files, for editors' YAML support (`cli.py schema`,
schema/archbuilder.schema.json). It describes files as written, so it also admits `extends:`
and the list patches (`stages: {2: {repeats: 23}}`) that a file extending another may use."""

from __future__ import annotations

import json

from archbuilder.spec.schema import Spec

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
    # A file that extends another may leave out what it inherits.
    required = schema.pop("required", [])
    schema["if"] = {"required": ["extends"]}
    schema["else"] = {"required": required}
    return schema


def spec_json_schema_text() -> str:
    return json.dumps(spec_json_schema(), indent=2, sort_keys=True) + "\n"
