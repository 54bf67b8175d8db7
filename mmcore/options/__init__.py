"""The option type system: the markers of ``Annotated`` hints (``hints``) and the checker that
resolves plain YAML data against a type hint (``checks``).

It sits below the registry, which checks a component's options with it when building, and below
the recipe package, which checks a whole recipe with it; it imports neither (a registry is passed
in where component nodes are resolved), so there is no import circle between the three.
"""
