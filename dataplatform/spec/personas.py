"""spec/personas.yaml: who may use what. Each persona names the databases (zones) it may
query, whether it may see the columns the datasets list under `pii:`, and the stream
datasets it may put records on. Lake Formation's grants come from here on AWS, and the
local Athena applies the same rules (`dp query --as PERSONA`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataplatform.spec.core import NAME_PATTERN, SpecProblems, check_keys

PERSONA_KEYS = ("description", "databases", "pii", "streams")
ZONES = ("raw", "curated", "features")


@dataclass(frozen=True)
class Persona:
    name: str
    databases: tuple[str, ...] = ()  # zones whose tables it may query
    pii: bool = False  # may it see the datasets' `pii:` columns
    streams: tuple[str, ...] = ()  # stream datasets it may put records on
    description: str = ""


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
            problems.add(rel, where, "must be a mapping with databases, pii, streams")
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
        personas.append(
            Persona(
                name=name,
                databases=tuple(z for z in databases if z in ZONES),
                pii=pii,
                streams=tuple(s for s in puts if s in streams),
                description=str(raw.get("description", "")).strip(),
            )
        )
    return tuple(personas)
