"""MonitoringStack: the alerts topic, one alarm per failure mode of every moving part,
EventBridge rules for Glue and EMR failures, and the dashboard. Names come from naming,
so each alarm is checked against the physical name of what it watches."""

from __future__ import annotations

import json

from tests.infra.conftest import Synth


def resources(synth: Synth, type_: str) -> dict[str, dict]:
    return synth.resources("monitoring", type_)


def alarms(synth: Synth) -> dict[str, dict]:
    return {
        r["Properties"]["AlarmName"]: r["Properties"]
        for r in resources(synth, "AWS::CloudWatch::Alarm").values()
    }


def topic_lid(synth: Synth) -> str:
    (lid,) = resources(synth, "AWS::SNS::Topic")
    return lid


def test_alerts_topic_is_encrypted_tls_only_and_mails_the_environments_address(dev, prod):
    for synth in (dev, prod):
        (topic,) = resources(synth, "AWS::SNS::Topic").values()
        assert topic["Properties"]["TopicName"] == synth.names.alerts_topic
        (key_lid,) = resources(synth, "AWS::KMS::Key")
        assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_lid, "Arn"]}
        (policy,) = resources(synth, "AWS::SNS::TopicPolicy").values()
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )
        key = resources(synth, "AWS::KMS::Key")[key_lid]["Properties"]
        assert key["EnableKeyRotation"] is True
        services = {s["Principal"].get("Service") for s in key["KeyPolicy"]["Statement"]}
        assert {"cloudwatch.amazonaws.com", "events.amazonaws.com"} <= services
    subscriptions = [r["Properties"] for r in resources(prod, "AWS::SNS::Subscription").values()]
    assert subscriptions == [
        {
            "Protocol": "email",
            "TopicArn": {"Ref": topic_lid(prod)},
            "Endpoint": prod.platform.environment("prod").alarm_email,
        }
    ]
    assert resources(dev, "AWS::SNS::Subscription") == {}  # dev has no alarm_email


def test_every_stream_has_lag_throttling_freshness_and_failure_alarms(each_env):
    found = alarms(each_env)
    settings = each_env.platform.environment(each_env.env)
    streams = [d for d in each_env.platform.datasets if d.is_stream]
    assert streams
    for ds in streams:
        by_metric = {
            (a["Namespace"], a["MetricName"]): a
            for a in found.values()
            if a.get("Dimensions")
            in (
                [{"Name": "StreamName", "Value": each_env.names.stream(ds.name)}],
                [{"Name": "DeliveryStreamName", "Value": each_env.names.delivery_stream(ds.name)}],
            )
        }
        age = by_metric[("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds")]
        assert (age["Statistic"], age["Threshold"]) == ("Maximum", 15 * 60 * 1000)
        throttled = by_metric[("AWS/Kinesis", "WriteProvisionedThroughputExceeded")]
        assert (throttled["ComparisonOperator"], throttled["Threshold"]) == (
            "GreaterThanThreshold",
            0,
        )
        freshness = by_metric[("AWS/Firehose", "DeliveryToS3.DataFreshness")]
        assert freshness["Threshold"] == 2 * settings.firehose.buffer_seconds + 300
        for metric in ("DeliveryToS3.Success", "ExecuteProcessing.Success"):
            success = by_metric[("AWS/Firehose", metric)]
            assert (success["ComparisonOperator"], success["Threshold"]) == ("LessThanThreshold", 1)
    for a in found.values():
        assert a["AlarmActions"] == [{"Ref": topic_lid(each_env)}], a["AlarmName"]
        # missing data is no failure; the monitored models' alarms keep their state instead
        # (the next test)
        monitored = a.get("Namespace") == each_env.names.monitoring_namespace
        assert a["TreatMissingData"] == ("ignore" if monitored else "notBreaching")


