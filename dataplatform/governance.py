"""Who may use what, described once (no CDK, no boto3): the Lake Formation tags and
grants the spec implies, per persona (spec/personas.yaml) and per platform job.

The GovernanceStack (stacks/governance.py) turns this description into LF-tags, tag
associations, tag-based grants and the persona roles; the local Athena's grants
(provisioned as LF-tags and tag grants, evaluated for the role that signs a query,
`dp query --as PERSONA`) come from the same grants, and
`dp personas` prints them: the local and the deployed platform cannot drift apart.

The tags:
- `zone` (raw, curated, features) on each database; its tables and columns inherit it;
- `domain` (the datasets' `domain:` values) on each dataset's tables;
- `pii` (true, false): false on each database (so tables created later, the EMR steps'
  feature tables, inherit it) and on each dataset's tables, true on the columns a dataset
  lists under `pii:` in the tables that carry them (raw, curated and quarantine).

A persona's grants are tag expressions: DESCRIBE on the databases of its zones, SELECT and
DESCRIBE on their tables; a persona without `pii: true` matches `pii=false` only, which
Lake Formation applies per column: the pii=true columns are not in its view of a table.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataplatform import layout
from dataplatform.naming import DATABASE_ZONES, Names
from dataplatform.spec import Persona, Platform

ZONE_TAG = "zone"
DOMAIN_TAG = "domain"
PII_TAG = "pii"
PII_VALUES = ("true", "false")
PII, NOT_PII = PII_VALUES

DATABASE = "DATABASE"
TABLE = "TABLE"
# The tables of a database, including those created after the grant (EMR's feature tables).
TABLE_WILDCARD = "TABLE_WILDCARD"
DATA_LOCATION = "DATA_LOCATION"

PERSONA_DATABASE_PERMISSIONS = ("DESCRIBE",)
PERSONA_TABLE_PERMISSIONS = ("SELECT", "DESCRIBE")


@dataclass(frozen=True)
class TagCondition:
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class TagGrant:
    """Permissions on every DATABASE or TABLE whose tags match all the conditions."""

    resource_type: str
    expression: tuple[TagCondition, ...]
    permissions: tuple[str, ...]

    def condition(self, key: str) -> TagCondition | None:
        return next((c for c in self.expression if c.key == key), None)


@dataclass(frozen=True)
class DataLocation:
    """A registered S3 location: a zone's bucket, or a key prefix of it ("" for the bucket;
    layout.py's prefixes, ending in /)."""

    zone: str
    prefix: str = ""


@dataclass(frozen=True)
class TaggedDatabase:
    zone: str
    name: str


@dataclass(frozen=True)
class TaggedTable:
    zone: str
    database: str
    name: str
    dataset: str
    domain: str
    pii_columns: tuple[str, ...]  # tagged pii=true (those of the dataset's `pii:` it carries)


@dataclass(frozen=True)
class NamedGrant:
    """A grant on named catalog resources (the platform jobs' grants)."""

    resource_type: str  # DATABASE | TABLE | TABLE_WILDCARD | DATA_LOCATION
    permissions: tuple[str, ...]
    database: str = ""
    table: str = ""
    location: DataLocation | None = None


@dataclass(frozen=True)
class JobAccess:
    key: str  # crawler_<dataset>, curate_<dataset>, emr
    role_name: str
    purpose: str
    grants: tuple[NamedGrant, ...]


@dataclass(frozen=True)
class PersonaAccess:
    persona: Persona
    role_name: str
    databases: tuple[str, ...]  # Glue database names of its zones
    streams: tuple[str, ...]  # Kinesis stream names it may put records on
    grants: tuple[TagGrant, ...]

    @property
    def name(self) -> str:
        return self.persona.name

    @property
    def pii(self) -> bool:
        return self.persona.pii

    @property
    def training(self) -> bool:
        return self.persona.training

    @property
    def principals(self) -> tuple[str, ...]:
        return self.persona.principals

    @property
    def table_grant(self) -> TagGrant | None:
        return next((g for g in self.grants if g.resource_type == TABLE), None)

    def sees_pii(self) -> bool:
        """Does its table grant match columns tagged pii=true?"""
        grant = self.table_grant
        if grant is None:
            return False
        condition = grant.condition(PII_TAG)
        return condition is None or PII in condition.values


