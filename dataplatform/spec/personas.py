"""spec/personas.yaml: who may use what. Each persona names the databases (zones) it may
query, whether it may see the columns the datasets list under `pii:`, the stream datasets
it may put records on, whether it may train models (start the ML pipeline, read the models
and the registry) and, optionally, the existing IAM principals mapped to it (they may
assume its role). Lake Formation's grants come from here on AWS (dataplatform/governance.py
describes them once), and the local Athena applies the same rules (`dp query --as
PERSONA`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dataplatform.spec.core import NAME_PATTERN, SpecProblems, check_keys

PERSONA_KEYS = ("description", "databases", "pii", "streams", "training", "principals")
ZONES = ("raw", "curated", "features")
# An existing IAM role or user of an account (paths allowed), as `principals:` lists them.
PRINCIPAL_ARN = re.compile(
    r"^arn:aws(-[a-z]+)*:iam::\d{12}:(role|user)/([\w+=,.@-]+/)*[\w+=,.@-]{1,64}$"
)


@dataclass(frozen=True)
class Persona:
    name: str
    databases: tuple[str, ...] = ()  # zones whose tables it may query
    pii: bool = False  # may it see the datasets' `pii:` columns
    streams: tuple[str, ...] = ()  # stream datasets it may put records on
    description: str = ""
    training: bool = False  # may start the ML pipeline and read the models and the registry
    principals: tuple[str, ...] = ()  # existing IAM roles/users that may assume its role


def parse_personas(
    data: Any, rel: str, streams: set[str], problems: SpecProblems
) -> tuple[Persona, ...]:
    if not isinstance(data, dict) or not isinstance(data.get("personas"), dict):
        problems.add(
            rel,
            "personas",
            "must be a mapping of persona name to its access, e.g. analyst: {databases: [curated], pii: false}",
        )
        return ()
    check_keys(data, ("personas",), rel, "", problems)
    personas = []
    for name, raw in data["personas"].items():
        where = f"personas.{name}"
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            problems.add(
                rel,
                where,
                "a persona name is lower case letters, digits and _ starting with a letter",
            )
            continue
        if not isinstance(raw, dict):
            problems.add(
                rel, where, "must be a mapping with databases, pii, streams, training, principals"
            )
            continue
        check_keys(raw, PERSONA_KEYS, rel, f"{where}.", problems)
        databases = raw.get("databases", []) or []
        if not isinstance(databases, list):
            problems.add(rel, f"{where}.databases", f"must be a list of zones ({', '.join(ZONES)})")
            databases = []
        for i, zone in enumerate(databases):
            if zone not in ZONES:
                problems.add(
                    rel, f"{where}.databases[{i}]", f"unknown zone {zone!r}; use {', '.join(ZONES)}"
                )
        pii = raw.get("pii", False)
        if not isinstance(pii, bool):
            problems.add(rel, f"{where}.pii", f"must be true or false, not {pii!r}")
            pii = False
        puts = raw.get("streams", []) or []
        if not isinstance(puts, list):
            problems.add(rel, f"{where}.streams", "must be a list of stream datasets")
            puts = []
        for i, stream in enumerate(puts):
            if stream not in streams:
                problems.add(
                    rel,
                    f"{where}.streams[{i}]",
                    f"{stream!r} is not a stream dataset; stream datasets: {', '.join(sorted(streams)) or 'none'}",
                )
        training = raw.get("training", False)
        if not isinstance(training, bool):
            problems.add(rel, f"{where}.training", f"must be true or false, not {training!r}")
            training = False
        principals = raw.get("principals", []) or []
        if not isinstance(principals, list):
            problems.add(
                rel,
                f"{where}.principals",
                "must be a list of IAM role or user ARNs, e.g. [arn:aws:iam::123456789012:role/analysts]",
            )
            principals = []
        for i, arn in enumerate(principals):
            if not isinstance(arn, str) or not PRINCIPAL_ARN.match(arn):
                problems.add(
                    rel,
                    f"{where}.principals[{i}]",
                    f"{arn!r} is not an IAM role or user ARN; use "
                    "arn:aws:iam::<12-digit account>:role/<name> (or :user/<name>)",
                )
        personas.append(
            Persona(
                name=name,
                databases=tuple(z for z in databases if z in ZONES),
                pii=pii,
                streams=tuple(s for s in puts if s in streams),
                description=str(raw.get("description", "")).strip(),
                training=training,
                principals=tuple(
                    a for a in principals if isinstance(a, str) and PRINCIPAL_ARN.match(a)
                ),
            )
        )
    return tuple(personas)
