"""The ML pipeline as one Step Functions state machine, with the quality gate Lambda it
calls.

The sequence is `dataplatform.pipeline.pipeline_plan` (also what `dp pipeline run` runs
locally):

  InputDefaults, Inputs (the execution's input over `as_of_<table>: ""` defaults)
  -> CurateDatasets (Glue startJobRun.sync, one branch per dataset)
  -> CreateCluster (EMR createCluster.sync, the transient definition of the EMR stack)
  -> FeatureArguments <table>, Features <table> (EMR addStep.sync with `--as-of` the
     input's cutoff for the table, one per feature table, in order)
  -> TerminateCluster
  -> TrainModels (one branch per model: SageMaker createTrainingJob.sync -> QualityGate
     (Lambda) -> passed? RegisterModel (PendingManualApproval) : QualityGateFailed)
  -> NotifySuccess (SNS)

Every task retries throttling (`retry_throttling`); every task and parallel state catches
into one cleanup path: terminate the cluster if one was started -> NotifyFailure ->
PipelineFailed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from cdk_nag import NagSuppressions
from constructs import Construct

from dataplatform import layout, registry, training_job
from dataplatform.jobs.emr_step_args import emr_step
from dataplatform.naming import TRANSIENT_CLUSTER_TAG, Names, pascal_case
from dataplatform.pipeline import as_of_key, default_input, pipeline_plan
from dataplatform.spec import Environment, Platform
from stacks.constructs import checkov
from stacks.constructs.emr_cluster import EmrClusterDefinition
from stacks.constructs.lake import Lake
from stacks.constructs.log_group import EncryptedLogGroup
from stacks.constructs.nag import arn_token, xray_tracing_suppression
from stacks.constructs.removal import DataRemoval
from stacks.constructs.training_definition import TrainingDefinition

# Error names the integrations raise when AWS throttles them; retried with backoff.
THROTTLING_ERRORS = [
    "ThrottlingException",
    "Glue.ThrottlingException",
    "SageMaker.ThrottlingException",
    "EMR.ThrottlingException",
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.SdkClientException",
    "SNS.ThrottledException",
]
CLUSTER_ID = "$.cluster.ClusterId"
STEP_ARGS = "$.step"  # a features step's arguments, computed before it


Task = TypeVar("Task", sfn.TaskStateBase, sfn.CustomState)


def retry_throttling(
    task: Task, *, also: Sequence[str] = (), interval: Duration | None = None
) -> Task:
    """Retry `task` when AWS throttles it (and on the errors `also` names): five attempts,
    `interval` (5 s unless given) doubling between them."""
    task.add_retry(
        errors=THROTTLING_ERRORS + list(also),
        max_attempts=5,
        interval=interval if interval is not None else Duration.seconds(5),
        backoff_rate=2,
    )
    return task


class MlPipeline:
    """The state machine `names.ml_pipeline`, its role, log group and quality gate, built
    in `scope` itself.

    Not a Construct of its own: one more level in the construct tree would change every
    logical ID below it, and CloudFormation would replace the deployed state machine, its
    role and its log groups. So this builds into the stack it is given, as the stack did.
    """

    def __init__(
        self,
        scope: Construct,
        *,
        names: Names,
        settings: Environment,
        platform: Platform,
        lake: Lake,
        cluster: EmrClusterDefinition,
        training: Mapping[str, TrainingDefinition],
        training_role: iam.IRole,
        alerts: sns.ITopic,
        alerts_key: kms.IKey,
        removal: DataRemoval,
        gate_code_dir: Path,
    ) -> None:
        self._scope = scope
        self._names = names
        self._settings = settings
        self._plan = pipeline_plan(platform)
        self._training = training
        self._alerts = alerts

        gate_role, gate_logs = self._quality_gate(
            lake=lake, removal=removal, gate_code_dir=gate_code_dir
        )
        self._cleanup = self._cleanup_path()
        chain, create_cluster = self._curate_and_build_features(cluster)
        chain = self._train_gate_and_register(chain, platform)
        role = self._state_machine(chain, lake=lake, removal=removal)
        self._grant_pipeline(
            role,
            cluster=cluster,
            create_cluster=create_cluster,
            training_role=training_role,
            alerts_key=alerts_key,
        )
        self._suppress_findings(
            gate_role, gate_logs, role, lake=lake, create_cluster=create_cluster
        )

    def _log_group(
        self, construct_id: str, name: str, lake: Lake, removal: DataRemoval
    ) -> EncryptedLogGroup:
        """A log group encrypted with the lake key, kept as long as the environment keeps
        logs."""
        return EncryptedLogGroup(
            self._scope,
            construct_id,
            log_group_name=name,
            key=lake.key,
            retention_days=self._settings.log_retention_days,
            removal_policy=removal.policy,
        )

    # ------------------------------------------------------------------------- the gate

    def _quality_gate(
        self, *, lake: Lake, removal: DataRemoval, gate_code_dir: Path
    ) -> tuple[iam.Role, EncryptedLogGroup]:
        """The quality gate Lambda: reads metrics.json from the model artifact."""
        scope, names, plan = self._scope, self._names, self._plan
        gate_role = iam.Role(
            scope,
            "QualityGateRole",
            role_name=names.role("quality-gate"),
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Reads each trained model's metrics.json to gate its registration",
        )
        gate_role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadModelArtifacts",
                actions=["s3:GetObject"],
                resources=[
                    lake.models.arn_for_objects(f"{layout.model_prefix(m)}*") for m in plan.models
                ],
            )
        )
        gate_role.add_to_policy(
            iam.PolicyStatement(
                sid="DecryptModelArtifacts", actions=["kms:Decrypt"], resources=[lake.key.key_arn]
            )
        )
        gate_logs = self._log_group(
            "QualityGateLogs", f"/aws/lambda/{names.quality_gate_function}", lake, removal
        )
        gate_role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[f"{gate_logs.log_group_arn}:*"],
            )
        )
        self.quality_gate = lambda_.Function(
            scope,
            "QualityGate",
            function_name=names.quality_gate_function,
            description="Compares a model's test metrics with its spec's quality_gate",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(gate_code_dir)),
            role=gate_role,
            timeout=Duration.seconds(60),
            memory_size=256,
            log_group=gate_logs,
            tracing=lambda_.Tracing.ACTIVE,
            # each execution gates its models in parallel; two executions at once fit, a
            # third is throttled and retried (Lambda.TooManyRequestsException)
            reserved_concurrent_executions=2 * max(1, len(plan.models)),
        )
        checkov.skip(
            self.quality_gate,
            "CKV_AWS_116",
            "Step Functions invokes the gate "
            "synchronously; its errors go to the state machine's Catch and the alerts "
            "topic, and a dead-letter queue only receives asynchronous invocations",
        )
        checkov.skip(
            self.quality_gate,
            "CKV_AWS_117",
            "the gate reads one model.tar.gz from the "
            "models bucket (TLS, SSE-KMS, bucket policy); nothing in the VPC to reach",
        )
        return gate_role, gate_logs

    # ------------------------------------------------------------------------- the states

    def _cleanup_path(self) -> sfn.Choice:
        """The cleanup path every catch leads to."""
        scope = self._scope
        notify_failure = retry_throttling(
            self._notify(
                "NotifyFailure",
                "failed",
                "States.Format('ML pipeline {} failed: {}: {}', $$.Execution.Name, "
                "$.error.Error, $.error.Cause)",
            )
        )
        failed = sfn.Fail(
            scope, "PipelineFailed", error_path="$.error.Error", cause_path="$.error.Cause"
        )
        notify_failure.next(failed)
        terminate_after_failure = retry_throttling(
            self._terminate_cluster("TerminateClusterAfterFailure")
        )
        terminate_after_failure.add_catch(notify_failure, result_path="$.cleanup_error")
        terminate_after_failure.next(notify_failure)
        return (
            sfn.Choice(scope, "ClusterStarted")
            .when(sfn.Condition.is_present(CLUSTER_ID), terminate_after_failure)
            .otherwise(notify_failure)
        )

    def _guarded(self, state):
        """Retry throttling, and send any other error down the cleanup path."""
        if isinstance(state, sfn.TaskStateBase):
            retry_throttling(state)
        state.add_catch(self._cleanup, result_path="$.error")
        return state

    def _notify(self, construct_id: str, outcome: str, message: str) -> tasks.SnsPublish:
        """Publish to the alerts topic: subject `<pipeline> <outcome>`, `message` an
        intrinsic function of the state."""
        return tasks.SnsPublish(
            self._scope,
            construct_id,
            topic=self._alerts,
            subject=f"{self._names.ml_pipeline} {outcome}",
            message=sfn.TaskInput.from_json_path_at(message),
            result_path=sfn.JsonPath.DISCARD,
        )

    def _terminate_cluster(self, construct_id: str) -> tasks.EmrTerminateCluster:
        return tasks.EmrTerminateCluster(
            self._scope,
            construct_id,
            cluster_id=sfn.JsonPath.string_at(CLUSTER_ID),
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            result_path=sfn.JsonPath.DISCARD,
        )

    def _inputs(self) -> sfn.Chain:
        """0. the execution's input over the defaults, key by key: an execution started
        with `{}` (the schedule's, a user's `aws stepfunctions start-execution`) builds
        every table with its SQL's default cutoff; `dp pipeline run --as-of` gives some."""
        scope = self._scope
        defaults = sfn.Pass(
            scope,
            "InputDefaults",
            result=sfn.Result.from_object(default_input(self._plan)),
            result_path="$",
        )
        merged = sfn.Pass(
            scope,
            "Inputs",
            parameters={
                "merged": sfn.JsonPath.json_merge(
                    sfn.JsonPath.object_at("$"), sfn.JsonPath.object_at("$$.Execution.Input")
                )
            },
            output_path="$.merged",
        )
        return sfn.Chain.start(defaults).next(merged)

    def _curate_and_build_features(
        self, cluster: EmrClusterDefinition
    ) -> tuple[sfn.Chain, tasks.EmrCreateCluster]:
        """1. curate every dataset; 2. the feature tables on a transient cluster."""
        scope, names, plan = self._scope, self._names, self._plan
        curate = sfn.Parallel(scope, "CurateDatasets", result_path=sfn.JsonPath.DISCARD)
        for ds in plan.curate:
            job = tasks.GlueStartJobRun(
                scope,
                f"Curate{pascal_case(ds)}",
                glue_job_name=names.curate_job(ds),
                integration_pattern=sfn.IntegrationPattern.RUN_JOB,
                result_path=sfn.JsonPath.DISCARD,
            )
            retry_throttling(
                job, also=["Glue.ConcurrentRunsExceededException"], interval=Duration.seconds(30)
            )
            curate.branch(job)
        self._guarded(curate)

        create_cluster = self._guarded(
            cluster.create_cluster_task(
                scope,
                "CreateCluster",
                name=names.transient_emr_cluster,
                tags=names.tags,
                result_path="$.cluster",
                result_selector={"ClusterId.$": "$.ClusterId"},
            )
        )
        chain = self._inputs().next(curate).next(create_cluster)
        for table in plan.features:
            step = emr_step("features", names, {"name": table})
            sid = pascal_case(table)
            # The step's arguments with the execution's cutoff for this table appended
            # (`--as-of ""`: the SQL's default), computed into the state: a Task's Args
            # cannot hold a path among literals.
            arguments = sfn.Pass(
                scope,
                f"FeatureArguments{sid}",
                parameters={
                    "args": sfn.JsonPath.array(
                        *step["HadoopJarStep"]["Args"],
                        "--as-of",
                        sfn.JsonPath.string_at(f"$.{as_of_key(table)}"),
                    )
                },
                result_path=STEP_ARGS,
            )
            add_step = tasks.EmrAddStep(
                scope,
                f"Features{sid}",
                cluster_id=sfn.JsonPath.string_at(CLUSTER_ID),
                name=names.emr_step("features", table),
                jar=step["HadoopJarStep"]["Jar"],
                args=sfn.JsonPath.list_at(f"{STEP_ARGS}.args"),
                action_on_failure=tasks.ActionOnFailure.CONTINUE,
                integration_pattern=sfn.IntegrationPattern.RUN_JOB,
                result_path=sfn.JsonPath.DISCARD,
            )
            chain = chain.next(arguments).next(self._guarded(add_step))
        chain = chain.next(self._guarded(self._terminate_cluster("TerminateCluster")))
        return chain, create_cluster

    def _train_gate_and_register(self, chain: sfn.Chain, platform: Platform) -> sfn.Chain:
        """3. train, gate and register every model; then notify."""
        scope, names = self._scope, self._names
        models = {m.name: m for m in platform.models}
        train_models = sfn.Parallel(scope, "TrainModels", result_path="$.models")
        for name in self._plan.models:
            model = models[name]
            definition = self._training[name]
            sid = pascal_case(name)
            request = definition.request(names, self._settings, job_name="placeholder")
            del request["TrainingJobName"]
            request["TrainingJobName.$"] = (
                f"States.Format('{names.training_job_prefix(name)}-{{}}', "
                "States.ArrayGetItem(States.StringSplit(States.UUID(), '-'), 0))"
            )
            train = retry_throttling(
                sfn.CustomState(
                    scope,
                    f"Train{sid}",
                    state_json={
                        "Type": "Task",
                        "Resource": f"arn:{Aws.PARTITION}:states:::sagemaker:createTrainingJob.sync",
                        "Parameters": request,
                        "ResultSelector": {
                            "TrainingJobName.$": "$.TrainingJobName",
                            "ModelArtifacts.$": "$.ModelArtifacts.S3ModelArtifacts",
                            "FinalMetricDataList.$": "$.FinalMetricDataList",
                        },
                        "ResultPath": "$.training",
                    },
                )
            )
            gate = retry_throttling(
                tasks.LambdaInvoke(
                    scope,
                    f"QualityGate{sid}",
                    lambda_function=self.quality_gate,
                    payload=sfn.TaskInput.from_object(
                        {
                            "model": name,
                            "model_artifacts_uri": sfn.JsonPath.string_at(
                                "$.training.ModelArtifacts"
                            ),
                            "quality_gate": dict(model.quality_gate),
                        }
                    ),
                    result_selector={
                        "passed.$": "$.Payload.passed",
                        "checks.$": "$.Payload.checks",
                        "metrics.$": "$.Payload.metrics",
                        "registry_metrics.$": "$.Payload.registry_metrics",
                    },
                    result_path="$.gate",
                    retry_on_service_exceptions=False,
                )
            )
            register = retry_throttling(
                tasks.CallAwsService(
                    scope,
                    f"Register{sid}",
                    service="sagemaker",
                    action="createModelPackage",
                    iam_resources=[
                        f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
                        f"model-package-group/{definition.package_group}",
                        f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
                        f"model-package/{definition.package_group}/*",
                    ],
                    parameters=registry.model_package_request(
                        package_group=definition.package_group,
                        model_name=name,
                        training_job=registry.StateValue("$.training.TrainingJobName"),
                        model_data_url=registry.StateValue("$.training.ModelArtifacts"),
                        image_uri=definition.image_uri,
                        test_metrics=registry.StateValue("$.gate.registry_metrics"),
                        inference_source=training_job.source_uri(self._names),
                    ),
                    result_selector={"ModelPackageArn.$": "$.ModelPackageArn"},
                    result_path="$.registered",
                )
            )
            gate_failed = sfn.Fail(
                scope,
                f"QualityGateFailed{sid}",
                error="QualityGateFailed",
                cause_path=f"States.Format('{name} did not pass its quality gate: {{}}', "
                "States.JsonToString($.gate.checks))",
            )
            decide = (
                sfn.Choice(scope, f"Passed{sid}")
                .when(sfn.Condition.boolean_equals("$.gate.passed", True), register)
                .otherwise(gate_failed)
            )
            train_models.branch(sfn.Chain.start(train).next(gate).next(decide))
        self._guarded(train_models)
        notify_success = self._guarded(
            self._notify(
                "NotifySuccess",
                "succeeded",
                "States.Format('ML pipeline {} registered: {}', $$.Execution.Name, "
                "States.JsonToString($.models))",
            )
        )
        return (
            chain.next(train_models)
            .next(notify_success)
            .next(sfn.Succeed(scope, "PipelineSucceeded"))
        )

    # ------------------------------------------------------------------------- the machine

    def _state_machine(
        self, chain: sfn.IChainable, *, lake: Lake, removal: DataRemoval
    ) -> iam.Role:
        """The state machine, logged and traced; its role, without policy yet."""
        scope, names = self._scope, self._names
        log_group = self._log_group("PipelineLogs", names.pipeline_log_group, lake, removal)
        role = iam.Role(
            scope,
            "PipelineRole",
            role_name=names.pipeline_role,
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"Runs {names.ml_pipeline}",
        )
        # The tasks' own grants are not used: CDK's EmrCreateCluster allows TerminateJobFlows
        # and AddTags on every cluster (`*`). The state machine gets the role without policy
        # updates, and every statement is written in _grant_pipeline, each scoped to what it
        # acts on.
        self.state_machine = sfn.StateMachine(
            scope,
            "Pipeline",
            state_machine_name=names.ml_pipeline,
            definition_body=sfn.DefinitionBody.from_chainable(chain),
            role=role.without_policy_updates(),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            timeout=Duration.hours(12),
        )
        self.state_machine.node.add_dependency(role)  # its policy exists before it runs
        return role

    def _grant_pipeline(
        self,
        role: iam.Role,
        *,
        cluster: EmrClusterDefinition,
        create_cluster: tasks.EmrCreateCluster,
        training_role: iam.IRole,
        alerts_key: kms.IKey,
    ) -> None:
        """What the state machine's tasks call, as CDK's task grants would give it, but for
        EMR: clusters are created only with the transient cluster's tag, and stepped, tagged,
        described and terminated only when they carry it."""
        names, plan = self._names, self._plan
        region, account, partition = Aws.REGION, Aws.ACCOUNT_ID, Aws.PARTITION
        cluster_tag = f"aws:ResourceTag/{TRANSIENT_CLUSTER_TAG}"
        request_tag = f"aws:RequestTag/{TRANSIENT_CLUSTER_TAG}"
        statements = [
            iam.PolicyStatement(
                sid="RunCurateJobs",
                actions=[
                    "glue:StartJobRun",
                    "glue:GetJobRun",
                    "glue:GetJobRuns",
                    "glue:BatchStopJobRun",
                ],
                resources=[
                    f"arn:{partition}:glue:{region}:{account}:job/{names.curate_job(d)}"
                    for d in plan.curate
                ],
            ),
            iam.PolicyStatement(
                sid="CreateTheTransientCluster",
                actions=["elasticmapreduce:RunJobFlow"],
                resources=["*"],  # RunJobFlow has no resource type; the tag condition scopes it
                conditions={"StringEquals": {request_tag: names.transient_emr_cluster}},
            ),
            iam.PolicyStatement(
                sid="TagTheTransientCluster",
                actions=["elasticmapreduce:AddTags"],
                resources=[f"arn:{partition}:elasticmapreduce:{region}:{account}:cluster/*"],
                conditions={"StringEquals": {request_tag: names.transient_emr_cluster}},
            ),
            iam.PolicyStatement(
                sid="WorkOnTheTransientCluster",
                actions=[
                    "elasticmapreduce:DescribeCluster",
                    "elasticmapreduce:TerminateJobFlows",
                    "elasticmapreduce:AddJobFlowSteps",
                    "elasticmapreduce:DescribeStep",
                    "elasticmapreduce:CancelSteps",
                ],
                resources=[f"arn:{partition}:elasticmapreduce:{region}:{account}:cluster/*"],
                conditions={"StringEquals": {cluster_tag: names.transient_emr_cluster}},
            ),
            iam.PolicyStatement(
                sid="PassTheClusterRoles",
                actions=["iam:PassRole"],
                resources=[
                    cluster.security.service_role.role_arn,
                    cluster.security.instance_role.role_arn,
                    create_cluster.auto_scaling_role.role_arn,
                ],
            ),
            iam.PolicyStatement(
                sid="LetEmrCreateItsCleanupRole",
                actions=["iam:CreateServiceLinkedRole"],
                resources=[
                    f"arn:{partition}:iam::{account}:role/aws-service-role/"
                    "elasticmapreduce.amazonaws.com*/AWSServiceRoleForEMRCleanup*"
                ],
                conditions={
                    "StringEquals": {
                        "iam:AWSServiceName": [
                            "elasticmapreduce.amazonaws.com",
                            "elasticmapreduce.amazonaws.com.cn",
                        ]
                    }
                },
            ),
            iam.PolicyStatement(
                sid="FollowClusterEvents",  # .sync on EMR tasks manages these rules
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    f"arn:{partition}:events:{region}:{account}:rule/{rule}"
                    for rule in (
                        "StepFunctionsGetEventForEMRRunJobFlowRule",
                        "StepFunctionsGetEventForEMRAddJobFlowStepsRule",
                        "StepFunctionsGetEventForEMRTerminateJobFlowsRule",
                    )
                ],
            ),
            iam.PolicyStatement(
                sid="InvokeTheQualityGate",
                actions=["lambda:InvokeFunction"],
                resources=[self.quality_gate.function_arn, f"{self.quality_gate.function_arn}:*"],
            ),
            iam.PolicyStatement(
                sid="RegisterModels",
                actions=["sagemaker:CreateModelPackage"],
                resources=[
                    arn
                    for m in plan.models
                    for arn in (
                        f"arn:{partition}:sagemaker:{region}:{account}:model-package-group/"
                        f"{self._training[m].package_group}",
                        f"arn:{partition}:sagemaker:{region}:{account}:model-package/"
                        f"{self._training[m].package_group}/*",
                    )
                ],
            ),
            iam.PolicyStatement(
                sid="Notify", actions=["sns:Publish"], resources=[self._alerts.topic_arn]
            ),
            iam.PolicyStatement(
                sid="LogAndTrace",  # Step Functions' log delivery and X-Ray: no resource types
                actions=[
                    "logs:CreateLogDelivery",
                    "logs:GetLogDelivery",
                    "logs:UpdateLogDelivery",
                    "logs:DeleteLogDelivery",
                    "logs:ListLogDeliveries",
                    "logs:PutResourcePolicy",
                    "logs:DescribeResourcePolicies",
                    "logs:DescribeLogGroups",
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                ],
                resources=["*"],
            ),
            # createTrainingJob.sync is a CustomState: CDK cannot derive its permissions.
            iam.PolicyStatement(
                sid="RunTrainingJobs",
                actions=[
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags",
                ],
                resources=[
                    f"arn:{partition}:sagemaker:{region}:{account}:"
                    f"training-job/{names.training_job_prefix(m)}-*"
                    for m in plan.models
                ],
            ),
            iam.PolicyStatement(
                sid="FollowTrainingJobs",
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    f"arn:{partition}:events:{region}:{account}:rule/"
                    "StepFunctionsGetEventsForSageMakerTrainingJobsRule"
                ],
            ),
            # The alerts topic is encrypted: publishing to it needs its key (SNS asks KMS for
            # a data key as the publisher). Without it NotifySuccess and NotifyFailure fail.
            iam.PolicyStatement(
                sid="PublishToTheEncryptedAlertsTopic",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[alerts_key.key_arn],
            ),
            iam.PolicyStatement(
                sid="PassTheTrainingRole",
                actions=["iam:PassRole"],
                resources=[training_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
        ]
        for statement in statements:
            role.add_to_policy(statement)

    # ------------------------------------------------------------------------- cdk-nag

    def _suppress_findings(
        self,
        gate_role: iam.Role,
        gate_logs: EncryptedLogGroup,
        role: iam.Role,
        *,
        lake: Lake,
        create_cluster: tasks.EmrCreateCluster,
    ) -> None:
        names, plan = self._names, self._plan
        models_arn = arn_token(lake.models)
        NagSuppressions.add_resource_suppressions(
            gate_role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "the gate reads model.tar.gz below each model's prefix (a new training "
                    "job folder per run) and writes to its own log group's streams",
                    "appliesTo": [
                        *[f"Resource::{models_arn}/{layout.model_prefix(m)}*" for m in plan.models],
                        f"Resource::{arn_token(gate_logs)}:*",
                    ],
                },
                xray_tracing_suppression(),
            ],
            apply_to_children=True,
        )
        NagSuppressions.add_resource_suppressions(
            role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "actions without resource types: EMR RunJobFlow (allowed only with the "
                    "transient cluster's tag in the request), CloudWatch Logs delivery for "
                    "the state machine's logging, X-Ray tracing",
                    "appliesTo": ["Resource::*"],
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "the transient cluster's id is known only at run time: step, describe, "
                    "tag and terminate actions on clusters of this account and region that "
                    "carry (or, tagging, are given) the transient cluster's tag",
                    "appliesTo": [
                        {
                            "regex": "/^Resource::arn:(aws|<AWS::Partition>):elasticmapreduce:"
                            "([a-z0-9-]+|<AWS::Region>):(\\d{12}|<AWS::AccountId>):cluster\\/\\*$/"
                        }
                    ],
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "CDK's EmrCreateCluster lets EMR create its cleanup service-linked role",
                    "appliesTo": [
                        {
                            "regex": "/^Resource::arn:<AWS::Partition>:iam::(\\d{12}|<AWS::AccountId>):role\\/"
                            "aws-service-role\\/elasticmapreduce.amazonaws.com\\*"
                            "\\/AWSServiceRoleForEMRCleanup\\*$/"
                        }
                    ],
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "a new training job per run and model, named below each model's prefix; "
                    "model packages are versions inside each model's package group",
                    "appliesTo": [
                        *[
                            f"Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                            f"training-job/{names.training_job_prefix(m)}-*"
                            for m in plan.models
                        ],
                        *[
                            f"Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                            f"model-package/{self._training[m].package_group}/*"
                            for m in plan.models
                        ],
                    ],
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "CDK's LambdaInvoke grants invoke on the quality gate function and its "
                    "versions (ARN:*), nothing else",
                    "appliesTo": [f"Resource::{arn_token(self.quality_gate)}:*"],
                },
            ],
            apply_to_children=True,
        )
        auto_scaling_role = create_cluster.node.try_find_child("AutoScalingRole")
        if auto_scaling_role is None:
            raise RuntimeError(
                "CDK's EmrCreateCluster no longer creates an AutoScalingRole: "
                "remove its suppression below"
            )
        NagSuppressions.add_resource_suppressions(
            auto_scaling_role,
            [
                {
                    "id": "AwsSolutions-IAM4",
                    "reason": "CDK's EmrCreateCluster always creates the legacy automatic-scaling role "
                    "with its AWS managed policy; the cluster scales with EMR managed scaling "
                    "and never uses it",
                    "appliesTo": [
                        "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                        "AmazonElasticMapReduceforAutoScalingRole"
                    ],
                }
            ],
        )
