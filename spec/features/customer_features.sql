-- customer_features: one row per customer, as of a cutoff day, for the churn model.
--
-- Source: curated.telecom_events (the runner maps the `curated.` qualifier, see
-- dataplatform/transforms/features.py). Days are the UTC `dt` partition (YYYY-MM-DD).
--
-- ${as_of}: the cutoff day, a 'YYYY-MM-DD' literal substituted by the runner; NULL (no
-- --as-of given, as in a scheduled or a retraining pipeline run) means the newest cutoff
-- whose 14-day label window the data holds: max(dt) - 15 days (the newest day itself may
-- still be arriving), so that a run without a cutoff still trains on observed labels.
--
-- Features only use events on or before as_of (no leakage from the label window):
--   *_7d  = days as_of-6 .. as_of (7 days, as_of included)
--   *_30d = days as_of-29 .. as_of (30 days, as_of included)
--   calls_*            event_type = 'call'
--   dropped_calls_*    calls with call_dropped = true
--   data_mb_*          sum of data_mb of data sessions (0 when none)
--   support_tickets_30d, late_payments_30d (payments with payment_days_late > 0),
--   amount_eur_30d     sum of amount_eur of payments (0 when none)
--   days_since_last_activity  as_of - the day of the customer's last event (0 = active on as_of)
--   usage_trend        (data_mb_7d * 30 / 7) / data_mb_30d: > 1 when usage is rising;
--                      NULL when the customer used no data in the 30 days
-- Customers: everyone with at least one event on or before as_of.
--
-- Label `churned`: 1 if the customer has NO event in the 14 days AFTER as_of
-- (days as_of+1 .. as_of+14), else 0. "Within the data": when the data ends less than
-- 14 days after an as_of given explicitly the label counts missing future days as
-- inactivity, so it is only meaningful for cutoffs at least 14 days before the newest dt
-- (the default is); for scoring, ignore it.
WITH params AS (
  SELECT COALESCE(CAST(${as_of} AS DATE), date_sub(MAX(CAST(dt AS DATE)), 15)) AS as_of
  FROM curated.telecom_events
),
events AS (
  SELECT e.customer_id, e.event_type, e.call_dropped, e.data_mb, e.amount_eur,
         e.payment_days_late, CAST(e.dt AS DATE) AS event_day, p.as_of
  FROM curated.telecom_events e
  CROSS JOIN params p
),
history AS (
  SELECT
    customer_id,
    as_of,
    SUM(CASE WHEN event_type = 'call' AND event_day > date_sub(as_of, 7) THEN 1 ELSE 0 END) AS calls_7d,
    SUM(CASE WHEN event_type = 'call' AND event_day > date_sub(as_of, 30) THEN 1 ELSE 0 END) AS calls_30d,
    SUM(CASE WHEN event_type = 'call' AND call_dropped AND event_day > date_sub(as_of, 7)
             THEN 1 ELSE 0 END) AS dropped_calls_7d,
    SUM(CASE WHEN event_type = 'call' AND call_dropped AND event_day > date_sub(as_of, 30)
             THEN 1 ELSE 0 END) AS dropped_calls_30d,
    COALESCE(SUM(CASE WHEN event_type = 'data_session' AND event_day > date_sub(as_of, 7)
                      THEN data_mb END), 0D) AS data_mb_7d,
    COALESCE(SUM(CASE WHEN event_type = 'data_session' AND event_day > date_sub(as_of, 30)
                      THEN data_mb END), 0D) AS data_mb_30d,
    SUM(CASE WHEN event_type = 'support_ticket' AND event_day > date_sub(as_of, 30)
             THEN 1 ELSE 0 END) AS support_tickets_30d,
    SUM(CASE WHEN event_type = 'payment' AND payment_days_late > 0
                  AND event_day > date_sub(as_of, 30) THEN 1 ELSE 0 END) AS late_payments_30d,
    COALESCE(SUM(CASE WHEN event_type = 'payment' AND event_day > date_sub(as_of, 30)
                      THEN amount_eur END), 0D) AS amount_eur_30d,
    MAX(event_day) AS last_event_day
  FROM events
  WHERE event_day <= as_of
  GROUP BY customer_id, as_of
),
future AS (
  SELECT DISTINCT customer_id
  FROM events
  WHERE event_day > as_of AND event_day <= date_add(as_of, 14)
)
SELECT
  h.customer_id AS customer_id,
  h.as_of AS as_of,
  h.calls_7d AS calls_7d,
  h.calls_30d AS calls_30d,
  h.dropped_calls_7d AS dropped_calls_7d,
  h.dropped_calls_30d AS dropped_calls_30d,
  h.data_mb_7d AS data_mb_7d,
  h.data_mb_30d AS data_mb_30d,
  h.support_tickets_30d AS support_tickets_30d,
  h.late_payments_30d AS late_payments_30d,
  h.amount_eur_30d AS amount_eur_30d,
  datediff(h.as_of, h.last_event_day) AS days_since_last_activity,
  (h.data_mb_7d * 30.0D / 7.0D) / NULLIF(h.data_mb_30d, 0D) AS usage_trend,
  CASE WHEN f.customer_id IS NULL THEN 1 ELSE 0 END AS churned
FROM history h
LEFT JOIN future f ON h.customer_id = f.customer_id
