"""The cluster twin: instance engines, serving policies, the balancer and run results."""