def test_pipeline_alarm_watches_the_state_machine_by_its_named_arn(each_env):
    (alarm,) = [a for a in alarms(each_env).values() if "Metrics" in a]
    expression = [m for m in alarm["Metrics"] if "Expression" in m][0]["Expression"]
    assert expression == "failed + timedout + aborted"
    watched = {
        m["MetricStat"]["Metric"]["MetricName"]: m["MetricStat"]["Metric"]["Dimensions"]
        for m in alarm["Metrics"]
        if "MetricStat" in m
    }
    assert set(watched) == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    arn = json.dumps(next(iter(watched.values()))[0]["Value"])
    assert f"stateMachine:{each_env.names.ml_pipeline}" in arn


def test_glue_and_emr_failures_reach_the_topic_through_eventbridge(each_env):
    rules = {
        r["Properties"]["Name"]: r["Properties"]
        for r in resources(each_env, "AWS::Events::Rule").values()
    }
    names = each_env.names
    glue = rules[f"{names.prefix}-glue-job-failures"]["EventPattern"]
    assert glue["source"] == ["aws.glue"] and glue["detail-type"] == ["Glue Job State Change"]
    assert glue["detail"]["jobName"] == [
        names.curate_job(d.name) for d in each_env.platform.datasets
    ]
    assert set(glue["detail"]["state"]) == {"FAILED", "TIMEOUT", "ERROR"}
    cluster = rules[f"{names.prefix}-emr-cluster-failures"]["EventPattern"]
    assert cluster["detail"] == {
        "name": [{"prefix": names.prefix}],
        "state": ["TERMINATED_WITH_ERRORS"],
    }
    step = rules[f"{names.prefix}-emr-step-failures"]["EventPattern"]
    assert step["detail-type"] == ["EMR Step Status Change"]
    assert step["detail"] == {"name": [{"prefix": f"{names.prefix} "}], "state": ["FAILED"]}
    assert names.emr_step("features", "customer_features").startswith(f"{names.prefix} ")
    for rule in rules.values():
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Ref": topic_lid(each_env)}
        assert "InputTransformer" in target  # a readable message, not the raw event


def test_dashboard_shows_streams_deliveries_and_pipeline(each_env):
    (dashboard,) = resources(each_env, "AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == each_env.names.dashboard
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for ds in each_env.platform.stream_datasets:
        assert each_env.names.stream(ds.name) in body
        assert each_env.names.delivery_stream(ds.name) in body
    assert "ExecutionsFailed" in body and "Alarms" in body


def test_each_monitored_model_has_drift_breach_and_performance_alarms_from_its_spec(each_env):
    """The figures `dp monitor` publishes (dataplatform/model_monitor.py) under the alarms
    the spec's thresholds give; every alarm tells the alerts topic; missing data keeps the
    state, so a breach reported again does not change it (the retrain rule acts on the
    change)."""
    from dataplatform import model_monitor

    found = alarms(each_env)
    names = each_env.names
    monitored = [m for m in each_env.platform.models if m.monitoring]
    assert monitored
    for model in monitored:
        expected = {
            "drift": (model_monitor.METRIC_DRIFTED_FEATURES, "GreaterThanOrEqualToThreshold", 1),
            "breach": (model_monitor.METRIC_BREACH, "GreaterThanOrEqualToThreshold", 1),
            "performance": (
                model_monitor.METRIC_REALIZED_AUC,
                "LessThanThreshold",
                model.monitoring.auc,
            ),
        }
        for kind, (metric, comparison, threshold) in expected.items():
            alarm = found[names.monitor_alarm(model.name, kind)]
            assert alarm["Namespace"] == names.monitoring_namespace
            assert alarm["MetricName"] == metric
            assert alarm["Dimensions"] == [{"Name": "Model", "Value": model.name}]
            assert (alarm["ComparisonOperator"], alarm["Threshold"]) == (comparison, threshold)
            assert alarm["Period"] == 86400 and alarm["EvaluationPeriods"] == 1
            assert alarm["TreatMissingData"] == "ignore"
            assert alarm["AlarmActions"] == [{"Ref": topic_lid(each_env)}]
    assert {names.monitor_alarm(m.name, "breach") for m in each_env.platform.models} & set(
        found
    ) == {names.monitor_alarm(m.name, "breach") for m in monitored}
