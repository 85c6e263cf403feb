"""GovernanceStack: the persona roles (trust, session, every statement exactly), the lake's
locations registered in hybrid access mode, the LF-tags and their associations, the tag-based
grants per persona and the jobs' named grants, in dev and prod.

The grants are compared with dataplatform/governance.py's description, the one the local
Athena applies too (one source), and the roles are checked the way AWS decides (AWS's
action, resource and condition-key tables, tests/contracts/iam.py): what each persona must
do is allowed, and what it must not touch (the lake's data in S3, other databases, other
streams, the pipeline for a persona that does not train) is refused.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from dataplatform import governance, layout
from dataplatform.governance import DataLocation, describe, opt_in_commands
from dataplatform.spec import Persona
from stacks.governance import (
    ATHENA_ACTIONS,
    GLUE_READ_ACTIONS,
    PERSONA_TAG_KEY,
    REGISTRY_ACTIONS,
    STREAM_ACTIONS,
)
from tests.contracts import iam
from tests.contracts.template_values import ACCOUNT, Assembly
from tests.infra.conftest import Synth, synthesize

KIND = "governance"
PERSONAS = ("producer", "analyst", "data_scientist", "admin")


# ----------------------------------------------------------------------------- reading


def assembly(synth: Synth) -> Assembly:
    return Assembly(synth.templates, synth.names.region)


def resources(synth: Synth, type_: str) -> dict[str, dict]:
    return synth.resources(KIND, type_)


def props_of(synth: Synth, type_: str) -> list[dict]:
    a = assembly(synth)
    return [a.props(KIND, lid) for lid in resources(synth, type_)]


def described(synth: Synth) -> governance.Governance:
    return describe(synth.platform, synth.names)


def region_arn(synth: Synth, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{synth.names.region}:{ACCOUNT}:{resource}"


def bucket_arn(synth: Synth, zone: str) -> str:
    return f"arn:aws:s3:::{synth.names.bucket(zone)}"


def lake_key_arn(synth: Synth) -> str:
    (alias,) = [
        r
        for r in synth.resources("storage", "AWS::KMS::Alias").values()
        if r["Properties"]["AliasName"] == synth.names.lake_key_alias
    ]
    return assembly(synth).resolve(
        "storage", {"Fn::GetAtt": [alias["Properties"]["TargetKeyId"]["Fn::GetAtt"][0], "Arn"]}
    )


def role_props(synth: Synth, role_name: str) -> dict:
    a = assembly(synth)
    (found,) = [
        a.props(KIND, lid)
        for lid in resources(synth, "AWS::IAM::Role")
        if a.props(KIND, lid)["RoleName"] == role_name
    ]
    return found


def statements(synth: Synth, role_name: str) -> set[tuple]:
    """The role's statements, resolved and normalized: (sid, actions, resources, condition)."""
    a = assembly(synth)
    found = []
    for kind, lid, _ in a.resources("AWS::IAM::Policy"):
        policy = a.props(kind, lid)
        if role_name in policy["Roles"]:
            found += policy["PolicyDocument"]["Statement"]
    assert all(s["Effect"] == "Allow" for s in found)

    def listed(value):
        return tuple(sorted(value if isinstance(value, list) else [value]))

    return {
        (s["Sid"], listed(s["Action"]), listed(s["Resource"]), json.dumps(s.get("Condition", {})))
        for s in found
    }


def statement(sid, actions, resources_, condition=None) -> tuple:
    return (sid, tuple(sorted(actions)), tuple(sorted(resources_)), json.dumps(condition or {}))


def via(synth: Synth, service: str) -> dict:
    return {"StringEquals": {"kms:ViaService": f"{service}.{synth.names.region}.amazonaws.com"}}


