"""Build Go programs from the Go module proxy: the one source of binaries offline.

Each build is a throwaway module that requires the real one and builds its
main packages with CGO disabled (static binaries for scratch images). The
output directory is keyed by everything that goes into it, and Go's own build
and module caches make a rebuild after a key change cheap.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness import paths, versions
from harness.steps import HarnessError, Step, probe, step


def go_env() -> dict[str, str]:
    """Static builds with the harness's own module and build caches, so that `cluster purge`
    removes what the harness downloaded and compiled and nothing of the user's Go work."""
    cache = paths.cache_dir()
    return {
        "CGO_ENABLED": "0",
        "GOFLAGS": "-mod=mod -buildvcs=false",
        "GOTOOLCHAIN": "local",
        "GOMODCACHE": str(cache / "go-mod"),
        "GOCACHE": str(cache / "go-build"),
    }


def installed_tool(package: str, version: str) -> Path:
    """Where `go_install` puts a tool: `<cache>/<name>/<version>/<name>`."""
    name = package.rsplit("/", 1)[-1]
    return paths.cache_dir() / name / version / name


def go_install(package: str, version: str) -> Path:
    """A command-line tool at exactly this version (kind, kube-score): `go install` from the
    Go module proxy, once per version, into the harness's cache rather than the user's GOBIN."""
    binary = installed_tool(package, version)
    if binary.is_file():
        return binary
    if shutil.which("go") is None:
        raise HarnessError(
            f"{binary.name} {version} is needed: install it, or install Go "
            f"({versions.GO_MINIMUM} or newer) so it can be built"
        )
    with step(f"go install {package}@{version}") as current:
        binary.parent.mkdir(parents=True, exist_ok=True)
        current.run(
            ["go", "install", f"{package}@{version}"],
            env={**go_env(), "GOBIN": str(binary.parent)},
            cwd=binary.parent,
        )
    return binary


ZERO_VERSION_REQUIREMENT = re.compile(r"^\s+(\S+) v0\.0\.0$", re.MULTILINE)


@dataclass(frozen=True)
class GoBuild:
    """Main packages of one module version, built into one directory."""

    name: str
    module: str
    version: str
    packages: tuple[str, ...]
    ldflags: tuple[str, ...] = ()
    # Modules a monorepo lists as v0.0.0 (Kubernetes' staging repos) are
    # replaced by this version, as upstream's own replace directives would.
    zero_versions_become: str | None = None
    # A module in this work tree instead of one from the proxy.
    local_dir: Path | None = None
    # Output names, where a package path does not end in one (etcd's is .../server/v3).
    binaries: tuple[str, ...] = ()

    def outputs(self) -> tuple[str, ...]:
        return self.binaries or tuple(package.rsplit("/", 1)[-1] for package in self.packages)

    def key(self) -> str:
        parts = [
            self.module,
            self.version,
            *self.packages,
            *self.ldflags,
            str(self.zero_versions_become),
            go_version(),
        ]
        if self.local_dir:
            parts += [
                path.read_text() for path in sorted(self.local_dir.rglob("*")) if path.is_file()
            ]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def go_version() -> str:
    result = probe(["go", "env", "GOVERSION"])
    return result.stdout.strip() or "missing"


def build(spec: GoBuild) -> Path:
    """Return the directory holding spec's binaries, building them if needed."""
    out = paths.cache_dir() / "go" / f"{spec.name}-{spec.key()}"
    binaries = out / "bin"
    if all((binaries / name).is_file() for name in spec.outputs()):
        return binaries
    if shutil.which("go") is None:
        raise HarnessError(
            f"the Go toolchain ({versions.GO_MINIMUM} or newer) is needed to build offline: "
            "install it from go.dev"
        )
    with step(f"go build {spec.name} {spec.version}") as current:
        module_dir = spec.local_dir or _throwaway_module(current, spec, out / "module")
        # One invocation for all packages shares the compile work between them.
        target = f"{binaries}/" if len(spec.packages) > 1 else f"{binaries}/{spec.outputs()[0]}"
        args = ["go", "build", "-trimpath", "-o", target]
        if spec.ldflags:
            args.append("-ldflags=" + " ".join(spec.ldflags))
        current.run([*args, *spec.packages], cwd=module_dir, env=go_env())
    return binaries


def _throwaway_module(current: Step, spec: GoBuild, module_dir: Path) -> Path:
    module_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "module pggateway.local/build/" + spec.name,
        "",
        f"go {versions.GO_MINIMUM}",
        "",
        f"require {spec.module} {spec.version}",
    ]
    if spec.zero_versions_become:
        upstream = _download(current, spec.module, spec.version)
        staged = sorted(set(ZERO_VERSION_REQUIREMENT.findall(Path(upstream["GoMod"]).read_text())))
        lines += ["", "replace ("]
        lines += [f"\t{module} => {module} {spec.zero_versions_become}" for module in staged]
        lines.append(")")
    (module_dir / "go.mod").write_text("\n".join(lines) + "\n")
    return module_dir


def _download(current: Step, module: str, version: str) -> dict[str, str]:
    """`go mod download` one module version; returns go's JSON description."""
    return json.loads(
        current.output(["go", "mod", "download", "-json", f"{module}@{version}"], env=go_env())
    )


def module_dir(module: str, version: str) -> Path:
    """The extracted source of a module version in the module cache."""
    with step(f"go mod download {module}@{version}") as current:
        return Path(_download(current, module, version)["Dir"])
