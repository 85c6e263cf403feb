"""The platform's declarative spec: `spec/platform.yaml`, `spec/datasets/*.yaml`,
`spec/features/*.sql` and `spec/models/*.yaml`, loaded into immutable, typed objects.

Everything is validated up front and every problem names the file, the field and
the fix, so a bad spec fails at `cdk synth` or `dp` start-up, never in a job.
All problems found are reported together (a user fixes them in one pass).

The objects also round-trip through plain dicts (`to_dict` / `from_dict`), which is
how the spec travels to places without PyYAML or the spec folder: the Firehose
transform Lambda and the Glue/EMR jobs get a compiled JSON copy.

The package's modules, along the spec's seams (import from here, `dataplatform.spec`):
  core          the name pattern, SpecError / SpecProblem, the YAML and problem helpers
  datasets      spec/datasets/*.yaml: Dataset, Column and the column rules
  models        spec/features/*.sql and spec/models/*.yaml: FeatureTable, Model, and the
                algorithms, quality-gate metrics and reserved hyperparameters
  environments  spec/platform.yaml: Environment and its settings (their types read from
                the dataclasses' annotations)
  delivery      spec/platform.yaml's `delivery:`: the opt-in CDK Pipelines settings
  loader        Platform and load_spec, the whole folder
  compiled      the compiled spec JSON read back (Lambdas, Glue and EMR jobs)
Standard library only at import time (PyYAML and sqlglot are imported by the loader when
it runs), so the Lambdas and jobs that ship the `dataplatform` package can import it.
"""

from dataplatform.spec.compiled import (
    bundled_dataset,
    compiled_dataset,
    dataset_from_dict,
    load_compiled_dataset,
)
from dataplatform.spec.core import NAME_PATTERN, SpecError, SpecProblem
from dataplatform.spec.datasets import (
    COLUMN_KEYS,
    COLUMN_RULES,
    COLUMN_TYPES,
    DATASET_KEYS,
    DEFAULT_DOMAIN,
    IMPUTE_STRATEGIES,
    INGESTION_MODES,
    NUMERIC_TYPES,
    RAW_FORMATS,
    RESERVED_COLUMNS,
    TABLE_FORMATS,
    Column,
    Dataset,
    Maintenance,
)
from dataplatform.spec.delivery import CONNECTION_ARN_PATTERN, DELIVERY_KEYS, Delivery
from dataplatform.spec.environments import (
    ACCOUNT_PATTERN,
    ARCHIVE_STORAGE_CLASSES,
    AUDIT_DATA_EVENTS,
    EMAIL_PATTERN,
    EMR_APPLICATIONS,
    EMR_RELEASE_PATTERN,
    EMR_REQUIRED_APPLICATIONS,
    ENV_NAME_PATTERN,
    ENV_SCALARS,
    ENV_SECTIONS,
    FIREHOSE_MIN_BUFFER_MIB,
    FLOW_LOG_TRAFFIC,
    GLUE_WORKER_TYPES,
    INSTANCE_TYPE_PATTERN,
    KINESIS_CAPACITY_MODES,
    LOG_RETENTION_DAYS,
    OBJECT_LOCK_MAX_DAYS,
    OBJECT_LOCK_MODES,
    PLATFORM_KEYS,
    PROJECT_PATTERN,
    REGION_PATTERN,
    AthenaSettings,
    AuditSettings,
    EmrSettings,
    Environment,
    FirehoseSettings,
    GlueSettings,
    KinesisSettings,
    LifecycleSettings,
    NetworkSettings,
    ObjectLockSettings,
    PipelineSettings,
    SageMakerSettings,
)
from dataplatform.spec.loader import Platform, load_spec
from dataplatform.spec.models import (
    ALGORITHMS,
    GATE_METRICS,
    MODEL_KEYS,
    PROBLEMS,
    RESERVED_HYPERPARAMETERS,
    SCORE_FIELDS,
    SCORE_RECORD_FIELDS,
    SERVING_ACTIONS,
    SERVING_MODES,
    FeatureTable,
    Model,
    Monitoring,
    Serving,
    Split,
    feature_sql_columns,
)
from dataplatform.spec.personas import PERSONA_KEYS, ZONES, Persona

__all__ = [
    "CONNECTION_ARN_PATTERN",
    "DELIVERY_KEYS",
    "Delivery",
    "PERSONA_KEYS",
    "Persona",
    "ZONES",
    "SCORE_FIELDS",
    "SCORE_RECORD_FIELDS",
    "SERVING_ACTIONS",
    "SERVING_MODES",
    "Serving",
    "ACCOUNT_PATTERN",
    "ALGORITHMS",
    "ARCHIVE_STORAGE_CLASSES",
    "AUDIT_DATA_EVENTS",
    "COLUMN_KEYS",
    "COLUMN_RULES",
    "COLUMN_TYPES",
    "DATASET_KEYS",
    "DEFAULT_DOMAIN",
    "EMAIL_PATTERN",
    "EMR_APPLICATIONS",
    "EMR_RELEASE_PATTERN",
    "EMR_REQUIRED_APPLICATIONS",
    "ENV_NAME_PATTERN",
    "ENV_SCALARS",
    "ENV_SECTIONS",
    "FIREHOSE_MIN_BUFFER_MIB",
    "FLOW_LOG_TRAFFIC",
    "GATE_METRICS",
    "GLUE_WORKER_TYPES",
    "IMPUTE_STRATEGIES",
    "INGESTION_MODES",
    "INSTANCE_TYPE_PATTERN",
    "KINESIS_CAPACITY_MODES",
    "LOG_RETENTION_DAYS",
    "MODEL_KEYS",
    "OBJECT_LOCK_MAX_DAYS",
    "OBJECT_LOCK_MODES",
    "NAME_PATTERN",
    "NUMERIC_TYPES",
    "PLATFORM_KEYS",
    "PROBLEMS",
    "PROJECT_PATTERN",
    "RAW_FORMATS",
    "REGION_PATTERN",
    "RESERVED_COLUMNS",
    "RESERVED_HYPERPARAMETERS",
    "TABLE_FORMATS",
    "AthenaSettings",
    "AuditSettings",
    "Column",
    "Dataset",
    "EmrSettings",
    "Environment",
    "FeatureTable",
    "FirehoseSettings",
    "GlueSettings",
    "KinesisSettings",
    "LifecycleSettings",
    "Maintenance",
    "Monitoring",
    "Model",
    "NetworkSettings",
    "ObjectLockSettings",
    "PipelineSettings",
    "Platform",
    "SageMakerSettings",
    "SpecError",
    "SpecProblem",
    "Split",
    "bundled_dataset",
    "compiled_dataset",
    "dataset_from_dict",
    "feature_sql_columns",
    "load_compiled_dataset",
    "load_spec",
]
