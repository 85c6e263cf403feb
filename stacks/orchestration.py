"""OrchestrationStack: the ML pipeline as one Step Functions state machine, the quality
gate Lambda it calls, and (where the environment asks) its nightly schedule.

The sequence is `dataplatform.pipeline.pipeline_plan` (also what `dp pipeline run` runs
locally):

  CurateDatasets (Glue startJobRun.sync, one branch per dataset)
  -> CreateCluster (EMR createCluster.sync, the transient definition of the EMR stack)
  -> Features <table> (EMR addStep.sync, one per feature table, in order)
  -> TerminateCluster
  -> TrainModels (one branch per model: SageMaker createTrainingJob.sync -> QualityGate
     (Lambda) -> passed? RegisterModel (PendingManualApproval) : QualityGateFailed)
  -> NotifySuccess (SNS)

Every task retries throttling; every task and parallel state catches into one cleanup
path: terminate the cluster if one was started -> NotifyFailure -> PipelineFailed.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from cdk_nag import NagSuppressions
from constructs import Construct

from dataplatform import layout
from dataplatform.jobs.emr_step_args import emr_step
from dataplatform.naming import Names
from dataplatform.naming import pascal_case as _state_id
from dataplatform.pipeline import pipeline_plan
from dataplatform.spec import Environment, Platform
from stacks.constructs import checkov
from stacks.constructs.emr_cluster import TRANSIENT_CLUSTER_TAG
from stacks.constructs.log_group import EncryptedLogGroup
from stacks.constructs.nag import arn_token
from stacks.constructs.removal import DataRemoval
from stacks.emr import EmrStack
from stacks.ml import MlStack
from stacks.storage import Lake

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


class OrchestrationStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        settings: Environment,
        platform: Platform,
        lake: Lake,
        emr: EmrStack,
        ml: MlStack,
        alerts: sns.ITopic,
        alerts_key: kms.IKey,
        removal: DataRemoval,
        gate_code_dir: Path,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        plan = pipeline_plan(platform)
        models = {m.name: m for m in platform.models}

        # --- the quality gate Lambda: reads metrics.json from the model artifact.
        gate_role = iam.Role(
            self,
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
        gate_logs = EncryptedLogGroup(
            self,
            "QualityGateLogs",
            log_group_name=f"/aws/lambda/{names.quality_gate_function}",
            key=lake.key,
            retention_days=settings.log_retention_days,
            removal_policy=removal.policy,
        )
        gate_role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[f"{gate_logs.log_group_arn}:*"],
            )
        )
        self.quality_gate = lambda_.Function(
            self,
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

        # --- the cleanup path every catch leads to
        notify_failure = tasks.SnsPublish(
            self,
            "NotifyFailure",
            topic=alerts,
            subject=f"{names.ml_pipeline} failed",
            message=sfn.TaskInput.from_json_path_at(
                "States.Format('ML pipeline {} failed: {}: {}', $$.Execution.Name, "
                "$.error.Error, $.error.Cause)"
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        notify_failure.add_retry(
            errors=THROTTLING_ERRORS, max_attempts=5, interval=Duration.seconds(5), backoff_rate=2
        )
        failed = sfn.Fail(
            self, "PipelineFailed", error_path="$.error.Error", cause_path="$.error.Cause"
        )
        notify_failure.next(failed)
        terminate_after_failure = tasks.EmrTerminateCluster(
            self,
            "TerminateClusterAfterFailure",
            cluster_id=sfn.JsonPath.string_at(CLUSTER_ID),
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            result_path=sfn.JsonPath.DISCARD,
        )
        terminate_after_failure.add_retry(
            errors=THROTTLING_ERRORS, max_attempts=5, interval=Duration.seconds(5), backoff_rate=2
        )
        terminate_after_failure.add_catch(notify_failure, result_path="$.cleanup_error")
        terminate_after_failure.next(notify_failure)
        cleanup = (
            sfn.Choice(self, "ClusterStarted")
            .when(sfn.Condition.is_present(CLUSTER_ID), terminate_after_failure)
            .otherwise(notify_failure)
        )

        def guarded(state):
            """Retry throttling, and send any other error down the cleanup path."""
            if isinstance(state, sfn.TaskStateBase):
                state.add_retry(
                    errors=THROTTLING_ERRORS,
                    max_attempts=5,
                    interval=Duration.seconds(5),
                    backoff_rate=2,
                )
            state.add_catch(cleanup, result_path="$.error")
            return state

        # --- 1. curate every dataset
        curate = sfn.Parallel(self, "CurateDatasets", result_path=sfn.JsonPath.DISCARD)
        for ds in plan.curate:
            job = tasks.GlueStartJobRun(
                self,
                f"Curate{_state_id(ds)}",
                glue_job_name=names.curate_job(ds),
                integration_pattern=sfn.IntegrationPattern.RUN_JOB,
                result_path=sfn.JsonPath.DISCARD,
            )
            job.add_retry(
                errors=THROTTLING_ERRORS + ["Glue.ConcurrentRunsExceededException"],
                max_attempts=5,
                interval=Duration.seconds(30),
                backoff_rate=2,
            )
            curate.branch(job)
        guarded(curate)

        # --- 2. the feature tables on a transient cluster
        create_cluster = guarded(
            emr.definition.create_cluster_task(
                self,
                "CreateCluster",
                name=names.transient_emr_cluster,
                result_path="$.cluster",
                result_selector={"ClusterId.$": "$.ClusterId"},
            )
        )
        chain = sfn.Chain.start(curate).next(create_cluster)
        for table in plan.features:
            step = emr_step("features", names, {"name": table})
            add_step = tasks.EmrAddStep(
                self,
                f"Features{_state_id(table)}",
                cluster_id=sfn.JsonPath.string_at(CLUSTER_ID),
                name=names.emr_step("features", table),
                jar=step["HadoopJarStep"]["Jar"],
                args=step["HadoopJarStep"]["Args"],
                action_on_failure=tasks.ActionOnFailure.CONTINUE,
                integration_pattern=sfn.IntegrationPattern.RUN_JOB,
                result_path=sfn.JsonPath.DISCARD,
            )
            chain = chain.next(guarded(add_step))
        terminate = guarded(
            tasks.EmrTerminateCluster(
                self,
                "TerminateCluster",
                cluster_id=sfn.JsonPath.string_at(CLUSTER_ID),
                integration_pattern=sfn.IntegrationPattern.RUN_JOB,
                result_path=sfn.JsonPath.DISCARD,
            )
        )
        chain = chain.next(terminate)

        # --- 3. train, gate and register every model
        train_models = sfn.Parallel(self, "TrainModels", result_path="$.models")
        for name in plan.models:
            model = models[name]
            definition = ml.training[name]
            sid = _state_id(name)
            request = definition.request(names, settings, job_name="placeholder")
            del request["TrainingJobName"]
            request["TrainingJobName.$"] = (
                f"States.Format('{names.training_job_prefix(name)}-{{}}', "
                "States.ArrayGetItem(States.StringSplit(States.UUID(), '-'), 0))"
            )
            train = sfn.CustomState(
                self,
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
                    "Retry": [
                        {
                            "ErrorEquals": THROTTLING_ERRORS,
                            "IntervalSeconds": 5,
                            "MaxAttempts": 5,
                            "BackoffRate": 2,
                        }
                    ],
                },
            )
            gate = tasks.LambdaInvoke(
                self,
                f"QualityGate{sid}",
                lambda_function=self.quality_gate,
                payload=sfn.TaskInput.from_object(
                    {
                        "model": name,
                        "model_artifacts_uri": sfn.JsonPath.string_at("$.training.ModelArtifacts"),
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
            gate.add_retry(
                errors=THROTTLING_ERRORS,
                max_attempts=5,
                interval=Duration.seconds(5),
                backoff_rate=2,
            )
            register = tasks.CallAwsService(
                self,
                f"Register{sid}",
                service="sagemaker",
                action="createModelPackage",
                iam_resources=[
                    f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
                    f"model-package-group/{definition.package_group}",
                    f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
                    f"model-package/{definition.package_group}/*",
                ],
                parameters={
                    "ModelPackageGroupName": definition.package_group,
                    "ModelPackageDescription.$": "States.Format('{} from training job {}', "
                    f"'{name}', $.training.TrainingJobName)",
                    "ModelApprovalStatus": "PendingManualApproval",
                    "InferenceSpecification": {
                        "Containers": [
                            {
                                "Image": definition.image_uri,
                                "ModelDataUrl.$": "$.training.ModelArtifacts",
                            }
                        ],
                        "SupportedContentTypes": ["text/csv"],
                        "SupportedResponseMIMETypes": ["text/csv"],
                    },
                    "CustomerMetadataProperties": {
                        "training_job.$": "$.training.TrainingJobName",
                        # not JSON: SageMaker allows only letters, digits, spaces and
                        # _.:/=+-@ in metadata values (the gate writes `auc=0.861 ...`)
                        "test_metrics.$": "$.gate.registry_metrics",
                    },
                },
                result_selector={"ModelPackageArn.$": "$.ModelPackageArn"},
                result_path="$.registered",
            )
            register.add_retry(
                errors=THROTTLING_ERRORS,
                max_attempts=5,
                interval=Duration.seconds(5),
                backoff_rate=2,
            )
            gate_failed = sfn.Fail(
                self,
                f"QualityGateFailed{sid}",
                error="QualityGateFailed",
                cause_path=f"States.Format('{name} did not pass its quality gate: {{}}', "
                "States.JsonToString($.gate.checks))",
            )
            decide = (
                sfn.Choice(self, f"Passed{sid}")
                .when(sfn.Condition.boolean_equals("$.gate.passed", True), register)
                .otherwise(gate_failed)
            )
            train_models.branch(sfn.Chain.start(train).next(gate).next(decide))
        guarded(train_models)
        notify_success = guarded(
            tasks.SnsPublish(
                self,
                "NotifySuccess",
                topic=alerts,
                subject=f"{names.ml_pipeline} succeeded",
                message=sfn.TaskInput.from_json_path_at(
                    "States.Format('ML pipeline {} registered: {}', $$.Execution.Name, "
                    "States.JsonToString($.models))"
                ),
                result_path=sfn.JsonPath.DISCARD,
            )
        )
        chain = (
            chain.next(train_models)
            .next(notify_success)
            .next(sfn.Succeed(self, "PipelineSucceeded"))
        )

        # --- the state machine: logged and traced
        log_group = EncryptedLogGroup(
            self,
            "PipelineLogs",
            log_group_name=names.pipeline_log_group,
            key=lake.key,
            retention_days=settings.log_retention_days,
            removal_policy=removal.policy,
        )
        role = iam.Role(
            self,
            "PipelineRole",
            role_name=names.pipeline_role,
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"Runs {names.ml_pipeline}",
        )
        # The tasks' own grants are not used: CDK's EmrCreateCluster allows TerminateJobFlows
        # and AddTags on every cluster (`*`). The state machine gets the role without policy
        # updates, and every statement is written below, each scoped to what it acts on.
        self.state_machine = sfn.StateMachine(
            self,
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
        self._grant_pipeline(
            role,
            names=names,
            plan=plan,
            emr=emr,
            ml=ml,
            alerts=alerts,
            create_cluster=create_cluster,
        )
        # createTrainingJob.sync is a CustomState: CDK cannot derive its permissions.
        role.add_to_policy(
            iam.PolicyStatement(
                sid="RunTrainingJobs",
                actions=[
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags",
                ],
                resources=[
                    f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
                    f"training-job/{names.training_job_prefix(m)}-*"
                    for m in plan.models
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="FollowTrainingJobs",
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:rule/"
                    "StepFunctionsGetEventsForSageMakerTrainingJobsRule"
                ],
            )
        )
        # The alerts topic is encrypted: publishing to it needs its key (SNS asks KMS for a
        # data key as the publisher). Without it NotifySuccess and NotifyFailure fail.
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PublishToTheEncryptedAlertsTopic",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[alerts_key.key_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PassTheTrainingRole",
                actions=["iam:PassRole"],
                resources=[ml.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )

        self.schedule = None
        if settings.pipeline.schedule:
            self.schedule = events.Rule(
                self,
                "Schedule",
                rule_name=f"{names.ml_pipeline}-schedule",
                description=f"runs {names.ml_pipeline} on the environment's schedule",
                schedule=events.Schedule.expression(settings.pipeline.schedule),
            )
            self.schedule.add_target(targets.SfnStateMachine(self.state_machine))

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
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "X-Ray tracing (xray:PutTraceSegments, PutTelemetryRecords) has no "
                    "resource-level permissions",
                    "appliesTo": ["Resource::*"],
                },
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
                            f"model-package/{ml.training[m].package_group}/*"
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

    def _grant_pipeline(
        self,
        role: iam.Role,
        *,
        names: Names,
        plan,
        emr: EmrStack,
        ml: MlStack,
        alerts: sns.ITopic,
        create_cluster: tasks.EmrCreateCluster,
    ) -> None:
        """What the state machine's tasks call, as CDK's task grants would give it, but for
        EMR: clusters are created only with the transient cluster's tag, and stepped, tagged,
        described and terminated only when they carry it."""
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
                    emr.definition.security.service_role.role_arn,
                    emr.definition.security.instance_role.role_arn,
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
                        f"{ml.training[m].package_group}",
                        f"arn:{partition}:sagemaker:{region}:{account}:model-package/"
                        f"{ml.training[m].package_group}/*",
                    )
                ],
            ),
            iam.PolicyStatement(
                sid="Notify", actions=["sns:Publish"], resources=[alerts.topic_arn]
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
        ]
        for statement in statements:
            role.add_to_policy(statement)