@dataclass(frozen=True)
class Governance:
    tags: tuple[TagCondition, ...]  # each LF-tag and its values
    databases: tuple[TaggedDatabase, ...]
    tables: tuple[TaggedTable, ...]
    locations: tuple[DataLocation, ...]
    personas: tuple[PersonaAccess, ...]
    jobs: tuple[JobAccess, ...]

    def persona(self, name: str) -> PersonaAccess:
        for access in self.personas:
            if access.name == name:
                return access
        known = ", ".join(a.name for a in self.personas) or "none (add spec/personas.yaml)"
        raise KeyError(f"unknown persona {name!r}; known (spec/personas.yaml): {known}")

    def hidden_columns(self, persona: str) -> dict[tuple[str, str], tuple[str, ...]]:
        """Per (database, table), the columns the persona's grants leave out of its view."""
        if self.persona(persona).sees_pii():
            return {}
        return {(t.database, t.name): t.pii_columns for t in self.tables if t.pii_columns}


def persona_role(names: Names, persona: str) -> str:
    return names.role(f"persona-{persona.replace('_', '-')}")


def lf_data_access_role(names: Names) -> str:
    """The role Lake Formation assumes to read the registered locations for the personas."""
    return names.role("lf-data-access")


def describe(platform: Platform, names: Names) -> Governance:
    domains = tuple(sorted({d.domain for d in platform.datasets}))
    tags = (
        TagCondition(ZONE_TAG, DATABASE_ZONES),
        TagCondition(DOMAIN_TAG, domains),
        TagCondition(PII_TAG, PII_VALUES),
    )
    databases = tuple(TaggedDatabase(zone, names.database(zone)) for zone in DATABASE_ZONES)

    tables: list[TaggedTable] = []
    for ds in platform.datasets:
        all_columns = {c.name for c in ds.columns}
        kept = {c.name for c in ds.kept_columns}
        for zone, table, columns in (
            ("raw", names.table(ds.name), all_columns),  # raw keeps every column as delivered
            ("curated", names.table(ds.name), kept),
            ("curated", names.quarantine_table(ds.name), kept),
        ):
            tables.append(
                TaggedTable(
                    zone=zone,
                    database=names.database(zone),
                    name=table,
                    dataset=ds.name,
                    domain=ds.domain,
                    pii_columns=tuple(c for c in ds.pii if c in columns),
                )
            )

    # The tables' own prefixes in raw and curated; all of features (the EMR steps create
    # their tables there at run time).
    locations = tuple(
        [DataLocation("raw", layout.raw_prefix(ds.name)) for ds in platform.datasets]
        + [DataLocation("curated", layout.curated_prefix(ds.name)) for ds in platform.datasets]
        + [DataLocation("curated", layout.quarantine_prefix(ds.name)) for ds in platform.datasets]
        + [DataLocation("features")]
    )

    personas = tuple(_persona_access(p, names) for p in platform.personas)
    return Governance(
        tags=tags,
        databases=databases,
        tables=tuple(tables),
        locations=locations,
        personas=personas,
        jobs=_job_access(platform, names),
    )


def _persona_access(persona: Persona, names: Names) -> PersonaAccess:
    grants: list[TagGrant] = []
    if persona.databases:
        zones = TagCondition(ZONE_TAG, persona.databases)
        grants.append(TagGrant(DATABASE, (zones,), PERSONA_DATABASE_PERMISSIONS))
        table_expression = (zones,) if persona.pii else (zones, TagCondition(PII_TAG, (NOT_PII,)))
        grants.append(TagGrant(TABLE, table_expression, PERSONA_TABLE_PERMISSIONS))
    return PersonaAccess(
        persona=persona,
        role_name=persona_role(names, persona.name),
        databases=tuple(names.database(z) for z in persona.databases),
        streams=tuple(names.stream(s) for s in persona.streams),
        grants=tuple(grants),
    )


