"""The template as deployed is read by ``testkit.template_render``; these names stay importable here for
the local stack's modules that name them."""

from testkit.template_render import EVALUATED, apply_conditions, failed_rules, resolve_known

__all__ = ["EVALUATED", "apply_conditions", "failed_rules", "resolve_known"]
