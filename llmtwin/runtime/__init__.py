"""Running the twin as services on one machine: the embedded nats-server, child processes, ``up``."""
