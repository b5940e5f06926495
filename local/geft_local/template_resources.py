"""The template lives in ``testkit.template``; these names stay importable here for the local stack's
modules that name them."""

from testkit.template import REPO_ROOT, TEMPLATE_PATH, load_template, parameter_values

__all__ = ["REPO_ROOT", "TEMPLATE_PATH", "load_template", "parameter_values"]
