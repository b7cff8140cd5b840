"""docker-compose.yml, the Dockerfiles and .dockerignore agree with each other and with the code.

Nothing here needs Docker: the files are parsed (PyYAML, a small Dockerfile line parser, ast) and
cross-checked. Python modules named in commands are located on disk, never imported.
"""

from __future__ import annotations

import ast
import configparser
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
API_DOCKERFILE = ROOT / "docker" / "api.Dockerfile"
WORKER_DOCKERFILE = ROOT / "docker" / "worker.Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

REQUIRED_SERVICES = ("postgres", "redis", "migrate", "api", "flower")
REGIMEN_ENV = ("REGIMEN_DATABASE_URL", "REGIMEN_BROKER_URL", "REGIMEN_ARTIFACT_DIR")
API_COMMAND = ["uvicorn", "--factory", "api.main:create_app", "--host", "0.0.0.0", "--port", "8000"]
WORKER_COMMAND = [
    "celery",
    "-A",
    "workers.celery_app",
    "worker",
    "--pool=solo",
    "--concurrency=1",
    "--loglevel=INFO",
]
# Every Python module the deployment runs by name, and what kind of reference it is.
EXPECTED_MODULES = ("api.main", "workers.celery_app", "service.admin")
TORCH_PIN = "torch==2.13.0"


# --------------------------------------------------------------------------------------- parsing


def _load_yaml(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), f"missing {COMPOSE_FILE.relative_to(ROOT)}"
    return _load_yaml(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict) and found, "docker-compose.yml has no services"
    return found


def _workers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if name.startswith("worker")}


_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with no variables set: the default (or empty)."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def as_argv(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    assert isinstance(value, list), f"a command must be a string or a list, not {value!r}"
    return [str(v) for v in value]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, ``\\`` continuations joined."""
    assert path.is_file(), f"missing {path.relative_to(ROOT)}"
    instructions: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments (and parser directives) may sit inside a continuation too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if not full:
            continue
        keyword, _, args = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, f"{path.name}: dangling line continuation"
    return instructions


def exec_form(args: str) -> list[str]:
    """The argv of a CMD/ENTRYPOINT: JSON exec form, or the shell form split like a shell."""
    if args.startswith("["):
        argv = json.loads(args)
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), args
        return argv
    return shlex.split(args)


def last(instructions: list[Instruction], keyword: str) -> Instruction | None:
    matching = [i for i in instructions if i.keyword == keyword]
    return matching[-1] if matching else None


def image_argv(instructions: list[Instruction]) -> list[str]:
    entry = last(instructions, "ENTRYPOINT")
    cmd = last(instructions, "CMD")
    return (exec_form(entry.args) if entry else []) + (exec_form(cmd.args) if cmd else [])


def dockerfile_of(service: dict[str, Any]) -> Path | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        return ROOT / build / "Dockerfile"
    context = ROOT / str(build.get("context", "."))
    return context / str(build.get("dockerfile", "Dockerfile"))


def effective_argv(service: dict[str, Any]) -> list[str]:
    """What the container runs: compose entrypoint/command over the image's ENTRYPOINT/CMD."""
    dockerfile = dockerfile_of(service)
    instructions = parse_dockerfile(dockerfile) if dockerfile is not None else []
    if "entrypoint" in service:
        entrypoint = as_argv(service["entrypoint"])
        return entrypoint + as_argv(service.get("command"))
    if "command" in service:
        entry = last(instructions, "ENTRYPOINT")
        return (exec_form(entry.args) if entry else []) + as_argv(service["command"])
    return image_argv(instructions)


_MODULE = r"[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*"


def modules_in(argv: list[str]) -> set[str]:
    """Python modules an argv names: ``celery -A M``, ``python -m M``, ``uvicorn M:attr``."""
    found: set[str] = set()
    if not argv:
        return found
    program = Path(argv[0]).name
    for index, token in enumerate(argv):
        following = argv[index + 1] if index + 1 < len(argv) else None
        if token in ("-A", "--app") and following is not None:
            found.add(following.split(":")[0])
        elif token.startswith("--app="):
            found.add(token.split("=", 1)[1].split(":")[0])
        elif token == "-m" and program.startswith("python") and following is not None:
            found.add(following)
        elif program in ("uvicorn", "gunicorn", "hypercorn") and re.fullmatch(
            rf"{_MODULE}:{_MODULE}", token
        ):
            found.add(token.split(":")[0])
    return found


