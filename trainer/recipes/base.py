"""Typed recipe configs: dataclass fields carry defaults, help text and limits; one source for the
JSON round trip, the JSON Schema and the web form."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from typing import Any


class ConfigError(ValueError):
    """A job config that cannot be used; `.errors` lists `{"field", "message"}` for each problem."""

    def __init__(self, errors: list[dict[str, str]]):
        self.errors = list(errors)
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in self.errors) or "invalid config"
        super().__init__(summary)


def option(default: Any, help: str, section: str = "advanced", **extra: Any) -> Any:
    """A config field: `extra` may hold label, choices, min, max, exclusive_min, min_items, max_items,
    max_length (of a text or of each text in a list), multiple_of,
    unique (list items), pattern (a regular expression the text must match; `pattern_help` says it in
    words), accepts_bool (true/false stand for the last and first choice) and shown_when ({field: [values]}:
    the form shows the field only while those fields hold one of those values; the value still counts). The same
    metadata drives the checks here and the JSON Schema, so the two always agree."""
    metadata = {"help": help, "section": section, **extra}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _field_kind(annotation: Any) -> tuple[str, str | None, bool]:
    """(json type, item type for lists, nullable) of a field annotation."""
    nullable = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) != len(typing.get_args(annotation))
        annotation = args[0]
        origin = typing.get_origin(annotation)
    if origin is list:
        item = typing.get_args(annotation)[0]
        return "array", _SCALARS[item], nullable
    return _SCALARS[annotation], None, nullable


_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":  # JSON has one number type: 100.0 is the integer 100 (as in JSON Schema)
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == "number":  # NaN and infinity (Python's JSON reads them) are no setting's value
        return isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
    return isinstance(value, str)


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large to be a float (past 1e308)
        return False


_KIND_WORDS = {"boolean": "true or false", "integer": "a whole number", "number": "a number", "string": "text"}
NOT_FINITE = "Must be a plain number: NaN, infinity and numbers past 1e308 are not."
_LIST_WORDS = {"boolean": "true or false values", "integer": "whole numbers", "number": "numbers", "string": "texts"}
_NORMAL = {"integer": int, "number": float}


class RecipeConfig:
    """Mixin for recipe config dataclasses: type and range checks from field metadata, plus `check()`."""

    def __post_init__(self) -> None:
        wrong = self._check_types()
        # every field's range is checked, so every mistake is said at once; the checks across fields need sound types
        errors = wrong + self._check_ranges(skip={error["field"] for error in wrong})
        if not wrong:
            errors += self.check()
        if errors:
            raise ConfigError(errors)

    def check(self) -> list[dict[str, str]]:
        """Checks the field metadata cannot say; override in subclasses. Whatever is refused here must
        also be refused by the JSON Schema, or the two disagree (tests/test_recipe_schema.py)."""
        return []

    def advice(self) -> list[dict[str, str]]:
        """Valid settings that are probably a mistake: warnings, never errors."""
        return []

    @classmethod
    def _hints(cls) -> dict[str, Any]:
        return typing.get_type_hints(cls)

    def _check_types(self) -> list[dict[str, str]]:
        errors = []
        hints = self._hints()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind, item, nullable = _field_kind(hints[f.name])
            if value is None:
                if not nullable:
                    errors.append({"field": f.name, "message": "A value is required."})
                continue
            if kind == "array":
                if not isinstance(value, list) or not all(_type_ok(v, item) for v in value):
                    errors.append({"field": f.name, "message": f"Must be a list of {_LIST_WORDS[item]}."})
                elif item in _NORMAL:
                    setattr(self, f.name, [_NORMAL[item](v) for v in value])
            elif kind == "number" and isinstance(value, int | float) and not isinstance(value, bool) \
                    and not _finite(value):
                errors.append({"field": f.name, "message": NOT_FINITE})
            elif not _type_ok(value, kind):
                errors.append({"field": f.name, "message": f"Must be {_KIND_WORDS[kind]}."})
            elif kind in _NORMAL:
                setattr(self, f.name, _NORMAL[kind](value))  # 1 and 1.0 mean the same
        return errors

    def _check_ranges(self, skip: set[str] = frozenset()) -> list[dict[str, str]]:
        errors = []
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None or f.name in skip:
                continue
            values = value if isinstance(value, list) else [value]
            if "choices" in meta and any(v not in meta["choices"] for v in values):
                errors.append({"field": f.name, "message": f"Must be one of: {', '.join(map(str, meta['choices']))}."})
            elif "min" in meta and any(v < meta["min"] for v in values):
                errors.append({"field": f.name, "message": f"Must be at least {meta['min']}."})
            elif "exclusive_min" in meta and any(v <= meta["exclusive_min"] for v in values):
                errors.append({"field": f.name, "message": f"Must be greater than {meta['exclusive_min']}."})
            elif "max" in meta and any(v > meta["max"] for v in values):
                errors.append({"field": f.name, "message": f"Must be at most {meta['max']}."})
            elif "multiple_of" in meta and any(v % meta["multiple_of"] for v in values):
                bad = next(v for v in values if v % meta["multiple_of"])
                step = meta["multiple_of"]
                errors.append({"field": f.name, "message": f"{bad} is not a multiple of {step}; use e.g. "
                                                           f"{max(step, bad // step * step)}."})
            elif "max_length" in meta and any(len(v) > meta["max_length"] for v in values):
                each = " each" if isinstance(value, list) else ""
                errors.append({"field": f.name, "message": f"At most {meta['max_length']:,} characters{each}."})
            elif "pattern" in meta and any(not re.search(meta["pattern"], v) for v in values):
                errors.append({"field": f.name, "message": meta.get("pattern_help") or
                               f"Must match {meta['pattern']}."})
            if isinstance(value, list) and meta.get("min_items") and len(value) < meta["min_items"]:
                errors.append({"field": f.name, "message": "Needs at least one value." if meta["min_items"] == 1
                               else f"Needs at least {meta['min_items']} values."})
            if isinstance(value, list) and meta.get("max_items") and len(value) > meta["max_items"]:
                errors.append({"field": f.name, "message": f"At most {meta['max_items']} values."})
            if isinstance(value, list) and meta.get("unique") and len(set(value)) != len(value):
                errors.append({"field": f.name, "message": "Each value may appear only once."})
        return errors

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A model family: its config class, presets and the form/schema derived from the config."""

    name: str
    title: str
    description: str
    config_class: type
    presets: dict[str, dict[str, Any]]
    # (config, images, gpu name or None, demo, sizes=(width, height) of each image or None) -> an estimate
    # with .seconds, .memory_gb, .device
    estimator: Callable[..., Any] | None = None
    # images -> steps: how long a dataset of that size should train
    step_rule: Callable[[int], int] | None = None

    def estimate(self, config: Any, images: int, gpu_name: str | None, demo: bool,
                 sizes: list[tuple[int, int]] | None = None) -> Any:
        if self.estimator is None:
            return None
        return self.estimator(config, images, gpu_name, demo, sizes)

    def suggested_steps(self, images: int) -> int:
        return self.step_rule(images) if self.step_rule else self.defaults()["steps"]

    def config_from_dict(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ConfigError([{"field": "config", "message": "The job config must be a JSON object."}])
        known = {f.name for f in dataclasses.fields(self.config_class)}
        errors = [{"field": k, "message": "Unknown setting for this recipe."} for k in sorted(set(data) - known)]
        try:
            config = self.config_class(**{k: v for k, v in data.items() if k in known})
        except ConfigError as exc:
            errors.extend(exc.errors)
        if errors:
            raise ConfigError(errors)
        return config

    def default_config(self) -> Any:
        return self.config_class()

    def defaults(self) -> dict[str, Any]:
        return self.default_config().to_dict()

    def form_fields(self) -> list[dict[str, Any]]:
        hints = typing.get_type_hints(self.config_class)
        defaults = self.defaults()
        fields = []
        for f in dataclasses.fields(self.config_class):
            kind, item, nullable = _field_kind(hints[f.name])
            entry = {
                "name": f.name,
                "label": f.metadata.get("label", f.name.replace("_", " ").capitalize()),
                "type": kind,
                "default": defaults[f.name],
                "help": f.metadata["help"],
                "section": f.metadata.get("section", "advanced"),
                "nullable": nullable,
            }
            if item:
                entry["items"] = item
            for key in ("choices", "min", "max", "min_items", "max_items", "max_length", "multiple_of", "unique",
                        "pattern", "accepts_bool", "shown_when"):
                if key in f.metadata:
                    entry[key] = f.metadata[key]
            if "exclusive_min" in f.metadata:
                entry["min"] = f.metadata["exclusive_min"]
                entry["exclusive_min"] = True
            fields.append(entry)
        return fields

    def json_schema(self) -> dict[str, Any]:
        properties = {}
        for entry in self.form_fields():
            kind = entry["type"]
            prop: dict[str, Any] = {"description": entry["help"], "default": entry["default"], "title": entry["label"]}
            scalar: dict[str, Any] = {"type": entry.get("items", kind)}
            if "choices" in entry:
                scalar["enum"] = list(entry["choices"])
            if "min" in entry:
                scalar["exclusiveMinimum" if entry.get("exclusive_min") else "minimum"] = entry["min"]
            if "max" in entry:
                scalar["maximum"] = entry["max"]
            if "multiple_of" in entry:
                scalar["multipleOf"] = entry["multiple_of"]
            if "pattern" in entry:
                scalar["pattern"] = entry["pattern"]
            if "max_length" in entry:
                scalar["maxLength"] = entry["max_length"]
            if kind == "array":
                prop.update({"type": "array", "items": scalar})
                if entry.get("min_items"):
                    prop["minItems"] = entry["min_items"]
                if entry.get("max_items"):
                    prop["maxItems"] = entry["max_items"]
                if entry.get("unique"):
                    prop["uniqueItems"] = True
            elif entry.get("accepts_bool"):
                prop["anyOf"] = [scalar, {"type": "boolean"}]
            else:
                prop.update(scalar)
            if entry["nullable"]:
                prop["type"] = [prop["type"], "null"]
            properties[entry["name"]] = prop
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": self.title,
            "description": self.description,
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }

    def describe(self) -> dict[str, Any]:
        """Everything a client needs to build the job form."""
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "fields": self.form_fields(),
            "defaults": self.defaults(),
            "presets": self.presets,
        }
