"""``python -m schemas.jsonschema``: regenerate the checked-in JSON Schema files."""

from schemas.jsonschema import write_schemas

if __name__ == "__main__":
    for path in write_schemas():
        print(path)