def persona_statements(synth: Synth, persona: str) -> set[tuple]:
    """What a persona's role must say, exactly, from its spec (the one source)."""
    n, access = synth.names, described(synth).persona(persona)
    key = lake_key_arn(synth)
    expected = set()
    if access.streams:
        expected |= {
            statement(
                "PutRecordsOnItsStreams",
                STREAM_ACTIONS,
                [region_arn(synth, "kinesis", f"stream/{s}") for s in access.streams],
            ),
            statement(
                "UseLakeKeyThroughKinesis", ["kms:GenerateDataKey"], [key], via(synth, "kinesis")
            ),
        }
    if access.databases:
        results = bucket_arn(synth, "athena-results")
        expected |= {
            statement(
                "QueryInThePlatformWorkgroup",
                ATHENA_ACTIONS,
                [region_arn(synth, "athena", f"workgroup/{n.workgroup}")],
            ),
            statement(
                "ReadTheCatalogOfItsDatabases",
                GLUE_READ_ACTIONS,
                [region_arn(synth, "glue", "catalog")]
                + [region_arn(synth, "glue", f"database/{db}") for db in access.databases]
                + [region_arn(synth, "glue", f"table/{db}/*") for db in access.databases],
            ),
            statement("LakeFormationVendsTheData", ["lakeformation:GetDataAccess"], ["*"]),
            statement(
                "WriteAndReadQueryResults",
                ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                [f"{results}/{layout.ATHENA_RESULTS_PREFIX}*"],
            ),
            statement("LocateTheResultsBucket", ["s3:GetBucketLocation"], [results]),
            statement(
                "ListQueryResults",
                ["s3:ListBucket"],
                [results],
                {"StringLike": {"s3:prefix": ["results/", "results/*"]}},
            ),
            statement(
                "UseLakeKeyThroughS3",
                ["kms:Decrypt", "kms:GenerateDataKey"],
                [key],
                via(synth, "s3"),
            ),
            statement("ReadTheEncryptedCatalog", ["kms:Decrypt"], [key], via(synth, "glue")),
        }
    if access.training:
        models = sorted(m.name for m in synth.platform.models)
        groups = [n.model_package_group(m) for m in models]
        expected |= {
            statement(
                "StartTheMlPipeline",
                ["states:StartExecution"],
                [region_arn(synth, "states", f"stateMachine:{n.ml_pipeline}")],
            ),
            statement(
                "FollowTheMlPipeline",
                ["states:DescribeExecution"],
                [region_arn(synth, "states", f"execution:{n.ml_pipeline}:*")],
            ),
            statement(
                "ReadTheModelRegistry",
                REGISTRY_ACTIONS,
                [region_arn(synth, "sagemaker", f"model-package-group/{g}") for g in groups]
                + [region_arn(synth, "sagemaker", f"model-package/{g}/*") for g in groups],
            ),
            statement(
                "DescribeTrainingJobs",
                ["sagemaker:DescribeTrainingJob"],
                [
                    region_arn(synth, "sagemaker", f"training-job/{n.training_job_prefix(m)}*")
                    for m in models
                ],
            ),
            statement(
                "ReadTheModels",
                ["s3:GetObject"],
                [f"{bucket_arn(synth, 'models')}/{layout.model_prefix(m)}*" for m in models],
            ),
            statement(
                "ListTheModels",
                ["s3:ListBucket"],
                [bucket_arn(synth, "models")],
                {"StringLike": {"s3:prefix": [v for m in models for v in (f"{m}/", f"{m}/*")]}},
            ),
        }
        if not access.databases:
            expected.add(statement("UseLakeKeyThroughS3", ["kms:Decrypt"], [key], via(synth, "s3")))
    return expected


def lf_tag_pairs(tags: list[dict]) -> dict[str, list[str]]:
    for t in tags:
        assert t["CatalogId"] == ACCOUNT
    return {t["TagKey"]: t["TagValues"] for t in tags}


def associations(synth: Synth) -> dict[tuple, dict[str, list[str]]]:
    """(kind, database, table, columns) -> its LF-tags."""
    found = {}
    for p in props_of(synth, "AWS::LakeFormation::TagAssociation"):
        resource = p["Resource"]
        ((kind, r),) = resource.items()
        assert r["CatalogId"] == ACCOUNT
        if kind == "Database":
            key = ("Database", r["Name"], "", ())
        else:
            key = (kind, r["DatabaseName"], r["Name"], tuple(r.get("ColumnNames", ())))
        assert key not in found, key
        found[key] = lf_tag_pairs(p["LFTags"])
    return found


def grants_of(synth: Synth, principal: str) -> list[dict]:
    return [
        p
        for p in props_of(synth, "AWS::LakeFormation::PrincipalPermissions")
        if p["Principal"]["DataLakePrincipalIdentifier"] == principal
    ]


