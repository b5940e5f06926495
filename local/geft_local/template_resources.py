"""The template's resources and function environments live in ``testkit.template``; these names stay
importable here for the local stack's modules that name them."""

from testkit.template import (
    REPO_ROOT,
    TEMPLATE_PATH,
    CreatedResources,
    load_template,
    parameter_values,
    resolve,
    resources_of_type,
)

__all__ = [
    "REPO_ROOT",
    "TEMPLATE_PATH",
    "CreatedResources",
    "load_template",
    "parameter_values",
    "resolve",
    "resources_of_type",
]
