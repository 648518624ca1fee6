"""What the offline node image takes from kind's own source (the module zip).

Reading kind's files instead of copying them into this repo keeps the node
image in step with the pinned kind version: its base files, its default CNI
and storage manifests, and the image names those manifests reference.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from harness import versions
from harness.build import gobuild
from harness.steps import HarnessError

NODEIMAGE_PACKAGE = "pkg/build/nodeimage"
STRING_CONSTANT = re.compile(r'^const (\w+) = "([^"]*)"$', re.MULTILINE)
# A constant made of raw strings and identifiers joined by "+".
CONCATENATED_CONSTANT = r"^const {name} = ((?:`[^`]*`|\w+|\s*\+\s*)+)$"
TOKEN = re.compile(r"`([^`]*)`|(\w+)")


@functools.cache
def module_dir() -> Path:
    return gobuild.module_dir(versions.KIND_MODULE, versions.KIND_VERSION)


def base_files() -> Path:
    """kind's images/base/files: entrypoint, systemd units, containerd config."""
    return module_dir() / "images" / "base" / "files"


def _constant(source: str, name: str, strings: dict[str, str]) -> str:
    match = re.search(CONCATENATED_CONSTANT.format(name=name), source, re.MULTILINE)
    if match is None:
        raise HarnessError(
            f"kind {versions.KIND_VERSION}: constant {name} not found in {NODEIMAGE_PACKAGE}"
        )
    parts = []
    for raw, identifier in TOKEN.findall(match.group(1)):
        parts.append(raw if not identifier else strings[identifier])
    return "".join(parts)


def manifest(file_name: str, constant: str) -> str:
    """A manifest constant from pkg/build/nodeimage, image names substituted."""
    source = (module_dir() / NODEIMAGE_PACKAGE / file_name).read_text()
    return _constant(source, constant, dict(STRING_CONSTANT.findall(source)))


def image_constants() -> dict[str, str]:
    """The image names kind's manifests use (constant name -> image)."""
    found: dict[str, str] = {}
    for file_name in ("const_cni.go", "const_storage.go"):
        found.update(
            STRING_CONSTANT.findall((module_dir() / NODEIMAGE_PACKAGE / file_name).read_text())
        )
    return found


def check_pins() -> None:
    """Fail early if harness.versions disagrees with the kind version it pins."""
    expected = {
        "kindnetdImage": versions.KINDNETD_IMAGE,
        "storageProvisionerImage": versions.LOCAL_PATH_PROVISIONER_IMAGE,
        "storageHelperImage": versions.LOCAL_PATH_HELPER_IMAGE,
    }
    actual = image_constants()
    wrong = {
        name: actual.get(name) for name, image in expected.items() if actual.get(name) != image
    }
    if wrong:
        raise HarnessError(
            f"harness/versions.py image pins disagree with kind {versions.KIND_VERSION}: {wrong}"
        )
