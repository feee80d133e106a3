"""Recipe registry: one typed config per model family (`zimage-turbo` first)."""

from __future__ import annotations

from trainer.recipes.base import ConfigError, Recipe, RecipeConfig
from trainer.recipes.zimage_turbo import RECIPE as ZIMAGE_TURBO

_RECIPES: dict[str, Recipe] = {ZIMAGE_TURBO.name: ZIMAGE_TURBO}
DEFAULT_RECIPE = ZIMAGE_TURBO.name


def get_recipe(name: str) -> Recipe:
    try:
        return _RECIPES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_RECIPES))
        message = f"Unknown recipe {name!r}; choose one of: {known}."
        raise ConfigError([{"field": "recipe", "message": message}]) from None


def list_recipes() -> list[Recipe]:
    return [_RECIPES[name] for name in sorted(_RECIPES)]


__all__ = ["ConfigError", "DEFAULT_RECIPE", "Recipe", "RecipeConfig", "get_recipe", "list_recipes"]
