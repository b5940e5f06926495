"""template.yaml through SAM's own transform: the CloudFormation a deployment of it creates.

The steps are the deployment's: the template's Rules are checked (``DeploymentError``, as CloudFormation
refuses the change set); what AWS::LanguageExtensions resolves before SAM runs is resolved
(``template_render.resolve_known``: parameters, conditions, Fn::Sub/Join/Split/Select on known values);
the SAM transform runs (aws-sam-translator, what `sam validate` and CloudFormation use), so Globals,
Layers, events, aliases and versions mean what they mean in AWS; resources whose condition is false
are dropped. Local CodeUri/ContentUri folders become S3 locations first, as `sam package` uploads them:
by default the key is the folder itself (``local_artifact``: the local stack reads the code from there).

One transform takes about 0.2 s, so the result is cached per template and parameter set (the tests
build a deployment per test); callers get their own copy.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from testkit.template_render import apply_conditions, failed_rules, resolve_known

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
LOCAL_BUCKET = "local-artifacts"
_ARTIFACT_PROPERTIES = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}
ArtifactUri = Callable[[Path, str], str]


class DeploymentError(ValueError):
    """CloudFormation would refuse these parameters (a template Rule fails)."""


def pseudo_parameters(stack_name: str, region: str = REGION) -> dict[str, str]:
    """What ``Ref: AWS::...`` is in a stack deployed here."""
    return {
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::StackName": stack_name,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }


def local_artifact(template_dir: Path, location: str) -> str:
    return f"s3://{LOCAL_BUCKET}/{location.strip('/')}"


def transformed(
    template: Mapping[str, Any],
    parameters: Mapping[str, str],
    *,
    stack_name: str,
    region: str = REGION,
    template_dir: Path = Path(),
    artifact_uri: ArtifactUri = local_artifact,
) -> dict[str, Any]:
    """``template`` (as ``load_template`` reads it) deployed with ``parameters`` (every one of them, as
    strings): the CloudFormation resources, outputs and parameters SAM's transform gives CloudFormation."""
    source = json.dumps(template, default=str)  # template order: functions, mappings, routes as written
    key = json.dumps([sorted(parameters.items()), stack_name, region, str(template_dir)])
    return dict(json.loads(_transformed(source, key, artifact_uri)))


@functools.cache
def _transformed(source: str, key: str, artifact_uri: ArtifactUri) -> str:
    import boto3  # noqa: PLC0415 - heavy, and only the local tooling transforms
    import botocore.session  # noqa: PLC0415
    from samtranslator.parser.parser import Parser  # noqa: PLC0415
    from samtranslator.translator.arn_generator import ArnGenerator  # noqa: PLC0415
    from samtranslator.translator.translator import Translator  # noqa: PLC0415

    template = json.loads(source)
    parameter_items, stack_name, region, template_dir = json.loads(key)
    values = dict(parameter_items)
    broken = failed_rules(template, values)
    if broken:
        raise DeploymentError("template rules refuse these parameters: " + "; ".join(broken))
    for resource in template.get("Resources", {}).values():
        prop = _ARTIFACT_PROPERTIES.get(resource.get("Type"))
        location = resource.get("Properties", {}).get(prop) if prop else None
        if isinstance(location, str) and not location.startswith("s3://"):
            resource["Properties"][prop] = artifact_uri(Path(template_dir), location)
    pseudo = pseudo_parameters(stack_name, region)
    expanded = resolve_known(template, values, pseudo)
    expanded["Transform"] = "AWS::Serverless-2016-10-31"  # the extensions are applied: SAM's turn
    ArnGenerator.BOTO_SESSION_REGION_NAME = region  # the partition, without asking boto3's environment
    logging.getLogger("samtranslator").setLevel(logging.ERROR)  # feature-toggle chatter
    # SAM's own entry point (transform) asks boto3's environment for the region: given here instead, from
    # a session that reads no AWS_PROFILE (an offline transform must not fail on the caller's profile,
    # an empty one as make sets it, or one this machine does not have)
    no_profile = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
    session = boto3.session.Session(botocore_session=no_profile, region_name=region)
    translator = Translator(None, Parser(), boto_session=session)
    result = translator.translate(expanded, values | pseudo, get_managed_policy_map=dict)
    return json.dumps(apply_conditions(result, values), default=str)
