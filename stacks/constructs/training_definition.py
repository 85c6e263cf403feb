"""A model's SageMaker training job as the stacks define it (MlStack builds one per model;
the ML pipeline's Train<Model> and Register<Model> states read it)."""

from __future__ import annotations

from dataclasses import dataclass

from dataplatform import training_job
from dataplatform.naming import Names
from dataplatform.spec import Environment, Model


@dataclass(frozen=True)
class TrainingDefinition:
    """Everything a training job of `model` needs besides its name."""

    model: Model
    image_uri: str
    role_arn: str
    subnet_ids: list[str]
    security_group_ids: list[str]
    key_arn: str
    metric_definitions: list[dict]
    package_group: str

    def request(self, names: Names, settings: Environment, job_name: str) -> dict:
        return training_job.training_job_request(
            self.model,
            names,
            settings,
            job_name=job_name,
            image_uri=self.image_uri,
            role_arn=self.role_arn,
            subnet_ids=self.subnet_ids,
            security_group_ids=self.security_group_ids,
            key_arn=self.key_arn,
            metric_definitions=self.metric_definitions,
        )
