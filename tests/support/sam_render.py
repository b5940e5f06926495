"""Render template.yaml as CloudFormation would deploy it for one samconfig environment (`make validate`).

    PYTHONPATH=. .venv/bin/python tests/support/sam_render.py --config-env prod \
        --output .aws-sam/rendered/prod.json

The rendering is ``testkit.sam_transform`` (Rules checked: a broken one exits 2, as CloudFormation refuses
the change set; LanguageExtensions resolved; SAM's transform; false conditions dropped), with the code
folders given the S3 keys `sam package` would (a digest of their files, so a code change shows as a new
Lambda version). `make validate` scans the result with cfn-lint and checkov; tests read it to check what
SAM generates (aliases, deployment groups, event source mappings).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tomllib
from pathlib import Path

from testkit.sam_transform import DeploymentError, transformed
from testkit.template import load_template, parameter_values

REPO = Path(__file__).resolve().parents[2]


def folder_digest(folder: Path) -> str:
    """A digest of every file under ``folder`` (names and bytes), caches excluded."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def digest_artifact(template_dir: Path, location: str) -> str:
    """The S3 location `sam package` gives a code folder: a code change shows as a new Lambda version."""
    return f"s3://sam-render-artifacts/{location.strip('/')}/{folder_digest(template_dir / location)}"


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
    template = load_template(arguments.template)
    try:
        rendered = transformed(
            template,
            parameter_values(template, overrides),
            stack_name=stack_name,
            region=region or "us-east-1",
            template_dir=arguments.template.parent,
            artifact_uri=digest_artifact,
        )
    except KeyError as error:
        raise SystemExit(str(error)) from None
    except DeploymentError as error:
        print(f"rule failed: {error}", file=sys.stderr)
        return 2
    text = json.dumps(rendered, indent=1, sort_keys=True) + "\n"
    if arguments.output is None:
        sys.stdout.write(text)
    else:
        arguments.output.parent.mkdir(parents=True, exist_ok=True)
        arguments.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
