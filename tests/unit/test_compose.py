"""The container stack as far as a machine without a Docker engine can check it: the Dockerfile, .dockerignore
and docker-compose.yml agree with each other and are safe by default; `make up`'s docker-mode files; and the rule
by which the CLI names input files for workers in containers. `docker-compose config` and the wheel build are
in tests/integration/test_compose_image.py."""
from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from xpvae import compose
from xpvae.stack import prepare_docker_stack

REPO = Path(__file__).resolve().parents[2]
DOCKER_ENV = {"XPVAE_BROKER_URL": "amqp://xpvae:x@127.0.0.1:55672//", "XPVAE_WORKER_DATA_DIR": "/data"}


# --- Dockerfile and .dockerignore ------------------------------------------------------------------------------
def _stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), one list per build stage."""
    text = re.sub(r"\\\n", "", (REPO / "Dockerfile").read_text())   # as BuildKit joins lines
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def copy_sources() -> list[str]:
    """What the wheel stage copies from the build context (the test that builds the wheel uses the same list)."""
    out = []
    for line in _stages()[0]:
        if line.upper().startswith("COPY ") and "--from" not in line:
            out += line.split()[1:-1]
    return out


def test_build_context_is_exactly_what_the_dockerfile_copies():
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", ".dockerignore must start by excluding everything (an allowlist)"
    allowed = [line[1:] for line in lines if line.startswith("!")]
    assert sorted(allowed) == sorted(copy_sources())
    for never in (".venv", "var", "data", ".git", "tests", "bench"):
        assert never not in allowed
    # in-tree build output of `pip install -e` must not reach the wheel stage
    assert {"**/*.so", "**/__pycache__"} <= set(lines)


def test_runtime_stage_has_no_source_tree_and_checks_the_installed_extensions_from_outside():
    wheel, runtime = _stages()
    assert len(_stages()) == 2
    copies = [line for line in runtime if line.upper().startswith("COPY ")]
    assert copies and all("--from=wheel" in line for line in copies), copies
    check = next(i for i, line in enumerate(runtime) if "ingest.readers._arraytext" in line)
    assert "db._pgcopy" in runtime[check] and "site-packages" in runtime[check]
    workdirs = [line.split()[1] for line in runtime[:check] if line.upper().startswith("WORKDIR ")]
    assert workdirs and workdirs[-1] == "/"
    assert not any("gcc" in line for line in runtime), "the compiler belongs to the wheel stage only"


def test_image_user_owns_xpvae_home_and_torch_is_a_build_argument():
    runtime = _stages()[1]
    env = next(line for line in runtime if line.startswith("ENV "))
    home = re.search(r"XPVAE_HOME=(\S+)", env).group(1)
    user_at = next(i for i, line in enumerate(runtime) if line.startswith("USER "))
    assert runtime[user_at] == "USER nobody"
    assert any("chown nobody" in line and "$XPVAE_HOME" in line for line in runtime[:user_at])
    assert home == "/var/lib/xpvae"
    args = dict(line.split()[1].split("=", 1) for line in runtime if line.startswith("ARG "))
    assert args["TORCH_INDEX_URL"].endswith("/cpu")
    install = next(line for line in runtime if "pip install" in line and "TORCH_SPEC" in line)
    assert '--index-url "$TORCH_INDEX_URL"' in install
    # the image's torch is the venv's (Makefile)
    makefile_spec = re.search(r"^TORCH_SPEC \?= (\S+)", (REPO / "Makefile").read_text(), re.M).group(1)
    assert args["TORCH_SPEC"] == makefile_spec


# --- docker-compose.yml ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack_yaml() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_one_image_built_once_and_shared(stack_yaml):
    services = stack_yaml["services"]
    builders = [name for name, svc in services.items() if "build" in svc]
    assert builders == ["migrate"]
    image = services["migrate"]["image"]
    ours = [n for n, s in services.items() if n not in ("postgres", "rabbitmq")]
    assert len(ours) == 5 and all(services[n]["image"] == image for n in ours)
    assert set(services["migrate"]["build"]["args"]) == {"TORCH_INDEX_URL"}


def test_nothing_published_beyond_loopback_and_no_default_passwords(stack_yaml):
    services = stack_yaml["services"]
    published = [p for svc in services.values() for p in svc.get("ports", [])]
    assert len(published) == 2 and all(p.startswith("127.0.0.1:") for p in published), published
    assert not any(p.endswith(":15672") for p in published)
    for secret in (services["postgres"]["environment"]["POSTGRES_PASSWORD"],
                   services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"]):
        assert re.fullmatch(r"\$\{XPVAE_\w+_PASSWORD:\?[^}]+\}", secret), secret
    for url in (services["ingest-worker"]["environment"]["XPVAE_DATABASE_URL"],
                services["ingest-worker"]["environment"]["XPVAE_BROKER_URL"]):
        assert re.search(r"xpvae:\$\{XPVAE_\w+_PASSWORD:\?", url), url


def test_compose_defaults_agree_with_make_up(stack_yaml):
    services = stack_yaml["services"]
    for svc, var in (("postgres", "XPVAE_PG_PORT"), ("rabbitmq", "XPVAE_BROKER_PORT")):
        default = re.search(rf"\$\{{{var}:-(\d+)\}}", services[svc]["ports"][0]).group(1)
        assert default == compose.PORT_DEFAULTS[var]
    for name in ("ingest-worker", "trainer-worker", "inferencer-worker", "analysis-worker"):
        mounts = [v for v in services[name]["volumes"] if v.startswith("${XPVAE_DATA_DIR")]
        assert mounts == [f"${{XPVAE_DATA_DIR:-./data}}:{compose.CONTAINER_DATA_DIR}:ro"]
    gpu = yaml.safe_load(compose.GPU_FILE.read_text())["services"]
    assert gpu["trainer-worker"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert "TORCH_INDEX_URL" in gpu["migrate"]["build"]["args"]


# --- make up in docker mode: compose.env, env, mode --------------------------------------------------------------
def test_settings_generate_passwords_once_and_keep_them(tmp_path):
    first = compose.compose_settings({}, {"XPVAE_DATA_DIR": str(tmp_path / "in")})
    assert first["XPVAE_DB_PASSWORD"] != first["XPVAE_BROKER_PASSWORD"]
    assert all(len(first[v]) >= 24 for v in compose.PASSWORD_VARS)
    assert first["XPVAE_PG_PORT"] == "55432" and first["XPVAE_DATA_DIR"] == str(tmp_path / "in")
    compose.write_compose_env(tmp_path / "compose.env", first)
    again = compose.compose_settings(compose.read_env_file(tmp_path / "compose.env"), {})
    assert again == first
    # the environment wins over what was stored
    over = compose.compose_settings(first, {"XPVAE_DB_PASSWORD": "given-password-1", "XPVAE_PG_PORT": "6000"})
    assert over["XPVAE_DB_PASSWORD"] == "given-password-1" and over["XPVAE_PG_PORT"] == "6000"
    assert over["XPVAE_BROKER_PASSWORD"] == first["XPVAE_BROKER_PASSWORD"]


@pytest.mark.parametrize("env, name", [
    ({"XPVAE_DB_PASSWORD": "p@ss/word:with-url-chars"}, "XPVAE_DB_PASSWORD"),
    ({"XPVAE_BROKER_PASSWORD": "short"}, "XPVAE_BROKER_PASSWORD"),
    ({"XPVAE_PG_PORT": "70000"}, "XPVAE_PG_PORT"),
    ({"XPVAE_BROKER_PORT": "-1"}, "XPVAE_BROKER_PORT"),
    ({"XPVAE_DATA_DIR": "/tmp/it's"}, "XPVAE_DATA_DIR"),
])
def test_settings_refuse_values_compose_cannot_carry(env, name):
    with pytest.raises(click.ClickException, match=name):
        compose.compose_settings({}, env)


def _source(env_file: Path, *names: str, before: str = "") -> list[str]:
    script = f'{before}source "$1"; ' + "; ".join(f'printf "%s\\n" "${{{n}-<unset>}}"' for n in names)
    out = subprocess.run(["bash", "-c", script, "_", str(env_file)], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_docker_up_writes_private_env_files_that_reach_the_stack(tmp_path):
    home, data = tmp_path / "home dir", tmp_path / "my data"
    (home / "stack").mkdir(parents=True)
    (home / "stack" / "env").write_text("stale\n")
    os.chmod(home / "stack" / "env", 0o644)
    environ = {"XPVAE_HOME": str(home), "XPVAE_DATA_DIR": str(data), "XPVAE_GPU": "1",
               "XPVAE_BROKER_PASSWORD": "Broker_pass-1234"}
    values, gpu = prepare_docker_stack(home / "stack", environ)
    assert gpu and data.is_dir() and (home / "stack" / "mode").read_text() == "docker-gpu\n"
    for name in ("compose.env", "env"):
        assert stat.S_IMODE((home / "stack" / name).stat().st_mode) == 0o600
    db, broker, got_home, got_data, mount = _source(home / "stack" / "env", "XPVAE_DATABASE_URL", "XPVAE_BROKER_URL",
                                                    "XPVAE_HOME", "XPVAE_DATA_DIR", "XPVAE_WORKER_DATA_DIR")
    assert db == f"postgresql+psycopg2://xpvae:{values['XPVAE_DB_PASSWORD']}@127.0.0.1:55432/xpvae"
    assert broker == "amqp://xpvae:Broker_pass-1234@127.0.0.1:55672//"
    assert (got_home, got_data, mount) == (str(home), str(data), "/data")
    # a second `make up` keeps the generated database password (the volume was created with it)
    values2, gpu2 = prepare_docker_stack(home / "stack", {"XPVAE_HOME": str(home)})
    assert values2["XPVAE_DB_PASSWORD"] == values["XPVAE_DB_PASSWORD"] and not gpu2
    assert values2["XPVAE_DATA_DIR"] == str(data)


def test_local_env_file_clears_the_container_path_rule(tmp_path):
    compose.write_shell_env(tmp_path / "env", {"XPVAE_DATABASE_URL": "postgresql+psycopg2://postgres@/xpvae?host=/x"},
                            unset=("XPVAE_DATA_DIR", "XPVAE_WORKER_DATA_DIR"))
    got = _source(tmp_path / "env", "XPVAE_DATABASE_URL", "XPVAE_WORKER_DATA_DIR",
                  before="export XPVAE_WORKER_DATA_DIR=/data; ")
    assert got == ["postgresql+psycopg2://postgres@/xpvae?host=/x", "<unset>"]


@pytest.mark.parametrize("value, expected", [("", False), ("0", False), ("1", True), ("yes", True)])
def test_gpu_switch(value, expected):
    assert compose.gpu_requested({"XPVAE_GPU": value}) is expected


def test_gpu_switch_refuses_anything_else():
    with pytest.raises(click.ClickException, match="XPVAE_GPU"):
        compose.gpu_requested({"XPVAE_GPU": "cuda"})


def test_compose_args_and_masking(tmp_path):
    args = compose.compose_args(["docker", "compose"], tmp_path / "compose.env", gpu=True)
    assert args == ["docker", "compose", "--env-file", str(tmp_path / "compose.env"),
                    "-f", str(compose.COMPOSE_FILE), "-f", str(compose.GPU_FILE)]
    assert compose.mask_password("amqp://xpvae:s3cr-t@127.0.0.1:55672//") == "amqp://xpvae:***@127.0.0.1:55672//"
    assert compose.mask_password("postgresql+psycopg2://postgres@/xpvae") == "postgresql+psycopg2://postgres@/xpvae"


# --- input paths -------------------------------------------------------------------------------------------------
@pytest.fixture
def data_tree(tmp_path):
    data = tmp_path / "data"
    (data / "xp" / "csv").mkdir(parents=True)
    (data / "xp" / "csv" / "part 1.csv").write_text("x")
    (tmp_path / "secret.csv").write_text("x")
    (data / "out-link.csv").symlink_to(tmp_path / "secret.csv")
    (data / "in-link.csv").symlink_to(data / "xp" / "csv" / "part 1.csv")
    return data


def test_paths_under_the_data_folder_are_sent_as_the_workers_see_them(data_tree, monkeypatch):
    env = {**DOCKER_ENV, "XPVAE_DATA_DIR": str(data_tree)}
    assert compose.worker_path(str(data_tree / "xp" / "csv" / "part 1.csv"), env) == "/data/xp/csv/part 1.csv"
    assert compose.worker_path(str(data_tree / "xp"), env) == "/data/xp"
    assert compose.worker_path(str(data_tree), env) == "/data"
    assert compose.worker_path(str(data_tree / "in-link.csv"), env) == "/data/xp/csv/part 1.csv"
    monkeypatch.chdir(data_tree / "xp")
    assert compose.worker_path("csv/part 1.csv", env) == "/data/xp/csv/part 1.csv"


@pytest.mark.parametrize("name", ["../secret.csv", "out-link.csv", "xp/../../secret.csv"])
def test_paths_outside_the_data_folder_are_refused(data_tree, name):
    env = {**DOCKER_ENV, "XPVAE_DATA_DIR": str(data_tree)}
    with pytest.raises(click.BadParameter, match="XPVAE_DATA_DIR"):
        compose.worker_path(str(data_tree / name), env)
    with pytest.raises(click.BadParameter):
        compose.worker_path("/etc/passwd", env)


def test_local_and_in_process_jobs_get_the_absolute_host_path(data_tree):
    target = str(data_tree / "xp" / "csv" / "part 1.csv")
    assert compose.worker_path(target, {}) == target                      # no stack: in-process
    assert compose.worker_path(target, {"XPVAE_BROKER_URL": "amqp://x//"}) == target     # local workers
    # the container rule only applies when jobs go to the (containerised) workers
    assert compose.worker_path(target, {"XPVAE_WORKER_DATA_DIR": "/data", "XPVAE_DATA_DIR": "/elsewhere"}) == target


@pytest.mark.parametrize("env, message", [({**DOCKER_ENV}, "XPVAE_DATA_DIR is not"),
                                          ({**DOCKER_ENV, "XPVAE_DATA_DIR": "/", "XPVAE_WORKER_DATA_DIR": "data"},
                                           "absolute")])
def test_half_configured_docker_mode_is_a_usage_error(env, message):
    with pytest.raises(click.UsageError, match=message):
        compose.worker_path("/tmp", env)


def test_cli_refuses_an_input_outside_the_data_folder_before_any_job(data_tree, tmp_path):
    from xpvae.cli import main
    env = {**DOCKER_ENV, "XPVAE_DATA_DIR": str(data_tree), "XPVAE_HOME": str(tmp_path / "home"),
           "XPVAE_DATABASE_URL": f"sqlite:///{tmp_path / 'never.sqlite'}"}
    result = CliRunner().invoke(main, ["ingest", "gaia-xp", str(data_tree / "xp"), str(tmp_path / "secret.csv")],
                                env=env)
    assert result.exit_code == 2, result.output
    assert "copy or move the file there" in result.output and str(data_tree) in result.output
    assert not (tmp_path / "never.sqlite").exists()


@pytest.mark.parametrize("action", ["status", "logs", "down"])
def test_status_logs_and_down_follow_the_recorded_docker_stack(tmp_path, monkeypatch, action):
    """A stack recorded as containers is never mistaken for local processes: without its compose.env the
    command says how to start it (and does not report or stop local workers)."""
    from xpvae import stack
    monkeypatch.setenv("XPVAE_HOME", str(tmp_path))
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "mode").write_text("docker\n")
    with pytest.raises(click.ClickException, match="compose.env: start the stack with `make up`"):
        getattr(stack, action)()
    assert (tmp_path / "stack" / "mode").exists()


def test_model_import_on_the_host_is_refused_for_workers_in_containers(data_tree, tmp_path):
    from xpvae.cli import main
    weights = data_tree / "weight.pt"
    weights.write_bytes(b"not read")
    env = {**DOCKER_ENV, "XPVAE_DATA_DIR": str(data_tree), "XPVAE_HOME": str(tmp_path / "home"),
           "XPVAE_DATABASE_URL": f"sqlite:///{tmp_path / 'never.sqlite'}"}
    result = CliRunner().invoke(main, ["model", "import-published", "--weights", str(weights)], env=env)
    assert result.exit_code == 2, result.output
    assert "exec trainer-worker xpvae model import-published" in result.output
    assert not (tmp_path / "home" / "models").exists() and not (tmp_path / "never.sqlite").exists()
