"""Real-time scoring, target-neutral and model-neutral: a stream record checked by the curate
job's rules (records.py), each customer's recent events kept as online features computed
exactly as the served models' feature SQL computes them (features.py: customer_features.sql
and customer_value_features.sql), and the scorer that keeps them, calls a model's endpoint
with the model's inputs and acts on its score (scorer.py). The stream consumer Lambda
(lambdas/stream_scorer, one per served model) and the local platform's consumer run the
same code."""
