"""Where the platform runs: `aws` (a deployed environment) or `local` (the embedded
platform: moto server for the control plane, local compute for the data plane)."""
