"""The JSON Schema: valid draft 2020-12, documented for editors, and agreeing with the models."""
import json

import jsonschema
import pytest
import yaml

from conftest import MODELS, ROOT
from graphdef.format.schema import schema, schema_text


def walk_properties(node, path="#"):
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            yield f"{path}/properties/{name}", sub
        for key, sub in node.items():
            yield from walk_properties(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from walk_properties(sub, f"{path}/{i}")


def test_schema_is_valid_draft_2020_12_with_an_id():
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema" and schema()["$id"]


def test_every_property_has_a_description():
    undocumented = [p for p, sub in walk_properties(schema()) if "description" not in sub]
    assert not undocumented


def test_packaged_schema_is_the_repository_schema():
    assert json.loads(schema_text()) == json.loads((ROOT / "schemas" / "graphdef-1.schema.json").read_text())


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.yaml")), ids=lambda p: p.name)
def test_models_validate_with_plain_jsonschema(path):
    jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema())