def role_arn(synth: Synth, role_name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{role_name}"


def location_arn(synth: Synth, location: DataLocation) -> str:
    prefix = location.prefix.rstrip("/")
    return (
        f"{bucket_arn(synth, location.zone)}/{prefix}"
        if prefix
        else bucket_arn(synth, location.zone)
    )


def allowed(synth: Synth, role_name: str, call: iam.Call) -> bool:
    found, managed = iam.role_policies(assembly(synth), role_name)
    assert managed == []
    return iam.verdict(found, call)[0]


# ----------------------------------------------------------------------------- the roles


def test_one_role_per_persona_and_the_data_access_role(each_env):
    n = each_env.names
    role_names = {p["RoleName"] for p in props_of(each_env, "AWS::IAM::Role")}
    assert role_names == {
        *(f"{n.prefix}-persona-{p.replace('_', '-')}-{n.region}" for p in PERSONAS),
        f"{n.prefix}-lf-data-access-{n.region}",
    }
    assert {a.role_name for a in described(each_env).personas} | {
        governance.lf_data_access_role(n)
    } == role_names


@pytest.mark.parametrize("persona", PERSONAS)
def test_persona_roles_trust_the_tagged_principals_for_an_hour(each_env, persona):
    role = role_props(each_env, described(each_env).persona(persona).role_name)
    assert role["MaxSessionDuration"] == 3600
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Condition": {"StringEquals": {f"aws:PrincipalTag/{PERSONA_TAG_KEY}": persona}},
        }
    ]
    assert "ManagedPolicyArns" not in role and "Policies" not in role


@pytest.mark.parametrize("persona", PERSONAS)
def test_persona_role_statements_exactly(each_env, persona):
    role_name = described(each_env).persona(persona).role_name
    assert statements(each_env, role_name) == persona_statements(each_env, persona)


def test_the_union_is_the_admins(each_env):
    """admin: every statement the others have (it has PII on top, in its grants)."""
    admin = {s[0] for s in statements(each_env, described(each_env).persona("admin").role_name)}
    others = {
        s[0]
        for p in ("producer", "analyst", "data_scientist")
        for s in statements(each_env, described(each_env).persona(p).role_name)
    }
    assert others <= admin


