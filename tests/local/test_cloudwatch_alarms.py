"""CloudWatch alarms evaluate on the local endpoint (services/cloudwatch.py) and their state
changes reach EventBridge (services/events.py), as on AWS: PutMetricData puts an alarm in
OK or ALARM by its datapoints' own times, each transition (and only a transition) puts one
"CloudWatch Alarm State Change" event on the default bus and publishes to the alarm's SNS
actions, and a rule matching the ALARM state starts one execution of a state machine with
the input its target specifies. A module server of its own (it is restarted here); every
resource has its own name. The evaluation's rules and EventBridge's input rendering are
also checked on their own, without a server."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from dataplatform.runtime.local import server
from dataplatform.runtime.local.services import cloudwatch, events

REGION = "eu-west-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/events-start-pipeline"
# The data's own times (the evaluation never reads the clock): fixed, five minutes apart
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
FIVE = timedelta(minutes=5)
PASS_MACHINE = {"StartAt": "Pass", "States": {"Pass": {"Type": "Pass", "End": True}}}
# The orchestration stack's retrain target, as CDK renders RuleTargetInput.fromObject
RETRAIN_TEMPLATE = (
    '{"trigger":"monitoring breach","model":"churn",'
    '"alarm":<detail-alarmName>,"reason":<detail-state-reason>}'
)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("cloudwatch-alarms")
    server.up(home)
    try:
        yield home
    finally:
        server.down(home)


def client(home, service: str):
    return server.client(service, server.require(home), REGION)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def alarm_on(home, name: str, metric: str, **options) -> str:
    """A simple alarm on `metric` (namespace Local/Test, dimension Model=churn); its ARN."""
    settings = {
        "Statistic": "Maximum",
        "Period": 300,
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        **options,
    }
    cw = client(home, "cloudwatch")
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace="Local/Test",
        MetricName=metric,
        Dimensions=[{"Name": "Model", "Value": "churn"}],
        AlarmDescription=f"{metric} watched",
        **settings,
    )
    (alarm,) = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return alarm["AlarmArn"]


def put(home, metric: str, value: float, at: datetime, dimensions=None) -> None:
    client(home, "cloudwatch").put_metric_data(
        Namespace="Local/Test",
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": dimensions or [{"Name": "Model", "Value": "churn"}],
                "Value": value,
                "Timestamp": at,
            }
        ],
    )


def state(home, name: str) -> dict:
    (alarm,) = client(home, "cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return alarm


def rule_to_queue(home, alarm_arn: str, pattern_detail: dict | None = None) -> str:
    """A rule sending the alarm's state change events to a new queue; the queue's URL."""
    sqs, bus = client(home, "sqs"), client(home, "events")
    queue = sqs.create_queue(QueueName=unique("alarm-events"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rule = unique("alarm-events")
    pattern = {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "resources": [alarm_arn],
        **({"detail": pattern_detail} if pattern_detail else {}),
    }
    bus.put_rule(Name=rule, EventPattern=json.dumps(pattern))
    bus.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return queue


def received(home, queue: str) -> list[dict]:
    """Every event on the queue now (EventBridge delivers while PutMetricData is answered)."""
    sqs, found = client(home, "sqs"), []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return found
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def machine(home) -> str:
    return client(home, "stepfunctions").create_state_machine(
        name=unique("on-alarm"), definition=json.dumps(PASS_MACHINE), roleArn=ROLE
    )["stateMachineArn"]


def rule_to_machine(home, alarm_arn: str, machine_arn: str, **target) -> None:
    """The orchestration stack's rule: the alarm's change to ALARM starts the machine."""
    bus, rule = client(home, "events"), unique("retrain-on-breach")
    pattern = {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "resources": [alarm_arn],
        "detail": {"state": {"value": ["ALARM"]}},
    }
    bus.put_rule(Name=rule, EventPattern=json.dumps(pattern))
    bus.put_targets(
        Rule=rule, Targets=[{"Id": "pipeline", "Arn": machine_arn, "RoleArn": ROLE, **target}]
    )


def executions(home, machine_arn: str) -> list[dict]:
    return client(home, "stepfunctions").list_executions(stateMachineArn=machine_arn)["executions"]


def ended(home, execution_arn: str) -> dict:
    sfn, deadline = client(home, "stepfunctions"), time.monotonic() + 60
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return described
        time.sleep(0.1)


# ----------------------------------------------------------------------------- the server


def test_an_alarm_changes_state_by_its_data_and_each_change_is_one_event(home):
    name, metric = unique("breach"), unique("Breach")
    arn = alarm_on(home, name, metric)
    queue = rule_to_queue(home, arn)
    assert state(home, name)["StateValue"] == "INSUFFICIENT_DATA"

    put(home, metric, 0.0, T0)
    ok = state(home, name)
    assert ok["StateValue"] == "OK"
    (event,) = received(home, queue)
    assert event["source"] == "aws.cloudwatch"
    assert event["detail-type"] == "CloudWatch Alarm State Change"
    assert event["resources"] == [arn]
    detail = event["detail"]
    assert detail["alarmName"] == name
    assert detail["state"]["value"] == "OK"
    assert detail["state"]["reason"] == ok["StateReason"]
    assert "was not greater than or equal to the threshold (1.0)" in detail["state"]["reason"]
    assert detail["previousState"]["value"] == "INSUFFICIENT_DATA"
    assert detail["previousState"]["reason"] == "Unchecked: Initial alarm creation"
    (watched,) = detail["configuration"]["metrics"]
    assert watched["metricStat"] == {
        "metric": {"namespace": "Local/Test", "name": metric, "dimensions": {"Model": "churn"}},
        "period": 300,
        "stat": "Maximum",
    }
    assert detail["configuration"]["description"] == f"{metric} watched"

    # data of another metric, or of the same metric with other dimensions, is not the alarm's
    put(home, unique("Other"), 5.0, T0 + FIVE)
    put(home, metric, 5.0, T0 + FIVE, dimensions=[{"Name": "Model", "Value": "other"}])
    assert state(home, name)["StateValue"] == "OK"
    assert received(home, queue) == []

    put(home, metric, 1.0, T0 + FIVE)
    alarmed = state(home, name)
    assert alarmed["StateValue"] == "ALARM"
    (event,) = received(home, queue)
    assert event["detail"]["state"]["value"] == "ALARM"
    assert event["detail"]["previousState"]["value"] == "OK"
    assert event["detail"]["previousState"]["reason"] == ok["StateReason"]
    assert event["detail"]["state"]["reason"] == (
        "Threshold Crossed: 1 out of the last 1 datapoints [1.0 (05/01/26 10:05:00)] was "
        "greater than or equal to the threshold (1.0) (minimum 1 datapoint for OK -> ALARM "
        "transition)."
    )
    reason_data = json.loads(alarmed["StateReasonData"])
    assert reason_data["recentDatapoints"] == [1.0]
    assert reason_data["startDate"] == "2026-01-05T10:05:00.000+0000"

    # still breaching: no transition, so nothing is emitted and the state's time stays
    put(home, metric, 3.0, T0 + 2 * FIVE)
    again = state(home, name)
    assert again["StateValue"] == "ALARM"
    assert again["StateUpdatedTimestamp"] == alarmed["StateUpdatedTimestamp"]
    assert received(home, queue) == []


def test_a_rule_on_the_alarm_state_starts_one_execution_with_the_targets_input(home):
    name, metric = unique("churn-breach"), unique("Breach")
    arn = alarm_on(home, name, metric)
    machine_arn = machine(home)
    rule_to_machine(
        home,
        arn,
        machine_arn,
        InputTransformer={
            "InputPathsMap": {
                "detail-alarmName": "$.detail.alarmName",
                "detail-state-reason": "$.detail.state.reason",
            },
            "InputTemplate": RETRAIN_TEMPLATE,
        },
    )

    put(home, metric, 0.0, T0)  # INSUFFICIENT_DATA -> OK: not the rule's state
    assert state(home, name)["StateValue"] == "OK"
    assert executions(home, machine_arn) == []

    put(home, metric, 1.0, T0 + FIVE)
    put(home, metric, 1.0, T0 + 2 * FIVE)  # still ALARM: no second execution
    alarm = state(home, name)
    assert alarm["StateValue"] == "ALARM"
    (execution,) = executions(home, machine_arn)
    uuid.UUID(execution["name"])  # EventBridge names an execution with a UUID
    run = ended(home, execution["executionArn"])
    assert run["status"] == "SUCCEEDED"
    expected = {
        "trigger": "monitoring breach",
        "model": "churn",
        "alarm": name,
        "reason": alarm["StateReason"],
    }
    assert json.loads(run["input"]) == expected
    assert json.loads(run["output"]) == expected  # a Pass state hands its input on


def test_an_input_path_target_gets_that_part_of_the_event(home):
    name, metric = unique("path"), unique("Breach")
    arn = alarm_on(home, name, metric)
    machine_arn = machine(home)
    rule_to_machine(home, arn, machine_arn, InputPath="$.detail.state")

    put(home, metric, 2.0, T0)  # INSUFFICIENT_DATA -> ALARM
    (execution,) = executions(home, machine_arn)
    given = json.loads(ended(home, execution["executionArn"])["input"])
    assert given["value"] == "ALARM"
    assert given["reason"] == state(home, name)["StateReason"]


def test_an_auc_floor_alarm_goes_to_alarm_under_its_threshold(home):
    """A LessThanThreshold alarm on a daily Minimum that ignores missing data (the model
    monitor's performance alarm)."""
    name, metric = unique("performance"), unique("RealizedAUC")
    arn = alarm_on(
        home,
        name,
        metric,
        Statistic="Minimum",
        Period=86400,
        Threshold=0.7,
        ComparisonOperator="LessThanThreshold",
        TreatMissingData="ignore",
    )
    queue = rule_to_queue(home, arn, {"state": {"value": ["ALARM"]}})
    day = timedelta(days=1)

    put(home, metric, 0.81, T0)
    assert state(home, name)["StateValue"] == "OK"
    put(home, metric, 0.74, T0 + day)
    assert state(home, name)["StateValue"] == "OK"
    assert received(home, queue) == []

    put(home, metric, 0.9, T0 + 2 * day + timedelta(hours=1))
    put(home, metric, 0.62, T0 + 2 * day + timedelta(hours=9))  # the day's Minimum: 0.62
    alarm = state(home, name)
    assert alarm["StateValue"] == "ALARM"
    assert "was less than the threshold (0.7)" in alarm["StateReason"]
    assert "0.62 (07/01/26 00:00:00)" in alarm["StateReason"]
    (event,) = received(home, queue)
    assert event["detail"]["previousState"]["value"] == "OK"

    put(home, metric, 0.8, T0 + 3 * day)
    assert state(home, name)["StateValue"] == "OK"
    assert received(home, queue) == []  # the rule matches ALARM only


def test_m_out_of_n_with_missing_data_not_breaching(home):
    name, metric = unique("two-of-three"), unique("Errors")
    alarm_on(
        home,
        name,
        metric,
        Statistic="Sum",
        EvaluationPeriods=3,
        DatapointsToAlarm=2,
        Threshold=10.0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )
    put(home, metric, 6.0, T0)
    put(home, metric, 6.0, T0 + timedelta(minutes=2))  # the period's Sum: 12, breaching
    assert state(home, name)["StateValue"] == "OK"  # 1 of 3 (2 periods missing: fine)
    put(home, metric, 20.0, T0 + 3 * FIVE)  # T0's period and this one, 3 periods apart
    assert state(home, name)["StateValue"] == "OK"  # T0's period is out of the last 3
    put(home, metric, 11.0, T0 + 4 * FIVE)
    alarm = state(home, name)
    assert alarm["StateValue"] == "ALARM"
    assert alarm["StateReason"].startswith("Threshold Crossed: 2 out of the last 3 datapoints")


def test_the_alarms_sns_action_gets_cloudwatchs_message(home):
    sns, sqs = client(home, "sns"), client(home, "sqs")
    topic = sns.create_topic(Name=unique("alerts"))["TopicArn"]
    queue = sqs.create_queue(QueueName=unique("alerts"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    name, metric = unique("drift"), unique("DriftedFeatures")
    arn = alarm_on(home, name, metric, AlarmActions=[topic])

    put(home, metric, 0.0, T0)  # to OK: the alarm has no OK action
    assert received(home, queue) == []
    put(home, metric, 4.0, T0 + FIVE)
    (message,) = received(home, queue)
    assert message["AlarmName"] == name
    assert message["AlarmArn"] == arn
    assert message["NewStateValue"] == "ALARM"
    assert message["OldStateValue"] == "OK"
    assert message["NewStateReason"] == state(home, name)["StateReason"]
    assert message["Trigger"]["MetricName"] == metric
    assert message["Trigger"]["Threshold"] == 1.0


def test_set_alarm_state_announces_a_change_and_updates_keep_the_state(home):
    name, metric = unique("manual"), unique("Breach")
    arn = alarm_on(home, name, metric)
    queue = rule_to_queue(home, arn)
    cw = client(home, "cloudwatch")
    cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="testing the rule")
    (event,) = received(home, queue)
    assert event["detail"]["state"]["value"] == "ALARM"
    assert event["detail"]["state"]["reason"] == "testing the rule"
    cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="again")
    assert received(home, queue) == []  # no change of state, no event

    # PutMetricAlarm on an existing alarm changes its configuration, not its state
    alarm_on(home, name, metric, Threshold=5.0)
    updated = state(home, name)
    assert (updated["StateValue"], updated["Threshold"]) == ("ALARM", 5.0)


def test_a_restart_keeps_the_states_and_starts_no_execution_again(home, monkeypatch):
    # a start that fails replaying the journal fails here in a minute, not in ten
    monkeypatch.setattr(server, "STARTUP_TIMEOUT_S", 60)
    name, metric = unique("restart"), unique("Breach")
    arn = alarm_on(home, name, metric)
    machine_arn = machine(home)
    rule_to_machine(home, arn, machine_arn, Input=json.dumps({"constant": True}))
    put(home, metric, 1.0, T0)
    (execution,) = executions(home, machine_arn)
    run = ended(home, execution["executionArn"])
    assert json.loads(run["input"]) == {"constant": True}
    before = state(home, name)

    server.down(home)
    server.up(home)

    after = state(home, name)
    assert after["StateValue"] == "ALARM"
    assert after["StateUpdatedTimestamp"] == before["StateUpdatedTimestamp"]
    assert [e["executionArn"] for e in executions(home, machine_arn)] == [execution["executionArn"]]
    assert ended(home, execution["executionArn"])["status"] == "SUCCEEDED"
    # and the alarm goes on evaluating after the restart
    put(home, metric, 0.0, T0 + FIVE)
    assert state(home, name)["StateValue"] == "OK"
    assert len(executions(home, machine_arn)) == 1


# ----------------------------------------------------------------------------- the rules


def alarm_settings(**options) -> SimpleNamespace:
    settings = {
        "period": 60,
        "evaluation_periods": 1,
        "datapoints_to_alarm": None,
        "comparison_operator": "GreaterThanThreshold",
        "threshold": 10.0,
        "statistic": "Average",
        "treat_missing_data": None,
        "state_value": "INSUFFICIENT_DATA",
        **options,
    }
    return SimpleNamespace(**settings)


def value(v: float, at: datetime) -> SimpleNamespace:
    return SimpleNamespace(value=v, timestamp=at)


@pytest.mark.parametrize(
    "breaches, needed, missing, current, expected",
    [
        ([True, True, True], 3, "missing", "OK", "ALARM"),
        ([True, False, True], 3, "missing", "ALARM", "OK"),
        ([True, False, True], 2, "missing", "OK", "ALARM"),
        ([None, None, None], 3, "missing", "OK", "INSUFFICIENT_DATA"),
        ([None, None, None], 3, "ignore", "ALARM", None),
        ([None, None, None], 3, "notBreaching", "ALARM", "OK"),
        ([None, None, None], 3, "breaching", "OK", "ALARM"),
        ([False, None, None], 3, "missing", "ALARM", "OK"),
        ([True, None, None], 1, "notBreaching", "OK", "ALARM"),
        ([True, None, True], 3, "notBreaching", "OK", "OK"),
        ([True, None, True], 3, "breaching", "OK", "ALARM"),
        # fewer than M datapoints: ALARM when the oldest breaching one is M periods old
        # and nothing after it is fine; otherwise OK
        ([True, None, None], 3, "missing", "OK", "ALARM"),
        ([None, None, True], 3, "missing", "OK", "OK"),
        ([None, True, False], 2, "missing", "ALARM", "OK"),
    ],
)
def test_decide_m_out_of_n(breaches, needed, missing, current, expected):
    assert cloudwatch.decide(breaches, needed, missing, current) == expected


def test_aggregate_each_statistic():
    data = [
        SimpleNamespace(value=2.0),
        SimpleNamespace(value=6.0),
        SimpleNamespace(sample_count=2.0, sum=10.0, min=1.0, max=9.0),
    ]
    assert cloudwatch.aggregate(data, "SampleCount") == 4.0
    assert cloudwatch.aggregate(data, "Sum") == 18.0
    assert cloudwatch.aggregate(data, "Average") == 4.5
    assert cloudwatch.aggregate(data, "Minimum") == 1.0
    assert cloudwatch.aggregate(data, "Maximum") == 9.0
    assert cloudwatch.aggregate([], "Average") is None


def test_evaluate_takes_the_last_periods_ending_with_the_newest_datum():
    alarm = alarm_settings(evaluation_periods=2, datapoints_to_alarm=2)
    minute = timedelta(minutes=1)
    # aligned periods 10:00, 10:01, 10:02: only the last two count
    data = [
        value(50.0, T0),
        value(5.0, T0 + minute + timedelta(seconds=10)),
        value(25.0, T0 + minute + timedelta(seconds=50)),  # 10:01's Average: 15
        value(30.0, T0 + 2 * minute + timedelta(seconds=30)),
    ]
    evaluation = cloudwatch.evaluate(alarm, data)
    assert evaluation is not None
    assert evaluation.state == "ALARM"
    assert evaluation.reason_data["recentDatapoints"] == [15.0, 30.0]
    assert evaluation.reason_data["startDate"] == "2026-01-05T10:01:00.000+0000"
    # the oldest period of the two below the threshold: not 2 of 2
    data[1] = value(-35.0, T0 + minute + timedelta(seconds=10))  # 10:01's Average: -5
    evaluation = cloudwatch.evaluate(alarm, data)
    assert evaluation is not None and evaluation.state == "OK"
    assert evaluation.reason == (
        "Threshold Crossed: 1 out of the last 2 datapoints [30.0 (05/01/26 10:02:00), -5.0 "
        "(05/01/26 10:01:00)] was not greater than the threshold (10.0) (minimum 1 datapoint "
        "for INSUFFICIENT_DATA -> OK transition)."
    )


def test_the_reason_counts_missing_periods_as_treat_missing_data_says():
    alarm = alarm_settings(evaluation_periods=3, treat_missing_data="notBreaching")
    evaluation = cloudwatch.evaluate(alarm, [value(11.0, T0)])  # 1 of 3 breaching: M is N
    assert evaluation is not None
    assert evaluation.reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints [11.0 (05/01/26 10:00:00)] were "
        "not greater than the threshold (10.0) (minimum 1 datapoint for INSUFFICIENT_DATA -> "
        "OK transition)."
    )


