"""`python -m harness.manifests`: the manifest lint (`nox -s lint` runs it too)."""

from harness.manifests.lint import main

raise SystemExit(main())