def test_roles_act_as_aws_decides(each_env):
    """Each persona's work is allowed and what it must not touch is refused, judged with
    AWS's action, resource-type and condition-key tables."""
    n, d = each_env.names, described(each_env)
    region = n.region
    s3_via = {"kms:ViaService": f"s3.{region}.amazonaws.com"}
    key = lake_key_arn(each_env)
    workgroup = region_arn(each_env, "athena", f"workgroup/{n.workgroup}")
    catalog = region_arn(each_env, "glue", "catalog")

    def table_call(db: str, table: str) -> iam.Call:
        return iam.Call(
            "glue:GetTable",
            {
                "rootcatalog": catalog,
                "database": region_arn(each_env, "glue", f"database/{db}"),
                "table": region_arn(each_env, "glue", f"table/{db}/{table}"),
            },
        )

    stream = region_arn(each_env, "kinesis", f"stream/{n.stream('telecom_events')}")
    scores = region_arn(each_env, "kinesis", f"stream/{n.stream('churn_scores')}")
    raw_object = iam.Call(
        "s3:GetObject", {"object": f"{bucket_arn(each_env, 'raw')}/telecom_events/x"}
    )
    curated_object = iam.Call(
        "s3:GetObject", {"object": f"{bucket_arn(each_env, 'curated')}/telecom_events/x"}
    )
    start = iam.Call(
        "states:StartExecution",
        {"statemachine": region_arn(each_env, "states", f"stateMachine:{n.ml_pipeline}")},
    )
    query = iam.Call("athena:StartQueryExecution", {"workgroup": workgroup})
    result = iam.Call(
        "s3:PutObject", {"object": f"{bucket_arn(each_env, 'athena-results')}/results/q.csv"}
    )
    encrypt = iam.Call("kms:GenerateDataKey", {"key": key}, s3_via)
    put = iam.Call("kinesis:PutRecords", {"stream": stream})
    package = iam.Call(
        "sagemaker:DescribeModelPackage",
        {
            "model-package": region_arn(
                each_env, "sagemaker", f"model-package/{n.model_package_group('churn')}/3"
            )
        },
    )

    role = {p: d.persona(p).role_name for p in PERSONAS}
    # producer: its stream only, nothing else
    assert allowed(each_env, role["producer"], put)
    assert allowed(
        each_env,
        role["producer"],
        iam.Call(
            "kms:GenerateDataKey",
            {"key": key},
            {"kms:ViaService": f"kinesis.{region}.amazonaws.com"},
        ),
    )
    assert not allowed(
        each_env, role["producer"], iam.Call("kinesis:PutRecords", {"stream": scores})
    )
    assert not allowed(each_env, role["producer"], encrypt)  # the key through S3
    assert not allowed(each_env, role["producer"], query)
    # analyst: the workgroup, the curated catalog, its results; no raw, no S3 data, no training
    for ok in (query, result, encrypt, table_call(n.curated_database, "telecom_events")):
        assert allowed(each_env, role["analyst"], ok), ok
    for refused in (
        table_call(n.raw_database, "telecom_events"),
        table_call(n.features_database, "customer_features"),
        raw_object,
        curated_object,
        start,
        put,
        package,
        iam.Call(
            "athena:StartQueryExecution",
            {"workgroup": region_arn(each_env, "athena", "workgroup/primary")},
        ),
    ):
        assert not allowed(each_env, role["analyst"], refused), refused
    # data_scientist: curated and features, training; no raw, no S3 data
    for ok in (query, start, package, table_call(n.features_database, "customer_features")):
        assert allowed(each_env, role["data_scientist"], ok), ok
    for refused in (table_call(n.raw_database, "telecom_events"), raw_object, curated_object, put):
        assert not allowed(each_env, role["data_scientist"], refused), refused
    # admin: the union; still no S3 read of the lake's data (Lake Formation vends it)
    for ok in (query, start, package, put, table_call(n.raw_database, "telecom_events")):
        assert allowed(each_env, role["admin"], ok), ok
    for refused in (raw_object, curated_object):
        assert not allowed(each_env, role["admin"], refused), refused


def test_every_action_is_a_real_iam_action(each_env):
    a = assembly(each_env)
    for kind, lid, _ in a.resources("AWS::IAM::Policy"):
        if kind != KIND:
            continue
        for s in a.props(kind, lid)["PolicyDocument"]["Statement"]:
            for action in s["Action"] if isinstance(s["Action"], list) else [s["Action"]]:
                iam.action_table(action)  # raises for an action AWS does not have


def test_principals_given_in_the_spec_are_trusted_instead_of_the_tag(dev, tmp_path_factory):
    arns = ("arn:aws:iam::123456789012:role/bi-analysts", "arn:aws:iam::210987654321:user/alice")
    personas = tuple(
        dataclasses.replace(p, principals=arns) if p.name == "analyst" else p
        for p in dev.platform.personas
    )
    synth = synthesize(
        "dev",
        False,
        tmp_path_factory.mktemp("cdk-governance-principals"),
        dataclasses.replace(dev.platform, personas=personas),
    )
    role = role_props(synth, described(synth).persona("analyst").role_name)
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"AWS": list(arns)}}
    ]
    assert role["MaxSessionDuration"] == 3600


# ----------------------------------------------------------------------------- Lake Formation


def test_the_lake_locations_are_registered_in_hybrid_access_mode(each_env):
    d = described(each_env)
    data_access = role_arn(each_env, governance.lf_data_access_role(each_env.names))
    registered = props_of(each_env, "AWS::LakeFormation::Resource")
    assert sorted(r["ResourceArn"] for r in registered) == sorted(
        location_arn(each_env, loc) for loc in d.locations
    )
    for r in registered:
        assert r["HybridAccessEnabled"] is True
        assert r["UseServiceLinkedRole"] is False
        assert r["RoleArn"] == data_access
    raw = bucket_arn(each_env, "raw")
    curated = bucket_arn(each_env, "curated")
    assert f"{raw}/telecom_events" in {r["ResourceArn"] for r in registered}
    assert f"{curated}/_quarantine/house_sales" in {r["ResourceArn"] for r in registered}
    assert bucket_arn(each_env, "features") in {r["ResourceArn"] for r in registered}


