"""The gate's library: an offline-capable kind cluster and the images it runs.

Read in this order:
  versions        every pin (kind, Kubernetes, etcd, CoreDNS, pause, image names, Debian suite)
  steps, paths    logged, timed steps with heartbeats; cache, log and kubeconfig locations
  host            a Docker engine that runs privileged containers (install, start, runtime fix)
  kindtool        kind at the pinned version (PATH, cache, or `go install`)
  nodeimage       kindest/node where pullable, else assembled offline from:
    gobuild, components   Go binaries built from the Go module proxy
    rootfs                Debian rootfs images from debootstrap
    componentimages       the images kubeadm and kind expect, under their exact names
    kindsource            kind's base files and manifests, read from its module
  cluster         `python -m harness.cluster up|down|status`, ensure_cluster(), load_image()
  baseimages      offline python and postgres bases for the project's own images
"""
