"""The embedded local platform. moto keeps the control plane (buckets, streams, catalog);
the data plane runs here with the project's own code, because moto only pretends to run it
(see docs/moto.md)."""