def test_the_data_access_role_reads_exactly_the_registered_locations(each_env):
    n, d = each_env.names, described(each_env)
    role_name = governance.lf_data_access_role(n)
    role = role_props(each_env, role_name)
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "lakeformation.amazonaws.com"},
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
        }
    ]

    def prefixes(zone):
        return [
            v for loc in d.locations if loc.zone == zone for v in (loc.prefix, f"{loc.prefix}*")
        ]

    assert statements(each_env, role_name) == {
        statement(
            "ReadAndWriteTheRegisteredLocations",
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            [f"{bucket_arn(each_env, loc.zone)}/{loc.prefix}*" for loc in d.locations],
        ),
        statement(
            "ListRawLocations",
            ["s3:ListBucket"],
            [bucket_arn(each_env, "raw")],
            {"StringLike": {"s3:prefix": prefixes("raw")}},
        ),
        statement(
            "ListCuratedLocations",
            ["s3:ListBucket"],
            [bucket_arn(each_env, "curated")],
            {"StringLike": {"s3:prefix": prefixes("curated")}},
        ),
        statement("ListFeaturesLocations", ["s3:ListBucket"], [bucket_arn(each_env, "features")]),
        statement(
            "UseLakeKeyThroughS3",
            ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
            [lake_key_arn(each_env)],
            via(each_env, "s3"),
        ),
    }
    assert not allowed(
        each_env,
        role_name,
        iam.Call(
            "s3:GetObject", {"object": f"{bucket_arn(each_env, 'raw')}/_errors/telecom_events/x"}
        ),
    )


def test_lf_tags_zone_domain_pii(each_env):
    tags = {p["TagKey"]: p["TagValues"] for p in props_of(each_env, "AWS::LakeFormation::Tag")}
    assert tags == {
        "zone": ["raw", "curated", "features"],
        "domain": ["real_estate", "retail", "telecom"],
        "pii": ["true", "false"],
    }
    for p in props_of(each_env, "AWS::LakeFormation::Tag"):
        assert p["CatalogId"] == ACCOUNT


def test_databases_tables_and_pii_columns_are_tagged(each_env):
    n = each_env.names
    found = associations(each_env)
    for zone in ("raw", "curated", "features"):
        assert found[("Database", n.database(zone), "", ())] == {"zone": [zone], "pii": ["false"]}
    for ds in each_env.platform.datasets:
        for db, table in (
            (n.raw_database, ds.name),
            (n.curated_database, ds.name),
            (n.curated_database, n.quarantine_table(ds.name)),
        ):
            assert found[("Table", db, table, ())] == {"domain": [ds.domain], "pii": ["false"]}
    # the datasets' pii: columns, pii=true, in the raw, curated and quarantine tables
    pii_columns = {k: v for k, v in found.items() if k[0] == "TableWithColumns"}
    assert pii_columns == {
        ("TableWithColumns", db, table, (column,)): {"pii": ["true"]}
        for db in (n.raw_database, n.curated_database)
        for dataset, column in (("telecom_events", "msisdn"), ("house_sales", "agent_email"))
        for table in (
            (dataset,) if db == n.raw_database else (dataset, n.quarantine_table(dataset))
        )
    }
    assert len(found) == 3 + 3 * len(each_env.platform.datasets) + len(pii_columns)


def test_associations_follow_the_description_the_local_athena_uses(each_env):
    """The tables LocalPlatform.grants hides PII columns in are the ones tagged pii=true."""
    d = described(each_env)
    tagged = {(k[1], k[2]): k[3] for k in associations(each_env) if k[0] == "TableWithColumns"}
    assert tagged == {
        (db, table): cols for (db, table), cols in d.hidden_columns("analyst").items()
    }
    assert d.hidden_columns("admin") == {}


def test_persona_grants_are_the_descriptions_tag_expressions(each_env):
    d = described(each_env)
    for access in d.personas:
        found = grants_of(each_env, role_arn(each_env, access.role_name))
        expected = [
            {
                "Catalog": ACCOUNT,
                "Principal": {"DataLakePrincipalIdentifier": role_arn(each_env, access.role_name)},
                "Resource": {
                    "LFTagPolicy": {
                        "CatalogId": ACCOUNT,
                        "ResourceType": g.resource_type,
                        "Expression": [
                            {"TagKey": c.key, "TagValues": list(c.values)} for c in g.expression
                        ],
                    }
                },
                "Permissions": list(g.permissions),
                "PermissionsWithGrantOption": [],
            }
            for g in access.grants
        ]
        assert found == expected, access.name


