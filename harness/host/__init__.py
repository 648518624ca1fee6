"""What the gate does to the machine it runs on, in one place: `engine` makes a Docker engine
that runs privileged containers (packages installed, dockerd started, the runtime wrapper
registered) and writes each change to `machine`'s record first. `cluster up` begins with it
(harness.cluster.create); `cluster purge` (harness.cluster.purge, beside `up`) reads the record
and undoes exactly those, in the reverse order.
"""
