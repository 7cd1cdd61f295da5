"""The JSON schema shipped in every medlung bundle as ``configs/schema.json``.

Written from the MONAI Bundle specification (``mb_specification``,
"metadata.json File"): its mandatory keys (``version``, ``monai_version``,
``pytorch_version``, ``numpy_version``, ``required_packages_version`` --
MONAI's config reader renames the specification's older
``optional_packages_version`` to it, so medlung writes only the new name and
lists optional packages under ``optional_packages`` -- ``task``,
``description``, ``authors``, ``copyright``,
``network_data_format``) and its tensor format specifier keys (``type``,
``format``, ``modality``, ``num_channels``, ``spatial_shape``, ``dtype``,
``value_range``, ``is_patch_data``, ``channel_def``). medlung adds what its
design asks of a shipped model: ``changelog`` (the exporter also checks that it
has an entry for the current version), medlung among the required packages, ``data_source``,
``license``, ``intended_use``, ``references`` and a ``schema`` URL.

``python -m monai.bundle verify_metadata --meta_file configs/metadata.json
--filepath configs/schema.json`` validates against this file without any
download: MONAI's ``download_url`` skips the download when ``filepath``
exists and no hash is given.
"""

from __future__ import annotations

import hashlib
import json

#: The ``schema`` URL written in metadata.json: MONAI's published metadata schema (used only when the
#: shipped ``configs/schema.json`` is not given as ``--filepath``).
MONAI_SCHEMA_URL = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
)

_VERSION = r"^[0-9]+\.[0-9]+\.[0-9]+([.+-][0-9A-Za-z.+-]+)?$"

_TENSOR = {
    "type": "object",
    "description": "Tensor format specifier (MONAI Bundle specification).",
    "required": [
        "type",
        "format",
        "modality",
        "num_channels",
        "spatial_shape",
        "dtype",
        "value_range",
        "is_patch_data",
        "channel_def",
    ],
    "properties": {
        "type": {"type": "string", "enum": ["image", "series", "tuples", "probabilities"]},
        "format": {"type": "string", "minLength": 1},
        "modality": {"type": "string", "minLength": 1},
        "num_channels": {"type": "integer", "minimum": 1},
        "spatial_shape": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "minLength": 1}]},
        },
        "dtype": {
            "type": "string",
            "enum": ["float16", "float32", "float64", "bfloat16", "uint8", "int8", "int16", "int32", "int64", "bool"],
        },
        "value_range": {"type": "array", "maxItems": 2, "items": {"type": "number"}},
        "is_patch_data": {"type": "boolean"},
        "channel_def": {
            "type": "object",
            "minProperties": 1,
            "patternProperties": {"^[0-9]+$": {"type": "string"}},
            "additionalProperties": False,
        },
    },
}

METADATA_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$id": "medlung-bundle-metadata-1",
    "title": "medlung MONAI bundle metadata",
    "description": "metadata.json of a medlung MONAI bundle (MONAI Bundle specification plus medlung's fields).",
    "type": "object",
    "required": [
        "schema",
        "version",
        "changelog",
        "monai_version",
        "pytorch_version",
        "numpy_version",
        "required_packages_version",
        "task",
        "description",
        "authors",
        "copyright",
        "data_source",
        "license",
        "intended_use",
        "references",
        "network_data_format",
    ],
    "properties": {
        "schema": {"type": "string", "minLength": 1},
        "version": {"type": "string", "pattern": _VERSION},
        "changelog": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": _VERSION},
            "additionalProperties": {"type": "string"},
        },
        "monai_version": {"type": "string", "minLength": 1},
        "pytorch_version": {"type": "string", "minLength": 1},
        "numpy_version": {"type": "string", "minLength": 1},
        "required_packages_version": {
            "type": "object",
            "required": ["medlung"],
            "additionalProperties": {"type": "string"},
        },
        "optional_packages": {"type": "object", "additionalProperties": {"type": "string"}},
        "name": {"type": "string"},
        "task": {"type": "string", "minLength": 1},
        "description": {"type": "string", "minLength": 1},
        "authors": {
            "anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "minItems": 1, "items": {"type": "string"}}]
        },
        "copyright": {"type": "string", "minLength": 1},
        "data_source": {"type": "string", "minLength": 1},
        "data_type": {"type": "string"},
        "license": {"type": "string", "minLength": 1},
        "intended_use": {"type": "string", "minLength": 1},
        "references": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "eval_metrics": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
        "network_data_format": {
            "type": "object",
            "required": ["inputs", "outputs"],
            "properties": {
                "inputs": {"type": "object", "required": ["image"], "additionalProperties": _TENSOR},
                "outputs": {"type": "object", "required": ["pred"], "additionalProperties": _TENSOR},
            },
        },
    },
}


def schema_text() -> str:
    """``configs/schema.json`` as written into a bundle."""
    return json.dumps(METADATA_SCHEMA, indent=4) + "\n"


def schema_md5() -> str:
    """MD5 of :func:`schema_text`, for ``verify_metadata --hash_val`` (checks the shipped file is intact)."""
    return hashlib.md5(schema_text().encode("utf-8")).hexdigest()
