"""The discrete-event kernel shared by the in-process run and the services over NATS.

A run is a set of :class:`~llmtwin.sim.kernel.Component` objects (generator, balancer, one
engine per instance, ...) that only interact through timestamped :class:`Envelope` messages.
A :class:`~llmtwin.sim.windows.WindowPlanner` decides which components step at which virtual
time; :class:`~llmtwin.sim.local.LocalRunner` drives them in one process, the conductor service
drives them over NATS, and both hand every component the same ordered inputs, so both give the
same results.
"""
