"""Recipes: safe YAML in, command-line overrides, validation, the resolved recipe out.

    load_recipe(path, overrides, registry) = validate_recipe(apply_overrides(load_yaml(path), overrides))

Every function raises ``mmcore.errors.RecipeError`` with one line per problem. The schema, with
a comment per key, is ``mmcore.recipe.schema``.
"""

from mmcore.options.checks import check_value, resolve_value
from mmcore.options.hints import type_name
from mmcore.recipe.loader import dump_yaml, load_yaml, parse_yaml
from mmcore.recipe.overrides import apply_overrides
from mmcore.recipe.schema import Recipe
from mmcore.recipe.validate import load_recipe, validate_recipe

__all__ = [
    "Recipe",
    "apply_overrides",
    "check_value",
    "dump_yaml",
    "load_recipe",
    "load_yaml",
    "parse_yaml",
    "resolve_value",
    "type_name",
    "validate_recipe",
]
