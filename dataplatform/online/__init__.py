"""Real-time scoring, target-neutral: a stream record checked by the curate job's rules
(records.py), each customer's recent events kept as online features computed exactly as
spec/features/customer_features.sql computes them (features.py), and the scorer that keeps
them, calls the model's endpoint and acts on the score (scorer.py). The stream consumer
Lambda (lambdas/stream_scorer) and the local platform's consumer run the same code."""
