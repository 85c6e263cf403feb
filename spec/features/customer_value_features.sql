-- customer_value_features: one row per customer, as of a cutoff day, for the CLV model
-- (customer lifetime value over a short horizon: what the customer will pay in the next
-- 14 days, the same look-ahead as customer_features' churn label).
--
-- Source: curated.telecom_events (the runner maps the `curated.` qualifier, see
-- dataplatform/transforms/features.py). Days are the UTC `dt` partition (YYYY-MM-DD).
--
-- ${as_of}: the cutoff day, a 'YYYY-MM-DD' literal substituted by the runner; NULL (no
-- --as-of given, as in a scheduled or a retraining pipeline run) means the newest cutoff
-- whose 14-day target window the data holds: max(dt) - 15 days (the newest day may still be
-- arriving), customer_features.sql's default too, so the two telecom tables share it.
--
-- Features only use events on or before as_of (no leakage from the target window), each
-- defined as customer_features.sql defines it, so that the stream scorer computes them
-- online from the same events (dataplatform/online/features.py; tests compare both):
--   *_30d = days as_of-29 .. as_of (30 days, as_of included)
--   payments_30d        payments (event_type = 'payment')
--   amount_eur_30d      sum of amount_eur of payments (0 when none)
--   late_payments_30d   payments with payment_days_late > 0
--   dropped_calls_30d   calls with call_dropped = true
--   support_tickets_30d support tickets
--   days_since_last_activity  as_of - the day of the customer's last event (0 = active on as_of)
-- Customers: everyone with at least one event on or before as_of.
--
-- Target `value_next_14d`: the sum of amount_eur of the customer's payments in the 14 days
-- AFTER as_of (days as_of+1 .. as_of+14); 0 when there are none (a customer who left pays
-- nothing). "Within the data": when the data ends less than 14 days after an as_of given
-- explicitly, the days missing count as paying nothing (the default cutoff never does).
-- For scoring, ignore it.
WITH params AS (
  SELECT COALESCE(CAST(${as_of} AS DATE), date_sub(MAX(CAST(dt AS DATE)), 15)) AS as_of
  FROM curated.telecom_events
),
events AS (
  SELECT e.customer_id, e.event_type, e.call_dropped, e.amount_eur, e.payment_days_late,
         CAST(e.dt AS DATE) AS event_day, p.as_of
  FROM curated.telecom_events e
  CROSS JOIN params p
),
history AS (
  SELECT
    customer_id,
    as_of,
    SUM(CASE WHEN event_type = 'payment' AND event_day > date_sub(as_of, 30)
             THEN 1 ELSE 0 END) AS payments_30d,
    COALESCE(SUM(CASE WHEN event_type = 'payment' AND event_day > date_sub(as_of, 30)
                      THEN amount_eur END), 0D) AS amount_eur_30d,
    SUM(CASE WHEN event_type = 'payment' AND payment_days_late > 0
                  AND event_day > date_sub(as_of, 30) THEN 1 ELSE 0 END) AS late_payments_30d,
    SUM(CASE WHEN event_type = 'call' AND call_dropped AND event_day > date_sub(as_of, 30)
             THEN 1 ELSE 0 END) AS dropped_calls_30d,
    SUM(CASE WHEN event_type = 'support_ticket' AND event_day > date_sub(as_of, 30)
             THEN 1 ELSE 0 END) AS support_tickets_30d,
    MAX(event_day) AS last_event_day
  FROM events
  WHERE event_day <= as_of
  GROUP BY customer_id, as_of
),
future AS (
  SELECT customer_id, SUM(amount_eur) AS value_next_14d
  FROM events
  WHERE event_type = 'payment' AND event_day > as_of AND event_day <= date_add(as_of, 14)
  GROUP BY customer_id
)
SELECT
  h.customer_id AS customer_id,
  h.as_of AS as_of,
  h.payments_30d AS payments_30d,
  h.amount_eur_30d AS amount_eur_30d,
  h.late_payments_30d AS late_payments_30d,
  h.dropped_calls_30d AS dropped_calls_30d,
  h.support_tickets_30d AS support_tickets_30d,
  datediff(h.as_of, h.last_event_day) AS days_since_last_activity,
  COALESCE(f.value_next_14d, 0D) AS value_next_14d
FROM history h
LEFT JOIN future f ON h.customer_id = f.customer_id