def test_persona_grants_in_plain_words(each_env):
    """analyst: curated only, pii=false required (so msisdn is not in its view); admin: every
    zone, no pii condition; producer: none."""

    def expressions(persona):
        access = described(each_env).persona(persona)
        return {
            (g["Resource"]["LFTagPolicy"]["ResourceType"], tuple(g["Permissions"])): {
                e["TagKey"]: e["TagValues"] for e in g["Resource"]["LFTagPolicy"]["Expression"]
            }
            for g in grants_of(each_env, role_arn(each_env, access.role_name))
        }

    assert expressions("producer") == {}
    assert expressions("analyst") == {
        ("DATABASE", ("DESCRIBE",)): {"zone": ["curated"]},
        ("TABLE", ("SELECT", "DESCRIBE")): {"zone": ["curated"], "pii": ["false"]},
    }
    assert expressions("data_scientist") == {
        ("DATABASE", ("DESCRIBE",)): {"zone": ["curated", "features"]},
        ("TABLE", ("SELECT", "DESCRIBE")): {"zone": ["curated", "features"], "pii": ["false"]},
    }
    assert expressions("admin") == {
        ("DATABASE", ("DESCRIBE",)): {"zone": ["raw", "curated", "features"]},
        ("TABLE", ("SELECT", "DESCRIBE")): {"zone": ["raw", "curated", "features"]},
    }


def test_job_roles_get_exactly_the_descriptions_grants(each_env):
    d = described(each_env)
    for job in d.jobs:
        principal = role_arn(each_env, job.role_name)
        found = grants_of(each_env, principal)
        expected = []
        for g in job.grants:
            if g.resource_type == governance.DATABASE:
                resource = {"Database": {"CatalogId": ACCOUNT, "Name": g.database}}
            elif g.resource_type == governance.TABLE:
                resource = {
                    "Table": {"CatalogId": ACCOUNT, "DatabaseName": g.database, "Name": g.table}
                }
            elif g.resource_type == governance.TABLE_WILDCARD:
                resource = {
                    "Table": {"CatalogId": ACCOUNT, "DatabaseName": g.database, "TableWildcard": {}}
                }
            else:
                assert g.location is not None
                resource = {
                    "DataLocation": {
                        "CatalogId": ACCOUNT,
                        "ResourceArn": location_arn(each_env, g.location),
                    }
                }
            expected.append(
                {
                    "Catalog": ACCOUNT,
                    "Principal": {"DataLakePrincipalIdentifier": principal},
                    "Resource": resource,
                    "Permissions": list(g.permissions),
                    "PermissionsWithGrantOption": [],
                }
            )
        assert found == expected, job.role_name
    # every grant of the stack is a persona's or a job's (the producer queries nothing)
    principals = {role_arn(each_env, a.role_name) for a in d.personas if a.grants} | {
        role_arn(each_env, j.role_name) for j in d.jobs
    }
    assert {
        p["Principal"]["DataLakePrincipalIdentifier"]
        for p in props_of(each_env, "AWS::LakeFormation::PrincipalPermissions")
    } == principals