def _job_access(platform: Platform, names: Names) -> tuple[JobAccess, ...]:
    """The grants of the platform's own roles, for exactly their work. These roles are not
    opted in to Lake Formation (hybrid access mode), so IAM keeps deciding their reads and
    writes; Lake Formation still checks, for every principal, the creation of tables and
    partitions in a registered location (DATA_LOCATION_ACCESS) and the catalog changes, and
    the grants are what they need once opted in.

    SageMaker's training role gets none: training reads the features' S3 objects with its
    own IAM policy (stacks/ml.py) and never the catalog, and it is not opted in."""
    raw, curated, features = (names.database(z) for z in DATABASE_ZONES)
    jobs: list[JobAccess] = []
    for ds in platform.datasets:
        table = names.table(ds.name)
        jobs.append(
            JobAccess(
                key=f"crawler_{ds.name}",
                role_name=names.crawler_role(ds.name),
                purpose=f"crawler of raw {ds.name}: adds its raw table's partitions",
                grants=(
                    NamedGrant(DATABASE, ("DESCRIBE",), database=raw),
                    NamedGrant(
                        TABLE, ("SELECT", "DESCRIBE", "ALTER", "INSERT"), database=raw, table=table
                    ),
                    NamedGrant(
                        DATA_LOCATION,
                        ("DATA_LOCATION_ACCESS",),
                        location=DataLocation("raw", layout.raw_prefix(ds.name)),
                    ),
                ),
            )
        )
        jobs.append(
            JobAccess(
                key=f"curate_{ds.name}",
                role_name=names.curate_job_role(ds.name),
                purpose=f"curate job of {ds.name}: reads raw, writes curated and its quarantine",
                grants=(
                    NamedGrant(DATABASE, ("DESCRIBE",), database=raw),
                    NamedGrant(DATABASE, ("DESCRIBE",), database=curated),
                    NamedGrant(TABLE, ("SELECT", "DESCRIBE"), database=raw, table=table),
                    NamedGrant(
                        TABLE,
                        ("SELECT", "DESCRIBE", "INSERT", "DELETE", "ALTER"),
                        database=curated,
                        table=table,
                    ),
                    NamedGrant(
                        TABLE,
                        ("DESCRIBE", "INSERT", "DELETE"),
                        database=curated,
                        table=names.quarantine_table(ds.name),
                    ),
                    NamedGrant(
                        DATA_LOCATION,
                        ("DATA_LOCATION_ACCESS",),
                        location=DataLocation("curated", layout.curated_prefix(ds.name)),
                    ),
                    NamedGrant(
                        DATA_LOCATION,
                        ("DATA_LOCATION_ACCESS",),
                        location=DataLocation("curated", layout.quarantine_prefix(ds.name)),
                    ),
                ),
            )
        )
    for ds in platform.datasets:
        if not ds.has_scheduled_maintenance:
            continue
        jobs.append(
            JobAccess(
                key=f"maintain_{ds.name}",
                role_name=names.maintenance_role(ds.name),
                purpose=f"scheduled OPTIMIZE / VACUUM of the Iceberg table {ds.name}",
                grants=(
                    NamedGrant(DATABASE, ("DESCRIBE",), database=curated),
                    NamedGrant(
                        TABLE,
                        ("SELECT", "DESCRIBE", "INSERT", "DELETE", "ALTER"),
                        database=curated,
                        table=names.table(ds.name),
                    ),
                    NamedGrant(
                        DATA_LOCATION,
                        ("DATA_LOCATION_ACCESS",),
                        location=DataLocation("curated", layout.curated_prefix(ds.name)),
                    ),
                ),
            )
        )
    jobs.append(
        JobAccess(
            key="emr",
            role_name=names.emr_instance_role,
            purpose="EMR steps: read the curated tables, create and write the feature tables",
            grants=(
                NamedGrant(DATABASE, ("DESCRIBE",), database=curated),
                *(
                    NamedGrant(
                        TABLE, ("SELECT", "DESCRIBE"), database=curated, table=names.table(ds.name)
                    )
                    for ds in platform.datasets
                ),
                NamedGrant(DATABASE, ("DESCRIBE", "CREATE_TABLE"), database=features),
                NamedGrant(
                    TABLE_WILDCARD,
                    ("SELECT", "DESCRIBE", "INSERT", "DELETE", "ALTER"),
                    database=features,
                ),
                NamedGrant(
                    DATA_LOCATION, ("DATA_LOCATION_ACCESS",), location=DataLocation("features")
                ),
            ),
        )
    )
    return tuple(jobs)


def opt_in_commands(governance: Governance, names: Names) -> list[str]:
    """What the data lake administrator runs once after a deployment (no CloudFormation
    resource exists for it, and only an administrator may call it): each persona role opted
    in to Lake Formation (hybrid access mode) on the databases of its zones and their
    tables, so that Lake Formation's grants, not IAM, decide what it reads."""
    commands = []
    account = names.account
    for access in governance.personas:
        principal = f"arn:aws:iam::{account}:role/{access.role_name}"
        for db in access.databases:
            for resource in (
                f'{{"Database": {{"CatalogId": "{account}", "Name": "{db}"}}}}',
                f'{{"Table": {{"CatalogId": "{account}", "DatabaseName": "{db}", '
                '"TableWildcard": {}}}',
            ):
                commands.append(
                    "aws lakeformation create-lake-formation-opt-in "
                    f"--principal DataLakePrincipalIdentifier={principal} "
                    f"--resource '{resource}' --region {names.region}"
                )
    return commands
