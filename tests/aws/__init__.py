"""The AWS target (runtime/aws/) against moto and scripted clients: no account needed."""
