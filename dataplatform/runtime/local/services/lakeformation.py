"""Lake Formation's grants, evaluated for the local Athena: which tables a principal may
read and which of their columns it sees. moto stores LF-tags, their associations and the
grants (the local platform's provisioning applies the governance stack's, from
dataplatform/governance.py) but decides nothing with them; this does, as Lake Formation
does for the principals it governs:

- the principal is the IAM role whose AssumeRole credentials signed the query (moto's STS
  knows which role each temporary access key belongs to). Requests signed with the
  platform's own keys are the administrator's, which Lake Formation does not limit;
- a column is visible when a SELECT grant covers it: a tag policy on TABLE resources whose
  expression its tags match (a column's tags are its own, else its table's, else its
  database's, key by key), a named table (or every table of a database), or a
  table-with-columns grant listing it (or all but the excluded ones);
- a table is readable when at least one of its columns is visible; the others are not in
  the principal's view of it at all.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from dataplatform.runtime.local.services.base import ACCOUNT, Server

SELECTING = ("SELECT", "ALL")


def principal_of(access_key: str) -> str | None:
    """The role ARN whose AssumeRole gave `access_key`, or None (the platform's own keys,
    or an IAM user's)."""
    from moto.sts.models import sts_backends

    assumed = sts_backends[ACCOUNT]["global"].get_assumed_role_from_access_key(access_key)
    if assumed is None:
        return None
    return str(getattr(assumed, "role_arn", "")) or None


def _tag_map(tags: list[dict] | None) -> dict[str, str]:
    return {t["TagKey"]: (t.get("TagValues") or [""])[0] for t in tags or []}


def _matches(expression: list[dict], tags: dict[str, str]) -> bool:
    return all(tags.get(c["TagKey"]) in (c.get("TagValues") or []) for c in expression)


@dataclass
class PrincipalGrants:
    """One principal's view of the catalog, table by table (looked up once per query)."""

    principal: str
    permissions: list[dict]
    glue: object
    lakeformation: object
    _views: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def who(self) -> str:
        return f"principal {self.principal.rsplit('/', 1)[-1]}"

    def denial(self, database: str) -> str:
        return f"{self.who}: no Lake Formation grant covers it"

    def allows(self, database: str, table: str) -> bool:
        visible, _ = self._view(database, table)
        return bool(visible)

    def hidden(self, database: str, table: str) -> tuple[str, ...]:
        _, hidden = self._view(database, table)
        return hidden

    def _view(self, database: str, table: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        key = (database, table)
        with self._lock:
            if key not in self._views:
                self._views[key] = self._evaluate(database, table)
            return self._views[key]

    def _columns(self, database: str, table: str) -> list[str]:
        glue = self.glue
        try:
            found = glue.get_table(DatabaseName=database, Name=table)["Table"]  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - no such table: the engine says so
            return []
        storage = found.get("StorageDescriptor") or {}
        return [c["Name"] for c in storage.get("Columns") or []] + [
            k["Name"] for k in found.get("PartitionKeys") or []
        ]

    def _tags(self, database: str, table: str, columns: list[str]) -> dict[str, dict[str, str]]:
        """Each column's effective tags (column over table over database, key by key)."""
        lf = self.lakeformation

        def lookup(resource: dict) -> dict:
            try:
                return lf.get_resource_lf_tags(Resource=resource)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - untagged resources
                return {}

        on_database = _tag_map(lookup({"Database": {"Name": database}}).get("LFTagOnDatabase"))
        on_table = _tag_map(
            lookup({"Table": {"DatabaseName": database, "Name": table}}).get("LFTagsOnTable")
        )
        on_columns = {
            c["Name"]: _tag_map(c.get("LFTags"))
            for c in lookup(
                {
                    "TableWithColumns": {
                        "DatabaseName": database,
                        "Name": table,
                        "ColumnNames": columns,
                    }
                }
            ).get("LFTagsOnColumns")
            or []
        }
        return {c: {**on_database, **on_table, **on_columns.get(c, {})} for c in columns}

    def _evaluate(self, database: str, table: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        columns = self._columns(database, table)
        tags: dict[str, dict[str, str]] | None = None
        visible: set[str] = set()
        for permission in self.permissions:
            if not set(permission.get("Permissions") or ()) & set(SELECTING):
                continue
            resource = permission.get("Resource") or {}
            policy = resource.get("LFTagPolicy")
            if policy and policy.get("ResourceType") == "TABLE":
                if tags is None:
                    tags = self._tags(database, table, columns)
                expression = policy.get("Expression") or []
                visible |= {c for c in columns if _matches(expression, tags[c])}
            named = resource.get("Table")
            if named and named.get("DatabaseName") == database:
                if "TableWildcard" in named or named.get("Name") == table:
                    visible |= set(columns)
            with_columns = resource.get("TableWithColumns")
            if (
                with_columns
                and with_columns.get("DatabaseName") == database
                and with_columns.get("Name") == table
            ):
                if "ColumnWildcard" in with_columns:
                    excluded = set(
                        (with_columns["ColumnWildcard"] or {}).get("ExcludedColumnNames") or ()
                    )
                    visible |= {c for c in columns if c not in excluded}
                else:
                    visible |= set(with_columns.get("ColumnNames") or ()) & set(columns)
        ordered = tuple(c for c in columns if c in visible)
        return ordered, tuple(c for c in columns if c not in visible)


class LakeFormation:
    """The grants of whoever signed a request, for the services that read the lake."""

    def __init__(self, server: Server):
        self.server = server

    def grants(self, access_key: str, region: str) -> PrincipalGrants | None:
        principal = principal_of(access_key)
        if principal is None:
            return None
        lf = self.server.client("lakeformation", region)
        # every grant, then the principal's (ListPermissions filters by principal only
        # together with a resource)
        permissions: list[dict] = []
        token = None
        while True:
            page = lf.list_permissions(**({"NextToken": token} if token else {}))
            permissions += [
                p
                for p in page.get("PrincipalResourcePermissions", [])
                if (p.get("Principal") or {}).get("DataLakePrincipalIdentifier") == principal
            ]
            token = page.get("NextToken")
            if not token:
                break
        return PrincipalGrants(principal, permissions, self.server.client("glue", region), lf)
