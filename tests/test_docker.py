"""The deployment files, checked without a Docker engine: the compose file parses and wires the services, the
Dockerfile mirrors .ci/run's install steps, runs as non-root and downloads no weights at run time."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from sketchtext.plugin.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
WORKERS = ("worker-cpu", "worker-gpu")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (DOCKER / "Dockerfile").read_text()


def stages(dockerfile: str) -> dict[str, str]:
    """Each build stage's text by name (the `AS` of its FROM line)."""
    parts = re.split(r"^FROM .* AS (\S+)\s*$", dockerfile, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"\b(torch|torchvision)==([\w.+]+)", text))


def test_compose_has_the_services_and_profiles(compose: dict) -> None:
    services = compose["services"]
    assert {"qdrant", "postgres", "redis", "migrate", *WORKERS} <= set(services)
    assert services["migrate"]["command"] == ["db", "upgrade"] and services["migrate"]["restart"] == "no"
    assert services["worker-cpu"]["profiles"] == ["cpu"] and services["worker-gpu"]["profiles"] == ["gpu"]
    for name in WORKERS:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["command"][0] == "worker"
    assert services["worker-gpu"]["command"] == ["worker", "--pool", "solo"]
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]


def test_compose_builds_the_one_dockerfile_per_device(compose: dict) -> None:
    built = {name: svc["build"] for name, svc in compose["services"].items() if "build" in svc}
    assert set(WORKERS) <= set(built)
    for build in built.values():
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == (DOCKER / "Dockerfile").resolve()
    assert built["worker-cpu"]["args"]["DEVICE"] == "cpu" and built["worker-gpu"]["args"]["DEVICE"] == "cuda"


def test_compose_environment_is_valid_settings_pointing_at_the_services(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("migrate", *WORKERS):
        environment = compose["services"][name]["environment"]
        for key, value in environment.items():
            # ${VAR:-default} interpolation, as compose does it with nothing set
            monkeypatch.setenv(key, re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)))
        settings = Settings()  # extra="forbid": a misspelt SKETCHTEXT_ variable fails here
        assert settings.store.url == "http://qdrant:6333"
        assert (
            settings.database_url.startswith("postgresql://sketchtext:") and "@postgres:5432/" in settings.database_url
        )
        assert settings.queue.broker_url == "redis://redis:6379/0"
        assert settings.model.spec.startswith("open_clip:") and "@/models/" in settings.model.spec
        for key in environment:
            monkeypatch.delenv(key)


def test_dockerfile_installs_what_ci_installs(dockerfile: str) -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert pins(ci) and pins(dockerfile) == pins(ci)
    assert re.search(r"pip\" install .* -e '\.\[test\]'", ci) and re.search(
        r"^RUN pip install -q \.$", dockerfile, re.M
    )
    for source in re.findall(r"^COPY (\S+) ", dockerfile, flags=re.MULTILINE):
        assert (REPO / source).exists(), source
    python = re.search(r"ARG PYTHON_VERSION=(\S+)", dockerfile)
    assert python and python.group(1) == "3.11"  # pyproject: requires-python >= 3.11, as .ci/run's machines


def test_dockerfile_has_a_device_argument_and_a_non_root_user(dockerfile: str) -> None:
    assert re.search(r"^ARG DEVICE=cpu$", dockerfile, flags=re.MULTILINE)
    assert "cpu) index=" in dockerfile and "cuda) index=" in dockerfile
    assert "useradd" in dockerfile
    for name, text in stages(dockerfile).items():
        users = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
        assert users[-1:] in ([], ["sketchtext"]), name  # every stage ends as the user (or inherits it from base)
    assert re.findall(r"^USER (\S+)$", stages(dockerfile)["base"], flags=re.MULTILINE)[-1] == "sketchtext"
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", dockerfile, flags=re.MULTILINE)
    assert entrypoint and json.loads(entrypoint.group(1)) == ["sketchtext"]


def test_the_default_image_downloads_no_weights(dockerfile: str) -> None:
    by_stage = stages(dockerfile)
    assert list(by_stage)[-1] == "runtime"  # the default target is the last stage
    assert "HF_HUB_OFFLINE=1" in by_stage["base"]
    assert "pretrained=" not in by_stage["base"] and "pretrained=" not in by_stage["runtime"]
    assert "HF_HUB_OFFLINE=0" in by_stage["weights"]  # baking weights is an explicit, separate target