def test_job_grants_in_plain_words(each_env):
    n = each_env.names

    def table_permissions(role_name):
        return {
            (g["Resource"]["Table"]["DatabaseName"], g["Resource"]["Table"].get("Name", "*")): g[
                "Permissions"
            ]
            for g in grants_of(each_env, role_arn(each_env, role_name))
            if "Table" in g["Resource"]
        }

    def locations(role_name):
        return {
            g["Resource"]["DataLocation"]["ResourceArn"]
            for g in grants_of(each_env, role_arn(each_env, role_name))
            if "DataLocation" in g["Resource"]
        }

    raw, curated = bucket_arn(each_env, "raw"), bucket_arn(each_env, "curated")
    # the crawler: its raw table
    assert table_permissions(n.crawler_role("telecom_events")) == {
        (n.raw_database, "telecom_events"): ["SELECT", "DESCRIBE", "ALTER", "INSERT"]
    }
    assert locations(n.crawler_role("telecom_events")) == {f"{raw}/telecom_events"}
    # curate: read raw, write curated and its quarantine
    assert table_permissions(n.curate_job_role("telecom_events")) == {
        (n.raw_database, "telecom_events"): ["SELECT", "DESCRIBE"],
        (n.curated_database, "telecom_events"): ["SELECT", "DESCRIBE", "INSERT", "DELETE", "ALTER"],
        (n.curated_database, "telecom_events_quarantine"): ["DESCRIBE", "INSERT", "DELETE"],
    }
    assert locations(n.curate_job_role("telecom_events")) == {
        f"{curated}/telecom_events",
        f"{curated}/_quarantine/telecom_events",
    }
    # EMR: read curated, create and write the feature tables
    emr = table_permissions(n.emr_instance_role)
    assert emr[(n.features_database, "*")] == ["SELECT", "DESCRIBE", "INSERT", "DELETE", "ALTER"]
    assert {k for k, v in emr.items() if k[0] == n.curated_database} == {
        (n.curated_database, ds.name) for ds in each_env.platform.datasets
    }
    assert locations(n.emr_instance_role) == {bucket_arn(each_env, "features")}
    # SageMaker reads the features' objects with its own IAM policy: no grant
    assert grants_of(each_env, role_arn(each_env, n.sagemaker_role)) == []


def test_grants_wait_for_their_tags_and_registrations(each_env):
    template = each_env.templates[KIND]["Resources"]
    tag_ids = {lid for lid, r in template.items() if r["Type"] == "AWS::LakeFormation::Tag"}
    location_ids = {
        lid for lid, r in template.items() if r["Type"] == "AWS::LakeFormation::Resource"
    }
    for r in template.values():
        if r["Type"] == "AWS::LakeFormation::TagAssociation":
            assert set(r["DependsOn"]) & tag_ids
        if r["Type"] == "AWS::LakeFormation::PrincipalPermissions":
            resource = r["Properties"]["Resource"]
            if "LFTagPolicy" in resource:
                assert set(r["DependsOn"]) & tag_ids
            if "DataLocation" in resource:
                assert set(r["DependsOn"]) & location_ids
    # and the stack itself waits for the catalog it tags
    names = {s.stack_name for s in each_env.stacks.governance.dependencies}
    assert each_env.names.stack("catalog") in names


def test_no_data_lake_settings_are_managed(each_env):
    """The account-wide settings (its administrators) are not overwritten by the stack."""
    types = {r["Type"] for r in each_env.templates[KIND]["Resources"].values()}
    assert "AWS::LakeFormation::DataLakeSettings" not in types
    assert "AWS::LakeFormation::Permissions" not in types  # the older, replaced resource


def test_opt_in_commands_name_each_persona_role_and_its_databases(each_env):
    d, n = described(each_env), each_env.names
    commands = opt_in_commands(d, n)
    analyst = [c for c in commands if d.persona("analyst").role_name in c]
    assert len(analyst) == 2
    assert all(c.startswith("aws lakeformation create-lake-formation-opt-in ") for c in commands)
    assert all(f"--region {n.region}" in c for c in commands)
    assert not [c for c in commands if d.persona("producer").role_name in c]
    assert len(commands) == 2 * sum(len(a.databases) for a in d.personas)


def test_a_persona_without_pii_is_the_only_one_whose_columns_are_hidden():
    """The description's rule, on a spec-like variant: pii decides the pii=false condition."""
    from dataplatform.naming import Names
    from dataplatform.spec import load_spec
    from stacks.platform import REPO_ROOT

    platform = load_spec(REPO_ROOT / "spec")
    extra = Persona(name="auditor", databases=("raw",), pii=True)
    platform = dataclasses.replace(platform, personas=(*platform.personas, extra))
    names = Names.for_environment(platform, platform.environment("dev"), account=ACCOUNT)
    d = describe(platform, names)
    assert d.persona("auditor").sees_pii() and d.hidden_columns("auditor") == {}
    assert not d.persona("analyst").sees_pii()
    assert d.hidden_columns("analyst")[(names.raw_database, "telecom_events")] == ("msisdn",)
