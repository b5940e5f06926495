"""Render template.yaml as CloudFormation would deploy it for one samconfig environment.

Run by .venv-sam's interpreter (it needs SAM CLI's libraries), with testkit importable:

    PYTHONPATH=. .venv-sam/bin/python tests/support/sam_render.py --config-env prod \
        --output .aws-sam/rendered/prod.json

The steps are the deployment's: the template's Rules are checked (a broken one exits 2, as CloudFormation
refuses the change set); what AWS::LanguageExtensions resolves before SAM runs is resolved
(``testkit.template_render.resolve_known``: parameters, conditions, Fn::Sub/Join/Split/Select on known
values; SAM CLI's own local expansion is not used because it turns an ``Fn::Sub`` that names a resource
into a plain string); the SAM transform runs (aws-sam-translator, what `sam validate` uses); and resources
whose condition is false are dropped. Local CodeUri/ContentUri folders become S3
URIs whose key is a digest of their files, as `sam package` uploads them, so a code change shows as a
new Lambda version. `make validate` scans the result with checkov; tests read it to check what SAM
generates (aliases, deployment groups, event source mappings).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

from testkit.template_render import apply_conditions, failed_rules, resolve_known

REPO = Path(__file__).resolve().parents[2]
ACCOUNT_ID = "123456789012"
_ARTIFACT_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


class _NoManagedPolicies:
    """The template names no managed policy (explicit roles only), so there is nothing to look up."""

    def load(self) -> dict[str, str]:
        return {}


def samconfig_environment(config_env: str, samconfig: Path) -> tuple[str, str | None, dict[str, str]]:
    """(stack name, pinned region or None, deploy parameter overrides) of a samconfig environment."""
    config = tomllib.loads(samconfig.read_text())[config_env]
    global_parameters = config.get("global", {}).get("parameters", {})
    overrides = config.get("deploy", {}).get("parameters", {}).get("parameter_overrides", [])
    if isinstance(overrides, str):
        overrides = overrides.split()
    return (
        str(global_parameters["stack_name"]),
        global_parameters.get("region"),
        dict(entry.split("=", 1) for entry in overrides),
    )


def folder_digest(folder: Path) -> str:
    """A digest of every file under ``folder`` (names and bytes), caches excluded."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def package_artifacts(template: dict[str, Any], template_dir: Path) -> None:
    """Replace local code folders with the S3 URIs `sam package` would give them."""
    for resource in template.get("Resources", {}).values():
        prop = _ARTIFACT_PROPERTIES.get(resource.get("Type"))
        location = resource.get("Properties", {}).get(prop) if prop else None
        if isinstance(location, str) and not location.startswith("s3://"):
            digest = folder_digest(template_dir / location)
            resource["Properties"][prop] = f"s3://sam-render-artifacts/{location.strip('/')}/{digest}"


def render(
    template_path: Path, parameters: dict[str, str], *, stack_name: str, region: str
) -> dict[str, Any]:
    template = yaml_parse(template_path.read_text())
    package_artifacts(template, template_path.parent)
    values = {
        name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()
    } | parameters
    unknown = sorted(set(parameters) - set(template.get("Parameters", {})))
    if unknown:
        raise SystemExit(f"template has no parameter {', '.join(unknown)}")
    broken = failed_rules(template, values)
    if broken:
        print("\n".join(f"rule failed: {message}" for message in broken), file=sys.stderr)
        raise SystemExit(2)
    pseudo = {
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::StackName": stack_name,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }
    expanded = resolve_known(template, values, pseudo)
    expanded["Transform"] = "AWS::Serverless-2016-10-31"  # the extensions are applied: SAM's turn
    transformed = transform(expanded, values | pseudo, _NoManagedPolicies())
    return apply_conditions(transformed, values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--config-env", default="default", help="a samconfig.toml environment")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override")
    parser.add_argument("--template", type=Path, default=REPO / "template.yaml")
    parser.add_argument("--samconfig", type=Path, default=REPO / "samconfig.toml")
    parser.add_argument("--output", type=Path, help="default: stdout")
    arguments = parser.parse_args(argv)
    stack_name, region, overrides = samconfig_environment(arguments.config_env, arguments.samconfig)
    overrides |= dict(entry.split("=", 1) for entry in arguments.set)
    region = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    os.environ["AWS_DEFAULT_REGION"] = region  # the translator derives the partition from it
    rendered = render(arguments.template, overrides, stack_name=stack_name, region=region)
    text = json.dumps(rendered, indent=1, sort_keys=True, default=str) + "\n"
    if arguments.output is None:
        sys.stdout.write(text)
    else:
        arguments.output.parent.mkdir(parents=True, exist_ok=True)
        arguments.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
