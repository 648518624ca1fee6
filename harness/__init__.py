"""The gate's library: an offline-capable kind cluster and the images it runs."""
