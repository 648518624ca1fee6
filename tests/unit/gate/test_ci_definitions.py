"""The CI definitions run what the README promises, and the same commands.

The documentation is the one source: the README's test command (the command table, which
`.ci/run` runs) and the commands of docs/operations.md's "In front of a kops/kubectl deploy",
in order. The Jenkinsfile must run
exactly those, in its stages (the gate everywhere; image and deploy only on main; the smoke
checks after deploy.sh and a rollout undo only when they fail; artifacts archived always);
`.github/workflows/gate.yml` must run the same in its jobs. Nothing here runs Jenkins or
GitHub: the Jenkinsfile is read with regexes and brace matching, the workflow as YAML
(actionlint checks the workflow itself, in `nox -s lint`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from harness import paths

README = (paths.REPO_ROOT / "README.md").read_text()
OPERATIONS = (paths.REPO_ROOT / "docs" / "operations.md").read_text()
JENKINSFILE = (paths.REPO_ROOT / "Jenkinsfile").read_text()
WORKFLOW = yaml.safe_load((paths.REPO_ROOT / ".github" / "workflows" / "gate.yml").read_text())
RUNNERS = "python3 -m pip install -r .ci/requirements.txt"
# Steps a GitHub runner needs that a Jenkins agent comes with, by step name.
RUNNER_SETUP = {"Install kops"}


def readme_test_command() -> str:
    """The README's test command: the command table's **tests** row."""
    match = re.search(r"^\| \*\*tests\*\*[^|]*\| `([^`]+)` \|", README, re.MULTILINE)
    assert match, "README's command table has no **tests** row"
    return match.group(1)


def deploy_commands() -> list[str]:
    """The commands of "In front of a kops/kubectl deploy", comments dropped."""
    section = OPERATIONS.split("## In front of a kops/kubectl deploy", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "no sh block in 'In front of a kops/kubectl deploy'"
    lines = (re.sub(r"\s+# .*$", "", line).strip() for line in block.group(1).splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# -- the Jenkinsfile, as blocks ------------------------------------------------------------

TOKEN = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"|//[^\n]*|[{}]")
SH = re.compile(r"^\s*sh '((?:[^'\\]|\\.)*)'\s*$", re.MULTILINE)


@dataclass
class Block:
    """`head { body }` of Groovy: `stage('Gate')`, `steps`, `when`, `post`, ..."""

    head: str
    start: int
    end: int = 0
    children: list[Block] = field(default_factory=list)

    def body(self) -> str:
        return JENKINSFILE[self.start : self.end]

    def child(self, head: str) -> Block:
        found = [block for block in self.children if block.head == head]
        assert len(found) == 1, f"{self.head}: {len(found)} blocks `{head}`"
        return found[0]

    def heads(self) -> list[str]:
        return [block.head for block in self.children]

    def commands(self) -> list[str]:
        """Every `sh '...'` inside, in order, comments left out."""
        return SH.findall(re.sub(r"^\s*//.*$", "", self.body(), flags=re.MULTILINE))


def jenkinsfile() -> Block:
    """The Jenkinsfile as nested blocks; braces inside strings and comments do not count."""
    root = Block("(file)", 0, len(JENKINSFILE))
    stack = [root]
    boundary = 0
    for token in TOKEN.finditer(JENKINSFILE):
        if token.group() == "{":
            head = JENKINSFILE[boundary : token.start()].strip().splitlines()[-1:]
            block = Block(head[0].strip() if head else "", token.end())
            stack[-1].children.append(block)
            stack.append(block)
            boundary = token.end()
        elif token.group() == "}":
            stack.pop().end = token.start()
            boundary = token.end()
    assert stack == [root], "unbalanced braces in the Jenkinsfile"
    return root.child("pipeline")


def stages(block: Block) -> dict[str, Block]:
    return {
        re.fullmatch(r"stage\('([^']+)'\)", stage.head).group(1): stage
        for stage in block.child("stages").children
    }


def test_the_ci_entry_point_runs_the_readme_test_command() -> None:
    lines = [line for line in (paths.REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in lines if line and not line.startswith(("#", "set ", "cd "))]
    assert commands[-1] == readme_test_command()
    assert (
        commands[0].startswith("python3 -m pip install") and ".ci/requirements.txt" in commands[0]
    )


def test_the_readme_lists_the_gate_then_the_deploy() -> None:
    commands = deploy_commands()
    assert commands[:2] == [RUNNERS, readme_test_command()]
    assert any("scripts/deploy.sh aws" in command for command in commands)
    assert commands[-2].startswith("nox -s smoke -- ")
    assert "rollout undo deployment/pg-gateway" in commands[-1]


def test_jenkinsfile_runs_exactly_the_readme_commands_in_order() -> None:
    assert jenkinsfile().commands() == deploy_commands()


def test_jenkinsfile_gates_everywhere_and_deploys_only_from_main() -> None:
    pipeline = stages(jenkinsfile())
    assert list(pipeline) == ["Gate", "Image", "Deploy"]
    assert pipeline["Gate"].commands() == [RUNNERS, readme_test_command()]
    assert "when" not in pipeline["Gate"].heads()
    for name in ("Image", "Deploy"):
        assert pipeline[name].child("when").body().strip() == "branch 'main'", name


def test_jenkinsfile_smoke_checks_after_deploy_and_rolls_back_only_on_their_failure() -> None:
    deploy = stages(stages(jenkinsfile())["Deploy"])
    assert list(deploy) == ["Apply", "Smoke"]
    applied = deploy["Apply"].commands()
    assert applied[-1] == "scripts/deploy.sh aws pg-gateway"
    smoke = deploy["Smoke"]
    assert smoke.child("steps").commands() == [deploy_commands()[-2]]
    post = smoke.child("post")
    assert post.heads() == ["failure"]
    assert post.child("failure").commands() == [deploy_commands()[-1]]


def test_jenkinsfile_archives_the_artifacts_always() -> None:
    always = jenkinsfile().child("post").child("always").body()
    assert re.search(r"\bjunit\b.*testResults: 'artifacts/junit-\*\.xml'", always)
    assert re.search(r"\barchiveArtifacts\b.*artifacts: 'artifacts/\*\*'", always)


# -- the GitHub workflow -------------------------------------------------------------------


def job(name: str) -> dict[str, Any]:
    return WORKFLOW["jobs"][name]


def runs(name: str) -> list[str]:
    """A job's `run:` commands, but the setup a Jenkins agent already has."""
    return [
        step["run"].strip()
        for step in job(name)["steps"]
        if "run" in step and step.get("name") not in RUNNER_SETUP
    ]