def test_reason_data_stays_within_set_alarm_states_limit():
    alarm = alarm_settings(evaluation_periods=500)
    data = [value(float(i), T0 + timedelta(minutes=i)) for i in range(500)]
    evaluation = cloudwatch.evaluate(alarm, data)
    assert evaluation is not None
    assert len(json.dumps(evaluation.reason_data)) > 4000
    text = cloudwatch._reason_data_text(evaluation.reason_data)
    assert len(text) <= 4000
    assert json.loads(text)["threshold"] == 10.0


def test_evaluate_reads_naive_times_as_utc():
    alarm = alarm_settings()
    naive = value(11.0, datetime(2026, 1, 5, 10, 0, 30))  # moto's clock gives naive UTC
    evaluation = cloudwatch.evaluate(alarm, [naive])
    assert evaluation is not None
    assert evaluation.reason_data["startDate"] == "2026-01-05T10:00:00.000+0000"


# ----------------------------------------------------------------------------- target input

EVENT = {
    "id": "e1",
    "source": "aws.cloudwatch",
    "detail": {"alarmName": 'a "quoted" name', "state": {"value": "ALARM", "count": 2}},
}


@pytest.mark.parametrize(
    "target, expected",
    [
        ({}, EVENT),
        ({"Input": '{"constant": [1, 2]}'}, {"constant": [1, 2]}),
        ({"InputPath": "$.detail.state"}, {"value": "ALARM", "count": 2}),
        (
            {
                "InputTransformer": {
                    "InputPathsMap": {"name": "$.detail.alarmName", "n": "$.detail.state.count"},
                    "InputTemplate": '{"alarm": <name>, "n": <n>, "text": "<name> x<n>"}',
                }
            },
            {"alarm": 'a "quoted" name', "n": 2, "text": 'a "quoted" name x2'},
        ),
        (
            {
                "InputTransformer": {
                    "InputPathsMap": {"state": "$.detail.state"},
                    "InputTemplate": '"state: <state>"',
                }
            },
            'state: {"value": "ALARM", "count": 2}',
        ),
        (
            {
                "InputTransformer": {
                    "InputPathsMap": {"v": "$.detail.state.value"},
                    "InputTemplate": "the alarm is <v>",
                }
            },
            "the alarm is ALARM",
        ),
    ],
)
def test_a_targets_input_is_what_eventbridge_sends(target, expected):
    assert events._target_input(target, EVENT) == expected
