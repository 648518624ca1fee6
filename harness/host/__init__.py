"""What the gate does to the machine it runs on, and its undoing, in one place.

`cluster up` (harness.cluster.create) asks `engine` for a Docker engine that runs privileged
containers: packages installed, dockerd started, the runtime wrapper registered, each change
written to `machine`'s record first. `purge` reads that record and undoes exactly those, in
the reverse order (the cluster and the images while the engine still answers, then the
engine, daemon.json, the wrapper, the packages, their state, the caches, the record).
"""