def module_file(module: str, *, runnable: bool = False) -> Path | None:
    """The source file of ``module`` in the repository (``-m`` may also run a package)."""
    base = ROOT.joinpath(*module.split("."))
    candidates = [base.with_suffix(".py"), base / "__init__.py"]
    if runnable:
        candidates.insert(1, base / "__main__.py")
    return next((c for c in candidates if c.is_file()), None)


def top_level_names(path: Path) -> set[str]:
    """Names bound at module level: functions, classes, assignments, imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def all_argvs(services: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    argvs = {f"service {name}": effective_argv(svc) for name, svc in services.items()}
    for dockerfile in (API_DOCKERFILE, WORKER_DOCKERFILE):
        argvs[dockerfile.name] = image_argv(parse_dockerfile(dockerfile))
    return argvs


def _is_project_install(run: str) -> bool:
    if "pip install" not in run:
        return False
    tokens = shlex.split(run.replace("&&", " ; "))
    return any(t in (".", "/app", "./") or t.startswith(("./", "/app[", ".[")) for t in tokens)


# -------------------------------------------------------------------------------- compose: shape


def test_required_services_exist(services: dict[str, dict[str, Any]]) -> None:
    missing = [name for name in REQUIRED_SERVICES if name not in services]
    assert not missing, f"docker-compose.yml lacks services: {missing}"
    assert _workers(services), "docker-compose.yml has no worker service (worker-gpu0, ...)"


def test_backing_services_and_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    postgres, redis = services["postgres"], services["redis"]
    assert str(postgres["image"]).startswith("postgres:16")
    assert str(redis["image"]).startswith("redis:7")
    assert "pg_isready" in " ".join(as_argv(postgres["healthcheck"]["test"]))
    assert "ping" in " ".join(as_argv(redis["healthcheck"]["test"])).lower()
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in postgres.get("volumes", [])), (
        "postgres keeps its data in a volume"
    )


def test_migrate_is_one_shot_before_api(services: dict[str, dict[str, Any]]) -> None:
    migrate, api = services["migrate"], services["api"]
    assert effective_argv(migrate) == ["alembic", "upgrade", "head"]
    # the string "no": unquoted, YAML would read it as false
    assert migrate.get("restart") == "no"
    assert depends_on(migrate).get("postgres") == "service_healthy"
    deps = depends_on(api)
    assert deps.get("migrate") == "service_completed_successfully"
    assert deps.get("redis") == "service_healthy"


def test_api_service(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    assert effective_argv(api) == API_COMMAND
    ports = [interpolate(str(p)) for p in api.get("ports", [])]
    assert any(p.split(":")[-1] == "8000" for p in ports), ports
    assert "/healthz" in " ".join(as_argv(api["healthcheck"]["test"]))


def test_flower_service(services: dict[str, dict[str, Any]]) -> None:
    argv = effective_argv(services["flower"])
    assert argv[:4] == ["celery", "-A", "workers.celery_app", "flower"], argv
    assert "--port=5555" in argv
    ports = [interpolate(str(p)) for p in services["flower"].get("ports", [])]
    assert any(p.split(":")[-1] == "5555" for p in ports), ports


def _check_workers(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], *, with_image: bool = True
) -> None:
    """Every worker: the image's command, a node name, the node's GPUs, GPUs it places on.

    with_image: the command is completed from the image (a Dockerfile relative to this folder).
    """
    template = compose.get("x-worker")
    assert isinstance(template, dict), "no x-worker extension field"
    for name, worker in _workers(services).items():
        argv = effective_argv(worker) if with_image else as_argv(worker["command"])
        assert argv[: len(WORKER_COMMAND)] == WORKER_COMMAND, f"{name}: {argv}"
        assert "--pool=solo" in argv
        assert "-n" in argv, f"{name}: no celery node name (-n {name}@%h)"
        assert argv[argv.index("-n") + 1] == f"{name}@%h"
        # The container sees all the node's GPUs, so indices are the physical ones.
        devices = worker["deploy"]["resources"]["reservations"]["devices"]
        nvidia = [d for d in devices if d.get("driver") == "nvidia"]
        assert nvidia, f"{name}: no NVIDIA device reservation"
        assert all("gpu" in d.get("capabilities", []) for d in nvidia)
        assert all(d.get("count") == "all" for d in nvidia), f"{name}: reserve the node's GPUs"
        env = environment(worker)
        gpus = [int(g) for g in env["REGIMEN_WORKER_GPUS"].split(",")]
        assert gpus == sorted(set(gpus)), f"{name}: REGIMEN_WORKER_GPUS {gpus}"
        assert env.get("REGIMEN_WORKER_HOST"), f"{name}: no REGIMEN_WORKER_HOST (the node name)"
        assert env.get("REGIMEN_WORKER_ID"), f"{name}: no stable REGIMEN_WORKER_ID"
        for key in ("build", "image", "volumes", "deploy"):
            if key in template:
                assert worker.get(key) == template[key], f"{name}: {key} differs from x-worker"
    ids = [interpolate(environment(w)["REGIMEN_WORKER_ID"]) for w in _workers(services).values()]
    assert len(ids) == len(set(ids)), f"two workers share an id: {ids}"


def test_workers_of_a_4_gpu_node(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    _check_workers(compose, services)
    workers = _workers(services)
    for worker in workers.values():
        deps = depends_on(worker)
        assert deps.get("migrate") == "service_completed_successfully"
        assert deps.get("redis") == "service_healthy"
    placed = {name: environment(w)["REGIMEN_WORKER_GPUS"] for name, w in workers.items()}
    # One worker per GPU for 1-GPU jobs, one for the whole node for 2- and 4-GPU jobs.
    assert placed == {
        "worker-gpu0": "0",
        "worker-gpu1": "1",
        "worker-gpu2": "2",
        "worker-gpu3": "3",
        "worker-node": "0,1,2,3",
    }
    hosts = {interpolate(environment(w)["REGIMEN_WORKER_HOST"]) for w in workers.values()}
    assert hosts == {"node-1"}


def test_another_node_joins_the_same_database_and_broker() -> None:
    node_file = ROOT / "docker" / "compose.node.yml"
    node = _load_yaml(node_file.read_text(encoding="utf-8"))
    services = node["services"]
    assert set(services) == set(_workers(services)), "a node file runs workers only"
    _check_workers(node, services, with_image=False)
    for name, worker in services.items():
        env = environment(worker)
        assert "REGIMEN_MAIN_HOST" in env["REGIMEN_DATABASE_URL"], name
        assert "REGIMEN_MAIN_HOST" in env["REGIMEN_BROKER_URL"], name
        assert "REGIMEN_NODE_NAME:?" in env["REGIMEN_WORKER_HOST"], (
            f"{name}: the node name is required"
        )
        assert worker["build"]["context"] == ".."
        assert (
            node_file.parent / worker["build"]["context"] / worker["build"]["dockerfile"]
        ).is_file()


def test_the_settings_read_every_worker_variable() -> None:
    from service.settings import Settings

    fields = {f"REGIMEN_{name.upper()}" for name in Settings.model_fields}
    for variable in ("REGIMEN_WORKER_ID", "REGIMEN_WORKER_HOST", "REGIMEN_WORKER_GPUS"):
        assert variable in fields, variable


def test_shared_environment(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    common = compose.get("x-regimen-env")
    assert isinstance(common, dict), "no x-regimen-env extension field"
    assert set(REGIMEN_ENV) <= set(common), f"x-regimen-env lacks {set(REGIMEN_ENV) - set(common)}"
    python_services = ["migrate", "api", "flower", *_workers(services)]
    for name in python_services:
        env = environment(services[name])
        for key, value in common.items():
            assert env.get(key) == str(value), f"{name}: {key} is not the x-regimen-env value"

    db_url = interpolate(str(common["REGIMEN_DATABASE_URL"]))
    match = re.fullmatch(r"postgresql\+psycopg://([^:@/]+):([^@/]*)@([^:/]+):(\d+)/(\w+)", db_url)
    assert match, f"unexpected REGIMEN_DATABASE_URL {db_url!r}"
    user, password, host, port, dbname = match.groups()
    pg_env = {k: interpolate(v) for k, v in environment(services["postgres"]).items()}
    assert (host, port) == ("postgres", "5432")
    assert pg_env.get("POSTGRES_USER") == user
    assert pg_env.get("POSTGRES_PASSWORD") == password
    assert pg_env.get("POSTGRES_DB") == dbname
    assert re.fullmatch(r"redis://redis:6379(/\d+)?", str(common["REGIMEN_BROKER_URL"]))


def test_artifacts_volume_shared_by_api_and_workers(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    artifact_dir = str(compose["x-regimen-env"]["REGIMEN_ARTIFACT_DIR"])
    sources: set[str] = set()
    for name in ["api", *_workers(services)]:
        mounts = [str(v) for v in services[name].get("volumes", [])]
        here = [m.split(":")[0] for m in mounts if m.split(":")[1] == artifact_dir]
        assert here, f"{name} does not mount the artifacts volume at {artifact_dir}"
        sources.update(here)
    assert len(sources) == 1, f"api and workers mount different artifact volumes: {sources}"
    (volume,) = sources
    assert volume in (compose.get("volumes") or {}), f"volume {volume!r} is not declared"


# ---------------------------------------------------------------------- commands name real code


def test_commands_name_real_modules(services: dict[str, dict[str, Any]]) -> None:
    named: dict[str, str] = {}
    for where, argv in all_argvs(services).items():
        for module in modules_in(argv):
            named.setdefault(module, where)
    assert set(EXPECTED_MODULES) <= set(named), (
        f"no command runs {sorted(set(EXPECTED_MODULES) - set(named))}"
    )
    missing = {
        module: where
        for module, where in named.items()
        if module_file(module, runnable=True) is None
    }
    assert not missing, "modules named in commands have no source file: " + ", ".join(
        f"{m} (in {w}: expected {m.replace('.', '/')}.py)" for m, w in sorted(missing.items())
    )


@pytest.mark.parametrize(
    ("module", "name"),
    [("api.main", "create_app"), ("workers.celery_app", "app")],
)
def test_entry_points_are_defined(module: str, name: str) -> None:
    path = module_file(module)
    assert path is not None, f"missing {module.replace('.', '/')}.py"
    assert name in top_level_names(path), f"{path.relative_to(ROOT)} does not define {name}"


def test_create_app_is_a_function() -> None:
    path = module_file("api.main")
    assert path is not None, "missing api/main.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "create_app"
        for node in tree.body
    ), "api/main.py has no top-level `def create_app`"


def test_admin_module_has_create_key() -> None:
    path = module_file("service.admin", runnable=True)
    assert path is not None, "missing service/admin.py"
    sources = [path] if path.name != "__init__.py" else list(path.parent.glob("*.py"))
    text = "\n".join(p.read_text(encoding="utf-8") for p in sources)
    assert "create-key" in text or "create_key" in text, "service.admin has no create-key command"


def test_alembic_ini_points_at_migrations() -> None:
    ini = ROOT / "alembic.ini"
    assert ini.is_file(), "missing alembic.ini at the repository root"
    parser = configparser.RawConfigParser()
    parser.read(ini, encoding="utf-8")
    assert parser.has_option("alembic", "script_location"), "alembic.ini: no script_location"
    location = parser.get("alembic", "script_location").replace("%(here)s", str(ROOT))
    scripts = Path(location) if Path(location).is_absolute() else ROOT / location
    assert scripts.is_dir(), f"alembic script_location {location!r} is not a directory"
    assert (scripts / "env.py").is_file(), f"missing {scripts.relative_to(ROOT)}/env.py"
    assert scripts.resolve() == (ROOT / "migrations").resolve()


# ----------------------------------------------------------------------------------- Dockerfiles


def test_build_dockerfiles_exist(services: dict[str, dict[str, Any]]) -> None:
    built = {name: dockerfile_of(svc) for name, svc in services.items() if "build" in svc}
    assert built, "no service is built from this repository"
    for name, dockerfile in built.items():
        assert dockerfile is not None and dockerfile.is_file(), f"{name}: missing {dockerfile}"
        assert dockerfile.resolve() in (API_DOCKERFILE.resolve(), WORKER_DOCKERFILE.resolve())
    for name in ("migrate", "api", "flower"):
        assert dockerfile_of(services[name]) == ROOT / "docker" / "api.Dockerfile", name
    for name, worker in _workers(services).items():
        assert dockerfile_of(worker) == ROOT / "docker" / "worker.Dockerfile", name


def test_services_sharing_an_image_share_its_build(services: dict[str, dict[str, Any]]) -> None:
    by_image: dict[str, Any] = {}
    for name, svc in services.items():
        if "build" in svc and "image" in svc:
            first = by_image.setdefault(svc["image"], svc["build"])
            assert first == svc["build"], f"{name}: image {svc['image']} built differently"


def test_api_dockerfile() -> None:
    instructions = parse_dockerfile(API_DOCKERFILE)
    assert instructions[0].keyword == "FROM"
    assert instructions[0].args.startswith("python:3.11-slim")
    assert image_argv(instructions) == API_COMMAND
    assert any(i.keyword == "EXPOSE" and "8000" in i.args.split() for i in instructions)
    _assert_non_root(instructions, API_DOCKERFILE)
    runs = [i.args for i in instructions if i.keyword == "RUN"]
    torch = [r for r in runs if TORCH_PIN in r]
    assert torch and "/whl/cpu" in torch[0], "the API image installs the CPU build of torch"
    # the flower service runs this image
    assert any("pip install" in r and "flower" in r for r in runs), "flower is not installed"


def test_worker_dockerfile() -> None:
    instructions = parse_dockerfile(WORKER_DOCKERFILE)
    base = instructions[0].args
    assert instructions[0].keyword == "FROM"
    assert base.startswith(("nvidia/cuda:", "pytorch/pytorch:")), base
    assert image_argv(instructions) == WORKER_COMMAND
    _assert_non_root(instructions, WORKER_DOCKERFILE)
    torch = [i.args for i in instructions if i.keyword == "RUN" and TORCH_PIN in i.args]
    assert torch and re.search(r"/whl/cu\d+", torch[0]), "the worker image installs CUDA torch"


def test_compose_commands_match_image_commands(services: dict[str, dict[str, Any]]) -> None:
    api_cmd = image_argv(parse_dockerfile(API_DOCKERFILE))
    worker_cmd = image_argv(parse_dockerfile(WORKER_DOCKERFILE))
    assert effective_argv(services["api"]) == api_cmd
    for name, worker in _workers(services).items():
        argv = effective_argv(worker)
        assert argv[: len(worker_cmd)] == worker_cmd, f"{name} runs {argv}, image has {worker_cmd}"
        extra = argv[len(worker_cmd) :]
        assert extra in ([], ["-n", f"{name}@%h"]), f"{name}: unexpected arguments {extra}"


@pytest.mark.parametrize("dockerfile", [API_DOCKERFILE, WORKER_DOCKERFILE], ids=lambda p: p.name)
def test_torch_is_installed_before_the_project(dockerfile: Path) -> None:
    instructions = parse_dockerfile(dockerfile)
    torch = [n for n, i in enumerate(instructions) if i.keyword == "RUN" and TORCH_PIN in i.args]
    project = [
        n for n, i in enumerate(instructions) if i.keyword == "RUN" and _is_project_install(i.args)
    ]
    copies = [n for n, i in enumerate(instructions) if i.keyword in ("COPY", "ADD")]
    assert torch, f"{dockerfile.name}: no `pip install {TORCH_PIN}`"
    assert project, f"{dockerfile.name}: no `pip install .` of the project"
    assert torch[0] < project[0], f"{dockerfile.name}: the project is installed before torch"
    assert any(c < project[0] for c in copies), f"{dockerfile.name}: source not copied first"


def test_images_share_the_artifacts_uid() -> None:
    """api and workers write the same volume: the same numeric uid in both images."""
    uids = []
    for dockerfile in (API_DOCKERFILE, WORKER_DOCKERFILE):
        runs = " ".join(i.args for i in parse_dockerfile(dockerfile) if i.keyword == "RUN")
        match = re.search(r"useradd\b[^;&]*?(?:--uid|-u)[ =](\d+)", runs)
        assert match, f"{dockerfile.name}: no `useradd --uid N`"
        uids.append(match.group(1))
    assert len(set(uids)) == 1, f"different uids: {uids}"


def _assert_non_root(instructions: list[Instruction], path: Path) -> None:
    user = last(instructions, "USER")
    assert user is not None, f"{path.name}: runs as root (no USER)"
    assert user.args.split(":")[0] not in ("root", "0"), f"{path.name}: USER {user.args}"


def test_dockerignore() -> None:
    assert DOCKERIGNORE.is_file(), "missing .dockerignore"
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    }
    bare = {p.removeprefix("**/") for p in patterns}
    for needed in (
        ".venv",
        "var",
        ".git",
        "__pycache__",
        "*.pyc",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
    ):
        assert needed in bare, f".dockerignore does not exclude {needed}"
    for kept in ("alembic.ini", "migrations", "pyproject.toml", "README.md", "docker"):
        assert kept not in bare, f".dockerignore excludes {kept}, which the images need"