def uses(name: str, action: str) -> list[dict[str, Any]]:
    return [step for step in job(name)["steps"] if step.get("uses", "").startswith(action + "@")]


def test_workflow_jobs_run_the_jenkinsfile_stages_commands() -> None:
    pipeline = stages(jenkinsfile())
    # A fresh runner installs nox again before the first nox command.
    image = pipeline["Image"].commands()
    image.insert(next(i for i, c in enumerate(image) if c.startswith("nox ")), RUNNERS)
    deploy = [RUNNERS, *pipeline["Deploy"].commands()]
    assert list(WORKFLOW["jobs"]) == ["gate", "image", "deploy"]
    assert runs("gate") == pipeline["Gate"].commands()
    assert runs("image") == image
    assert runs("deploy") == deploy


def test_workflow_gates_every_push_and_deploys_only_from_main() -> None:
    triggers = WORKFLOW.get("on", WORKFLOW.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["push"]["branches"] == ["main"] and "pull_request" in triggers
    assert "if" not in job("gate")
    assert job("image")["needs"] == "gate"
    condition = job("image").get("if", "")
    assert "github.ref == 'refs/heads/main'" in condition and "'push'" in condition
    assert job("deploy")["needs"] == "image"


def test_workflow_rolls_back_only_when_the_smoke_checks_fail() -> None:
    steps = job("deploy")["steps"]
    smoke = next(index for index, step in enumerate(steps) if step.get("id") == "smoke")
    assert steps[smoke]["run"] == deploy_commands()[-2]
    assert steps[smoke - 1]["run"].startswith("scripts/deploy.sh aws")
    undo = steps[smoke + 1]
    assert undo["run"] == deploy_commands()[-1]
    assert undo.get("if") == "failure() && steps.smoke.outcome == 'failure'"


def test_workflow_caches_the_harness_and_uv_and_uploads_artifacts_always() -> None:
    cached = [step["with"]["path"] for step in uses("gate", "actions/cache")]
    assert any("~/.cache/pg-gateway" in path.split() for path in cached), cached
    assert any("~/.cache/uv" in path.split() for path in cached), cached
    for name in ("gate", "deploy"):
        (upload,) = uses(name, "actions/upload-artifact")
        assert upload.get("if") == "always()" and upload["with"]["path"] == "artifacts/", name
